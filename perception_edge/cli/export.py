"""`perception-edge export`: an official YOLOv5 .pt (or a random-weight variant) -> ONNX.

The command line of perception_edge.models.export (graph contract, checkpoint loading: see there)."""
from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path
from typing import Any, Sequence

from perception_edge.core.errors import ConfigError, InputError
from perception_edge.models.export import EXPORTER, export_onnx, img_hw, load_official_checkpoint

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _calibration_images(specs: Sequence[str]) -> list[Any]:
    import cv2

    paths: list[str] = []
    for spec in specs:
        if os.path.isdir(spec):
            paths += sorted(str(q) for q in Path(spec).iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif any(c in spec for c in "*?["):
            paths += sorted(glob.glob(spec))
        else:
            paths.append(spec)
    if not paths:
        raise InputError(f"no calibration images found in {' '.join(specs)}")
    images = []
    for path in paths:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"cannot read calibration image {path}")
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return images


def _shape_of(value_info) -> list[int | str]:
    return [d.dim_param if d.dim_param else d.dim_value for d in value_info.type.tensor_type.shape.dim]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="perception-edge export",
        description="Export YOLOv5 (an official ultralytics/yolov5 .pt, loaded without running its code, or a "
                    "randomly initialised variant) to ONNX: input 'images' [B,3,H,W], output 'output0' [B,N,5+nc].")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="official YOLOv5 checkpoint (.pt), v6.0+ architecture")
    src.add_argument("--variant", choices=["n", "s", "m", "l", "x"], help="random weights of this size")
    parser.add_argument("--nc", type=int, default=80, help="classes for --variant (default 80)")
    parser.add_argument("--labels", help="class names file (one per line) for --variant")
    parser.add_argument("--calibrate-on", nargs="+", metavar="IMAGE",
                        help="images (files, directories or globs) to recalibrate batch norm of a random model on, "
                             "so that its outputs depend on the input")
    parser.add_argument("--seed", type=int, default=0, help="random seed for --variant (default 0)")
    parser.add_argument("--img-size", nargs="+", default=["640"], metavar="N",
                        help="input size: N (square), H W, or WIDTHxHEIGHT (e.g. 640x384 for 16:9 cameras: "
                             "a fixed rectangular graph), multiples of the largest stride (32; 64 for P6) "
                             "(default 640)")
    parser.add_argument("--batch", type=int, default=1, help="batch size of the graph (default 1)")
    parser.add_argument("--dynamic-batch", action="store_true", help="make the batch axis dynamic ('batch')")
    parser.add_argument("--dynamic", action="store_true",
                        help="dynamic batch, height and width (as the official export.py --dynamic): "
                             "lets detection.rect pick the input rectangle per camera (ONNX Runtime)")
    parser.add_argument("--opset", type=int, default=12, help="ONNX opset (default 12)")
    parser.add_argument("--half", action="store_true", help="fp16 weights and compute (float32 input/output)")
    parser.add_argument("--output", "-o", help="output .onnx (default: next to --weights, or yolov5<variant>.onnx)")
    args = parser.parse_args(argv)

    import onnx
    import torch

    from perception_edge.models.yolov5 import YOLOv5, recalibrate_batchnorm

    hw = img_hw(args.img_size)
    if args.weights:
        if args.calibrate_on or args.labels:
            raise ConfigError("--calibrate-on and --labels apply to --variant only (a checkpoint has both)")
        model = load_official_checkpoint(args.weights)
        output = args.output or str(Path(args.weights).with_suffix(".onnx"))
        source = f"{args.weights} (nc={model.nc})"
    else:
        if args.nc < 1:
            raise ConfigError(f"--nc must be >= 1, got {args.nc}")
        names = None
        if args.labels:
            from perception_edge.core.labels import read_labels

            names = read_labels(args.labels)
        torch.manual_seed(args.seed)
        model = YOLOv5(nc=args.nc, variant=args.variant, names=names)
        if args.calibrate_on:
            images = _calibration_images(args.calibrate_on)
            recalibrate_batchnorm(model, images, hw)
            note = f"batch norm recalibrated on {len(images)} image(s)"
        else:
            note = "batch norm not calibrated: outputs barely depend on the input"
        output = args.output or f"yolov5{args.variant}.onnx"
        source = f"random yolov5{args.variant} (nc={args.nc}, seed {args.seed}; {note})"
    path = export_onnx(model.eval(), output, img_size=args.img_size, batch=args.batch,
                       dynamic_batch=args.dynamic_batch, opset=args.opset, half=args.half, dynamic=args.dynamic)
    graph = onnx.load(path, load_external_data=False).graph
    print(f"exported {source}")
    print(f"  output: {path}")
    for vi in graph.input:
        print(f"  input  {vi.name}: {_shape_of(vi)} float32")
    for vi in graph.output:
        print(f"  output {vi.name}: {_shape_of(vi)} float32")
    print(f"  opset {args.opset}{', fp16 weights' if args.half else ''}; exporter: {EXPORTER}")
    return 0
