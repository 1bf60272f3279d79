"""`perception-edge bench-reliability`: overload, soak and steady runs of the composed container.

A camera process publishes N cameras of real 1280x720 rgb8 frames at R Hz (every camera of a tick
with the same stamp, best effort as camera drivers do, the shipped shared-memory profile), a
perception_container with both bundled models runs as a subprocess with its default parameters,
and this process listens to every camera's detections and lane masks (raw CDR: only the stamp is
read) and to /diagnostics, and samples the container's resident memory (VmRSS) every second.

    perception-edge bench-reliability overload   # 4 cameras x 30 Hz for 60 s
    perception-edge bench-reliability soak       # 2 cameras x 10 Hz for 10 minutes
    perception-edge bench-reliability steady     # 3 cameras x 10 Hz for 60 s
    ... [--cameras N] [--rate HZ] [--seconds S] [--num-threads N] [--json FILE]

Prints: end-to-end latency (header stamp -> detections received here) p50 / p90 / p99 and p99/p50;
per camera the output rates (first and last minute too), frames sent / answered and the
container's own counts (received, batched, dropped in sync, lost before the callback, ...);
RSS at start (once the models answer), after the first and second minute, at the end, and its peak.
Figures, no verdicts: the goals (README, Reliability) are for the reader to compare.
"""
from __future__ import annotations

import argparse
import array
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from perception_edge.replay import LARGE_FRAMES_PROFILE as PROFILE, stop_process, vm_rss_mb

REPO = Path(__file__).resolve().parents[2]
PRESETS = {"overload": (4, 30.0, 60.0), "soak": (2, 10.0, 600.0), "steady": (3, 10.0, 60.0)}
DATA = Path(os.environ.get("PERCEPTION_EDGE_DATA", REPO.parent / "shared" / "data" / "driving"))


def camera_topics(n: int) -> list[str]:
    return [f"/rel_cam{i}/image_raw" for i in range(n)]


def load_frames(count: int = 8) -> list[np.ndarray]:
    """Real dash-cam frames (RGB) from ../shared/data/driving, or PERCEPTION_EDGE_DATA."""
    import cv2

    from perception_edge.core.errors import ConfigError

    paths = sorted(DATA.glob("*.jpg"))[:count]
    if not paths:
        raise ConfigError(f"no driving frames (*.jpg) in {DATA}; set PERCEPTION_EDGE_DATA to a folder of frames")
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def publish_main(argv: list[str]) -> int:
    """The camera process: N cameras at R Hz until SIGINT (or --seconds)."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from perception_edge.nodes.allocator import keep_frame_buffers

    p = argparse.ArgumentParser()
    p.add_argument("--cameras", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, default=1e9)
    args = p.parse_args(argv)
    keep_frame_buffers()
    rclpy.init()
    node = rclpy.create_node("reliability_cameras")
    topics = camera_topics(args.cameras)
    pubs = [node.create_publisher(Image, t, qos_profile_sensor_data) for t in topics]
    msgs = []
    for f in load_frames():
        m = Image()
        data = array.array("B")
        data.frombytes(np.ascontiguousarray(f).tobytes())
        m.height, m.width, m.encoding, m.step, m.data = f.shape[0], f.shape[1], "rgb8", f.shape[1] * 3, data
        msgs.append(m)
    period, k = 1.0 / args.rate, 0
    next_t = start = time.monotonic()
    try:
        while rclpy.ok() and time.monotonic() - start < args.seconds:
            stamp = node.get_clock().now().to_msg()
            for i, pub in enumerate(pubs):
                m = msgs[(k + i) % len(msgs)]
                m.header.stamp = stamp
                m.header.frame_id = f"rel_cam{i}"
                pub.publish(m)
            k += 1
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))
            if next_t < time.monotonic() - 1.0:  # a second behind: skip ticks instead of bursting
                next_t = time.monotonic()
    except KeyboardInterrupt:
        pass
    print(f"published {k} ticks", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def stamp_of_cdr(data: bytes) -> int:
    """Header stamp (ns) of a serialized message that starts with std_msgs/Header (CDR, either endian)."""
    order = "<" if data[1] == 1 else ">"
    sec, nsec = np.frombuffer(data, np.dtype(f"{order}i4"), 1, 4)[0], np.frombuffer(data, np.dtype(f"{order}u4"), 1, 8)[0]
    return int(sec) * 1_000_000_000 + int(nsec)


def run(cameras: int, rate: float, seconds: float, num_threads: int, log_dir: Path,
        overrides: dict | None = None) -> dict:
    import rclpy
    from perception_edge import config
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    topics = camera_topics(cameras)
    domain = int(os.environ.get("ROS_DOMAIN_ID") or 1 + os.getpid() % 100)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1",
               FASTDDS_DEFAULT_PROFILES_FILE=str(PROFILE))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    params = {"cameras": topics, "detection.model": str(REPO / "models" / "det_yolov5_synth.onnx"),
              "segmentation.model": str(REPO / "models" / "lane_unet.onnx"), "num_threads": num_threads,
              "debug_image": False, "diagnostics_period": 1.0, **(overrides or {})}
    params_file = log_dir / "params.yaml"
    config.write_ros_params(params_file, params)

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("bench_reliability", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    lock = threading.Lock()
    arrivals: dict[str, list[tuple[float, int]]] = {t: [] for t in topics}  # (receive time, latency ns)
    masks: dict[str, list[float]] = {t: [] for t in topics}
    diags: dict[str, dict[str, str]] = {}
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)

    def on_det(topic):
        def cb(data: bytes):
            now = time.time_ns()
            with lock:
                arrivals[topic].append((time.monotonic(), now - stamp_of_cdr(data)))
        return cb

    def on_mask(topic):
        return lambda data: masks[topic].append(time.monotonic())

    for t in topics:
        ns = t.rsplit("/", 1)[0]
        node.create_subscription(Detection2DArray, ns + "/detections", on_det(t), qos, raw=True)
        node.create_subscription(Image, ns + "/lane_mask", on_mask(t), qos, raw=True)

    def on_diag(msg):
        for s in msg.status:
            diags[s.name] = {**{kv.key: kv.value for kv in s.values}, "_level": str(s.level[0]), "_msg": s.message}

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)

    def spin_for(secs: float, cond=None) -> bool:
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            if cond is not None and cond():
                return True
        return cond() if cond is not None else True

    log = open(log_dir / "container.log", "wb")
    container = subprocess.Popen([sys.executable, "-m", "perception_edge.nodes.container", "--ros-args",
                                  "--params-file", str(params_file)], stdout=log, stderr=subprocess.STDOUT, env=env)
    cam_log = open(log_dir / "cameras.log", "wb")
    cams = None
    rss: list[tuple[float, float]] = []
    try:
        if not spin_for(120.0, lambda: any(n.endswith("detection model") for n in diags) or container.poll() is not None):
            raise RuntimeError(f"the container did not come up; see {log_dir / 'container.log'}")
        if container.poll() is not None:
            raise RuntimeError(f"the container exited ({container.returncode}); see {log_dir / 'container.log'}")
        cams = subprocess.Popen([sys.executable, "-m", "perception_edge.cli.bench_reliability", "publish",
                                 "--cameras", str(cameras), "--rate", str(rate)], stdout=cam_log,
                                stderr=subprocess.STDOUT, env=env)
        # warm-up: until every camera is answered, then the clock starts
        if not spin_for(120.0, lambda: all(arrivals[t] for t in topics)):
            raise RuntimeError(f"not every camera was answered; see {log_dir}")
        with lock:
            for t in topics:
                arrivals[t].clear()
                masks[t].clear()
        t0 = time.monotonic()
        next_sample = t0
        while time.monotonic() - t0 < seconds:
            spin_for(0.2)
            if time.monotonic() >= next_sample:
                value = vm_rss_mb(container.pid)
                if value is not None:
                    rss.append((time.monotonic() - t0, value))
                next_sample += 1.0
            if container.poll() is not None:
                raise RuntimeError(f"the container died ({container.returncode}); see {log_dir / 'container.log'}")
        t_end = time.monotonic()
        spin_for(2.5)  # a last /diagnostics with the final counts
    finally:
        for p in (cams, container):
            if p is not None:
                stop_process(p, 20)
        executor.shutdown(timeout_sec=1)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    return summarize(topics, arrivals, masks, diags, rss, t0, t_end, rate, container.returncode)


def summarize(topics, arrivals, masks, diags, rss, t0, t_end, rate, exit_code) -> dict:
    seconds = t_end - t0
    lat = sorted(ms / 1e6 for t in topics for tr, ms in arrivals[t] if tr <= t_end)
    pct = {q: float(np.percentile(lat, q)) if lat else float("nan") for q in (50, 90, 99)}
    minute = min(60.0, seconds / 2)

    def rate_in(times, lo, hi):
        return sum(1 for x in times if t0 + lo <= x < t0 + hi) / max(hi - lo, 1e-9)

    per_camera = {}
    for t in topics:
        det_times = [tr for tr, _ in arrivals[t]]
        counts = diags.get(f"camera_fusion: camera {t}", {})
        per_camera[t] = {
            "detections_hz": rate_in(det_times, 0, seconds), "lane_masks_hz": rate_in(masks[t], 0, seconds),
            "first_minute_hz": rate_in(det_times, 0, minute), "last_minute_hz": rate_in(det_times, seconds - minute, seconds),
            **{k: counts.get(k, "?") for k in ("received", "decoded", "batched", "dropped_in_sync",
                                                "lost_before_callback", "decode_skipped", "bad_messages")}}
    models = {name.split(": ")[0]: {k: v.get(k, "?") for k in ("batches", "dropped_batches", "inference_ms",
                                                                 "batch_size", "errors")}
              for name, v in diags.items() if name.endswith(" model")}
    rss_values = [v for _, v in rss]

    def rss_at(second):
        after = [v for s, v in rss if s >= second]
        return after[0] if after else float("nan")

    growth = (rss_values[-1] - rss_at(120.0)) / rss_at(120.0) * 100 if seconds > 150 and rss_values else float("nan")
    return {"seconds": seconds, "rate_hz": rate, "cameras": len(topics), "latency_ms": pct,
            "p99_over_p50": pct[99] / pct[50] if lat else float("nan"), "answered": len(lat),
            "per_camera": per_camera, "models": models, "container_exit": exit_code,
            "rss_mb": {"start": rss_values[0] if rss_values else float("nan"), "minute_1": rss_at(60.0),
                       "minute_2": rss_at(120.0), "end": rss_values[-1] if rss_values else float("nan"),
                       "peak": max(rss_values) if rss_values else float("nan"),
                       "growth_from_minute_2_pct": growth,
                       "by_minute": [rss_at(60.0 * m) for m in range(int(seconds // 60) + 1)]}}


def report(name: str, r: dict, num_threads: int) -> str:
    lines = [f"== {name}: {r['cameras']} cameras x {r['rate_hz']:g} Hz for {r['seconds']:.0f} s, "
             f"num_threads {num_threads} ({'automatic split' if num_threads == 0 else 'per model'})",
             "latency stamp -> detections: p50 {:.1f} / p90 {:.1f} / p99 {:.1f} ms".format(
                 *(r["latency_ms"][q] for q in (50, 90, 99))) + f", p99/p50 {r['p99_over_p50']:.2f}; {r['answered']} answers",
             "camera              det Hz  mask Hz  1st min  last min  received  batched  dropped_sync  lost_before_cb"]
    for t, c in r["per_camera"].items():
        lines.append(f"{t:<20}{c['detections_hz']:6.2f}  {c['lane_masks_hz']:7.2f}  {c['first_minute_hz']:7.2f}  "
                     f"{c['last_minute_hz']:8.2f}  {c['received']:>8}  {c['batched']:>7}  {c['dropped_in_sync']:>12}  "
                     f"{c['lost_before_callback']:>14}")
    for m, v in r["models"].items():
        lines.append(f"{m}: {v['batches']} batches, {v['dropped_batches']} replaced before the model took them, "
                     f"inference median {v['inference_ms']} ms per batch of {v['batch_size']}, errors {v['errors']}")
    s = r["rss_mb"]
    lines.append(f"container RSS: start {s['start']:.0f} MB, minute 1 {s['minute_1']:.0f}, minute 2 {s['minute_2']:.0f}, "
                 f"end {s['end']:.0f}, peak {s['peak']:.0f}; growth minute 2 -> end {s['growth_from_minute_2_pct']:+.2f} %"
                 f"; exit code {r['container_exit']}")
    if len(s["by_minute"]) > 3:
        lines.append("container RSS by minute: " + " ".join(f"{v:.0f}" for v in s["by_minute"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv and argv[0] == "publish":
        return publish_main(argv[1:])
    p = argparse.ArgumentParser(prog="perception-edge bench-reliability", description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=sorted(PRESETS), nargs="+")
    p.add_argument("--cameras", type=int)
    p.add_argument("--rate", type=float)
    p.add_argument("--seconds", type=float)
    p.add_argument("--num-threads", type=int, default=0, help="the container's num_threads (0: automatic split)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a container parameter (YAML value), e.g. --set onnxruntime.graph_optimization=extended")
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args(argv)
    import yaml

    from perception_edge import config

    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in config.BY_NAME:
            p.error(f"--set {item}: unknown parameter {name!r}")
        overrides[name] = config.BY_NAME[name].validate(yaml.safe_load(value))
    results = {}
    for mode in args.mode:
        cams, rate, secs = PRESETS[mode]
        cams, rate, secs = args.cameras or cams, args.rate or rate, args.seconds or secs
        log_dir = Path(tempfile.mkdtemp(prefix=f"bench_reliability_{mode}_"))
        print(f"{mode}: {cams} cameras x {rate:g} Hz for {secs:.0f} s (logs in {log_dir}) ...", flush=True)
        results[mode] = run(cams, rate, secs, args.num_threads, log_dir, overrides)
        print(report(mode, results[mode], args.num_threads), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
