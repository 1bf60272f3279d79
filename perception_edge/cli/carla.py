"""`perception-edge carla`: the pipeline in lockstep with a CARLA server, scored against the simulator's ground truth.

The command line of perception_edge.sim.carla_loop (what a tick does, the results bag, the data
set: see there). Needs the CARLA client of the server's version (pip install carla==0.9.16, or
the `carla` extra). Two ways:

- direct (default): frames of every tick go through the pipeline in this process, batched across
  the cameras;
- --ros: CARLA's native ROS 2 interface (server started with --ros2, CARLA 0.9.15+) publishes the
  cameras on /carla/<role_name>/<camera>/image; the perception container (ros2 launch
  perception_edge carla.launch.py) infers, and this command collects its detections and lane masks.

Either way: online mAP@0.5 / lane IoU in the progress bar, OUTPUT/results (a results bag with
frames, ground truth and predictions), the rosbag replay's report of it (`perception-edge evaluate
--bag`: OUTPUT/report.md, report.json, plots, replay.mp4), and --record-dataset DIR.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from perception_edge.core.errors import ConfigError
from perception_edge.data.dataset import parse_size
from perception_edge.sim.carla_world import DEFAULT_CAMERAS, SessionOptions, parse_camera


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="perception-edge carla", description=__doc__.split("\n\n")[0])
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=2000)
    s.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the server (default 10)")
    s.add_argument("--tm-port", type=int, default=8000, help="Traffic Manager port")
    w = p.add_argument_group("world")
    w.add_argument("--town", default="", help="load this town (e.g. Town10HD_Opt); default: keep the loaded one")
    w.add_argument("--delta", type=float, default=0.05, help="fixed seconds per tick (default 0.05: 20 Hz)")
    w.add_argument("--frames", type=int, default=200, help="ticks to run (default 200)")
    w.add_argument("--seed", type=int, default=0, help="seed of spawn points, traffic and Traffic Manager")
    w.add_argument("--weather", default="", help="carla.WeatherParameters preset (ClearNoon, WetCloudySunset, ...)")
    w.add_argument("--vehicles", type=int, default=0, help="traffic: vehicles on autopilot")
    w.add_argument("--walkers", type=int, default=0, help="traffic: walkers with AI controllers")
    w.add_argument("--role-name", default="hero", help="role_name of the ego vehicle (default hero)")
    w.add_argument("--attach", action="store_true",
                   help="attach to the existing vehicle with --role-name instead of spawning one")
    c = p.add_argument_group("cameras")
    c.add_argument("--cameras", nargs="+", default=list(DEFAULT_CAMERAS), metavar="NAME[:x,y,z[,pitch,yaw,roll]]",
                   help="cameras on the ego vehicle (m, deg; x forward, y right, z up); default: the synthetic "
                        "rig front, front_left (yaw -40), front_right (yaw 40)")
    c.add_argument("--size", default="1280x720", help="image size WIDTHxHEIGHT of every camera")
    c.add_argument("--fov", type=float, default=90.0, help="horizontal field of view (deg)")
    m = p.add_argument_group("pipeline")
    m.add_argument("--detection-model", default="models/det_yolov5_synth.onnx", help="empty: no detection")
    m.add_argument("--segmentation-model", default="models/lane_unet.onnx", help="empty: no segmentation")
    m.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt"))
    m.add_argument("--config", help="parameter file (thresholds, runtime settings)")
    m.add_argument("--ros", action="store_true",
                   help="through the ROS container: the cameras are published by CARLA's native ROS 2 "
                        "interface (enable_for_ros, ros_name = camera name), results read from ROS")
    m.add_argument("--ros-timeout", type=float, default=5.0, help="seconds to wait for a tick's ROS results")
    o = p.add_argument_group("output")
    o.add_argument("--output", default="carla_output", help="folder for results/ (the results bag) and the report")
    o.add_argument("--compressed", action="store_true",
                   help="frames into the results bag as JPEG (image_raw/compressed; ~10x smaller) instead of raw rgb8")
    o.add_argument("--record-dataset", metavar="DIR",
                   help="also write frames, lane masks and YOLO labels (train-seg / train-det format)")
    o.add_argument("--sensor-timeout", type=float, default=5.0,
                   help="seconds to wait for a tick's sensor data before the tick is skipped")
    o.add_argument("--no-video", action="store_true", help="no annotated replay.mp4 in the report")
    o.add_argument("--no-progress", action="store_true")
    return p


def options(args) -> SessionOptions:
    w, h = parse_size(args.size)
    cams = [parse_camera(c, w, h, args.fov) for c in args.cameras]
    return SessionOptions(host=args.host, port=args.port, timeout=args.timeout, town=args.town, delta=args.delta,
                          seed=args.seed, weather=args.weather, cameras=cams, vehicles=args.vehicles,
                          walkers=args.walkers, role_name=args.role_name, attach=args.attach, ros=args.ros,
                          tm_port=args.tm_port)


def sections(args, cams):
    from perception_edge import config
    from perception_edge.sim.carla_loop import namespace

    values = config.load_file(args.config) if args.config else config.defaults()
    values.update({"cameras": [f"{namespace(args.role_name, c.name)}/image" for c in cams],
                   "detection.model": args.detection_model, "segmentation.model": args.segmentation_model,
                   "backend": args.backend})
    for key in ("detection.model", "segmentation.model"):
        if values[key] and not Path(values[key]).is_file():
            raise ConfigError(f"{key} {values[key]}: no such file")
    return config.Sections.from_values(values)


def main(argv: list[str] | None = None, carla_module=None) -> int:
    args = parser().parse_args(argv)
    from perception_edge.sim.carla_loop import PipelineInference, run_loop

    opts = options(args)
    custom = {"perception_edge.detection_model": args.detection_model,
              "perception_edge.segmentation_model": args.segmentation_model}
    if args.ros:
        from perception_edge.carla_ros import RosResults

        def make():
            return RosResults([c.name for c in opts.cameras], opts.role_name, args.ros_timeout)
    else:
        cfg = sections(args, opts.cameras)

        custom["perception_edge.config"] = json.dumps(cfg.values(), sort_keys=True)

        def make():
            return PipelineInference(cfg)
    summary = run_loop(opts, make, args.frames, args.output, args.record_dataset, not args.no_progress,
                       carla_module, args.sensor_timeout, compressed=args.compressed, custom_data=custom)
    for line in summary.lines():
        print(line)
    if summary.dataset_frames:
        print(f"data set: {summary.dataset_frames} frames in {args.record_dataset}")
    print(f"results bag: {summary.results}")
    if not summary.scored:
        return 1
    # the rosbag replay's report of the results bag (ground truth read from the bag itself)
    from perception_edge.cli.evaluate import main_bag

    return main_bag(["--bag", str(summary.results), "--output", str(args.output)] + (["--no-video"] if args.no_video else []))


if __name__ == "__main__":
    raise SystemExit(main())
