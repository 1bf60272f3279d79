"""Planning a TensorRT engine build before TensorRT is needed: the arguments of build-engine (or any
object with the same attributes) checked against the ONNX model's I/O and the parameter file's
engine.* defaults, into a BuildRequest (settings, calibration plan, output path). The command line
is perception_edge.cli.build_engine; building is perception_edge.backends.tensorrt.builder.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from perception_edge.backends.base import ENGINE_SUFFIXES
from perception_edge.backends.tensorrt.cache import BuildSettings, cache_key, engine_path_for, make_settings
from perception_edge.backends.tensorrt.calibrators import CalibrationPlan, calibration_digest
from perception_edge.backends.tensorrt.onnx_io import OnnxIO, read_onnx_io
from perception_edge.core.errors import ConfigError, ModelError
from perception_edge.core.files import sha256_file

DEFAULT_CALIBRATION_FRAMES = 512
DEFAULT_CALIBRATION_BATCH = 8


@dataclass(frozen=True)
class BuildRequest:
    onnx_path: str
    onnx: OnnxIO
    settings: BuildSettings
    calibration: CalibrationPlan | None
    output: str
    cache_dir: str
    timing_cache: str
    input_size: int | None
    print_trtexec: bool
    verbose: bool
    notes: tuple[str, ...] = ()


def _config_values(path: str | None) -> dict[str, Any]:
    from perception_edge import config

    return config.load_file(path) if path else config.defaults()


def _same_file(a: str, b: str) -> bool:
    try:
        return bool(a) and bool(b) and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def resolve(args: Any) -> BuildRequest:
    """Validate build-engine's arguments (an argparse.Namespace of cli.build_engine.parser(), or any object
    with those attributes) into a BuildRequest. Needs no TensorRT."""
    from perception_edge.data.frame_sources import image_topic, source_kind

    model = Path(args.model)
    if model.suffix.lower() != ".onnx":
        raise ConfigError(f"{args.model}: build-engine takes an .onnx model")
    if not model.is_file():
        raise ModelError(f"model file not found: {args.model}")
    onnx = read_onnx_io(str(model))
    values = _config_values(args.config)
    precision = args.precision or values["engine.precision"]
    workspace = args.workspace_mb if args.workspace_mb is not None else values["engine.workspace_mb"]
    dla = args.dla_core if args.dla_core is not None else values["engine.dla_core"]
    if dla < -1:
        raise ConfigError(f"--dla-core must be >= 0 (or -1 for none), got {dla}")
    if args.batch is not None and any(v is not None for v in (args.min_batch, args.opt_batch, args.max_batch)):
        raise ConfigError("give either --batch or --min-batch/--opt-batch/--max-batch, not both")
    lo = hi = opt = args.batch
    if args.batch is None:
        lo, opt, hi = args.min_batch, args.opt_batch, args.max_batch
    if args.output and Path(args.output).suffix.lower() not in ENGINE_SUFFIXES:
        raise ConfigError(f"--output {args.output}: use an {'/'.join(ENGINE_SUFFIXES)} file name")
    input_size = args.input_size
    spatial = onnx.inputs[0].shape[2:]
    if all(isinstance(d, int) for d in spatial):
        if input_size is not None and tuple(spatial) != (input_size, input_size):
            raise ConfigError(f"--input-size {input_size}: the model's input is fixed at "
                              f"{'x'.join(str(d) for d in spatial)}")
        input_size = None
    elif input_size is None:
        input_size = values["detection.input_size"]
    mode = args.resize_mode or (values["segmentation.resize_mode"]
                                if _same_file(str(model), values["segmentation.model"]) else "letterbox")
    notes: list[str] = []

    strongly_typed = bool(getattr(args, "strongly_typed", False))
    if onnx.quantized:  # explicit quantization: the Q/DQ nodes carry the INT8 scales
        if not args.precision:
            precision = "int8"
            notes.append("the model is explicitly quantized (Q/DQ nodes): building INT8 (FP16 fallback) "
                         "without calibration")
        elif args.precision != "int8":
            raise ConfigError(f"{args.model} is explicitly quantized (Q/DQ nodes): build it with --precision int8 "
                              f"(not {args.precision}), or build its FP32 model")
        stray = [f for f, v in (("--calibration", args.calibration), ("--calibration-topic", args.calibration_topic),
                                ("--calibration-cache", args.calibration_cache)) if v]
        if stray:
            raise ConfigError(f"{', '.join(stray)}: {args.model} is explicitly quantized (Q/DQ nodes) and "
                              "carries its INT8 scales; it takes no calibration")
        if dla >= 0:
            notes.append("DLA and Q/DQ: layers DLA cannot run with the model's scales fall back to the GPU")
    elif strongly_typed:
        raise ConfigError("--strongly-typed takes an explicitly quantized (Q/DQ) model, e.g. from "
                          "quantize --format tensorrt or train-* --qat")

    calibration = None
    if precision == "int8" and not onnx.quantized:
        if not args.calibration and not (args.calibration_cache and Path(args.calibration_cache).is_file()):
            raise ConfigError("--precision int8 needs calibration frames (--calibration SRC) or an existing "
                              "--calibration-cache FILE")
        if args.calibration_frames < 1 or args.calibration_stride < 1:
            raise ConfigError("--calibration-frames and --calibration-stride must be >= 1")
    else:
        stray = [f for f, v in (("--calibration", args.calibration), ("--calibration-topic", args.calibration_topic),
                                ("--calibration-cache", args.calibration_cache)) if v]
        if stray:
            raise ConfigError(f"{', '.join(stray)} applies to --precision int8 only (precision is {precision})")

    # settings without calibration first: they fix the input size the calibration digest depends on
    settings = make_settings(onnx, precision if precision != "int8" else "fp16", lo, opt, hi, workspace,
                             dla if precision != "int8" else -1, input_size=input_size,
                             default_max_batch=values["engine.max_batch"])
    dims = settings.inputs[0][1]
    input_hw = (int(dims[-2]), int(dims[-1]))
    if precision == "int8" and onnx.quantized:
        settings = make_settings(onnx, "int8", lo, opt, hi, workspace, dla, input_size=input_size,
                                 default_max_batch=values["engine.max_batch"], strongly_typed=strongly_typed)
    elif precision == "int8":
        cal_batch = args.calibration_batch
        if not settings.dynamic_batch:
            if cal_batch not in (None, settings.batch.max):
                raise ConfigError(f"--calibration-batch {cal_batch}: the model's batch is fixed at {settings.batch.max}")
            cal_batch = settings.batch.max
        cal_batch = cal_batch or DEFAULT_CALIBRATION_BATCH
        if cal_batch < 1:
            raise ConfigError(f"--calibration-batch must be >= 1, got {cal_batch}")
        source, topic = args.calibration or "", args.calibration_topic or ""
        if source:
            kind = source_kind(source)
            if topic and kind != "rosbag":
                raise ConfigError(f"--calibration-topic applies to rosbags; {source} is a {kind}")
            if kind == "rosbag":
                topic = image_topic(source, topic or None)
            digest = calibration_digest(source, topic, args.calibration_frames, cal_batch, mode, input_hw,
                                        args.calibration_stride)
        else:
            digest = sha256_file(args.calibration_cache)
            notes.append(f"INT8 scales come from the calibration cache {args.calibration_cache} as it is")
        calibration = CalibrationPlan(source, topic, args.calibration_frames, cal_batch, args.calibrator,
                                      args.calibration_cache or "", mode, input_hw, digest, args.calibration_stride)
        settings = make_settings(onnx, "int8", lo, opt, hi, workspace, dla, args.calibrator, digest,
                                 input_size=input_size, default_max_batch=values["engine.max_batch"])
    if settings.dla_core >= 0 and not settings.batch.fixed:
        notes.append("DLA runs static shapes only: with a batch range, layers fall back to the GPU "
                     "(use --batch N for a DLA engine)")
    return BuildRequest(str(model), onnx, settings, calibration, args.output or "",
                        args.cache_dir if args.cache_dir is not None else values["engine.cache_dir"],
                        args.timing_cache or "", input_size, args.print_trtexec, args.verbose, tuple(notes))


def identity_or_none():
    """This machine's TensorRT/GPU identity (engine cache key part), or None without TensorRT."""
    try:
        from perception_edge.backends.tensorrt.cuda import cuda_memory
        from perception_edge.backends.tensorrt.runtime import import_tensorrt, runtime_identity

        return runtime_identity(import_tensorrt(), cuda_memory())
    except Exception:
        return None


def engine_path(req: BuildRequest, identity) -> str:
    """Where the engine goes: --output, else its cache-key name (a plain name without TensorRT)."""
    if req.output:
        return req.output
    if identity is None:  # no TensorRT here: the cache name's key is unknown
        folder = Path(req.cache_dir).expanduser() if req.cache_dir else Path(req.onnx_path).resolve().parent
        return str(folder / f"{Path(req.onnx_path).stem}.{req.settings.precision}.engine")
    key = cache_key(sha256_file(req.onnx_path), req.settings, identity)
    return str(engine_path_for(req.onnx_path, req.settings, key, req.cache_dir))


def with_calibration_cache(req: BuildRequest, engine_file: str) -> CalibrationPlan | None:
    """The calibration plan with its cache file (default: next to the engine, .calib)."""
    cal = req.calibration
    if cal is not None and not cal.cache_path:
        cal = replace(cal, cache_path=str(Path(engine_file).with_suffix(".calib")))
    return cal


__all__ = ["BuildRequest", "resolve", "engine_path", "identity_or_none", "with_calibration_cache",
           "DEFAULT_CALIBRATION_FRAMES", "DEFAULT_CALIBRATION_BATCH"]
