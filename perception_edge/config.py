"""The one configuration schema: ROS parameters, CLI flags and YAML files all come from PARAMETERS.

A YAML file is a ROS 2 params file (``/**: ros__parameters: {...}``, nested or dotted names);
the CLI and replay read the same file, so one file describes one deployment. Code reads the values
as typed sections (``Sections``: ``cfg.detection.conf_threshold``, ``cfg.engine.precision``), whose
fields are checked against PARAMETERS when this module is imported; the flat dotted names stay the
ROS parameter names and the keys of params files. ``config/perception.yaml`` is written from the
schema by ``params_file()`` (a test keeps the two equal).
"""
from __future__ import annotations

import dataclasses
import textwrap
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
            if isinstance(v, str) and v:
                v = [v]  # one entry given as a plain string (cameras:=/one/topic)
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
          "Image topics (sensor_msgs/Image, or sensor_msgs/CompressedImage when the name ends in "
          "/compressed); one topic may be given as a plain string. Results go to the topic's namespace: "
          "/cam_front/image_raw -> /cam_front/detections."),
    Param("input_qos", str, "sensor_data", "Camera subscription QoS: sensor_data (best effort, depth 1: works "
          "with every camera driver) or reliable (depth 1: only receives from reliable publishers). A "
          "publisher whose QoS does not match is reported as a WARN naming the topic and the policy. Raw HD "
          "images sent best effort over UDP lose fragments under load; with a reliable camera driver, "
          "reliable delivers more frames, and a Fast DDS shared-memory segment larger than a frame cuts "
          "transport latency.", choices=("sensor_data", "reliable")),
    Param("backend", str, "auto", "Inference runtime: auto (TensorRT for .engine/.plan files, ONNX Runtime "
          "for .onnx), onnxruntime or tensorrt.", choices=("auto", "onnxruntime", "tensorrt")),
    Param("num_threads", int, 0, "CPU threads for each ONNX Runtime model (0: automatic, the cores split "
          "between the models that run at the same time -- detection and segmentation in the container -- "
          "instead of each taking every core; an explicit value is used as given).", range=(0, 256)),
    Param("diagnostics_period", float, 1.0, "Seconds between /diagnostics messages (per-camera input rates, "
          "drops, bad messages, stale cameras; per-model rates, stage latencies, errors).", range=(0.05, 60.0)),
    Param("debug_image", bool, True, "Publish <camera ns>/debug_image (boxes drawn, off the inference "
          "thread; rendered only while someone subscribes)."),
    Param("sync.slop", float, 0.05, "Approximate-time window (s): frames of one batch are at most this far "
          "apart (header stamps).", range=(0.0, 10.0)),
    Param("sync.stale_timeout", float, 0.5, "A camera silent this long (s) leaves the batch instead of "
          "stalling the others (reported as stale in /diagnostics); it rejoins with its next frame.",
          range=(0.01, 60.0)),
    Param("detection.model", str, "", "YOLOv5 model (.onnx, or .engine/.plan for TensorRT); empty disables "
          "detection."),
    Param("detection.labels", str, "", "Class names, one per line; empty: from the model's metadata, COCO-80 "
          "when the model has 80 classes, else class_<id>."),
    Param("detection.conf_threshold", float, 0.25, "Minimum objectness x class score.", range=(0.0, 1.0),
          read_only=False),
    Param("detection.iou_threshold", float, 0.45, "NMS IoU threshold.", range=(0.0, 1.0), read_only=False),
    Param("detection.max_detections", int, 300, "Most detections kept per image.", range=(1, 30000),
          read_only=False),
    Param("detection.agnostic_nms", bool, False, "Suppress overlapping boxes across classes.",
          read_only=False),
    Param("detection.input_size", int, 640, "Square input size for models whose input size is dynamic "
          "(fixed-size models use their own).", range=(32, 4096)),
    Param("detection.rect", bool, False, "Rectangular inference for models with dynamic height/width (export "
          "--dynamic): the smallest stride-aligned rectangle holding the frame at input_size (1280x720 at "
          "640 -> 640x384, as the official detect.py). Fixed-size models (export --img-size 640x384) use "
          "their own shape."),
    Param("segmentation.model", str, "", "Lane segmentation model (.onnx/.engine); empty disables lane "
          "segmentation."),
    Param("segmentation.threshold", float, 0.5, "Probability threshold of a one-channel (binary) model.",
          range=(0.0, 1.0), read_only=False),
    Param("segmentation.resize_mode", str, "letterbox", "How frames are fitted to the model: letterbox "
          "(aspect kept) or stretch.", choices=("letterbox", "stretch")),
    Param("segmentation.input_size", int, 0, "Square input size for segmentation models whose input size is "
          "dynamic (fixed-size models use their own); 0: the same as detection.input_size.",
          range=(0, 4096)),
    Param("engine.precision", str, "fp16", "TensorRT precision when building an engine from an ONNX model: "
          "fp32, fp16 or int8.", choices=("fp32", "fp16", "int8")),
    Param("engine.cache_dir", str, "", "Where engines built from ONNX models are kept (empty: next to the "
          "model)."),
    Param("engine.auto_build", bool, False, "Build a missing engine from the ONNX model in the background "
          "(reported as 'building engine' in /diagnostics meanwhile)."),
    Param("engine.workspace_mb", int, 1024, "TensorRT builder workspace limit (MiB).", range=(16, 65536)),
    Param("engine.dla_core", int, -1, "DLA core for the engine (-1: GPU only).", range=(-1, 7)),
    Param("engine.max_batch", int, 4, "Largest batch (number of cameras) of a dynamic-batch engine profile.",
          range=(1, 64)),
    Param("engine.check_sidecar", bool, True, "Refuse an .engine/.plan whose JSON sidecar is missing or does "
          "not match this TensorRT version, GPU or ONNX model (false: load it anyway, with a warning)."),
    Param("limits.max_image_pixels", int, 1 << 24, "Largest camera image accepted, in pixels (width x height, "
          "default 4096 x 4096): checked from the Image message or the compressed header before anything "
          "is decoded; 0: no limit.", range=(0, 1 << 30)),
    Param("limits.preprocess_cache", int, 8, "Frame geometries whose resize buffers each model keeps (least "
          "recently used first out).", range=(1, 64)),
    Param("onnxruntime.cpu_arena", bool, True, "ONNX Runtime's CPU memory arena: keeps the largest batch's "
          "working memory for reuse (off: every run allocates and frees it, which measured slower here and "
          "no smaller)."),
    Param("onnxruntime.memory_pattern", bool, False, "ONNX Runtime's memory-pattern planning: preallocates "
          "per input shape on top of the arena (on: about 1.7x the resident memory for the same speed "
          "here)."),
    Param("onnxruntime.graph_optimization", str, "auto", "ONNX Runtime graph optimizations: all (with the CPU "
          "layout transformations: fastest, more memory), extended (without them), basic; auto: all for "
          "detection, extended for segmentation (whose full-resolution feature maps make the layout "
          "transformations cost 1.7x the working memory for 12% of speed with the bundled U-Net).",
          choices=("auto", "all", "extended", "basic")),
    # camera sources read in this process (nodes/camera_source.py, sources/): `sources` with parallel
    # arrays, one entry per source or none at all ("" in an entry: that source's default)
    Param("sources", list, [], "Cameras read in this process instead of subscribed topics: file:///video.mp4 "
          "(MP4/MKV/AVI, H.264/H.265/MJPEG), rtsp://host/path (#h265 for H.265), v4l2:///dev/videoN (#mjpeg "
          "for MJPEG), csi://N (Jetson CSI), gst:<pipeline ending in an appsink>, opencv:<VideoCapture "
          "target>, or an image folder / GIF. Each publishes <name>/image_raw and <name>/camera_info; in "
          "perception_container its frames go to the models in-process and need no `cameras` entry."),
    Param("source_names", list, [], "Camera namespace of each source (cam_front -> /cam_front/image_raw, "
          "/cam_front/detections); empty: cam0, cam1, ..."),
    Param("source.frame_ids", list, [], "frame_id of each source's images; empty or '': <name>_optical_frame."),
    Param("source.fps", list, [], "Frame rate of each source as a string ('30'; '' or '0': the source's own): "
          "asked of V4L2/CSI cameras, a rate limit for the others."),
    Param("source.sizes", list, [], "Image size of each source, WIDTHxHEIGHT ('1280x720'; '': the source's "
          "own): asked of V4L2/CSI cameras, scaled for the others (nvvidconv on Jetson)."),
    Param("source.camera_info_urls", list, [], "Calibration of each source (camera_calibration_parsers YAML, a "
          "path or file:// URL) published on <name>/camera_info; '': an uncalibrated CameraInfo (size only)."),
    Param("source.backend", str, "auto", "Reader: auto (GStreamer when its Python bindings are installed, "
          "else OpenCV), gstreamer or opencv.", choices=("auto", "gstreamer", "opencv")),
    Param("source.latency_ms", int, 200, "RTSP jitter buffer (rtspsrc latency), ms.", range=(0, 10000)),
    Param("source.loop", bool, False, "Play files, folders and GIFs again from the start when they end."),
    Param("source.reconnect_max_s", float, 10.0, "A live source (RTSP, V4L2, CSI) that fails or ends is "
          "reopened after 0.5 s, then twice as long each time up to this many seconds.", range=(0.5, 600.0)),
    Param("source.publish_always", bool, False, "Publish <name>/image_raw for every frame (for recording); "
          "false: only while someone subscribes (the models get the frames in-process either way)."),
]

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMETERS}


def defaults() -> dict[str, Any]:
    return {p.name: (list(p.default) if p.type is list else p.default) for p in PARAMETERS}


# -- typed sections --------------------------------------------------------------------------------
# One frozen dataclass per dotted prefix, no defaults of their own: they are built from validated
# values (schema defaults < params file < flags), and _check_sections() holds their fields to the
# schema (same names, same types) when this module is imported.

@dataclass(frozen=True)
class DetectionSection:
    model: str
    labels: str
    conf_threshold: float
    iou_threshold: float
    max_detections: int
    agnostic_nms: bool
    input_size: int
    rect: bool


@dataclass(frozen=True)
class SegmentationSection:
    model: str
    threshold: float
    resize_mode: str
    input_size: int  # 0: detection.input_size (resolved by Sections.segmentation_input_size)


@dataclass(frozen=True)
class SyncSection:
    slop: float
    stale_timeout: float


@dataclass(frozen=True)
class EngineSection:
    precision: str
    cache_dir: str
    auto_build: bool
    workspace_mb: int
    dla_core: int
    max_batch: int
    check_sidecar: bool

    @classmethod
    def defaults(cls) -> EngineSection:
        return Sections.defaults().engine


@dataclass(frozen=True)
class LimitsSection:
    max_image_pixels: int
    preprocess_cache: int


@dataclass(frozen=True)
class OnnxRuntimeSection:
    cpu_arena: bool
    memory_pattern: bool
    graph_optimization: str

    @classmethod
    def defaults(cls) -> OnnxRuntimeSection:
        return Sections.defaults().onnxruntime


@dataclass(frozen=True)
class SourceSection:
    frame_ids: list[str]
    fps: list[str]
    sizes: list[str]
    camera_info_urls: list[str]
    backend: str
    latency_ms: int
    loop: bool
    reconnect_max_s: float
    publish_always: bool


SECTION_TYPES: dict[str, type] = {"detection": DetectionSection, "segmentation": SegmentationSection,
                                  "sync": SyncSection, "engine": EngineSection, "limits": LimitsSection,
                                  "onnxruntime": OnnxRuntimeSection, "source": SourceSection}


@dataclass(frozen=True)
class Sections:
    """The whole configuration, typed: top-level parameters as fields, each dotted prefix a section."""

    cameras: list[str]
    input_qos: str
    backend: str
    num_threads: int
    diagnostics_period: float
    debug_image: bool
    sync: SyncSection
    detection: DetectionSection
    segmentation: SegmentationSection
    engine: EngineSection
    limits: LimitsSection
    onnxruntime: OnnxRuntimeSection
    sources: list[str]
    source_names: list[str]
    source: SourceSection

    @classmethod
    def from_values(cls, values: Mapping[str, Any], validated: bool = False) -> Sections:
        """From dotted names (missing ones take the schema's defaults); checked unless `validated`."""
        flat = dict(values) if validated and len(values) == len(PARAMETERS) else validate(values)
        top = {k: v for k, v in flat.items() if "." not in k}
        nested: dict[str, dict[str, Any]] = {name: {} for name in SECTION_TYPES}
        for k, v in flat.items():
            if "." in k:
                prefix, field = k.split(".", 1)
                nested[prefix][field] = v
        return cls(**top, **{name: SECTION_TYPES[name](**fields) for name, fields in nested.items()})

    @classmethod
    def defaults(cls) -> Sections:
        return cls.from_values({})

    def values(self) -> dict[str, Any]:
        """Back to dotted names (the ROS parameter names)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in SECTION_TYPES:
                out.update({f"{f.name}.{k}": x for k, x in dataclasses.asdict(v).items()})
            else:
                out[f.name] = list(v) if isinstance(v, list) else v
        return out

    def replace(self, **changes: Any) -> Sections:
        """A copy with some dotted names changed (checked against the schema)."""
        merged = self.values()
        merged.update(changes)
        return Sections.from_values(merged)

    @property
    def segmentation_input_size(self) -> int:
        return self.segmentation.input_size or self.detection.input_size


_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list[str]"}


def _check_sections() -> None:
    """The dataclasses' fields are the schema's names with the schema's types (a programming error
    otherwise, caught by any import of this module, so also by every test run)."""
    expected: dict[str, str] = {}
    for f in dataclasses.fields(Sections):
        if f.name in SECTION_TYPES:
            expected.update({f"{f.name}.{g.name}": g.type for g in dataclasses.fields(SECTION_TYPES[f.name])})
        else:
            expected[f.name] = f.type
    schema = {p.name: _TYPE_NAMES[p.type] for p in PARAMETERS}
    if expected != schema:
        diff = sorted(set(expected.items()) ^ set(schema.items()))
        raise AssertionError(f"config.Sections does not match PARAMETERS: {diff}")


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
    if 0 < merged["segmentation.input_size"] < 32:
        raise ConfigError("parameter segmentation.input_size: 0 (as detection.input_size) or at least 32, "
                          f"got {merged['segmentation.input_size']}")
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


# -- the params file ---------------------------------------------------------------------------------

PARAMS_FILE_HEADER = """\
# perception_edge parameters: one file for every node (perception_container, camera_fusion,
# detection_node, segmentation_node) -- they all read the `/**` section; each node declares the
# parameters it uses and ignores the others.
#
#   ros2 run perception_edge perception_container --ros-args --params-file config/perception.yaml
#   ros2 launch perception_edge perception.launch.py config_file:=/path/to/this.yaml
#
# Written from the schema (perception_edge/config.py: python3 -c "from perception_edge import config;
# print(config.params_file(), end='')" > config/perception.yaml); every parameter is listed with its
# default unless noted. Read-only parameters are fixed at start-up; the ones marked "dynamic" can be
# changed while running:
#   ros2 param set /detection detection.conf_threshold 0.4
# Relative model/label paths are looked up in the current directory, then in
# share/perception_edge/ of the installed package.
"""
# values this file sets that differ from the schema's defaults (the bundled models, two cameras)
PARAMS_FILE_VALUES: dict[str, Any] = {"cameras": ["/cam_front/image_raw", "/cam_left/image_raw"],
                                      "detection.model": "models/det_yolov5_synth.onnx",
                                      "segmentation.model": "models/lane_unet.onnx"}
SECTION_NOTES = {"engine": "TensorRT only (Jetson / NVIDIA GPU); ignored by ONNX Runtime."}


def _yaml_value(v: Any) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, str)):
        if isinstance(v, str) and v and v.replace("_", "").replace("/", "").replace(".", "").isalnum():
            return v
        return json.dumps(v)
    return repr(v)


def write_ros_params(path, values: Mapping[str, Any]):
    """A ROS params file giving every node (`/**`) these values (dotted names); returns the path."""
    import yaml

    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({"/**": {"ros__parameters": dict(values)}}, f)
    return path


def params_file(values: Mapping[str, Any] | None = None) -> str:
    """config/perception.yaml: every schema parameter with its description as a comment (plus
    '(dynamic)' and, where the file's value is not the default, the default)."""
    shown = dict(PARAMS_FILE_VALUES if values is None else values)
    lines = PARAMS_FILE_HEADER.splitlines() + ["/**:", "  ros__parameters:"]
    section = None
    for p in PARAMETERS:
        prefix, _, key = p.name.rpartition(".")
        indent = "    " if not prefix else "      "
        if prefix != section and prefix:
            lines += ["", f"    {prefix}:"]
            if prefix in SECTION_NOTES:
                lines.append(f"      # {SECTION_NOTES[prefix]}")
        section = prefix or section
        value = shown.get(p.name, p.default)
        text = p.description if p.read_only else p.description.rstrip(".") + " (dynamic)."
        if value != p.default:
            text += f" Default: {_yaml_value(p.default)}."
        lines += textwrap.wrap(text, 100, initial_indent=indent + "# ",
                               subsequent_indent=indent + "# ", break_on_hyphens=False)
        lines.append(f"{indent}{key}: {_yaml_value(value)}")
    return "\n".join(lines) + "\n"


_check_sections()
