"""`perception-edge train-det`: train a YOLOv5 detector (perception_edge.models.yolov5) on CPU or GPU.

The command line of perception_edge.training.detection (data, loss, outputs: see there).
"""
from __future__ import annotations

import argparse
from typing import Sequence

from perception_edge.cli.qat_args import add_qat_arguments, qat_options
from perception_edge.training.detection import DetConfig, train


def main(argv: Sequence[str] | None = None) -> int:
    from perception_edge.data.dataset import parse_size

    ap = argparse.ArgumentParser(prog="perception-edge train-det", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="data set folder (images/ + labels/ + classes.txt)")
    src.add_argument("--synthetic", type=int, help="number of synthetic training scenes rendered on the fly")
    ap.add_argument("--variant", choices=("n", "s", "m", "l", "x"), default="n")
    ap.add_argument("--width-multiple", type=float, default=0.0, help="override the variant's channel multiple")
    ap.add_argument("--depth-multiple", type=float, default=0.0, help="override the variant's depth multiple")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--img-size", default="384x224", help="model input WIDTHxHEIGHT (multiples of 32)")
    ap.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    ap.add_argument("--lr", type=float, default=0.0, help="initial learning rate (default: sgd 0.01, adamw 0.002)")
    ap.add_argument("--mosaic", type=float, default=0.0, help="probability of a 4-frame mosaic per sample")
    ap.add_argument("--out", default="runs/det")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val", type=int, default=0, help="validation samples (default: 10%%)")
    ap.add_argument("--synthetic-size", default="640x360", help="rendered scene size WIDTHxHEIGHT")
    ap.add_argument("--fresh-synthetic", action="store_true", help="render new synthetic scenes every epoch")
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=0.0, help="stop after this many minutes of training")
    ap.add_argument("--init", default="", help="start from this train-det checkpoint (with --qat: a checkpoint or an ONNX model)")
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--fp16-weights", action="store_true",
                    help="store the exported ONNX weights as float16 (half the size; computes in float32)")
    add_qat_arguments(ap)
    args = ap.parse_args(argv)
    lr = args.lr or (0.01 if args.optimizer == "sgd" else 0.002)
    cfg = DetConfig(variant=args.variant, width_multiple=args.width_multiple, depth_multiple=args.depth_multiple,
                    data=args.data or "", synthetic=args.synthetic or 0, fresh_synthetic=args.fresh_synthetic,
                    synthetic_size=parse_size(args.synthetic_size), val=args.val, epochs=args.epochs,
                    batch=args.batch, img_size=parse_size(args.img_size), optimizer=args.optimizer, lr=lr,
                    mosaic=args.mosaic, out=args.out, seed=args.seed, threads=args.threads, workers=args.workers,
                    augment=not args.no_augment, export=not args.no_export, fp16_weights=args.fp16_weights, max_steps=args.max_steps,
                    time_limit=args.time_limit, init=args.init,
                    **qat_options(args))
    result = train(cfg)
    print(f"done in {result['train_seconds']:.0f} s; best validation mAP@0.5 {result['best_map']:.4f}; "
          f"checkpoint {result['best']}" + (f"; ONNX {result['onnx']}" if result["onnx"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
