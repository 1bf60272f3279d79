"""`perception-edge train-seg`: train a lane segmentation model (U-Net or DDRNet-23-slim) on CPU or GPU.

The command line of perception_edge.training.segmentation (data, loss, outputs: see there).
"""
from __future__ import annotations

import argparse
from typing import Sequence

from perception_edge.cli.qat_args import add_qat_arguments, qat_options
from perception_edge.training.segmentation import ARCHS, SegConfig, train


def _size(text: str) -> tuple[int, int]:
    from perception_edge.data.dataset import parse_size

    return parse_size(text)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="perception-edge train-seg", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="data set folder (images/ + masks/)")
    src.add_argument("--synthetic", type=int, help="number of synthetic training scenes rendered on the fly")
    ap.add_argument("--arch", choices=ARCHS, default="unet")
    ap.add_argument("--classes", type=int, default=2, help="classes incl. background; 2 = binary lane marking")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--img-size", default="320x192", help="model input WIDTHxHEIGHT")
    ap.add_argument("--resize-mode", choices=("letterbox", "stretch"), default="letterbox")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--out", default="runs/seg", help="output folder (checkpoints, model.onnx)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val", type=int, default=0, help="validation samples (default: 10%%)")
    ap.add_argument("--unet-base", type=int, default=16, help="U-Net width of the first level")
    ap.add_argument("--unet-depth", type=int, default=4, help="U-Net downsamplings")
    ap.add_argument("--unet-stem-stride", type=int, choices=(1, 2), default=1,
                    help="2: U-Net levels at half resolution with a full-resolution output branch")
    ap.add_argument("--time-limit", type=float, default=0.0, help="stop after this many minutes of training")
    ap.add_argument("--synthetic-size", default="640x360", help="rendered scene size WIDTHxHEIGHT")
    ap.add_argument("--fresh-synthetic", action="store_true", help="render new synthetic scenes every epoch")
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--workers", type=int, default=0, help="data loader processes")
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--init", default="", help="start from this train-seg checkpoint (with --qat: a checkpoint or an ONNX model)")
    ap.add_argument("--no-export", action="store_true", help="skip the ONNX export at the end")
    add_qat_arguments(ap)
    args = ap.parse_args(argv)
    cfg = SegConfig(arch=args.arch, classes=args.classes, data=args.data or "", synthetic=args.synthetic or 0,
                    fresh_synthetic=args.fresh_synthetic, synthetic_size=_size(args.synthetic_size), val=args.val,
                    epochs=args.epochs, batch=args.batch, img_size=_size(args.img_size), resize_mode=args.resize_mode,
                    lr=args.lr, out=args.out, seed=args.seed, unet_base=args.unet_base, unet_depth=args.unet_depth,
                    unet_stem_stride=args.unet_stem_stride, time_limit=args.time_limit, threads=args.threads, workers=args.workers, augment=not args.no_augment,
                    export=not args.no_export, max_steps=args.max_steps, init=args.init,
                    **qat_options(args))
    result = train(cfg)
    print(f"done in {result['train_seconds']:.0f} s; best validation foreground IoU {result['best_iou']:.4f}; "
          f"checkpoint {result['best']}" + (f"; ONNX {result['onnx']}" if result["onnx"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
