"""`perception-edge generate-data`: synthetic driving scenes with ground truth into a data set folder
(perception_edge.data.dataset.generate_dataset)."""
from __future__ import annotations

import argparse
import time

from perception_edge.data.dataset import generate_dataset, parse_size
from perception_edge.data.synthetic import CAMERA_POSES


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="perception-edge generate-data",
                                 description="Generate synthetic driving scenes: images, lane masks, YOLO labels.")
    ap.add_argument("--out", required=True, help="output data set folder")
    ap.add_argument("--count", type=int, default=100, help="number of scenes (each seen by every camera)")
    ap.add_argument("--size", default="640x360", help="frame size WIDTHxHEIGHT")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cameras", default="front", help=f"comma-separated: {', '.join(CAMERA_POSES)}")
    ap.add_argument("--drivable", action="store_true", help="masks also hold class 2 (drivable road surface)")
    ap.add_argument("--format", choices=("jpg", "png"), default="jpg", help="image file format")
    args = ap.parse_args(argv)
    cams = [c.strip() for c in args.cameras.split(",") if c.strip()]
    t0 = time.time()
    n = generate_dataset(args.out, args.count, parse_size(args.size), args.seed, cams, args.drivable, args.format,
                         progress=True)
    print(f"wrote {n} frames to {args.out} in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
