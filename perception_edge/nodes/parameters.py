"""ROS parameters generated from the one schema (perception_edge.config.PARAMETERS).

Each node declares the schema parameters it uses (GROUPS: fusion, detection, segmentation) with a
ParameterDescriptor (type, description, range, read_only), so one params file (``/**:
ros__parameters:``) configures the container and the standalone nodes alike; schema names a node
does not use are left to the nodes that do, names outside the schema are reported once. Values are
checked by config.validate; the parameters that are not read-only can be changed at run time
(``ros2 param set``), checked by the same schema (validate in the on-set callback, then apply).

Also here: model path resolution (current directory, then the package's share directory).
"""
from __future__ import annotations

import fnmatch
import os
import threading
from typing import Any, Callable, Iterable, Mapping, Sequence

from perception_edge import config
from perception_edge.core.deprecation import moved_names
from perception_edge.core.errors import ConfigError, ModelError
from perception_edge.nodes.topics import camera_namespace, check_cameras, output_topic

PACKAGE = "perception_edge"
# parameters every rclpy node may have besides the schema's
ROS_BUILTIN_PARAMETERS = ("use_sim_time", "start_type_description_service", "qos_overrides")

# Which schema parameters each part of a node uses (patterns over the dotted names). The container's
# camera_fusion node declares "fusion"; its detection / segmentation nodes their own group; a
# standalone model node (its own camera input) both.
GROUPS: dict[str, tuple[str, ...]] = {
    "fusion": ("cameras", "input_qos", "sync.*", "limits.max_image_pixels", "diagnostics_period"),
    "model": ("cameras", "backend", "num_threads", "engine.*", "onnxruntime.*", "limits.preprocess_cache",
              "diagnostics_period"),
    "detection": ("detection.*", "debug_image"),
    "segmentation": ("segmentation.*", "detection.input_size"),  # 0: the detection input size
    "sources": ("sources", "source_names", "source.*", "limits.max_image_pixels", "diagnostics_period"),
}


def group_names(*groups: str) -> list[str]:
    """Schema names of the given groups, in schema order ("detection" and "segmentation" include "model")."""
    patterns = [pat for g in groups for pat in GROUPS[g] + (GROUPS["model"] if g in ("detection", "segmentation")
                                                                else ())]
    return [p.name for p in config.PARAMETERS if any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns)]


# -- descriptors -------------------------------------------------------------------------------------

def ros_type(param: config.Param) -> int:
    from rcl_interfaces.msg import ParameterType

    return {
        bool: ParameterType.PARAMETER_BOOL,
        int: ParameterType.PARAMETER_INTEGER,
        float: ParameterType.PARAMETER_DOUBLE,
        str: ParameterType.PARAMETER_STRING,
        list: ParameterType.PARAMETER_STRING_ARRAY,
    }[param.type]


def descriptor_for(param: config.Param):
    """The rcl_interfaces/ParameterDescriptor of a schema parameter."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    d = ParameterDescriptor()
    d.name = param.name
    d.type = ros_type(param)
    d.description = param.description
    d.read_only = bool(param.read_only)
    if param.choices:
        d.additional_constraints = "one of: " + ", ".join(param.choices)
    if param.range is not None:
        lo, hi = param.range
        if param.type is float:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        elif param.type is int:
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
    return d


def descriptors() -> dict[str, Any]:
    return {p.name: descriptor_for(p) for p in config.PARAMETERS}


# -- declaration and validation ------------------------------------------------------------------------

def _overrides(node) -> dict[str, Any]:
    """The node's parameter overrides (--params-file, -p name:=value, parameter_overrides)."""
    found = getattr(node, "_parameter_overrides", None)  # rclpy keeps them here (Humble .. Kilted)
    return found if isinstance(found, dict) else {}


def _coerce_overrides(node, names: Iterable[str]) -> None:
    """Check the overrides of the given schema parameters against the schema before rclpy sees them,
    so that an invalid value fails with the schema's message, an integer given for a float parameter
    (YAML `1` for `1.0`) is accepted as the float it means, and one camera given as a string
    (cameras:=/one/topic) as a list of one."""
    from rclpy.parameter import Parameter

    overrides = _overrides(node)
    for name in names:
        p = overrides.get(name)
        if p is None:
            continue
        param = config.BY_NAME[name]
        value = p.value
        if param.type is list and value is None:  # rcl reads `name: []` in a params file as "not set"
            value = []
            overrides[name] = Parameter(name, Parameter.Type.STRING_ARRAY, [])
        if param.type is list and isinstance(value, (list, tuple)) and len(value) == 0 and param.default:
            raise ConfigError(f"parameter {name}: needs at least one entry")
        checked = param.validate(value)  # raises ConfigError with the schema's message
        if param.type is float and not isinstance(value, float):
            overrides[name] = Parameter(name, value=float(checked))
        elif param.type is list and not isinstance(value, list):
            overrides[name] = Parameter(name, value=list(checked))


def unknown_overrides(node) -> list[str]:
    return sorted(n for n in _overrides(node)
                  if n not in config.BY_NAME and n.split(".", 1)[0] not in ROS_BUILTIN_PARAMETERS)


_reported_unknown: set[str] = set()  # per process: the container's nodes share one params file
_reported_lock = threading.Lock()


def declare_schema_parameters(node, names: Sequence[str] | None = None, warn_unknown: bool = True) -> dict[str, Any]:
    """Declare the given schema parameters (default: all) on the node and return every schema value
    (validated; the schema's defaults for the ones not declared here).

    Raises ConfigError (one line, naming the parameter) on any invalid value."""
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    names = [p.name for p in config.PARAMETERS] if names is None else list(names)
    _coerce_overrides(node, names)
    for name in names:
        param = config.BY_NAME[name]
        default = list(param.default) if param.type is list else param.default
        given = _overrides(node).get(name)
        if param.type is list and not default and given is not None:
            # rclpy types an empty list as a byte array: declare with the given list instead
            default = list(given.value or [])
            if not default:
                _overrides(node).pop(name)
        try:
            node.declare_parameter(name, default, descriptor_for(param))
        except (InvalidParameterTypeException, InvalidParameterValueException, TypeError, ValueError) as e:
            value = _overrides(node).get(name)
            shown = repr(value.value) if value is not None else "?"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"parameter {name}: invalid value {shown} ({first})") from None
    if warn_unknown:
        with _reported_lock:
            new = [n for n in unknown_overrides(node) if n not in _reported_unknown]
            _reported_unknown.update(new)
        for name in new:
            node.get_logger().warn(f"ignoring unknown parameter {name!r} (not in the perception_edge schema)")
    values = config.validate({n: node.get_parameter(n).value for n in names})
    if "cameras" in names:
        check_cameras(values["cameras"])
    return values


def declare_parameters(node, *groups: str) -> config.Sections:
    """Declare the parameters of the given groups (GROUPS) and return the configuration, typed."""
    return config.Sections.from_values(declare_schema_parameters(node, group_names(*groups)), validated=True)


def add_dynamic_updates(node, apply: Callable[[str, Any], None], names: Sequence[str] | None = None) -> None:
    """Accept run-time changes of the non-read-only schema parameters (checked by the schema) and
    hand each accepted value to `apply(name, value)`; `names` limits which ones this node uses."""
    from rcl_interfaces.msg import SetParametersResult

    wanted = set(names) if names is not None else None

    def on_set(params) -> SetParametersResult:
        accepted = []
        for p in params:
            param = config.BY_NAME.get(p.name)
            if param is None:
                continue  # use_sim_time etc.: rclpy's business
            if param.read_only:
                return SetParametersResult(successful=False,
                                           reason=f"parameter {p.name} is read-only (set it at start-up)")
            try:
                value = param.validate(p.value)
            except ConfigError as e:
                return SetParametersResult(successful=False, reason=str(e))
            accepted.append((p.name, value))
        for name, value in accepted:
            if wanted is None or name in wanted:
                apply(name, value)
                node.get_logger().info(f"parameter {name} set to {value!r}")
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)


# -- files ---------------------------------------------------------------------------------------------

def package_share_dir() -> str | None:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return get_package_share_directory(PACKAGE)
    except (PackageNotFoundError, LookupError, ValueError, OSError):
        return None


def resolve_path(path: str, what: str = "model", error=ModelError) -> str:
    """A relative path is looked up in the current directory first, then in the package's share
    directory (share/perception_edge/, found through ament_index when installed)."""
    if not path:
        return path
    expanded = os.path.expanduser(path)
    if os.path.isabs(expanded):
        if os.path.isfile(expanded):
            return expanded
        raise error(f"{what} file not found: {path}")
    tried = [os.path.abspath(expanded)]
    share = package_share_dir()
    if share:
        tried.append(os.path.join(share, expanded))
    for candidate in tried:
        if os.path.isfile(candidate):
            return candidate
    note = "" if share else f" (package {PACKAGE} not found in the ament index, share directory not searched)"
    raise error(f"{what} file not found: {path} (tried {', '.join(tried)}){note}")


def resolved(values: Mapping[str, Any], model_key: str) -> dict[str, Any]:
    """values with the model path (and detection labels file) resolved."""
    out = dict(values)
    out[model_key] = resolve_path(values[model_key], f"{model_key.split('.')[0]} model")
    if model_key == "detection.model" and values.get("detection.labels"):
        out["detection.labels"] = resolve_path(values["detection.labels"], "labels", ConfigError)
    return out


__all__ = ["GROUPS", "group_names", "descriptor_for", "descriptors", "declare_schema_parameters",
           "declare_parameters", "add_dynamic_updates", "resolve_path", "resolved", "package_share_dir",
           "camera_namespace", "output_topic", "check_cameras"]  # the topic names live in nodes.topics
__getattr__ = moved_names(__name__, {"run_main": "perception_edge.nodes.runner",
                                     "EXIT_CONFIG": "perception_edge.nodes.runner"})
