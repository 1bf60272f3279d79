"""The quantization-aware training options that train-det and train-seg share (perception_edge.training.qat)."""
from __future__ import annotations

import argparse
from typing import Any


def add_qat_arguments(ap: argparse.ArgumentParser) -> None:
    q = ap.add_argument_group("quantization-aware training (needs nvidia-modelopt: pip install '.[qat]')")
    q.add_argument("--qat", action="store_true",
                   help="fine-tune with INT8 fake quantization from the FP32 model --init (.pt or .onnx) and export "
                        "a Q/DQ ONNX model (TensorRT explicit INT8; ONNX Runtime runs it too)")
    q.add_argument("--qat-float-layers", type=int, default=0, metavar="K",
                   help="leave the K layers most sensitive to quantization in float (default 0; all are reported)")
    q.add_argument("--qat-calib-batches", type=int, default=8, metavar="N",
                   help="training batches that calibrate the activation ranges (default 8)")


def qat_options(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields of the options above."""
    return {"qat": args.qat, "qat_float_layers": args.qat_float_layers, "qat_calib_batches": args.qat_calib_batches}
