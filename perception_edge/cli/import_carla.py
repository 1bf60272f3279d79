"""`perception-edge import-carla`: CARLA RGB + semantic segmentation captures -> lane-mask data set
(perception_edge.data.dataset.import_carla)."""
from __future__ import annotations

import argparse

from perception_edge.data.dataset import import_carla


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="perception-edge import-carla",
                                 description="CARLA RGB + semantic segmentation captures -> lane-mask data set.")
    ap.add_argument("--rgb", required=True, help="folder of RGB camera images")
    ap.add_argument("--semantic", required=True, help="folder of semantic images (same file names)")
    ap.add_argument("--out", required=True, help="output data set folder")
    ap.add_argument("--encoding", choices=("auto", "raw", "cityscapes"), default="auto",
                    help="raw: tag in the red channel; cityscapes: CityScapesPalette colours")
    ap.add_argument("--tags", choices=("auto", "0.9.14+", "legacy"), default="auto",
                    help="raw tag numbering: 0.9.14+ (RoadLine 24) or legacy <= 0.9.13 (RoadLine 6)")
    ap.add_argument("--drivable", action="store_true", help="also write Road as class 2")
    args = ap.parse_args(argv)
    n = import_carla(args.rgb, args.semantic, args.out, args.encoding, args.tags, args.drivable)
    print(f"wrote {n} samples to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
