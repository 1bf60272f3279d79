"""`perception-edge generate-data`: synthetic driving scenes with ground truth, into a data set folder
(perception_edge.data.dataset.generate_dataset) or, with --bag, a multi-camera rosbag2 drive with
ground-truth topics (perception_edge.data.bags.write_synthetic_bag; topic layout in the README,
"Rosbag replay")."""
from __future__ import annotations

import argparse
import time

from perception_edge.core.errors import ConfigError
from perception_edge.data.dataset import generate_dataset, parse_size
from perception_edge.data.synthetic import CAMERA_POSES

BAG_CAMERAS = "front,front_left,front_right"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="perception-edge generate-data",
                                 description="Generate synthetic driving scenes: images, lane masks, YOLO labels "
                                             "(--out folder), or a rosbag2 drive with ground truth (--bag).")
    dest = ap.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", help="output data set folder")
    dest.add_argument("--bag", help="output rosbag2 directory: per camera image_raw, camera_info, "
                                    "ground_truth/detections, ground_truth/lane_mask; /tf_static")
    ap.add_argument("--count", type=int, default=100, help="number of scenes (each seen by every camera)")
    ap.add_argument("--steps", type=int, default=50, help="--bag: time steps of the drive (default 50)")
    ap.add_argument("--fps", type=float, default=10.0, help="--bag: camera rate in Hz (default 10)")
    ap.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="--bag: storage (default mcap)")
    ap.add_argument("--compressed", action="store_true",
                    help="--bag: sensor_msgs/CompressedImage (JPEG) on <cam>/image_raw/compressed")
    ap.add_argument("--size", default=None, help="frame size WIDTHxHEIGHT (default 640x360; 1280x720 with --bag)")
    ap.add_argument("--seed", type=int, default=None, help="scene seed (default 0; 2024 with --bag)")
    ap.add_argument("--cameras", default=None, help=f"comma-separated: {', '.join(CAMERA_POSES)} "
                                                    f"(default front; {BAG_CAMERAS} with --bag)")
    ap.add_argument("--drivable", action="store_true", help="masks also hold class 2 (drivable road surface)")
    ap.add_argument("--format", choices=("jpg", "png"), default="jpg", help="image file format")
    args = ap.parse_args(argv)
    cams = [c.strip() for c in (args.cameras or (BAG_CAMERAS if args.bag else "front")).split(",") if c.strip()]
    size = parse_size(args.size or ("1280x720" if args.bag else "640x360"))
    t0 = time.time()
    if args.bag:
        from perception_edge.data.bags import write_synthetic_bag

        if args.fps <= 0:
            raise ConfigError(f"--fps must be > 0, got {args.fps}")
        info = write_synthetic_bag(args.bag, args.steps, size, 2024 if args.seed is None else args.seed, cams,
                                   args.fps, args.compressed, args.storage, progress=True)
        frames = sum(n for t, n in info.counts.items() if t in info.image_topics())
        print(f"wrote {args.bag} ({args.storage}): {args.steps} steps x {len(cams)} cameras = {frames} frames, "
              f"{len(info.topics)} topics, {(info.end_ns - info.start_ns) / 1e9:.1f} s of drive, "
              f"in {time.time() - t0:.1f} s")
        return 0
    n = generate_dataset(args.out, args.count, size, 0 if args.seed is None else args.seed, cams, args.drivable,
                         args.format, progress=True)
    print(f"wrote {n} frames to {args.out} in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
