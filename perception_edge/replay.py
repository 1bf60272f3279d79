"""Frames through the real ROS pipeline, scored for accuracy and latency (the library of
`perception-edge replay`, perception_edge.cli.replay, and of `make demo`).

Starts `perception_container` as a subprocess, publishes frames as sensor_msgs/Image (one topic
per camera, all cameras of a step with the same stamp), collects Detection2DArray and lane masks,
and reports, in one table: end-to-end latency (publish -> result received), the container's own
stage latencies, and -- where ground truth exists (the synthetic drive) -- mAP@0.5 and lane IoU.

Sources: `--synthetic N` (a generated 3-camera drive with ground truth, the default) or `--source`
(a rosbag, video, GIF or image folder, read by perception_edge.data.frame_sources; no ground truth, latency only).
`--rate 0` (default) is lockstep: the next step is published once the results of the previous one
arrived (or --timeout passed), so every frame is scored; `--rate HZ` publishes like a camera.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

from perception_edge.core.detections import Detections
from perception_edge.core.drawing import draw
from perception_edge.core.errors import ConfigError
from perception_edge.core.image_conversion import to_rgb

SYNTHETIC_CAMERAS = ("front", "front_left", "front_right")
LARGE_FRAMES_PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_frames.xml"
Step = List[Tuple[str, np.ndarray, Optional[object]]]  # per camera: (name, RGB frame, ground truth or None)


def synthetic_steps(count: int, size: tuple[int, int], seed: int) -> list[Step]:
    from perception_edge.data.synthetic import sequence

    return [[(f.camera, f.image, f) for f in frames]
            for frames in sequence(seed, count, 10.0, size, SYNTHETIC_CAMERAS)]


def source_steps(source: str, topic: str | None, count: int) -> list[Step]:
    from perception_edge.data.frame_sources import iter_frames

    return [[("cam", np.ascontiguousarray(to_rgb(pixels, order)), None)]
            for pixels, order, _, _ in iter_frames(source, topic=topic, limit=count)]


def detections_from_msg(msg, class_names: list[str]) -> Detections:
    n = len(msg.detections)
    boxes = np.zeros((n, 4), np.float32)
    scores = np.zeros(n, np.float32)
    ids = np.full(n, -1, np.int64)
    index = {name: i for i, name in enumerate(class_names)}
    for i, d in enumerate(msg.detections):
        cx, cy = d.bbox.center.position.x, d.bbox.center.position.y
        boxes[i] = (cx - d.bbox.size_x / 2, cy - d.bbox.size_y / 2, cx + d.bbox.size_x / 2, cy + d.bbox.size_y / 2)
        if d.results:
            scores[i] = d.results[0].hypothesis.score
            ids[i] = index.get(d.results[0].hypothesis.class_id, -1)
    return Detections(boxes, scores, ids, class_names)


class Collector:
    """This process's ROS side: camera publishers and result subscribers, results keyed by stamp."""

    def __init__(self, cameras: list[str]):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray, LabelInfo

        from perception_edge.nodes.allocator import keep_frame_buffers
        from perception_edge.nodes.parameters import output_topic

        keep_frame_buffers()  # frames out, masks in: see nodes/allocator.py
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("perception_replay", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        results = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=rclpy.qos.DurabilityPolicy.TRANSIENT_LOCAL)
        self.publishers = {c: self.node.create_publisher(Image, c, qos) for c in cameras}
        self.detections: dict[tuple[str, int], tuple[object, float]] = {}
        self.masks: dict[tuple[str, int], tuple[np.ndarray, float]] = {}
        self.class_names: list[str] = []
        self.diagnostics: dict[str, dict[str, str]] = {}
        for c in cameras:
            self.node.create_subscription(Detection2DArray, output_topic(c, "detections"),
                                          lambda m, c=c: self._store(self.detections, c, m, m), results)
            self.node.create_subscription(Image, output_topic(c, "lane_mask"), lambda m, c=c: self._store(
                self.masks, c, m, np.frombuffer(m.data, np.uint8).reshape(m.height, m.step)[:, :m.width]), results)
        self.node.create_subscription(LabelInfo, output_topic(cameras[0], "label_info"), self._labels, latched)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, results)

    @staticmethod
    def _store(table, camera, msg, value):
        from perception_edge.nodes.messages import stamp_to_ns

        table[(camera, stamp_to_ns(msg.header.stamp))] = (value, time.monotonic())

    def _labels(self, msg):
        self.class_names = [c.class_name for c in sorted(msg.class_map, key=lambda c: c.class_id)]

    def _diag(self, msg):
        for s in msg.status:
            self.diagnostics[s.name] = {kv.key: kv.value for kv in s.values}

    def publish(self, step: Step, topics: list[str]) -> int:
        from perception_edge.nodes.messages import image_msg, ns_to_stamp
        from std_msgs.msg import Header

        stamp_ns = time.time_ns()
        for (camera, rgb, _), topic in zip(step, topics):
            self.publishers[topic].publish(image_msg(rgb, "rgb8", Header(stamp=ns_to_stamp(stamp_ns), frame_id=camera)))
        return stamp_ns

    def spin_until(self, done, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            self.executor.spin_once(timeout_sec=0.01)
        return done()

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def write_params(path: Path, cameras: list[str], det_model: str, seg_model: str, base: str | None) -> Path:
    from perception_edge import config

    values = config.load_file(base) if base else config.defaults()
    values.update({"cameras": cameras, "detection.model": det_model, "segmentation.model": seg_model,
                   "input_qos": "reliable", "debug_image": False})
    return config.write_ros_params(path, values)


def run(steps: list[Step], det_model: str, seg_model: str, out: Path, rate: float, timeout: float,
        config_file: str | None = None, log=print) -> dict[str, object]:
    """Replay `steps` through a perception_container; returns (and writes) the report."""
    cameras = [f"/{name}/image_raw" for name, _, _ in steps[0]]
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(LARGE_FRAMES_PROFILE))  # whole frames in shared memory
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID",
                                           "FASTDDS_DEFAULT_PROFILES_FILE")})
    params = write_params(Path(tempfile.mkdtemp()) / "replay.yaml", cameras, det_model, seg_model, config_file)
    log_path = out / "container.log"
    with open(log_path, "wb") as log_file:
        container = subprocess.Popen([sys.executable, "-m", "perception_edge.nodes.container", "--ros-args",
                                      "--params-file", str(params)], stdout=log_file, stderr=subprocess.STDOUT, env=env)
    collector = Collector(cameras)
    want_det, want_seg = bool(det_model), bool(seg_model)
    try:
        ready = collector.spin_until(lambda: container.poll() is not None or all(
            p.get_subscription_count() > 0 for p in collector.publishers.values()), 60)
        if container.poll() is not None or not ready:
            raise ConfigError(f"perception_container did not start: {log_path.read_text(errors='replace').strip()[-500:]}")
        sent: list[tuple[int, float]] = []
        for i, step in enumerate(steps):
            t0 = time.monotonic()
            stamp = collector.publish(step, cameras)
            sent.append((stamp, t0))

            def complete(stamp=stamp):
                return all((not want_det or (c, stamp) in collector.detections) and
                           (not want_seg or (c, stamp) in collector.masks) for c in cameras)
            if rate > 0:
                collector.spin_until(lambda: False, max(0.0, 1.0 / rate - (time.monotonic() - t0)))
            else:
                collector.spin_until(complete, timeout)
            if (i + 1) % 10 == 0:
                log(f"  replayed {i + 1}/{len(steps)} steps")
        collector.spin_until(lambda: False, 1.5)  # late results and one more /diagnostics
        report = score(steps, cameras, sent, collector, want_det, want_seg, out)
        rss = vm_rss_mb(container.pid)
        report["container_rss_mb"] = round(rss, 1) if rss is not None else None
        return report
    finally:
        collector.close()
        container.terminate()
        try:
            container.wait(10)
        except subprocess.TimeoutExpired:
            container.kill()


def vm_rss_mb(pid: int) -> float | None:
    """Resident memory (VmRSS) of a process in MiB; None without /proc."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def score(steps, cameras, sent, collector: Collector, want_det: bool, want_seg: bool, out: Path) -> dict[str, object]:
    from perception_edge.core.metrics import DetectionMeter, SegmentationMeter

    names = collector.class_names
    gt_names = None
    if steps[0][0][2] is not None:
        from perception_edge.data.synthetic import CLASSES

        gt_names = CLASSES
    scored_det = gt_names is not None and want_det and names[:len(gt_names)] == list(gt_names)
    det_meter = DetectionMeter(len(gt_names), 0.5, class_names=gt_names) if scored_det else None
    seg_meter = SegmentationMeter(2) if gt_names is not None and want_seg else None
    latency: list[float] = []
    received = {c: [0, 0] for c in cameras}
    for i, (step, (stamp, t0)) in enumerate(zip(steps, sent)):
        for (name, rgb, gt), cam in zip(step, cameras):
            det = collector.detections.get((cam, stamp))
            mask = collector.masks.get((cam, stamp))
            arrivals = [x[1] for x in (det, mask) if x is not None]
            if (det or not want_det) and (mask or not want_seg) and arrivals:
                latency.append((max(arrivals) - t0) * 1e3)
            dets = detections_from_msg(det[0], names) if det else None
            received[cam][0] += det is not None
            received[cam][1] += mask is not None
            if det_meter is not None and dets is not None:
                det_meter.add(dets.boxes, dets.scores, dets.class_ids, gt.boxes, gt.class_ids)
            if seg_meter is not None and mask is not None:
                seg_meter.add((mask[0] == 1).astype(np.uint8), (gt.mask == 1).astype(np.uint8))
            if i == len(steps) - 1:  # what RViz would show for the last step, drawn from the received messages
                shown = draw(rgb, dets, mask[0] if mask else None)
                cv2.imwrite(str(out / f"{name}_last.jpg"), cv2.cvtColor(shown, cv2.COLOR_RGB2BGR))
    report: dict[str, object] = {
        "steps": len(steps), "cameras": cameras,
        "received": {c: {"detections": r[0], "lane_masks": r[1]} for c, r in received.items()},
        "end_to_end_ms": {"median": round(statistics.median(latency), 2),
                          "p90": round(float(np.percentile(latency, 90)), 2)} if latency else None,
        "container_stages_ms": {s: {k[:-3]: float(v) for k, v in kv.items() if k.endswith("_ms")}
                                for s, kv in collector.diagnostics.items() if any(k.endswith("_ms") for k in kv)},
    }
    if det_meter is not None:
        res = det_meter.result()
        report["detection_map50"] = round(res.map, 4)
        report["detection_table"] = res.table()
    if seg_meter is not None:
        report["lane_iou"] = round(float(seg_meter.iou()[1]), 4)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def print_report(report: dict[str, object], out: Path) -> None:
    print(f"replay: {report['steps']} steps x {len(report['cameras'])} cameras")
    for cam, r in report["received"].items():
        print(f"  {cam:<28} detections {r['detections']:>3}   lane masks {r['lane_masks']:>3}")
    if report.get("end_to_end_ms"):
        e = report["end_to_end_ms"]
        print(f"  end-to-end latency (publish -> all results of a frame): median {e['median']} ms, p90 {e['p90']} ms")
    for status, stages in report["container_stages_ms"].items():
        print(f"  {status}: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()) + " (ms, medians)")
    if "detection_map50" in report:
        print(f"  detection mAP@0.5 vs ground truth: {report['detection_map50']:.3f}")
        print("    " + report["detection_table"].replace("\n", "\n    "))
    if "lane_iou" in report:
        print(f"  lane-marking IoU vs ground truth: {report['lane_iou']:.3f}")
    if report.get("container_rss_mb"):
        print(f"  container resident memory: {report['container_rss_mb']} MiB")
    print(f"  report: {out / 'report.json'}; last frames drawn: {out}/*_last.jpg; container log: {out / 'container.log'}")
