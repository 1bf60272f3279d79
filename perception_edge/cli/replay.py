"""`perception-edge replay`: a rosbag through the ROS pipeline with its own timing, the outputs recorded
into a results bag, then scored (the command line of perception_edge.replay, live, and of
perception_edge.offline_replay, --offline).

    perception-edge replay BAG [--topics T ...] [--rate 0.5] [--loop] [--start-offset 2] [--clock]
                               [--remap /front/image_raw:=/cam_front/image_raw] [--qos recorded]
                               [--lockstep] [--limit N] [--no-launch] [--offline] --output DIR

Sources: a rosbag (BAG, or --source BAG: every camera topic, stamps and frame_ids as recorded), a
video / GIF / image folder (--source: one /cam/image_raw topic), or --synthetic N (the default: a
generated 3-camera drive written as a ground-truth bag under --output, then replayed).
--rate is a factor of the recorded timing (as `ros2 bag play --rate`), not a frequency.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from perception_edge.core.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", nargs="?", help="rosbag2 directory (or .mcap/.db3, ROS 1 .bag) to replay")
    p.add_argument("--detection-model", default="models/det_yolov5_synth.onnx", help="empty: no detection")
    p.add_argument("--segmentation-model", default="models/lane_unet.onnx", help="empty: no segmentation")
    p.add_argument("--source", help="rosbag / video / GIF / image folder (instead of BAG)")
    p.add_argument("--topics", nargs="+", help="image topics to replay (default: every camera topic of the bag)")
    p.add_argument("--topic", help=argparse.SUPPRESS)  # the earlier single-topic flag
    p.add_argument("--synthetic", type=int, default=30,
                   help="without BAG/--source: steps of a generated 3-camera drive with ground truth (default 30)")
    p.add_argument("--size", default="1280x720", help="--synthetic frame size WxH")
    p.add_argument("--seed", type=int, default=2024, help="--synthetic scene seed")
    p.add_argument("--fps", type=float, default=2.0, help="--synthetic camera rate in Hz (default 2)")
    p.add_argument("--rate", type=float, default=1.0, help="factor of the recorded timing (default 1)")
    p.add_argument("--loop", action="store_true", help="start again at the end (until --limit or Ctrl-C)")
    p.add_argument("--start-offset", type=float, default=0.0, help="seconds into the bag to start at")
    p.add_argument("--clock", action="store_true", help="publish /clock from the bag time; the container "
                                                       "runs with use_sim_time")
    p.add_argument("--remap", nargs="+", default=[], metavar="OLD:=NEW", help="publish topic OLD as NEW")
    p.add_argument("--qos", choices=("recorded", "sensor_data", "reliable"), default="recorded",
                   help="publisher QoS: as recorded in the bag's metadata (default), sensor_data or reliable")
    p.add_argument("--lockstep", action="store_true",
                   help="each step (one frame per camera) waits for its results: every frame scored")
    p.add_argument("--limit", type=int, help="frames to publish at most (default: all)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for a step's results (lockstep) / the last results (timed)")
    p.add_argument("--no-launch", action="store_true",
                   help="use a perception_container already running (same ROS_DOMAIN_ID) instead of starting one")
    p.add_argument("--offline", action="store_true", help="no middleware: the same models frame by frame "
                                                         "(perception_edge.offline_replay)")
    p.add_argument("--config", help="base parameter file (thresholds etc.; the one schema)")
    p.add_argument("--output", default="replay_output", help="folder of the results bag, logs and report")
    p.add_argument("--no-report", action="store_true", help="record only; no evaluation report")
    p.add_argument("--no-video", action="store_true", help="report without the annotated MP4")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def options(args: argparse.Namespace):
    from perception_edge.replay import Options

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    return Options(rate=args.rate, loop=args.loop, start_offset=args.start_offset, clock=args.clock,
                   remap=args.remap, qos=args.qos, lockstep=args.lockstep, limit=args.limit, timeout=args.timeout,
                   launch=not args.no_launch, config_file=args.config, progress=not args.quiet)


def source_of(args: argparse.Namespace, out: Path):
    """The replay source: BAG / --source, else a synthetic ground-truth bag written under `out`."""
    from perception_edge import replay
    from perception_edge.data import bags

    if args.bag and args.source:
        raise ConfigError("give a BAG or --source, not both")
    topics = args.topics or ([args.topic] if args.topic else None)
    path = args.bag or args.source
    if path:
        if not Path(path).exists():
            raise ConfigError(f"replay source not found: {path}")
        from perception_edge.data.frame_sources import source_kind

        if source_kind(path) == "rosbag":
            return replay.bag_source(path, topics)
        if topics:
            raise ConfigError(f"--topics given but {path} is not a rosbag")
        return replay.frames_source(path)
    from perception_edge.data.dataset import parse_size

    w, h = parse_size(args.size)
    bag = replay.free_path(out, "input")
    print(f"writing a {args.synthetic}-step 3-camera synthetic drive ({w}x{h}, {args.fps:g} Hz) with ground truth: "
          f"{bag}")
    bags.write_synthetic_bag(bag, args.synthetic, (w, h), args.seed, fps=args.fps, progress=not args.quiet)
    return replay.bag_source(bag, topics)


def report(results: Path, ground_truth: str | None, out: Path, video: bool, progress: bool) -> None:
    """The evaluation report of a results bag (bag_report.evaluate_bag) into OUT/report, and its headline."""
    from perception_edge.bag_report import evaluate_bag

    folder = out / "report"
    summary = evaluate_bag(str(results), ground_truth, str(folder), video=video, progress=progress)
    print_report_summary(summary, folder)


def print_report_summary(summary: dict, folder: Path) -> None:
    """The headline figures of bag_report.evaluate_bag's report, and where it is."""
    det = summary.get("detection") or {}
    lane = (summary.get("lane") or {}).get("iou") or {}
    figures = [f"{label} {det[key]:.3f}" for key, label in (("map50", "mAP@0.5"), ("map50_95", "mAP@0.5:0.95"),
                                                           ("precision", "precision"), ("recall", "recall"))
               if isinstance(det.get(key), (int, float))]
    figures += [f"{name} IoU {v:.3f}" for name, v in lane.items()
                if name != "background" and isinstance(v, (int, float))]
    if figures:
        print(f"report vs ground truth ({det.get('frames', 0)} frames): " + ", ".join(figures))
    files = summary.get("files") or {}
    print(f"report: {files.get('report.md', folder / 'report.md')}" +
          (f"; video: {files['replay.mp4']}" if "replay.mp4" in files else "") +
          f"; plots: {len([f for f in files if f.endswith('.png')])} PNG in {folder}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="perception-edge replay", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[3:]))
    add_arguments(p)
    args = p.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    opt = options(args)
    source = source_of(args, out)
    if args.offline:
        from perception_edge.offline_replay import run_offline

        if not source.bag:
            raise ConfigError(f"--offline replays rosbags; {source.name} is not one")
        results = run_offline(source.name, out, args.detection_model, args.segmentation_model,
                              list(source.topics), args.config, progress=not args.quiet)
        print(f"offline replay: results bag {results}")
    else:
        from perception_edge import replay

        results = replay.run(source, out, args.detection_model, args.segmentation_model, opt)
        replay.print_summary(replay.summarize(results))
        if (out / "container.log").is_file() and opt.launch:
            print(f"  container log: {out / 'container.log'}")
    if not args.no_report:
        report(results, source.ground_truth, out, video=not args.no_video, progress=not args.quiet)
    return 0
