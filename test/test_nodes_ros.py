"""The nodes over the real middleware: separate processes, real frames, real DDS.

Each test has its own ROS_DOMAIN_ID (from the pid and the test's index) and discovery limited to
localhost. Processes: a camera publisher (this file run as a script, `publish` mode: real 1280x720
frames from ../shared/data/driving at ~10 Hz, every camera of a tick with the same stamp, commands
on stdin), the perception_container (`python -m perception_edge.nodes.container --ros-args
--params-file <tmp yaml>`), and this pytest process as the subscriber. Waits are generous but
bounded; every process is killed at the end.
"""
from __future__ import annotations

import argparse
import array
import glob
import os
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DRIVING = Path(os.environ.get("PERCEPTION_EDGE_DATA", REPO.parent / "shared" / "data" / "driving"))


# ------------------------------------------------------------------------------------------------
# The camera publisher process: `python test/test_nodes_ros.py publish --cameras A,B ...`
#   stdin commands: "stop TOPIC", "start TOPIC", "bad KIND TOPIC" (KIND: encoding, short, zero, jpeg),
#   "quit". Every published header is written to --log as "topic sec nanosec frame_id".
# ------------------------------------------------------------------------------------------------

def frame_id_of(topic: str) -> str:
    parts = [p for p in topic.split("/") if p and p not in ("image_raw", "compressed", "image")]
    return (parts[-1] if parts else "camera") + "_optical_frame"


def publisher_main(argv: list[str]) -> int:
    import cv2
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    p = argparse.ArgumentParser()
    p.add_argument("--cameras", required=True)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--qos", choices=("best_effort", "reliable"), default="best_effort")
    p.add_argument("--log", required=True)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--offset", action="append", default=[],
                   help="TOPIC=SECONDS: that camera's stamps run this far from the others' (a skewed clock)")
    args = p.parse_args(argv)
    cameras = args.cameras.split(",")
    offsets = {t: int(float(s) * 1e9) for t, s in (o.rsplit("=", 1) for o in args.offset)}
    rclpy.init()
    node = rclpy.create_node("camera_publisher")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                     reliability=ReliabilityPolicy.BEST_EFFORT if args.qos == "best_effort"
                     else ReliabilityPolicy.RELIABLE)
    pubs = {c: node.create_publisher(CompressedImage if c.endswith("/compressed") else Image, c, qos)
            for c in cameras}
    paths = sorted(glob.glob(str(DRIVING / "*.jpg")))[: args.frames]
    frames = [cv2.imread(x) for x in paths]
    raw = []
    for f in frames:  # rgb8 payloads, built once (array.array: rclpy stores it without a copy loop)
        data = array.array("B")
        data.frombytes(cv2.cvtColor(f, cv2.COLOR_BGR2RGB).tobytes())
        raw.append((f.shape[1], f.shape[0], data))
    jpegs = []
    for f in frames:
        data = array.array("B")
        data.frombytes(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
        jpegs.append(data)
    active = {c: True for c in cameras}
    pending_bad: list[tuple] = []
    lock = threading.Lock()
    log = open(args.log, "a", buffering=1)
    stop = threading.Event()

    def read_commands():
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            with lock:
                if words[0] == "quit":
                    stop.set()
                    return
                if words[0] == "stop":
                    active[words[1]] = False
                elif words[0] == "start":
                    active[words[1]] = True
                elif words[0] == "bad":
                    pending_bad.append((words[1], words[2]))
        stop.set()

    threading.Thread(target=read_commands, daemon=True).start()

    def bad_message(kind: str, topic: str, stamp):
        if kind == "jpeg":
            m = CompressedImage()
            m.format = "jpeg"
            m.data = array.array("B", b"\xff\xd8\xff\xe0 this is not a jpeg" * 20)
        else:
            m = Image()
            m.width, m.height, m.encoding, m.step = 1280, 720, "rgb8", 1280 * 3
            if kind == "encoding":
                m.encoding = "weird_16UC7"
                m.data = raw[0][2]
            elif kind == "short":
                m.data = array.array("B", bytes(1000))
            elif kind == "zero":
                m.width, m.height, m.step = 0, 0, 0
        m.header.stamp = stamp
        m.header.frame_id = frame_id_of(topic)
        return m

    k = 0
    period = 1.0 / args.rate
    next_t = time.monotonic()
    while not stop.is_set() and rclpy.ok():
        now = node.get_clock().now().to_msg()
        with lock:
            todo, pending_bad[:] = list(pending_bad), []
            on = dict(active)
        for kind, topic in todo:
            pubs[topic].publish(bad_message(kind, topic, now))
        bad_now = {topic for _, topic in todo}
        for c in cameras:
            if not on[c] or c in bad_now:  # depth 1: a frame right behind would replace the bad message
                continue
            if c.endswith("/compressed"):
                m = CompressedImage()
                m.format = "jpeg"
                m.data = jpegs[k % len(jpegs)]
            else:
                w, h, data = raw[k % len(raw)]
                m = Image()
                m.width, m.height, m.encoding, m.step, m.data = w, h, "rgb8", w * 3, data
            stamp = now
            if c in offsets:
                ns = now.sec * 1_000_000_000 + now.nanosec + offsets[c]
                stamp = type(now)(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
            m.header.stamp = stamp
            m.header.frame_id = frame_id_of(c)
            pubs[c].publish(m)
            log.write(f"{c} {stamp.sec} {stamp.nanosec} {m.header.frame_id}\n")
        k += 1
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "publish":
    try:
        sys.exit(publisher_main(sys.argv[2:]))
    except KeyboardInterrupt:  # the test ends it with SIGINT
        sys.exit(0)

# ------------------------------------------------------------------------------------------------
# The tests
# ------------------------------------------------------------------------------------------------
import signal  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

pytestmark = pytest.mark.ros

try:
    import rclpy  # noqa: E402
    from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
    from rclpy.executors import SingleThreadedExecutor  # noqa: E402
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
    from sensor_msgs.msg import Image  # noqa: E402
    from vision_msgs.msg import Detection2DArray, LabelInfo  # noqa: E402
except ImportError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"ROS 2 Python packages not importable ({exc}); install requirements-ros.txt and run "
                "tools/build_vision_msgs.sh VENV (or source a ROS 2 distribution)", allow_module_level=True)

if not sorted(DRIVING.glob("*.jpg")):
    pytest.skip(f"real driving frames not found in {DRIVING}", allow_module_level=True)

WAIT = 60.0  # seconds: generous for a slow, shared 2-core machine
FRONT, LEFT, REAR = "/cam_front/image_raw", "/cam_left/image_raw", "/cam_rear/image_raw/compressed"
NS = {FRONT: "/cam_front", LEFT: "/cam_left", REAR: "/cam_rear"}
W, H = 1280, 720


def domain_id(index: int) -> int:
    return 1 + (os.getpid() * 13 + index * 37) % 100


def ros_env(domain: int, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOG_DIR=str(tmp_path / "ros_log"), RCUTILS_LOGGING_BUFFERED_STREAM="1",
               RCUTILS_COLORIZED_OUTPUT="0", PYTHONUNBUFFERED="1")
    env.pop("ROS_LOCALHOST_ONLY", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH", "")] if p])
    return env


def write_params(path: Path, **values) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}))
    return path


class Procs:
    """Child processes of one test, output to files, always killed at the end."""

    def __init__(self, tmp_path: Path, env: dict[str, str]):
        self.tmp, self.env = tmp_path, env
        self.procs: list[subprocess.Popen] = []
        self.logs: dict[int, Path] = {}

    def start(self, name: str, args: list[str], stdin: bool = False) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        f = open(log, "wb")
        p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=self.env, cwd=str(REPO),
                             stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
        f.close()
        self.procs.append(p)
        self.logs[p.pid] = log
        return p

    def container(self, params: Path, *extra: str, name: str = "container") -> subprocess.Popen:
        return self.start(name, [sys.executable, "-m", "perception_edge.nodes.container", "--ros-args",
                                 "--params-file", str(params), *extra])

    def publisher(self, cameras: list[str], qos: str = "best_effort", name: str = "publisher") -> subprocess.Popen:
        return self.start(name, [sys.executable, str(Path(__file__).resolve()), "publish", "--cameras",
                                 ",".join(cameras), "--qos", qos, "--log", str(self.tmp / f"{name}.stamps")],
                          stdin=True)

    def output(self, p: subprocess.Popen) -> str:
        return self.logs[p.pid].read_text(errors="replace")

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGINT)
                except OSError:
                    pass
        deadline = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def command(p: subprocess.Popen, line: str) -> None:
    p.stdin.write((line + "\n").encode())
    p.stdin.flush()


class Listener:
    """This process as a ROS subscriber in the test's domain (own context)."""

    def __init__(self, domain: int):
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("test_listener", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list] = {}

    def subscribe(self, kind, topic: str, keep=lambda m: m, qos=None) -> list:
        out = self.received.setdefault(topic, [])
        qos = qos or QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(kind, topic, lambda m: out.append(keep(m)), qos)
        return out

    def wait(self, cond, timeout: float = WAIT, procs: list[subprocess.Popen] | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.1)
            if cond():
                return True
            for p in procs or []:
                if p.poll() is not None:
                    return cond()
        return cond()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def image_summary(m):
    return {"stamp": (m.header.stamp.sec, m.header.stamp.nanosec), "frame_id": m.header.frame_id,
            "width": m.width, "height": m.height, "encoding": m.encoding, "step": m.step, "bytes": len(m.data),
            "values": set(bytes(m.data[::997])) if m.encoding == "mono8" else None}


def detections_summary(m):
    return {"stamp": (m.header.stamp.sec, m.header.stamp.nanosec), "frame_id": m.header.frame_id,
            "dets": [((d.header.stamp.sec, d.header.stamp.nanosec), d.header.frame_id,
                      d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y,
                      [(r.hypothesis.class_id, r.hypothesis.score) for r in d.results]) for d in m.detections]}


def diag_summary(m):
    return [(s.name, s.level[0] if isinstance(s.level, bytes) else int(s.level), s.message,
             {kv.key: kv.value for kv in s.values}) for s in m.status]


def statuses(diags: list, name_part: str):
    return [s for arr in diags for s in arr if name_part in s[0]]


def published_headers(path: Path) -> dict[str, set]:
    out: dict[str, set] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            topic, sec, nsec, frame_id = line.split()
            out.setdefault(topic, set()).add(((int(sec), int(nsec)), frame_id))
    return out


@pytest.fixture(scope="module")
def seg_onnx(tmp_path_factory):
    """A tiny lane model: images [B,3,192,320] -> Conv 1x1 -> logits [B,2,192,320]."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = tmp_path_factory.mktemp("seg") / "lane_tiny.onnx"
    w = np.array([[[[-4.0]], [[-4.0]], [[8.0]]], [[[4.0]], [[4.0]], [[-8.0]]]], np.float32).reshape(2, 3, 1, 1)
    b = np.array([0.1, -0.1], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w", "b"], ["logits"], kernel_shape=[1, 1])], "lane_tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 192, 320])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2, 192, 320])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def base_params(det_model, seg_model, cameras, **extra):
    values = {"cameras": cameras if isinstance(cameras, str) else list(cameras), "detection.model": str(det_model) if det_model else "",
              "segmentation.model": str(seg_model) if seg_model else "", "num_threads": 1,
              "diagnostics_period": 0.5, "sync.slop": 0.05, "sync.stale_timeout": 1.0}
    values.update(extra)
    return values


# ------------------------------------------------------------------------------------------------

class RunningContainer:
    """One perception_container (detection + segmentation, three cameras) with its camera publisher
    and this process subscribed to every output; shared by the container tests below, which run in
    file order (the later ones send bad messages, stop cameras and finally stop the container)."""

    cameras = [FRONT, LEFT, REAR]

    def __init__(self, tmp_path: Path, yolov5n_onnx, seg_onnx):
        self.tmp = tmp_path
        domain = domain_id(0)
        # Reliable camera QoS here: with discovery limited to localhost Fast DDS sends over loopback
        # UDP, where best-effort 2.7 MB images lose fragments under load (the default sensor_data
        # works, at a lower and less predictable rate); the incompatible-QoS test covers the QoS
        # handling itself.
        params = write_params(tmp_path / "params.yaml",
                              **base_params(yolov5n_onnx, seg_onnx, self.cameras, input_qos="reliable",
                                            **{"detection.conf_threshold": 0.1}))  # random-weight YOLOv5n
        self.procs = Procs(tmp_path, ros_env(domain, tmp_path))
        self.listener = None
        self.container = self.procs.container(params)
        self.listener = listener = Listener(domain)
        cameras = self.cameras
        self.dets = {c: listener.subscribe(Detection2DArray, NS[c] + "/detections", detections_summary)
                     for c in cameras}
        self.masks = {c: listener.subscribe(Image, NS[c] + "/lane_mask", image_summary) for c in cameras}
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.labels = {c: listener.subscribe(LabelInfo, NS[c] + "/label_info",
                                             lambda m: ([(v.class_id, v.class_name) for v in m.class_map],
                                                        m.threshold), qos=latched) for c in cameras}
        self.debug = listener.subscribe(Image, "/cam_front/debug_image", image_summary)
        self.overlay = listener.subscribe(Image, "/cam_left/lane_overlay", image_summary)
        self.diags = listener.subscribe(DiagnosticArray, "/diagnostics", diag_summary)
        self.publisher = self.procs.publisher(cameras, qos="reliable")
        self.alive = [self.container, self.publisher]

    def wait(self, cond, timeout: float = WAIT) -> bool:
        return self.listener.wait(cond, timeout, self.alive)

    def output(self) -> str:
        return self.procs.output(self.container)[-3000:]

    def all_arrived(self, n: int = 2) -> bool:
        return (all(len(self.dets[c]) >= n and len(self.masks[c]) >= n and self.labels[c] for c in self.cameras)
                and bool(self.debug) and bool(self.overlay))

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        self.procs.close()


@pytest.fixture(scope="module")
def running(tmp_path_factory, yolov5n_onnx, seg_onnx):
    rc = RunningContainer(tmp_path_factory.mktemp("container"), yolov5n_onnx, seg_onnx)
    try:
        arrived = rc.wait(rc.all_arrived, 2 * WAIT)
        rc.started = arrived
        yield rc
    finally:
        rc.close()


def _started(rc: RunningContainer) -> None:
    c = rc.cameras
    assert rc.started, (
        f"not every output arrived: { {x: (len(rc.dets[x]), len(rc.masks[x]), len(rc.labels[x])) for x in c} }, "
        f"debug {len(rc.debug)}, overlay {len(rc.overlay)}\n--- container:\n{rc.output()}")


def test_container_publishes_every_output_with_the_source_header(running):
    """Detections, masks, label info for every camera, the debug image and lane overlay; each result
    carries its source image's header; sizes and boxes fit the image."""
    rc = running
    _started(rc)
    assert rc.wait(lambda: any(d["dets"] for c in rc.cameras for d in rc.dets[c])), "YOLOv5n found nothing"
    sent = published_headers(rc.tmp / "publisher.stamps")
    names = [n for _, n in rc.labels[FRONT][0][0]]
    assert len(names) == 80 and names[0] == "person" and rc.labels[FRONT][0][1] == pytest.approx(0.1)
    for c in rc.cameras:
        assert rc.labels[c][0] == rc.labels[FRONT][0]
        for d in rc.dets[c]:
            assert (d["stamp"], d["frame_id"]) in sent[c]
            for stamp, frame_id, cx, cy, sx, sy, results in d["dets"]:
                assert (stamp, frame_id) == (d["stamp"], d["frame_id"])
                assert sx > 0 and sy > 0
                assert -1e-3 <= cx - sx / 2 and cx + sx / 2 <= W + 1e-3
                assert -1e-3 <= cy - sy / 2 and cy + sy / 2 <= H + 1e-3
                assert len(results) == 1 and results[0][0] in names and 0.1 <= results[0][1] <= 1.0
        for m in rc.masks[c]:
            assert (m["stamp"], m["frame_id"]) in sent[c]
            assert (m["width"], m["height"], m["encoding"], m["step"], m["bytes"]) == (W, H, "mono8", W, W * H)
            assert m["values"] <= {0, 1}
    # frames of one tick went through together: the cameras share stamps
    assert {d["stamp"] for d in rc.dets[FRONT]} & {d["stamp"] for d in rc.dets[LEFT]}
    for img in rc.debug + rc.overlay:  # drawn on the drawing threads, with the source header
        assert (img["width"], img["height"], img["encoding"]) == (W, H, "rgb8")
        assert img["frame_id"] in ("cam_front_optical_frame", "cam_left_optical_frame")


def test_container_runs_each_batch_in_one_inference_call(running):
    """All cameras of a batch in ONE inference call per model (read from /diagnostics), and the stage
    timings there are plausible."""
    rc = running
    _started(rc)

    def batched():
        return all(any(v.get("batch_size") == "3" and v.get("inference_calls_per_batch") == "1"
                       for _, _, _, v in statuses(rc.diags, name))
                   for name in ("detection: detection model", "segmentation: segmentation model"))

    assert rc.wait(batched), statuses(rc.diags, "detection model")[-3:]
    model_st = [v for _, _, _, v in statuses(rc.diags, "detection model") if v["batches"] != "0"]
    assert all(v["inference_calls_per_batch"] == "1" for v in model_st)
    seg_st = [v for _, _, _, v in statuses(rc.diags, "segmentation: segmentation model") if v["batches"] != "0"]
    assert seg_st and all(v["inference_calls_per_batch"] == "1" for v in seg_st)
    last = {k: float(v) for k, v in model_st[-1].items() if k.endswith("_ms") or k.endswith("_hz")}
    # YOLOv5n at 640 on three HD frames: inference takes milliseconds to seconds, never nothing;
    # letterboxing the frames is cheaper than the network, and every stage ran
    assert 0 < last["inference_ms"] < 10_000, last
    assert 0 < last["preprocess_ms"] < last["inference_ms"], last
    assert 0 < last["postprocess_ms"] < 10_000 and 0 < last["publish_ms"] < 10_000, last
    assert 0 < last["convert_ms"] < 10_000, last
    assert last["inference_ms"] <= last["end_to_end_ms"] < 60_000, last
    assert last["output_rate_hz"] > 0, last


def test_container_reports_bad_messages_and_carries_on(running):
    """Bad messages: reported per camera in /diagnostics (WARN), never fatal; detections go on."""
    rc = running
    _started(rc)
    cases = [("encoding", FRONT, "unsupported image encoding"), ("short", LEFT, "expected at least"),
             ("jpeg", REAR, "could not decode"), ("zero", FRONT, "zero-size")]
    for kind, topic, text in cases:
        def reported(topic=topic, text=text):
            return any(text in v.get("last_error", "") and int(v.get("bad_messages", "0")) >= 1
                       for _, _, _, v in statuses(rc.diags, f"camera {topic}"))

        # Sent again every 2 s until reported: with depth-1 QoS the next frame may replace a bad
        # message before the container's executor takes it (the point is that it does no harm).
        deadline = time.monotonic() + WAIT
        while not reported() and time.monotonic() < deadline and rc.container.poll() is None:
            command(rc.publisher, f"bad {kind} {topic}")
            rc.wait(reported, 2.0)
        assert reported(), (kind, statuses(rc.diags, f"camera {topic}")[-1:])
        assert rc.container.poll() is None, rc.output()
    bad_levels = [lv for _, lv, msg, v in statuses(rc.diags, f"camera {FRONT}") if "bad messages" in msg]
    assert bad_levels and all(lv == 1 for lv in bad_levels)  # WARN
    n = len(rc.dets[FRONT])
    assert rc.wait(lambda: len(rc.dets[FRONT]) >= n + 2), "no detections after bad messages"


def test_container_stopped_camera_does_not_stall_the_others(running):
    rc = running
    _started(rc)
    command(rc.publisher, f"stop {LEFT}")
    command(rc.publisher, f"stop {REAR}")

    def left_stale():
        return any(lv == 1 and v.get("stale") == "true" for _, lv, _, v in statuses(rc.diags, f"camera {LEFT}")[-3:])

    assert rc.wait(left_stale), (statuses(rc.diags, f"camera {LEFT}")[-1:], statuses(rc.diags, "sync")[-1:])
    n_front, n_left = len(rc.dets[FRONT]), len(rc.dets[LEFT])
    assert rc.wait(lambda: len(rc.dets[FRONT]) >= n_front + 3), "front camera stalled after the left one stopped"
    assert len(rc.dets[LEFT]) <= n_left + 2  # at most the batches in flight / in the handoff slot
    assert statuses(rc.diags, f"camera {FRONT}")[-1][3]["stale"] == "false"
    assert rc.wait(lambda: statuses(rc.diags, "detection model")[-1][3]["batch_size"] == "1"), \
        statuses(rc.diags, "detection model")[-3:]


def test_container_exits_cleanly_on_ctrl_c(running):
    rc = running
    assert rc.container.poll() is None, rc.output()
    rc.container.send_signal(signal.SIGINT)
    assert rc.container.wait(20) == 0, rc.output()
    assert "Traceback" not in rc.procs.output(rc.container), rc.output()


def test_second_ctrl_c_during_shutdown_is_quiet(tmp_path, seg_onnx):
    """Ctrl-C twice (the second while shutting down): the process ends without a traceback."""
    env = ros_env(domain_id(6), tmp_path)
    params = write_params(tmp_path / "params.yaml", **base_params("", seg_onnx, "/cam_one/image_raw"))
    procs = Procs(tmp_path, env)  # (cameras given as one string: a list of one)
    try:
        container = procs.container(params)
        deadline = time.monotonic() + WAIT
        while "running:" not in procs.output(container) and time.monotonic() < deadline:
            assert container.poll() is None, procs.output(container)
            time.sleep(0.2)
        assert "running:" in procs.output(container), procs.output(container)
        container.send_signal(signal.SIGINT)
        time.sleep(0.05)
        container.send_signal(signal.SIGINT)
        code = container.wait(20)
        assert code in (0, -signal.SIGINT), (code, procs.output(container))  # -2: Ctrl-C during interpreter exit
        assert "Traceback" not in procs.output(container) and "KeyboardInterrupt" not in procs.output(container), \
            procs.output(container)
    finally:
        procs.close()


def test_invalid_parameters_stop_startup_with_one_line(tmp_path, seg_onnx):
    """Invalid values, a missing or corrupt model, an unknown backend: one FATAL line, exit code 2."""
    env = ros_env(domain_id(1), tmp_path)
    params = write_params(tmp_path / "params.yaml", **base_params("", seg_onnx, [FRONT]))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not an onnx model" * 10)
    procs = Procs(tmp_path, env)
    cases = {
        "conf": (["-p", "detection.conf_threshold:=1.5", "-p", f"detection.model:={seg_onnx}"],
                 ["detection.conf_threshold", "1.5", "outside"]),
        "missing": (["-p", "segmentation.model:=/nonexistent/lane.onnx"], ["model file not found", "/nonexistent/lane.onnx"]),
        "relative": (["-p", "segmentation.model:=models/not_there.onnx"], ["model file not found", "tried"]),
        "backend": (["-p", "backend:=magic"], ["backend", "magic", "not one of"]),
        "corrupt": (["-p", f"segmentation.model:={corrupt}"], ["cannot load ONNX model"]),
        "nothing": (["-p", 'segmentation.model:=""'], ["nothing to run"]),
    }
    try:
        started = {name: procs.container(params, *extra, name=name) for name, (extra, _) in cases.items()}
        # a standalone node too
        started["standalone"] = procs.start("standalone", [
            sys.executable, "-m", "perception_edge.nodes.segmentation", "--ros-args", "--params-file", str(params),
            "-p", "sync.slop:=-1.0"])
        cases["standalone"] = ([], ["sync.slop", "outside"])
        for name, p in started.items():
            try:
                code = p.wait(WAIT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{name}: still running after {WAIT} s:\n{procs.output(p)[-2000:]}")
            out = procs.output(p)
            assert code == 2, f"{name}: exit code {code}\n{out}"
            assert "Traceback" not in out, f"{name}:\n{out}"
            fatal = [ln for ln in out.splitlines() if "FATAL" in ln]
            assert len(fatal) == 1, f"{name}:\n{out}"
            for text in cases[name][1]:
                assert text in fatal[0], f"{name}: {text!r} not in {fatal[0]!r}"
    finally:
        procs.close()


def test_incompatible_qos_publisher_is_reported(tmp_path, seg_onnx):
    """A reliable camera subscription and a best-effort publisher: WARN naming topic and policy."""
    env = ros_env(domain_id(2), tmp_path)
    topic = "/cam_qos/image_raw"
    params = write_params(tmp_path / "params.yaml", **base_params("", seg_onnx, [topic], input_qos="reliable"))
    procs = Procs(tmp_path, env)
    try:
        container = procs.container(params)
        publisher = procs.publisher([topic], qos="best_effort")
        deadline = time.monotonic() + WAIT
        warn = []
        while time.monotonic() < deadline and not warn:
            time.sleep(0.5)
            assert container.poll() is None, procs.output(container)
            warn = [ln for ln in procs.output(container).splitlines()
                    if "WARN" in ln and topic in ln and "RELIABILITY" in ln and "incompatible" in ln.lower()]
        assert warn, procs.output(container)[-3000:]
        assert publisher.poll() is None
    finally:
        procs.close()


def test_standalone_nodes_and_dynamic_parameters(tmp_path, seg_onnx):
    """camera_fusion alone republishes synchronized frames (header untouched); segmentation_node
    alone subscribes to the cameras itself; thresholds change at run time through the parameter
    services, checked by the schema; read-only parameters refuse."""
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    domain = domain_id(3)
    env = ros_env(domain, tmp_path)
    cameras = [FRONT, LEFT]
    params = write_params(tmp_path / "params.yaml", **base_params("", seg_onnx, cameras, input_qos="reliable"))
    procs = Procs(tmp_path, env)
    listener = None
    try:
        fusion = procs.start("fusion", [sys.executable, "-m", "perception_edge.nodes.camera_fusion", "--ros-args",
                                        "--params-file", str(params)])
        seg = procs.start("segmentation", [sys.executable, "-m", "perception_edge.nodes.segmentation", "--ros-args",
                                           "--params-file", str(params)])
        listener = Listener(domain)
        synced = {c: listener.subscribe(Image, NS[c] + "/synced/image", image_summary) for c in cameras}
        masks = listener.subscribe(Image, "/cam_front/lane_mask", image_summary)
        publisher = procs.publisher(cameras, qos="reliable")
        alive = [fusion, seg, publisher]
        assert listener.wait(lambda: all(len(synced[c]) >= 2 for c in cameras) and len(masks) >= 2, WAIT, alive), (
            {c: len(v) for c, v in synced.items()}, len(masks), procs.output(fusion)[-2000:], procs.output(seg)[-2000:])
        sent = published_headers(tmp_path / "publisher.stamps")
        for c in cameras:
            for m in synced[c]:
                assert (m["stamp"], m["frame_id"]) in sent[c]
                assert (m["width"], m["height"], m["encoding"], m["bytes"]) == (W, H, "rgb8", W * H * 3)
        assert {m["stamp"] for m in synced[FRONT]} & {m["stamp"] for m in synced[LEFT]}
        for m in masks:
            assert (m["stamp"], m["frame_id"]) in sent[FRONT] and (m["width"], m["height"]) == (W, H)

        client = listener.node.create_client(SetParameters, "/segmentation/set_parameters")
        assert listener.wait(lambda: client.service_is_ready(), WAIT, alive)

        def set_param(name, value):
            v = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value) if isinstance(value, float) \
                else ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
            future = client.call_async(SetParameters.Request(parameters=[ParameterMsg(name=name, value=v)]))
            assert listener.wait(future.done, WAIT, alive)
            return future.result().results[0]

        assert set_param("segmentation.threshold", 0.7).successful
        bad = set_param("segmentation.threshold", 1.5)
        assert not bad.successful
        ro = set_param("segmentation.model", "other.onnx")
        assert not ro.successful and "read" in ro.reason.lower()
        assert listener.wait(lambda: "segmentation.threshold set to 0.7" in procs.output(seg), 10, alive)
        assert seg.poll() is None and fusion.poll() is None
    finally:
        if listener is not None:
            listener.close()
        procs.close()


@pytest.fixture(scope="module")
def instance_seg_onnx(tmp_path_factory, frames_bgr):
    """A YOLOv5n-seg (official v7.0 yaml, 2 classes, random weights with batch norm recalibrated on
    the real frames), exported with dynamic H/W; and a confidence letting a few boxes through."""
    torch = pytest.importorskip("torch")
    import cv2
    import numpy as np
    import yaml

    from perception_edge.backends import create_backend
    from perception_edge.models.export import export_onnx
    from perception_edge.models.yolov5 import YOLOv5, recalibrate_batchnorm
    from perception_edge.pipeline import Detector

    cfg = yaml.safe_load((HERE / "data" / "yolov5_yaml" / "yolov5n-seg.yaml").read_text(encoding="utf-8"))
    cfg["nc"] = 2
    torch.manual_seed(7)
    rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames_bgr[:4]]
    model = recalibrate_batchnorm(YOLOv5(cfg=cfg, names=["car", "person"]), rgb, (192, 320), batch_size=2)
    path = export_onnx(model, str(tmp_path_factory.mktemp("iseg") / "yolov5n_seg.onnx"), img_size=320, dynamic=True)
    detector = Detector(create_backend(path, "onnxruntime"), conf_threshold=0.001, input_size=320, rect=True)
    scores = np.sort(np.concatenate([d.scores for d in detector([(f, "rgb") for f in rgb])]))[::-1]
    return path, float(scores[min(len(scores) - 1, 12)]) - 1e-6


def test_instance_mask_topic_matches_the_detections(tmp_path, instance_seg_onnx):
    """detection_node with a YOLOv5 v7.0 -seg model (rectangular inference): <ns>/instance_mask is
    mono16 at source size with the Detection2DArray's header; its values index that array's
    detections (0 background) and every instance lies inside its detection's box."""
    import numpy as np

    model, conf = instance_seg_onnx
    domain = domain_id(5)
    env = ros_env(domain, tmp_path)
    params = write_params(tmp_path / "params.yaml", **base_params(
        model, "", [FRONT], input_qos="reliable", debug_image=False, **{
            "detection.conf_threshold": conf, "detection.input_size": 320, "detection.rect": True}))
    procs = Procs(tmp_path, env)
    listener = None
    try:
        node = procs.start("detection", [sys.executable, "-m", "perception_edge.nodes.detection", "--ros-args",
                                         "--params-file", str(params)])
        listener = Listener(domain)
        dets = listener.subscribe(Detection2DArray, "/cam_front/detections", detections_summary)
        masks = listener.subscribe(Image, "/cam_front/instance_mask", lambda m: (
            (m.header.stamp.sec, m.header.stamp.nanosec), m.header.frame_id, m.width, m.height, m.encoding, m.step,
            m.is_bigendian, np.frombuffer(bytes(m.data), "<u2").reshape(m.height, m.width)))
        publisher = procs.publisher([FRONT], qos="reliable")
        alive = [node, publisher]

        def matched():
            by_stamp = {d["stamp"]: d for d in dets}
            return [(m, by_stamp[m[0]]) for m in masks if m[0] in by_stamp]

        assert listener.wait(lambda: sum(1 for _, d in matched() if d["dets"]) >= 3, WAIT, alive), (
            len(dets), len(masks), procs.output(node)[-2000:])
        sent = published_headers(tmp_path / "publisher.stamps")
        for (stamp, frame_id, w, h, encoding, step, big, ids), d in matched():
            assert (stamp, frame_id) in sent[FRONT] and frame_id == d["frame_id"]
            assert (w, h, encoding, step, big) == (W, H, "mono16", 2 * W, 0)
            assert int(ids.max()) <= len(d["dets"])
            for i, (_, _, cx, cy, sx, sy, _) in enumerate(d["dets"]):
                ys, xs = np.nonzero(ids == i + 1)
                if len(xs):
                    assert cx - sx / 2 - 1 <= xs.min() and xs.max() <= cx + sx / 2 + 1
                    assert cy - sy / 2 - 1 <= ys.min() and ys.max() <= cy + sy / 2 + 1
        assert any(int(ids.max()) > 0 for (*_, ids), _ in matched()), "some detection should have mask pixels"
        assert node.poll() is None
    finally:
        if listener is not None:
            listener.close()
        procs.close()


def test_model_failure_is_reported_and_the_node_stays_up(tmp_path):
    """A model that breaks at run time (NaN output): ERROR in the model's diagnostics status, the
    worker keeps going; a backend that says it is building its engine: WARN 'building engine'."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from rclpy.parameter import Parameter

    from perception_edge.core.sync import Batch, Frame
    from perception_edge.nodes.model_node import backend_status
    from perception_edge.nodes.segmentation import SegmentationNode

    path = tmp_path / "nan.onnx"
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["logits"], kernel_shape=[1, 1])], "nan",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2, 64, 64])],
        [numpy_helper.from_array(np.full((2, 3, 1, 1), np.nan, np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id(4))
    node = None
    try:
        node = SegmentationNode(context=ctx, use_global_arguments=False, parameter_overrides=[
            Parameter("segmentation.model", value=str(path)), Parameter("cameras", value="/cam_x/image_raw")])
        assert node.model is None and node.model_statuses() == []  # the model loads in configure()
        node.configure()
        (status,) = node.model_statuses()
        assert status.level == bytes([0]) and "waiting" in status.message
        node.backend.building = True
        assert backend_status(node.backend) == "building engine"
        (status,) = node.model_statuses()
        assert status.level == bytes([1]) and status.message.startswith("building engine")
        frame = Frame(np.full((48, 80, 3), 100, np.uint8), "rgb", 1_700_000_000 * 10**9, "x", "/cam_x/image_raw")
        node.process(Batch([frame]))  # skipped while building, not an error
        assert node.skipped == 1 and node.errors == 0
        node.backend.building = False
        node.backend.status = "failed: out of memory"
        (status,) = node.model_statuses()
        assert status.level == bytes([2]) and "failed: out of memory" in status.message
        node.backend.status = "ready"
        assert backend_status(node.backend) == ""
        node.process(Batch([frame]))
        node.process(Batch([frame]))  # the worker carries on after a failure
        (status,) = node.model_statuses()
        values = {kv.key: kv.value for kv in status.values}
        assert status.level == bytes([2]), status
        assert "NaN" in status.message and values["errors"] == "2" and "NaN" in values["last_error"]
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_detections_cdr_encoding_reads_back_as_the_message():
    """detections_cdr.encode writes what rclpy would publish: for every alignment of frame_id and
    class-name lengths, many detections, none, it has the serialized length and reads back equal to
    messages.detections_to_msg; and the self-check the detection node relies on passes here, so the
    node tests below exercise the bytes path."""
    import numpy as np
    from builtin_interfaces.msg import Time
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Header
    from vision_msgs.msg import Detection2DArray

    from perception_edge.core.detections import Detections
    from perception_edge.nodes import detections_cdr, messages

    rng = np.random.default_rng(7)
    names = ["car", "a", "pedestrian", "traffic_sign", "bicycle_rider"]
    for frame_id in ("", "c", "cam", "cam_front", "cam_front_left_wide"):
        header = Header(stamp=Time(sec=1_700_000_123, nanosec=987_654_321), frame_id=frame_id)
        for n in (0, 1, 2, 7, 33):
            xy = rng.uniform(0, 1200, (n, 2))
            boxes = np.concatenate([xy, xy + rng.uniform(1, 300, (n, 2))], 1).astype(np.float32)
            dets = Detections(boxes, rng.uniform(0, 1, n).astype(np.float32), rng.integers(0, 7, n), names)
            expected = messages.detections_to_msg(dets, header)
            ours = detections_cdr.encode(dets, header)
            assert ours[:4] == detections_cdr.CDR_LE
            assert len(ours) == len(serialize_message(expected)), (frame_id, n)
            assert deserialize_message(ours, Detection2DArray) == expected, (frame_id, n)
    assert detections_cdr.matches_rclpy()
    # a wrong stream is caught by the same comparison (the check can fail)
    one = Detections(np.array([[1, 2, 3, 4]], np.float32), np.array([0.5], np.float32), np.array([0]), names)
    header = Header(frame_id="cam")
    bad = bytearray(detections_cdr.encode(one, header))
    bad[-30] ^= 0xFF  # inside bbox size_x
    assert deserialize_message(bytes(bad), Detection2DArray) != messages.detections_to_msg(one, header)


def test_message_conversions():
    """messages.py: Image/CompressedImage -> Frame (view, exact stamp), Detections -> Detection2DArray
    (the fast template copies equal plainly built messages), LabelInfo, mono8 mask."""
    import array as array_mod

    import cv2
    import numpy as np
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import PoseWithCovariance
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Header
    from vision_msgs.msg import BoundingBox2D, Detection2D, ObjectHypothesis, ObjectHypothesisWithPose

    from perception_edge.core.detections import Detections
    from perception_edge.nodes import messages

    rgb = np.random.default_rng(0).integers(0, 255, (6, 5, 3), np.uint8)
    msg = Image(header=Header(stamp=Time(sec=1_700_000_000, nanosec=123_456_789), frame_id="cam"),
                height=6, width=5, encoding="rgb8", step=5 * 3 + 4)
    padded = np.zeros((6, 19), np.uint8)
    padded[:, :15] = rgb.reshape(6, 15)
    msg.data = array_mod.array("B", padded.tobytes())
    frame = messages.image_to_frame(msg, "/cam/image_raw")
    assert frame.order == "rgb" and np.array_equal(frame.pixels, rgb) and frame.source_size == (5, 6)
    assert frame.stamp == 1_700_000_000_123_456_789 and frame.frame_id == "cam"
    header = messages.header_of(frame)
    assert (header.stamp.sec, header.stamp.nanosec, header.frame_id) == (1_700_000_000, 123_456_789, "cam")

    jpeg = CompressedImage(header=msg.header, format="jpeg")
    jpeg.data = array_mod.array("B", cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    assert messages.compressed_to_frame(jpeg, "/c/compressed").pixels.shape == (8, 8, 3)

    dets = Detections(np.array([[10, 20, 110, 70], [0, 0, 5, 5]], np.float32), np.array([0.9, 0.3], np.float32),
                      np.array([2, 0]), ["person", "bicycle", "car"])
    out = messages.detections_to_msg(dets, header)
    assert out.header == header and len(out.detections) == 2
    expected = []
    for (x1, y1, x2, y2), score, name in zip(dets.boxes.tolist(), dets.scores.tolist(), ["car", "person"]):
        d = Detection2D(header=header)
        d.bbox = BoundingBox2D(size_x=x2 - x1, size_y=y2 - y1)
        d.bbox.center.position.x, d.bbox.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
        d.results = [ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id=name, score=score),
                                              pose=PoseWithCovariance())]
        expected.append(d)
    assert list(out.detections) == expected
    assert out.detections[0].results[0].hypothesis is not out.detections[1].results[0].hypothesis
    assert len(messages.detections_to_msg(Detections.empty(), header).detections) == 0

    info = messages.label_info_msg(["a", "b"], 0.3, header)
    assert [(v.class_id, v.class_name) for v in info.class_map] == [(0, "a"), (1, "b")]
    assert info.threshold == pytest.approx(0.3)
    mask = messages.mask_to_msg(np.array([[0, 1, 2], [2, 1, 0]], np.uint8), header)
    assert (mask.encoding, mask.width, mask.height, mask.step, bytes(mask.data)) == ("mono8", 3, 2, 3,
                                                                                      bytes([0, 1, 2, 2, 1, 0]))
