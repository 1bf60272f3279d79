"""ROS parameters generated from the one schema (perception_edge.config.PARAMETERS).

Every node declares every schema parameter with a ParameterDescriptor (type, description, range,
read_only), so one params file (``/**: ros__parameters:``) configures the container and the
standalone nodes alike. Values are checked by config.validate; the thresholds that are not
read-only can be changed at run time (``ros2 param set``), checked by the same schema.

Also here: model path resolution and the shared ``main()`` runner that turns configuration and
model errors into one FATAL line and exit code 2.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable, Mapping, Sequence

from perception_edge import config
from perception_edge.core.errors import ConfigError, ModelError, PerceptionError

EXIT_CONFIG = 2
PACKAGE = "perception_edge"
# parameters every rclpy node may have besides the schema's
ROS_BUILTIN_PARAMETERS = ("use_sim_time", "start_type_description_service", "qos_overrides")


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


def _coerce_overrides(node) -> None:
    """Check the overrides of schema parameters against the schema before rclpy sees them, so that
    an invalid value fails with the schema's message, and an integer given for a float parameter
    (YAML `1` for `1.0`) is accepted as the float it means."""
    from rclpy.parameter import Parameter

    overrides = _overrides(node)
    for name, p in list(overrides.items()):
        param = config.BY_NAME.get(name)
        if param is None:
            continue
        value = p.value
        if param.type is list and isinstance(value, (list, tuple)) and len(value) == 0:
            raise ConfigError(f"parameter {name}: needs at least one entry")
        checked = param.validate(value)  # raises ConfigError with the schema's message
        if param.type is float and not isinstance(value, float):
            overrides[name] = Parameter(name, value=float(checked))
        elif param.type is list and not isinstance(value, list):
            overrides[name] = Parameter(name, value=list(checked))


def unknown_overrides(node) -> list[str]:
    return sorted(n for n in _overrides(node)
                  if n not in config.BY_NAME and n.split(".", 1)[0] not in ROS_BUILTIN_PARAMETERS)


def declare_schema_parameters(node, warn_unknown: bool = True) -> dict[str, Any]:
    """Declare every schema parameter on the node and return the validated values.

    Raises ConfigError (one line, naming the parameter) on any invalid value."""
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    _coerce_overrides(node)
    for param in config.PARAMETERS:
        default = list(param.default) if param.type is list else param.default
        try:
            node.declare_parameter(param.name, default, descriptor_for(param))
        except (InvalidParameterTypeException, InvalidParameterValueException, TypeError, ValueError) as e:
            value = _overrides(node).get(param.name)
            shown = repr(value.value) if value is not None else "?"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"parameter {param.name}: invalid value {shown} ({first})") from None
    if warn_unknown:
        for name in unknown_overrides(node):
            node.get_logger().warn(f"ignoring unknown parameter {name!r} (not in the perception_edge schema)")
    values = {p.name: node.get_parameter(p.name).value for p in config.PARAMETERS}
    values = config.validate(values)
    check_cameras(values["cameras"])
    return values


def check_cameras(cameras: Sequence[str]) -> None:
    """Camera topics: at least one, valid names, distinct output namespaces."""
    from rclpy.exceptions import InvalidTopicNameException
    from rclpy.validate_topic_name import validate_topic_name

    if not cameras:
        raise ConfigError("parameter cameras: needs at least one image topic")
    seen: dict[str, str] = {}
    for topic in cameras:
        try:
            validate_topic_name(topic)
        except InvalidTopicNameException as e:
            raise ConfigError(f"parameter cameras: {topic!r} is not a valid topic name "
                              f"({str(e).splitlines()[0]})") from None
        ns = camera_namespace(topic)
        if ns in seen:
            raise ConfigError(f"parameter cameras: {seen[ns]!r} and {topic!r} share the output namespace "
                              f"{ns or '/'!r}; give each camera its own namespace")
        seen[ns] = topic


def camera_namespace(topic: str) -> str:
    """Where a camera's outputs go: the image topic's parent namespace.

    /cam_front/image_raw -> /cam_front; /carla/hero/front/image -> /carla/hero/front;
    /cam/image_raw/compressed -> /cam; /image -> "" (the root)."""
    t = topic.rstrip("/")
    if t.endswith("/compressed"):
        t = t[: -len("/compressed")]
    return t.rsplit("/", 1)[0] if "/" in t else ""


def output_topic(camera: str, name: str) -> str:
    """<camera ns>/<name>; relative camera topics give relative outputs (resolved in the node's namespace)."""
    ns = camera_namespace(camera)
    if ns:
        return f"{ns}/{name}"
    return f"/{name}" if camera.startswith("/") else name


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


# -- main() runner -------------------------------------------------------------------------------------

def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _spin(executor) -> None:
    try:
        from rclpy.executors import ExternalShutdownException
    except ImportError:  # pragma: no cover
        ExternalShutdownException = RuntimeError  # noqa: N806
    try:
        executor.spin()
    except (ExternalShutdownException, KeyboardInterrupt):
        pass
    except Exception as e:
        if executor.context.ok():  # not just the context going away during shutdown
            import rclpy.logging

            rclpy.logging.get_logger("perception_edge").error(
                f"executor thread stopped: {type(e).__name__}: {_first_line(e)}")


def run_main(prog: str, build: Callable[[list[Any]], None], argv: Sequence[str] | None = None,
             multi_threaded: bool = True, num_threads: int = 4) -> int:
    """rclpy.init with argv (--ros-args ...), build the nodes (build appends them to the list as it
    creates them), spin them until Ctrl-C / SIGTERM: on a MultiThreadedExecutor (or a
    SingleThreadedExecutor with multi_threaded=False), nodes marked `own_executor` on their own.

    Invalid parameters or a missing/corrupt model: one FATAL line, exit code 2, no traceback (set
    PERCEPTION_EDGE_DEBUG=1 for it)."""
    import rclpy
    import rclpy.logging
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    try:
        from rclpy.executors import ExternalShutdownException
    except ImportError:  # very old rclpy
        class ExternalShutdownException(Exception):  # type: ignore[no-redef]
            pass

    from perception_edge.nodes.allocator import keep_frame_buffers

    keep_frame_buffers()  # before the first frame arrives: no page faults per received frame
    debug = os.environ.get("PERCEPTION_EDGE_DEBUG", "") not in ("", "0")
    args = list(sys.argv if argv is None else argv)  # rcl ignores the non-ROS ones (program name)
    try:
        rclpy.init(args=args)
    except Exception as e:  # bad --ros-args, unreadable params file, ...
        if debug:
            raise
        print(f"{prog}: error: cannot start ROS: {_first_line(e)}", file=sys.stderr, flush=True)
        return EXIT_CONFIG

    logger = rclpy.logging.get_logger(prog)
    nodes: list[Any] = []
    code = 0
    executor = None
    executors: list[Any] = []
    threads: list[threading.Thread] = []
    try:
        try:
            build(nodes)
        except PerceptionError as e:
            if debug:
                raise
            kind = "invalid parameter" if isinstance(e, ConfigError) else "model error"
            logger.fatal(f"{kind}: {_first_line(e)}")
            return EXIT_CONFIG
        except (KeyboardInterrupt, ExternalShutdownException):
            return 0
        except Exception as e:
            if debug:
                raise
            logger.fatal(f"start-up failed: {type(e).__name__}: {_first_line(e)}")
            return EXIT_CONFIG
        # Nodes marked `own_executor` (the container's camera_fusion node: the camera callbacks) spin
        # on a SingleThreadedExecutor in a thread of their own: rclpy's MultiThreadedExecutor adds
        # 10-20 ms between a message's arrival and its callback (measured with bench-ros), while
        # everything these callbacks do is cheap (views, sync, a non-blocking handoff). The models
        # run on the model nodes' own worker threads in any case.
        own = [n for n in nodes if getattr(n, "own_executor", False)]
        shared = [n for n in nodes if n not in own]
        for node in own:
            ex = SingleThreadedExecutor()
            ex.add_node(node)
            executors.append(ex)
            threads.append(threading.Thread(target=_spin, args=(ex,), name=f"{node.get_name()}-executor",
                                            daemon=True))
        if shared:
            executor = (MultiThreadedExecutor(num_threads=max(2, num_threads)) if multi_threaded
                        else SingleThreadedExecutor())
            executors.append(executor)
            for node in shared:
                executor.add_node(node)
        for node in nodes:
            start = getattr(node, "start", None)
            if callable(start):
                start()
        for t in threads:
            t.start()
        logger.info(f"running: {', '.join(n.get_name() for n in nodes)}")
        try:
            if executor is not None:
                executor.spin()
            else:
                while any(t.is_alive() for t in threads):
                    threads[0].join(0.2)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        return code
    finally:
        for node in reversed(nodes):
            stop = getattr(node, "stop", None)
            try:
                if callable(stop):
                    stop()
            except Exception:
                pass
        for ex in executors:
            try:
                ex.shutdown(timeout_sec=1.0)
            except Exception:
                pass
        for t in threads:
            t.join(2.0)
        for node in reversed(nodes):
            try:
                node.destroy_node()
            except Exception:
                pass
        try:
            rclpy.try_shutdown()
        except Exception:
            pass
