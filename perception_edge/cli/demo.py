"""`make demo`: the package end to end on this machine, results under demo_output/.

1. The CLI (no ROS): detection and lane segmentation on the real dash-cam frames in
   ../shared/data/driving (when present) and on generated driving scenes.
2. The ROS pipeline: a 3-camera synthetic drive replayed through `perception_container` (fusion,
   one batched inference call per model per step, Detection2DArray + lane masks back over Fast DDS),
   scored against the scenes' ground truth, with end-to-end and per-stage latency.

Uses the bundled models in models/ (trained on synthetic scenes); a YOLOv5n with random weights is
generated in their place if they are missing.
"""
from __future__ import annotations

import sys

import cv2

from perception_edge import cli
from perception_edge.model_cache import DRIVING, REPO, yolov5_onnx

DET_MODEL = REPO / "models" / "det_yolov5_synth.onnx"
SEG_MODEL = REPO / "models" / "lane_unet.onnx"


def _ros_available() -> str | None:
    try:
        import rclpy  # noqa: F401
        import vision_msgs.msg  # noqa: F401
    except ImportError as e:
        return str(e)
    return None


def main(argv: list[str] | None = None) -> int:
    out = REPO / "demo_output"
    det = DET_MODEL if DET_MODEL.is_file() else yolov5_onnx("n", 640)
    seg = SEG_MODEL if SEG_MODEL.is_file() else None
    print(f"== models: detection {det.relative_to(REPO)}, segmentation {seg.relative_to(REPO) if seg else 'none'}")

    from perception_edge.data.synthetic import scene_frames

    synth = out / "synthetic_frames"
    synth.mkdir(parents=True, exist_ok=True)
    images = sorted(str(p) for p in DRIVING.glob("*.jpg"))[:4] if DRIVING.is_dir() else []
    for f in scene_frames(7, (1280, 720), ("front", "front_left", "front_right")):
        path = synth / f"scene7_{f.camera}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
        images.append(str(path))

    print(f"\n== 1. CLI on {len(images)} frames (real dash-cam + synthetic) -> {out / 'cli'}")
    rc = cli.main(["detect", "--model", str(det), "--output", str(out / "cli"), *images])
    if seg and rc == 0:
        rc = cli.main(["segment", "--model", str(seg), "--output", str(out / "cli"), *images])
    if rc:
        return rc

    missing = _ros_available()
    if missing:
        print(f"\n== 2. ROS pipeline skipped: {missing} (make demo sets up the ROS wheels and vision_msgs)")
        return 0
    print("\n== 2. ROS pipeline: 3-camera synthetic drive -> perception_container -> results over Fast DDS")
    from perception_edge import replay

    steps = replay.synthetic_steps(30, (1280, 720), seed=2024)
    report = replay.run(steps, str(det), str(seg or ""), out / "ros", rate=0.0, timeout=15.0,
                        log=lambda s: print(s, flush=True))
    replay.print_report(report, out / "ros")
    print(f"\nDone. Outputs: {out}/cli (JSON, annotated JPEGs, masks), {out}/ros (report.json, last frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
