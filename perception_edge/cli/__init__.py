"""`perception-edge` command line: one entry point, a sub-command per tool, each in its own module
(argparse and main only, over the library). Nothing in the library imports this package.

Sub-commands are imported only when called, so `perception-edge detect` never imports torch or
TensorRT. Errors meant for users (PerceptionError) print as one line; set PERCEPTION_EDGE_DEBUG=1
or pass --traceback for the full traceback.
"""
from __future__ import annotations

import importlib
import os
import sys

from perception_edge import __version__
from perception_edge.core.errors import PerceptionError

# name -> (module, function, one-line help)
COMMANDS = {
    "detect": ("perception_edge.cli.detect", "main", "YOLOv5 detection on images -> JSON + annotated JPEG"),
    "segment": ("perception_edge.cli.segment", "main", "lane segmentation on images -> mask PNG + overlay"),
    "export": ("perception_edge.cli.export", "main", "YOLOv5 (PyTorch / official .pt) -> ONNX [torch]"),
    "build-engine": ("perception_edge.cli.build_engine", "main", "ONNX -> TensorRT engine + sidecar [tensorrt]"),
    "quantize": ("perception_edge.cli.quantize", "main", "ONNX FP32 -> INT8 (static, QDQ, per-channel) for ONNX Runtime or TensorRT"),
    "evaluate": ("perception_edge.cli.evaluate", "main", "accuracy, size and CPU latency of models side by side; --table: the compression study"),
    "bench": ("perception_edge.cli.bench", "main", "per-stage latency of the pipeline on real frames"),
    "bench-ros": ("perception_edge.cli.bench_ros", "main", "end-to-end latency through the ROS container"),
    "bench-sources": ("perception_edge.cli.bench_sources", "main",
                      "camera sources in the container (in-process) against raw inference and DDS"),
    "bench-reliability": ("perception_edge.cli.bench_reliability", "main",
                          "overload / soak / steady runs of the container: latency tails, drops, memory"),
    "bench-replay": ("perception_edge.cli.bench_replay", "main", "rosbag replay: offline frames/s, live latency p50/p99 at the bag's rate"),
    "replay": ("perception_edge.cli.replay", "main", "frames through the ROS pipeline: accuracy + latency report"),
    "generate-data": ("perception_edge.cli.generate_data", "main", "synthetic driving scenes with ground truth"),
    "import-carla": ("perception_edge.cli.import_carla", "main", "CARLA captures -> lane-mask dataset"),
    "carla": ("perception_edge.cli.carla", "main", "the pipeline in lockstep with a CARLA server, scored online [carla]"),
    "train-seg": ("perception_edge.cli.train_seg", "main", "train a lane segmentation model (U-Net / DDRNet) [torch]"),
    "train-det": ("perception_edge.cli.train_det", "main", "train the YOLOv5 detector [torch]"),
}


def usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [f"usage: perception-edge [--traceback] COMMAND [ARGS]   (version {__version__})", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "perception-edge COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    traceback = os.environ.get("PERCEPTION_EDGE_DEBUG", "") not in ("", "0")
    if args and args[0] == "--traceback":
        traceback, args = True, args[1:]
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(__version__)
        return 0
    if args[0] not in COMMANDS:
        print(f"perception-edge: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[args[0]]
    try:
        return int(getattr(importlib.import_module(module), func)(args[1:]) or 0)
    except PerceptionError as e:
        if traceback:
            raise
        print(f"perception-edge {args[0]}: error: {e}", file=sys.stderr)
        return 1
    except ImportError as e:
        if traceback:
            raise
        print(f"perception-edge {args[0]}: error: {e.name or e} is not installed "
              f"(see README: optional dependencies)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
