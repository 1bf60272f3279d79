"""`perception-edge build-engine`: ONNX -> TensorRT engine + JSON sidecar (the command line; the
library is perception_edge.backends.tensorrt).

FP32 / FP16 / INT8 (entropy or min-max calibration on frames from a folder, video or rosbag, fed
through the runtime Preprocessor so the scales match what the engine sees in service), dynamic batch
profiles, workspace limit, DLA with GPU fallback, timing-cache reuse, progress output, and the
equivalent trtexec command. Arguments are validated before TensorRT is imported, and
--print-trtexec works without TensorRT.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from perception_edge.backends.base import ENGINE_SUFFIXES
from perception_edge.backends.tensorrt.cache import (
    CALIBRATORS, PRECISIONS, BuildSettings, cache_key, engine_path_for, make_settings, sidecar_path)
from perception_edge.backends.tensorrt.calibrators import CalibrationPlan, calibration_digest
from perception_edge.backends.tensorrt.commands import trtexec_command
from perception_edge.backends.tensorrt.onnx_io import OnnxIO, read_onnx_io
from perception_edge.core.deprecation import moved_names
from perception_edge.core.errors import ConfigError, ModelError
from perception_edge.core.files import sha256_file

DEFAULT_CALIBRATION_FRAMES = 512
DEFAULT_CALIBRATION_BATCH = 8


# -- arguments -------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="perception-edge build-engine",
        description="Build a TensorRT engine (+ JSON sidecar) from an ONNX model. Run it on the device "
                    "that will use the engine: engines are specific to the TensorRT version and GPU.")
    p.add_argument("model", help="ONNX model")
    p.add_argument("--precision", choices=PRECISIONS, help="engine precision (default: engine.precision, fp16)")
    g = p.add_argument_group("INT8 calibration")
    g.add_argument("--calibration", metavar="SRC", help="calibration frames: image folder, video/GIF or rosbag")
    g.add_argument("--calibration-topic", metavar="T", help="image topic when SRC is a rosbag")
    g.add_argument("--calibration-frames", type=int, default=DEFAULT_CALIBRATION_FRAMES, metavar="N",
                   help=f"frames to calibrate on (default {DEFAULT_CALIBRATION_FRAMES})")
    g.add_argument("--calibration-stride", type=int, default=1, metavar="S", help="use every S-th frame")
    g.add_argument("--calibration-batch", type=int, default=None, metavar="B",
                   help=f"calibration batch size (default {DEFAULT_CALIBRATION_BATCH}; a fixed-batch model's batch)")
    g.add_argument("--calibrator", choices=CALIBRATORS, default="entropy",
                   help="entropy (IInt8EntropyCalibrator2, default) or minmax (IInt8MinMaxCalibrator)")
    g.add_argument("--calibration-cache", metavar="FILE",
                   help="calibration cache to reuse/write (default: next to the engine, .calib)")
    g.add_argument("--resize-mode", choices=("letterbox", "stretch"),
                   help="preprocessing of calibration frames (default: the config's mode for this model, "
                        "else letterbox)")
    b = p.add_argument_group("shapes")
    b.add_argument("--batch", type=int, help="fixed batch size (min = opt = max)")
    b.add_argument("--min-batch", type=int)
    b.add_argument("--opt-batch", type=int)
    b.add_argument("--max-batch", type=int, help="(default: engine.max_batch, 4)")
    b.add_argument("--input-size", type=int, help="square size for a model whose H/W are dynamic")
    p.add_argument("--workspace-mb", type=int, help="builder workspace limit in MiB (default: engine.workspace_mb)")
    p.add_argument("--dla-core", type=int, help="build for this DLA core, with GPU fallback (Xavier/Orin)")
    p.add_argument("--timing-cache", metavar="FILE", help="TensorRT timing cache to reuse and update")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--output", metavar="ENGINE", help="engine file to write (.engine/.plan)")
    out.add_argument("--cache-dir", metavar="DIR", help="write into this engine cache folder (cache-key name)")
    p.add_argument("--config", metavar="YAML", help="perception parameter file: engine.* values are the defaults")
    p.add_argument("--print-trtexec", action="store_true", help="print the equivalent trtexec command and exit")
    p.add_argument("--verbose", action="store_true", help="TensorRT INFO log")
    return p


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


def resolve(args: argparse.Namespace) -> BuildRequest:
    """Validate the arguments (no TensorRT needed) into a BuildRequest."""
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

    calibration = None
    if precision == "int8":
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
    if precision == "int8":
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


def _identity_or_none():
    try:
        from perception_edge.backends.tensorrt.cuda import cuda_memory
        from perception_edge.backends.tensorrt.runtime import import_tensorrt, runtime_identity

        return runtime_identity(import_tensorrt(), cuda_memory())
    except Exception:
        return None


def _engine_path(req: BuildRequest, identity) -> str:
    if req.output:
        return req.output
    if identity is None:  # no TensorRT here: the cache name's key is unknown
        folder = Path(req.cache_dir).expanduser() if req.cache_dir else Path(req.onnx_path).resolve().parent
        return str(folder / f"{Path(req.onnx_path).stem}.{req.settings.precision}.engine")
    key = cache_key(sha256_file(req.onnx_path), req.settings, identity)
    return str(engine_path_for(req.onnx_path, req.settings, key, req.cache_dir))


def _with_cache_path(req: BuildRequest, engine_path: str) -> CalibrationPlan | None:
    cal = req.calibration
    if cal is not None and not cal.cache_path:
        cal = replace(cal, cache_path=str(Path(engine_path).with_suffix(".calib")))
    return cal


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    req = resolve(args)
    for note in req.notes:
        print(f"note: {note}", file=sys.stderr)
    if req.print_trtexec:
        identity = _identity_or_none()
        engine_path = _engine_path(req, identity)
        cal = _with_cache_path(req, engine_path)
        if req.settings.precision == "int8":
            print("note: trtexec reads INT8 scales from the calibration cache (--calib) and cannot calibrate "
                  "from frames; build-engine writes that cache", file=sys.stderr)
        print(trtexec_command(req.onnx_path, engine_path, req.settings, req.onnx,
                              cal.cache_path if cal else "", req.timing_cache))
        return 0

    from perception_edge.backends.tensorrt.builder import build_engine_file
    from perception_edge.backends.tensorrt.cuda import cuda_memory
    from perception_edge.backends.tensorrt.runtime import import_tensorrt, runtime_identity
    from perception_edge.data.frame_sources import iter_frames

    trt = import_tensorrt()
    cuda = cuda_memory()
    identity = runtime_identity(trt, cuda)
    engine_path = _engine_path(req, identity)
    cal = _with_cache_path(req, engine_path)
    frames = None
    if cal is not None and cal.source:
        frames = iter_frames(cal.source, cal.topic or None, cal.frames, cal.stride)
    start = time.monotonic()
    build_engine_file(req.onnx_path, req.settings, engine_path, identity=identity, cuda=cuda, calibration=cal,
                      timing_cache=req.timing_cache, log=lambda s: print(s, flush=True), verbose=req.verbose,
                      frames=frames)
    size = Path(engine_path).stat().st_size / 1e6
    print(f"wrote {engine_path} ({size:.1f} MB) and {sidecar_path(engine_path).name} in "
          f"{time.monotonic() - start:.0f} s")
    print("equivalent trtexec command:\n  " + trtexec_command(req.onnx_path, engine_path, req.settings, req.onnx,
                                                               cal.cache_path if cal else "", req.timing_cache))
    return 0


# Library names that lived here before perception_edge.backends.tensorrt: still importable, with a warning.
_MOVED = {"CalibrationBatches": "perception_edge.core.calibration",
          "CalibrationCache": "perception_edge.backends.tensorrt.calibrators",
          "CalibrationPlan": "perception_edge.backends.tensorrt.calibrators",
          "calibration_digest": "perception_edge.backends.tensorrt.calibrators",
          "make_calibrator": "perception_edge.backends.tensorrt.calibrators",
          "build_command": "perception_edge.backends.tensorrt.commands",
          "trtexec_command": "perception_edge.backends.tensorrt.commands",
          "build_serialized": "perception_edge.backends.tensorrt.builder",
          "build_engine_file": "perception_edge.backends.tensorrt.builder"}


__getattr__ = moved_names(__name__, _MOVED)


__all__ = ["main", "parser", "resolve", "BuildRequest"]
