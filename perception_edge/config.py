"""The one configuration schema: ROS parameters, CLI flags and YAML files all come from PARAMETERS.

A YAML file is a ROS 2 params file (``/**: ros__parameters: {...}``, nested or dotted names);
the CLI and replay read the same file, so one file describes one deployment.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from perception_edge.core.errors import ConfigError


@dataclass(frozen=True)
class Param:
    name: str
    type: type  # bool, int, float, str, or list (of str)
    default: Any
    description: str
    range: tuple[float, float] | None = None
    choices: Sequence[str] | None = None
    read_only: bool = True  # most settings shape the pipeline at start-up

    def validate(self, value: Any) -> Any:
        """Return the value converted to this parameter's type, or raise ConfigError."""
        v = value
        if self.type is bool:
            if not isinstance(v, bool):
                raise ConfigError(f"parameter {self.name}: expected true/false, got {v!r}")
        elif self.type is int:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"parameter {self.name}: expected an integer, got {v!r}")
        elif self.type is float:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"parameter {self.name}: expected a number, got {v!r}")
            v = float(v)
        elif self.type is str:
            if not isinstance(v, str):
                raise ConfigError(f"parameter {self.name}: expected a string, got {v!r}")
        elif self.type is list:
            if isinstance(v, str) or not isinstance(v, (list, tuple)) or not all(isinstance(s, str) for s in v):
                raise ConfigError(f"parameter {self.name}: expected a list of strings, got {v!r}")
            v = list(v)
        if self.range is not None and not (self.range[0] <= v <= self.range[1]):
            raise ConfigError(f"parameter {self.name}: {v!r} is outside [{self.range[0]}, {self.range[1]}]")
        if self.choices is not None and v not in self.choices:
            raise ConfigError(f"parameter {self.name}: {v!r} is not one of {', '.join(self.choices)}")
        return v


PARAMETERS: list[Param] = [
    Param("cameras", list, ["/cam_front/image_raw"],
          "Image topics (sensor_msgs/Image, or CompressedImage when the name ends in /compressed)."),
    Param("backend", str, "auto", "Inference runtime: auto picks TensorRT for .engine/.plan files, "
          "ONNX Runtime for .onnx.", choices=("auto", "onnxruntime", "tensorrt")),
    Param("num_threads", int, 0, "CPU threads for each ONNX Runtime model (0: automatic, the cores split "
          "between the models that run at the same time).", range=(0, 256)),
    Param("input_qos", str, "sensor_data", "Camera subscription QoS: sensor_data (best effort, depth 1) "
          "or reliable (depth 1).", choices=("sensor_data", "reliable")),
    Param("detection.model", str, "", "YOLOv5 model (.onnx, or .engine/.plan); empty disables detection."),
    Param("detection.labels", str, "", "Class names, one per line; empty: COCO-80 when the model has 80 "
          "classes, else class_<id>."),
    Param("detection.conf_threshold", float, 0.25, "Minimum objectness x class score.", range=(0.0, 1.0),
          read_only=False),
    Param("detection.iou_threshold", float, 0.45, "NMS IoU threshold.", range=(0.0, 1.0), read_only=False),
    Param("detection.max_detections", int, 300, "Most detections kept per image.", range=(1, 30000),
          read_only=False),
    Param("detection.agnostic_nms", bool, False, "Suppress overlapping boxes across classes.",
          read_only=False),
    Param("detection.input_size", int, 640, "Square input size for models whose size is dynamic.",
          range=(32, 4096)),
    Param("detection.rect", bool, False, "Rectangular inference for models with dynamic height/width: the "
          "smallest stride-aligned rectangle holding the frame at input_size (1280x720 at 640 -> 640x384)."),
    Param("segmentation.model", str, "", "Lane segmentation model (.onnx/.engine); empty disables it."),
    Param("segmentation.threshold", float, 0.5, "Probability threshold of a one-channel (binary) model.",
          range=(0.0, 1.0), read_only=False),
    Param("segmentation.resize_mode", str, "letterbox", "How frames are fitted to the model: letterbox "
          "(aspect kept) or stretch.", choices=("letterbox", "stretch")),
    Param("sync.slop", float, 0.05, "Approximate-time window (s): frames of a batch are at most this far "
          "apart.", range=(0.0, 10.0)),
    Param("sync.stale_timeout", float, 0.5, "A camera silent this long (s) leaves the batch instead of "
          "stalling the others.", range=(0.01, 60.0)),
    Param("debug_image", bool, True, "Publish <camera ns>/debug_image (rendered only while subscribed)."),
    Param("diagnostics_period", float, 1.0, "Seconds between /diagnostics messages.", range=(0.05, 60.0)),
    Param("engine.precision", str, "fp16", "TensorRT precision when building engines.",
          choices=("fp32", "fp16", "int8")),
    Param("engine.cache_dir", str, "", "Where engines built from ONNX models are kept (empty: next to the "
          "model)."),
    Param("engine.auto_build", bool, False, "Build a missing engine from the ONNX model (in the "
          "background; the node reports 'building engine')."),
    Param("engine.workspace_mb", int, 1024, "TensorRT builder workspace limit (MiB).", range=(16, 65536)),
    Param("engine.dla_core", int, -1, "DLA core for the engine (-1: GPU only).", range=(-1, 7)),
    Param("engine.max_batch", int, 4, "Largest batch of a dynamic-batch engine profile.", range=(1, 64)),
    Param("engine.check_sidecar", bool, True, "Refuse an .engine/.plan whose JSON sidecar is missing or does "
          "not match this TensorRT version, GPU or ONNX model (false: load it anyway, with a warning)."),
    Param("limits.max_image_pixels", int, 1 << 24, "Largest camera image accepted (width x height), checked "
          "from the message or the compressed header before anything is decoded (0: no limit).",
          range=(0, 1 << 30)),
    Param("limits.preprocess_cache", int, 8, "Frame geometries whose resize buffers are kept per model "
          "(least recently used first out).", range=(1, 64)),
    Param("onnxruntime.cpu_arena", bool, True, "ONNX Runtime's CPU memory arena (holds the largest batch's "
          "working memory for reuse; off: each run allocates and frees it, slower and no smaller here)."),
    Param("onnxruntime.memory_pattern", bool, False, "ONNX Runtime's memory-pattern planning (preallocates "
          "per input shape)."),
    Param("onnxruntime.graph_optimization", str, "all", "ONNX Runtime graph optimizations: all (with the CPU "
          "layout transformations: fastest, more memory), extended (without them), basic.",
          choices=("all", "extended", "basic")),
]

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMETERS}


def defaults() -> dict[str, Any]:
    return {p.name: (list(p.default) if p.type is list else p.default) for p in PARAMETERS}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted names ({'detection': {'model': m}} -> {'detection.model': m})."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def validate(values: Mapping[str, Any], unknown_ok: bool = False) -> dict[str, Any]:
    """Defaults overlaid with `values` (dotted names), each checked against the schema."""
    merged = defaults()
    for name, value in values.items():
        param = BY_NAME.get(name)
        if param is None:
            if unknown_ok:
                continue
            raise ConfigError(f"unknown parameter {name!r}")
        merged[name] = param.validate(value)
    return merged


def ros_parameters_of(document: Any, node_name: str | None = None) -> dict[str, Any]:
    """The parameters a ROS params file gives a node ('/**' first, then the node's own section)."""
    if not isinstance(document, Mapping):
        raise ConfigError("parameter file: expected a mapping at the top level")
    found: dict[str, Any] = {}
    keys = ["/**"] + ([node_name, "/" + node_name] if node_name else [])
    for key in keys:
        section = document.get(key)
        if isinstance(section, Mapping) and "ros__parameters" in section:
            found.update(flatten(section["ros__parameters"] or {}))
    if not found and not any(isinstance(v, Mapping) and "ros__parameters" in v for v in document.values()):
        found = flatten(document)  # a plain YAML of parameters, without the ROS wrapper
    return found


def load_file(path: str, node_name: str | None = None, unknown_ok: bool = True) -> dict[str, Any]:
    """Read and validate a params file; unknown names are ignored (other nodes may share the file)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            document = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"cannot read parameter file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"parameter file {path} is not valid YAML: {e}") from None
    return validate(ros_parameters_of(document, node_name), unknown_ok=unknown_ok)


def add_cli_arguments(parser, names: Iterable[str], aliases: Mapping[str, str] | None = None) -> None:
    """Add --dotted-name flags (dots and underscores become dashes) for the given parameters,
    plus any short alias flag given for a name."""
    for name in names:
        p = BY_NAME[name]
        flags = ["--" + name.replace(".", "-").replace("_", "-")]
        if aliases and name in aliases:
            flags.insert(0, aliases[name])
        kwargs: dict[str, Any] = dict(dest=name, default=None, help=f"{p.description} (default: {p.default})")
        if p.type is bool:
            kwargs["action"] = "store_true"
        elif p.type is list:
            kwargs["nargs"] = "+"
        else:
            kwargs["type"] = p.type
            if p.choices:
                kwargs["choices"] = list(p.choices)
        parser.add_argument(*flags, **kwargs)


def from_cli(args, names: Iterable[str], config_file: str | None = None) -> dict[str, Any]:
    """Schema defaults < config file < explicit CLI flags."""
    values = load_file(config_file) if config_file else defaults()
    for name in names:
        v = getattr(args, name, None)
        if v is not None and not (BY_NAME[name].type is bool and v is False):
            values[name] = BY_NAME[name].validate(v)
    return values
