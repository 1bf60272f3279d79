"""`perception-edge bench-sources`: camera sources read inside perception_container (frames handed to
the models in-process) against the raw backend time on the same frames, next to the same frames over DDS.

Measurements (YOLOv5n, 1280x720 real frames, CPU, one frame in flight: the source runs at --fps,
slower than the model):
  raw          backend.run() alone in this process on the frames as the Detector preprocesses them,
               one run right after each in-process result, while the container waits for its next
               frame (both under the same load on a shared machine).
  in-process   perception_container with `sources`: an image-folder source (decoded frames, stamped
               when handed out) -> camera_fusion -> detection, in one process; latency = arrival of
               the Detection2DArray here minus its header stamp (the capture time; one clock).
  in-process, H.264 decoded in the container: the same frames as an H.264 MP4, paced as a camera
               delivers them (identity sync=true before the decoder), decoded by GStreamer
               (avdec_h264 here, nvv4l2decoder on Jetson); the stamp is the compressed frame's
               arrival, so decoding counts in the latency.
  DDS          the same frames published as sensor_msgs/Image to the container (bench-ros, Fast DDS
               with the frame-sized shared-memory segment): publish -> Detection2DArray.
Also: CPU time per decoded frame of the software decoder (the source alone, decoding as fast as it
can, this process's CPU time / frames decoded) and the container's resident memory.

    perception-edge bench-sources [--model M.onnx] [--iterations 40] [--fps 2] [--num-threads N] [--no-dds]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CAMERA = "bench_cam"
GOAL = 1.05
SETTLE_S = 0.05  # as bench-ros: ONNX Runtime's pool threads spin for a while after a run


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU time of a process (all threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def container_run(params: dict, iterations: int, warmup: int, timeout: float, log_path: Path,
                  between=None) -> dict:
    """Start perception_container with these parameters (sources set), collect `iterations` latencies
    (stamp -> Detection2DArray arrival here) after `warmup`, the container's diagnostics and memory.
    between(i), when given, runs after each result (the raw run, while the container waits for its
    next frame: both measured under the same load) and its results are returned as "between"."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from vision_msgs.msg import Detection2DArray

    from perception_edge import config
    from perception_edge.replay import stop_process, vm_rss_mb

    domain = int(os.environ.get("ROS_DOMAIN_ID") or 1 + os.getpid() % 100)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1")
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", env["ROS_AUTOMATIC_DISCOVERY_RANGE"])
    params_file = Path(tempfile.mkdtemp(prefix="bench_sources_")) / "params.yaml"
    config.write_ros_params(params_file, params)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("bench_sources", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    latencies: list[float] = []
    seen = [0]

    def on_detections(msg):
        now = time.time_ns()
        seen[0] += 1
        if seen[0] > warmup:
            latencies.append((now - (msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)) / 1e6)

    node.create_subscription(Detection2DArray, f"/{CAMERA}/detections", on_detections, 10)
    model_diag: list[dict] = []
    source_diag: list[dict] = []

    def on_diag(msg):
        for s in msg.status:
            values = {kv.key: kv.value for kv in s.values}
            if s.name.endswith("detection model"):
                model_diag.append(values)
            elif s.name.endswith(f"source {CAMERA}"):
                source_diag.append(values)

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "perception_edge.nodes.container", "--ros-args",
                             "--params-file", str(params_file)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout + iterations * 5
        cpu0 = frames0 = None
        between_results: list[float] = []
        while len(latencies) < iterations and time.monotonic() < deadline and proc.poll() is None:
            n = len(latencies)
            executor.spin_once(timeout_sec=0.05)
            if between is not None and len(latencies) > n:
                time.sleep(SETTLE_S)  # the container's ONNX Runtime threads spin a while after its run
                between_results.append(between(len(between_results)))
            if cpu0 is None and seen[0] >= warmup and source_diag:
                cpu0, frames0 = cpu_seconds(proc.pid), int(source_diag[-1].get("frames", "0"))
        if len(latencies) < iterations:
            raise RuntimeError(f"only {len(latencies)} of {iterations} results (container exit code {proc.poll()}); "
                               f"see {log_path}")
        cpu1 = cpu_seconds(proc.pid)
        n0 = len(source_diag)
        end = time.monotonic() + 3.0
        while len(source_diag) == n0 and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        frames1 = int(source_diag[-1].get("frames", "0")) if source_diag else 0
        rss = vm_rss_mb(proc.pid)
    finally:
        stop_process(proc)
        executor.shutdown(timeout_sec=1)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        log.close()
    frames = (frames1 - frames0) if frames0 is not None else 0
    return {"latencies": latencies, "between": between_results, "rss_mb": rss, "model": model_diag[-1] if model_diag else {},
            "source": source_diag[-1] if source_diag else {},
            "cpu_ms_per_frame": ((cpu1 - cpu0) * 1e3 / frames) if cpu0 is not None and cpu1 is not None and frames
            else float("nan")}


def decode_cpu_ms(video: Path, seconds: float = 6.0) -> tuple[float, int, str]:
    """CPU ms per decoded frame of the software path (this process's CPU time while a GstSource decodes
    the file as fast as it can, looping; every decoded frame counted, read or dropped)."""
    from perception_edge.sources import SourceSpec, open_source

    spec = SourceSpec(f"gst:filesrc location=\"{video}\" ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! "
                      "video/x-raw,format=BGR ! appsink sync=false", "decode", "decode")
    source = open_source(spec, loop=True)
    with source:
        for _ in range(5):
            source.read(2.0)
        s0 = source.status()
        c0, t0 = time.process_time(), time.monotonic()
        while time.monotonic() - t0 < seconds:
            source.read(1.0)
        s1 = source.status()
        c1 = time.process_time()
    decoded = (s1.frames + s1.dropped) - (s0.frames + s0.dropped)
    return (c1 - c0) * 1e3 / max(1, decoded), decoded, s1.pipeline


def main(argv: list[str] | None = None) -> int:
    import cv2

    p = argparse.ArgumentParser(prog="perception-edge bench-sources", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="YOLOv5 ONNX model (default: a generated YOLOv5n at 640)")
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--fps", type=int, default=2, help="source frame rate: slow enough for one frame in flight and a "
                   "raw run between two frames")
    p.add_argument("--num-threads", type=int, default=0, help="ONNX Runtime threads, every measurement")
    p.add_argument("--timeout", type=float, default=90.0)
    p.add_argument("--no-dds", action="store_true", help="skip the same frames over DDS (bench-ros, shm)")
    p.add_argument("--log", default=None, help="container output prefix (default: temporary files)")
    args = p.parse_args(argv)
    from perception_edge.cli.bench_ros import RawInference, _run_client
    from perception_edge.model_cache import DRIVING, calibration_images, yolov5_onnx
    from perception_edge.sources.gstreamer import encode_video, unavailable_reason

    model = str(Path(args.model).resolve()) if args.model else str(yolov5_onnx("n", 640))
    frames = [cv2.resize(f, (1280, 720)) if f.shape[:2] != (720, 1280) else f for f in calibration_images()]
    tmp = Path(tempfile.mkdtemp(prefix="bench_sources_"))
    folder = tmp / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):  # lossless: the folder source reads exactly these pixels
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    print(f"model {model}, {len(frames)} frames 1280x720 (real, {DRIVING}), {args.iterations} results "
          f"(+{args.warmup} warm-up) per run, sources at {args.fps} fps, num_threads {args.num_threads or 'default'}")

    raw = RawInference(model, frames, args.num_threads)
    for i in range(args.warmup):
        raw.run_ms(i)
    base = {"detection.model": model, "segmentation.model": "", "num_threads": args.num_threads,
            "debug_image": False, "diagnostics_period": 1.0, "source_names": [CAMERA], "source.loop": True,
            "source.fps": [str(args.fps)]}
    log = Path(args.log) if args.log else tmp / "container"
    runs: dict[str, dict] = {}
    runs["in-process, decoded frames"] = container_run({**base, "sources": [f"images:{folder}"]}, args.iterations,
                                                       args.warmup, args.timeout, Path(f"{log}.images.log"),
                                                       between=raw.run_ms)
    raw.close()
    raw_ms = runs["in-process, decoded frames"]["between"]
    gst_reason = unavailable_reason()
    decode = None
    if gst_reason is None:
        video = tmp / "frames.mp4"
        encode_video(video, [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames] * 4, "h264", args.fps)
        uri = (f"gst:filesrc location=\"{video}\" ! qtdemux ! h264parse ! identity sync=true ! avdec_h264 ! "
               "videoconvert ! video/x-raw,format=BGR ! appsink sync=false")
        h264 = dict(base, sources=[uri])
        h264.pop("source.fps")
        runs["in-process, H.264 decoded in the container"] = container_run(
            h264, args.iterations, args.warmup, args.timeout, Path(f"{log}.h264.log"))
        decode = decode_cpu_ms(video)
    else:
        print(f"H.264 source skipped: {gst_reason}")
    dds = None
    if not args.no_dds:
        child = ["--model", model, "--iterations", str(args.iterations), "--warmup", str(args.warmup),
                 "--num-threads", str(args.num_threads), "--timeout", str(args.timeout)]
        dds = _run_client(child, "shm", Path(f"{log}.dds.log"))

    med_raw = statistics.median(raw_ms)
    print(f"\n{'':<52}{'median ms':>10}{'p90 ms':>9}{'ratio':>8}")
    print(f"{'raw backend.run (this process, between the frames)':<52}{med_raw:>10.1f}{_pct(raw_ms, 90):>9.1f}{1.0:>8.2f}")
    for name, res in runs.items():
        lat = res["latencies"]
        print(f"{name:<52}{statistics.median(lat):>10.1f}{_pct(lat, 90):>9.1f}{statistics.median(lat) / med_raw:>8.2f}")
    if dds is not None:
        d_raw, d_lat = statistics.median(dds["raw_ms"]), dds["latencies"]
        print(f"{'DDS (Image published, frame-sized SHM segment)':<52}{statistics.median(d_lat):>10.1f}"
              f"{_pct(d_lat, 90):>9.1f}{statistics.median(d_lat) / med_raw:>8.2f}")
        print(f"{'  raw backend.run interleaved with the DDS run':<52}{d_raw:>10.1f}{_pct(dds['raw_ms'], 90):>9.1f}"
              f"{d_raw / med_raw:>8.2f}")
    print()
    for name, res in runs.items():
        m, s = res["model"], res["source"]
        med = statistics.median(res["latencies"])
        inside = float(m.get("inference_ms", "nan"))
        ratio = med / med_raw
        if res["between"]:
            paired = [e / r for e, r in zip(res["latencies"], res["between"])]
            print(f"[{name}] paired ratio (each result / the raw run right after it): median "
                  f"{statistics.median(paired):.3f}x, p90 {_pct(paired, 90):.3f}x")
        print(f"[{name}] ratio {ratio:.3f}x against raw (goal <= {GOAL:.2f}x: {'met' if ratio <= GOAL else 'NOT met'}); "
              f"against the container's own inference median {inside:.1f} ms: {med / inside:.3f}x; "
              f"container stages (ms): preprocess {m.get('preprocess_ms', '?')}, inference {m.get('inference_ms', '?')}, "
              f"postprocess {m.get('postprocess_ms', '?')}, publish {m.get('publish_ms', '?')}, "
              f"stamp -> published {m.get('end_to_end_ms', '?')}; "
              f"source: decode latency {s.get('decode_latency_ms', '?')} ms, fps {s.get('fps', '?')}, "
              f"dropped {s.get('dropped', '?')}; container CPU {res['cpu_ms_per_frame']:.1f} ms per frame (all work); "
              f"resident memory {res['rss_mb'] or float('nan'):.0f} MiB")
    if decode is not None:
        ms, n, pipeline = decode
        print(f"software decode alone: {ms:.1f} ms CPU per decoded 1280x720 frame ({n} frames; {pipeline})")
    if dds is not None:
        print(f"[DDS] container resident memory {dds.get('rss_mb') or float('nan'):.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
