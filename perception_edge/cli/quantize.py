"""`perception-edge quantize`: ONNX FP32 -> ONNX INT8 (static, QDQ, per-channel) for ONNX Runtime or TensorRT.

The command line of perception_edge.models.quantize (what is quantized and why: see there).
Calibration frames (a folder, video, GIF or rosbag topic) go through the runtime Preprocessor
(perception_edge.core.calibration.CalibrationBatches).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from perception_edge.core.calibration import CalibrationBatches
from perception_edge.core.errors import ConfigError
from perception_edge.models.quantize import ACTIVATION_TYPES, DEFAULT_FRAMES, FORMATS, METHODS, quantize_model


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="perception-edge quantize", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="FP32 ONNX model")
    ap.add_argument("--output", required=True, help="INT8 ONNX model to write")
    ap.add_argument("--calibration", required=True, help="frames: image folder, video/GIF or rosbag")
    ap.add_argument("--calibration-topic", default="", help="image topic of a rosbag with several")
    ap.add_argument("--calibration-frames", type=int, default=DEFAULT_FRAMES,
                    help=f"frames to calibrate on (default {DEFAULT_FRAMES})")
    ap.add_argument("--stride", type=int, default=1, help="take every N-th frame of the source")
    ap.add_argument("--method", choices=METHODS, default="minmax", help="activation range calibration")
    ap.add_argument("--activations", choices=ACTIVATION_TYPES, default="int8",
                    help="activation type: int8 (S8S8, ONNX Runtime's default, fast on Arm with dot-product "
                         "instructions such as Jetson's) or uint8 (U8S8, faster on x86 CPUs without VNNI)")
    ap.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (default: per channel)")
    ap.add_argument("--format", choices=FORMATS, default="onnxruntime", dest="fmt",
                    help="onnxruntime: ONNX Runtime's QDQ (default); tensorrt: TensorRT's explicit INT8 layout "
                         "(symmetric int8, Q/DQ on weighted-layer inputs only) for build-engine without calibration")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    from perception_edge.backends import create_backend
    from perception_edge.data.frame_sources import iter_frames

    args = parser().parse_args(argv)
    if args.calibration_frames < 1:
        raise ConfigError(f"--calibration-frames must be >= 1, got {args.calibration_frames}")
    if Path(args.output).resolve() == Path(args.model).resolve():
        raise ConfigError("--output must differ from the input model")
    backend = create_backend(args.model, "onnxruntime")
    hw = backend.input_hw
    batch = backend.input.shape[0] if isinstance(backend.input.shape[0], int) else 8
    mode = backend.metadata.get("resize_mode", "letterbox")
    frames = iter_frames(args.calibration, args.calibration_topic or None, args.calibration_frames, args.stride)
    batches = CalibrationBatches(frames, hw, batch, args.calibration_frames, mode=mode, last="repeat")
    backend.close()
    quantize_model(args.model, args.output, batches, args.method, not args.per_tensor, args.activations,
                   fmt=args.fmt)
    print(f"calibrated on {batches.frames_used} frames in {batches.batches} batches of {batch} ({mode}, {hw[1]}x{hw[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
