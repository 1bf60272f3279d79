"""`perception-edge replay`: frames through the real ROS pipeline, scored for accuracy and latency.

The command line of perception_edge.replay (what is published, collected and scored: see there).
Sources: `--synthetic N` (a generated 3-camera drive with ground truth, the default) or `--source`
(a rosbag, video, GIF or image folder; no ground truth, latency only). `--rate 0` (default) is
lockstep; `--rate HZ` publishes like a camera.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from perception_edge.core.errors import ConfigError
from perception_edge.replay import print_report, run, source_steps, synthetic_steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="perception-edge replay", description=__doc__.splitlines()[0])
    p.add_argument("--detection-model", default="models/det_yolov5_synth.onnx")
    p.add_argument("--segmentation-model", default="models/lane_unet.onnx", help="empty: no segmentation")
    p.add_argument("--synthetic", type=int, default=30, help="steps of a generated 3-camera drive")
    p.add_argument("--size", default="1280x720", help="synthetic frame size WxH")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--source", help="rosbag / video / GIF / image folder instead of the synthetic drive")
    p.add_argument("--topic", help="image topic in a rosbag source")
    p.add_argument("--rate", type=float, default=0.0, help="publish rate in Hz (0: lockstep)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a step's results")
    p.add_argument("--config", help="base parameter file (thresholds etc.)")
    p.add_argument("--output", default="replay_output")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    steps = (source_steps(args.source, args.topic, args.synthetic) if args.source
             else synthetic_steps(args.synthetic, (w, h), args.seed))
    if not steps:
        raise ConfigError("no frames to replay")
    out = Path(args.output)
    report = run(steps, args.detection_model, args.segmentation_model, out, args.rate, args.timeout, args.config)
    print_report(report, out)
    return 0
