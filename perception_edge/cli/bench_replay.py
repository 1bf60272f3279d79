"""`perception-edge bench-replay`: throughput of the rosbag replay (perception_edge.offline_replay):
offline frames/s through the container's models, reading and writing bags included; and the live
replay's end-to-end latency (perception_edge.replay: publish -> last output of a frame, through a
perception_container over Fast DDS) p50/p99 at the bag's rate, with the frames dropped."""
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
    ap.add_argument("--fps", type=float, default=1.0,
                    help="camera rate of the generated drive, the rate the live replay runs at (default 1 Hz)")
    ap.add_argument("--rate", type=float, default=1.0, help="live: factor of the bag's timing (default 1)")
    ap.add_argument("--no-live", action="store_true", help="offline figures only (no ROS)")
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
            write_synthetic_bag(bag, args.steps, parse_size(args.size), cameras=cams, fps=args.fps, progress=True)
        fps = [offline_fps(bag, args.detection_model, args.segmentation_model, config_file=args.config)
               for _ in range(max(1, args.runs))]
        what = bag if args.bag else f"{args.steps} steps x {args.cameras} at {args.size}, {args.fps:g} Hz"
        print(f"offline replay: {statistics.median(fps):.2f} frames/s (median of {len(fps)} runs: "
              f"{', '.join(f'{f:.2f}' for f in fps)}; {what})")
        if not args.no_live:
            live(bag, Path(tmp) / "live", args)
    return 0


def live(bag: str, out: Path, args: argparse.Namespace) -> None:
    """One live replay of `bag` at its rate (x args.rate): end-to-end latency p50/p99 and drops."""
    from perception_edge import replay

    results = replay.run(replay.bag_source(bag), out, args.detection_model, args.segmentation_model,
                         replay.Options(rate=args.rate, config_file=args.config, progress=False),
                         log=lambda s: None)
    s = replay.summarize(results)
    lat = s["latency_ms"] or {}
    print(f"live replay at the bag's rate x{args.rate:g} ({len(s['cameras'])} cameras): end-to-end latency "
          f"p50 {lat.get('p50', float('nan'))} ms, p99 {lat.get('p99', float('nan'))} ms "
          f"(publish -> last output of a frame, {s['sent'] - s['dropped']} frames), "
          f"{s['dropped']} of {s['sent']} frames dropped")


if __name__ == "__main__":
    raise SystemExit(main())
