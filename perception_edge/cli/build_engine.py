"""`perception-edge build-engine`: ONNX -> TensorRT engine + JSON sidecar (the command line; the
request is planned by perception_edge.engine_request, built by perception_edge.backends.tensorrt).

FP32 / FP16 / INT8 (entropy or min-max calibration on frames from a folder, video or rosbag, fed
through the runtime Preprocessor so the scales match what the engine sees in service; an explicitly
quantized Q/DQ model -- quantize --format tensorrt, train-* --qat -- builds INT8 without calibration,
optionally --strongly-typed on TensorRT 10), dynamic batch
profiles, workspace limit, DLA with GPU fallback, timing-cache reuse, progress output, and the
equivalent trtexec command. Arguments are validated before TensorRT is imported, and
--print-trtexec works without TensorRT.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from perception_edge.backends.tensorrt.cache import CALIBRATORS, PRECISIONS, sidecar_path
from perception_edge.backends.tensorrt.commands import trtexec_command
from perception_edge.engine_request import (
    DEFAULT_CALIBRATION_BATCH, DEFAULT_CALIBRATION_FRAMES, engine_path, identity_or_none, resolve,
    with_calibration_cache)


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
    p.add_argument("--strongly-typed", action="store_true",
                   help="TensorRT 10: build a Q/DQ model as a strongly typed network (precisions from the "
                        "graph, no INT8/FP16 flags)")
    p.add_argument("--timing-cache", metavar="FILE", help="TensorRT timing cache to reuse and update")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--output", metavar="ENGINE", help="engine file to write (.engine/.plan)")
    out.add_argument("--cache-dir", metavar="DIR", help="write into this engine cache folder (cache-key name)")
    p.add_argument("--config", metavar="YAML", help="perception parameter file: engine.* values are the defaults")
    p.add_argument("--print-trtexec", action="store_true", help="print the equivalent trtexec command and exit")
    p.add_argument("--verbose", action="store_true", help="TensorRT INFO log")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    req = resolve(args)
    for note in req.notes:
        print(f"note: {note}", file=sys.stderr)
    if req.print_trtexec:
        target = engine_path(req, identity_or_none())
        cal = with_calibration_cache(req, target)
        if req.settings.precision == "int8" and not req.settings.explicit_int8:
            print("note: trtexec reads INT8 scales from the calibration cache (--calib) and cannot calibrate "
                  "from frames; build-engine writes that cache", file=sys.stderr)
        print(trtexec_command(req.onnx_path, target, req.settings, req.onnx,
                              cal.cache_path if cal else "", req.timing_cache))
        return 0

    from perception_edge.backends.tensorrt.builder import build_engine_file
    from perception_edge.backends.tensorrt.cuda import cuda_memory
    from perception_edge.backends.tensorrt.runtime import import_tensorrt, runtime_identity
    from perception_edge.data.frame_sources import iter_frames

    trt = import_tensorrt()
    cuda = cuda_memory()
    identity = runtime_identity(trt, cuda)
    target = engine_path(req, identity)
    cal = with_calibration_cache(req, target)
    frames = None
    if cal is not None and cal.source:
        frames = iter_frames(cal.source, cal.topic or None, cal.frames, cal.stride)
    start = time.monotonic()
    build_engine_file(req.onnx_path, req.settings, target, identity=identity, cuda=cuda, calibration=cal,
                      timing_cache=req.timing_cache, log=lambda s: print(s, flush=True), verbose=req.verbose,
                      frames=frames)
    size = Path(target).stat().st_size / 1e6
    print(f"wrote {target} ({size:.1f} MB) and {sidecar_path(target).name} in "
          f"{time.monotonic() - start:.0f} s")
    print("equivalent trtexec command:\n  " + trtexec_command(req.onnx_path, target, req.settings, req.onnx,
                                                               cal.cache_path if cal else "", req.timing_cache))
    return 0


__all__ = ["main", "parser"]
