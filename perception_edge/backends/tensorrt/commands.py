"""Command lines rendered from build settings: the `perception-edge build-engine` command that error
messages tell users to run, and the equivalent trtexec command."""
from __future__ import annotations

import shlex
from typing import Sequence

from perception_edge.backends.tensorrt.cache import BuildSettings
from perception_edge.backends.tensorrt.calibrators import CalibrationPlan
from perception_edge.backends.tensorrt.onnx_io import OnnxIO


def _shape(dims: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in dims)


def build_command(onnx_path: str, settings: BuildSettings, cache_dir: str = "", output: str = "",
                  input_size: int | None = None, calibration: CalibrationPlan | None = None) -> str:
    """The build-engine command line for these settings (what error messages tell users to run)."""
    b = settings.batch
    args = ["perception-edge", "build-engine", str(onnx_path), "--precision", settings.precision]
    if settings.dynamic_batch:
        args += ["--batch", str(b.min)] if b.fixed else \
            ["--min-batch", str(b.min), "--opt-batch", str(b.opt), "--max-batch", str(b.max)]
    args += ["--workspace-mb", str(settings.workspace_mb)]
    if input_size:
        args += ["--input-size", str(input_size)]
    if settings.dla_core >= 0:
        args += ["--dla-core", str(settings.dla_core)]
    if settings.strongly_typed:
        args.append("--strongly-typed")
    if calibration is not None:
        if calibration.source:
            args += ["--calibration", calibration.source]
            if calibration.topic:
                args += ["--calibration-topic", calibration.topic]
            args += ["--calibration-frames", str(calibration.frames)]
        args += ["--calibrator", calibration.calibrator]
        if calibration.cache_path:
            args += ["--calibration-cache", calibration.cache_path]
    if output:
        args += ["--output", str(output)]
    elif cache_dir:
        args += ["--cache-dir", str(cache_dir)]
    return " ".join(shlex.quote(a) for a in args)


def trtexec_command(onnx_path: str, engine_path: str, settings: BuildSettings, onnx: OnnxIO,
                    calibration_cache: str = "", timing_cache: str = "") -> str:
    """The trtexec command that builds the same engine. trtexec cannot calibrate from images: for INT8
    it reads the scales from the calibration cache that build-engine writes. An explicitly quantized
    (Q/DQ) model needs no cache: --int8 --fp16, or --stronglyTyped."""
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if settings.strongly_typed:  # precisions come from the Q/DQ graph's types; no precision flags
        args.append("--stronglyTyped")
    elif settings.precision in ("fp16", "int8"):
        args.append("--fp16")
    if settings.precision == "int8" and not settings.strongly_typed:
        args.append("--int8")
        if calibration_cache and not settings.explicit_int8:
            args.append(f"--calib={calibration_cache}")
    dynamic = [name for (name, _), t in zip(settings.inputs, onnx.inputs)
               if any(not isinstance(d, int) for d in t.shape)]
    if dynamic:
        shapes = settings.profile_shapes()
        for flag, k in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
            args.append(f"{flag}=" + ",".join(f"{name}:{_shape(shapes[name][k])}" for name in dynamic))
    args.append(f"--memPoolSize=workspace:{settings.workspace_mb}M")
    if settings.dla_core >= 0:
        args += [f"--useDLACore={settings.dla_core}", "--allowGPUFallback"]
    if timing_cache:
        args.append(f"--timingCacheFile={timing_cache}")
    return " ".join(shlex.quote(a) for a in args)


__all__ = ["build_command", "trtexec_command"]
