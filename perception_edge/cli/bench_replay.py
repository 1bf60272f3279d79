"""`perception-edge bench-replay`: throughput of the rosbag replay (perception_edge.offline_replay):
offline frames/s through the container's models, reading and writing bags included."""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from perception_edge.data.dataset import parse_size


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="perception-edge bench-replay", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bag", default="", help="ground-truth or recorded bag (default: a generated synthetic drive)")
    ap.add_argument("--steps", type=int, default=10, help="steps of the generated drive (default 10)")
    ap.add_argument("--size", default="1280x720", help="frame size of the generated drive (default 1280x720)")
    ap.add_argument("--cameras", default="front,front_left,front_right", help="cameras of the generated drive")
    ap.add_argument("--detection-model", default="models/det_yolov5_synth.onnx")
    ap.add_argument("--segmentation-model", default="models/lane_unet.onnx")
    ap.add_argument("--config", default=None, help="parameters file (the one schema), e.g. num_threads")
    ap.add_argument("--runs", type=int, default=3, help="offline runs; the median is printed (default 3)")
    return ap


def main(argv: list[str] | None = None) -> int:
    from perception_edge.offline_replay import offline_fps

    args = parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="perception_edge_bench_replay_") as tmp:
        bag = args.bag
        if not bag:
            from perception_edge.data.bags import write_synthetic_bag

            bag = str(Path(tmp) / "drive")
            cams = [c.strip() for c in args.cameras.split(",") if c.strip()]
            write_synthetic_bag(bag, args.steps, parse_size(args.size), cameras=cams, progress=True)
        fps = [offline_fps(bag, args.detection_model, args.segmentation_model, config_file=args.config)
               for _ in range(max(1, args.runs))]
    print(f"offline replay: {statistics.median(fps):.2f} frames/s (median of {len(fps)} runs: "
          f"{', '.join(f'{f:.2f}' for f in fps)}; {bag if args.bag else f'{args.steps} steps x {args.cameras} at {args.size}'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
