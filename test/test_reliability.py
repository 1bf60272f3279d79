"""Reliability over the real middleware: fuzzing a running container, a camera whose stamps are off.

Processes as in test_nodes_ros.py: a publisher (this file run as a script, `fuzz` mode, or
test_nodes_ros.py's camera publisher), the perception_container with the bundled models, and this
pytest process as the subscriber, each test in its own ROS domain.

The fuzz publisher works in lockstep with the test: `valid` publishes one real 1280x720 frame on
each camera (raw rgb8 and JPEG) with a fresh stamp; the test waits until the container has answered
it; `bad N` then publishes N malformed messages (from `malformed()`, seeded) spread over both
cameras. Waiting for each answer before the malformed burst makes "every valid frame answered" a
property of the container, not of the depth-1 QoS (a message right behind a valid frame may replace
it in the reader's history; such losses are what lost_before_callback counts).
"""
from __future__ import annotations

import array
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
DRIVING = Path(os.environ.get("PERCEPTION_EDGE_DATA", REPO.parent / "shared" / "data" / "driving"))
RAW, JPEG = "/fz_raw/image_raw", "/fz_jpeg/image_raw/compressed"


def malformed(k: int, rng, jpeg: bytes, png: bytes, huge_png: bytes):
    """The k-th malformed message: (topic, kind, fields). Every one of them must be refused."""
    import numpy as np

    raw_cases = [
        dict(encoding="weird_16UC7"), dict(encoding=""), dict(encoding="rgb 8"), dict(encoding="32FC1"),
        dict(width=0), dict(height=0), dict(width=0, height=0, step=0),
        dict(data=b""), dict(data=bytes(1000)), dict(step=100),  # step < row
        dict(width=65535, height=65535, step=65535 * 3, data=bytes(64)),  # 4 Gpx declared
        dict(width=8000, height=8000, step=24000, data=bytes(100)),  # over the pixel limit
        dict(encoding="yuv422", width=641, step=1282),  # odd width for 4:2:2
        dict(encoding="mono16", data=bytes(640 * 480)),  # half the bytes
        dict(encoding="bgra8", step=640 * 3),  # step below 4 bytes per pixel
        dict(data=rng.integers(0, 256, 500, dtype=np.uint8).tobytes()),
    ]
    cut = int(rng.integers(4, len(jpeg) - 4))
    flipped = bytearray(png)
    flipped[int(rng.integers(40, len(png) - 20))] ^= 0x5A  # caught by the chunk CRC
    garbage_after_header = jpeg[:20] + bytes(rng.integers(0, 256, 50, dtype=np.uint8)) + jpeg[20:]
    compressed_cases = [
        dict(format="jpeg", data=b""), dict(format="jpeg", data=jpeg[:cut]), dict(format="png", data=png[:cut]),
        dict(format="png", data=bytes(flipped)), dict(format="png", data=huge_png),
        dict(format="jpeg", data=rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()),
        dict(format="bgr8; compressedDepth png", data=png), dict(format="h264", data=jpeg),
        dict(format="jpeg", data=b"\xff\xd8" + bytes(200)), dict(format="jpeg", data=garbage_after_header),
        dict(format=42 * "x", data=b"\x89PNG\r\n\x1a\n"),
    ]
    if k % 2 == 0:
        base = dict(width=640, height=480, encoding="rgb8", step=640 * 3, data=bytes(640 * 480 * 3))
        base.update(raw_cases[(k // 2) % len(raw_cases)])
        return RAW, "raw", base
    return JPEG, "compressed", compressed_cases[(k // 2) % len(compressed_cases)]


def fuzz_main(argv: list[str]) -> int:
    """The fuzz publisher process; commands on stdin, replies on stdout (one line each)."""
    import argparse

    import cv2
    import numpy as np
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--raw-only", action="store_true", help="only the raw camera (malformed Image messages)")
    args = p.parse_args(argv)
    rclpy.init()
    node = rclpy.create_node("fuzz_publisher")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {RAW: node.create_publisher(Image, RAW, qos)}
    if not args.raw_only:
        pubs[JPEG] = node.create_publisher(CompressedImage, JPEG, qos)
    frames = [cv2.imread(str(x)) for x in sorted(DRIVING.glob("*.jpg"))[:4]]
    small = frames[0][:120, :160]
    jpeg = cv2.imencode(".jpg", small)[1].tobytes()
    png = cv2.imencode(".png", small)[1].tobytes()
    huge_png = cv2.imencode(".png", np.zeros((8000, 8000), np.uint8))[1].tobytes()
    rng = np.random.default_rng(args.seed)
    sent = {RAW: 0, JPEG: 0}
    k = 0

    def reply(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    while not all(pub.get_subscription_count() for pub in pubs.values()):
        time.sleep(0.05)
    reply("ready")
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        stamp = node.get_clock().now().to_msg()
        if words[0] == "valid":
            f = frames[int(words[1]) % len(frames)]
            m = Image()
            m.header.stamp, m.header.frame_id = stamp, "fz_raw"
            m.width, m.height, m.encoding, m.step = f.shape[1], f.shape[0], "bgr8", f.shape[1] * 3
            m.data = array.array("B", f.tobytes())
            pubs[RAW].publish(m)
            c = CompressedImage()
            c.header.stamp, c.header.frame_id = stamp, "fz_jpeg"
            c.format = "bgr8; jpeg compressed bgr8"
            c.data = array.array("B", cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
            if JPEG in pubs:
                pubs[JPEG].publish(c)
            sent[RAW] += 1
            sent[JPEG] += 1
            reply(f"valid {stamp.sec} {stamp.nanosec}")
        elif words[0] == "bad":
            for _ in range(int(words[1])):
                topic, kind, fields = malformed(k, rng, jpeg, png, huge_png)
                k += 2 if args.raw_only else 1
                m = Image() if kind == "raw" else CompressedImage()
                m.header.stamp = node.get_clock().now().to_msg()
                m.header.frame_id = "fuzz"
                for name, value in fields.items():
                    setattr(m, name, array.array("B", value) if name == "data" else value)
                pubs[topic].publish(m)
                sent[topic] += 1
                time.sleep(float(words[2]) if len(words) > 2 else 0.002)
            reply(f"sent {sent[RAW]} {sent[JPEG]}")
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "fuzz":
    try:
        sys.exit(fuzz_main(sys.argv[2:]))
    except KeyboardInterrupt:
        sys.exit(0)

# ------------------------------------------------------------------------------------------------

import pytest  # noqa: E402

pytestmark = pytest.mark.ros

try:
    from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
    from sensor_msgs.msg import Image  # noqa: E402
    from test_nodes_ros import (WAIT, Listener, Procs, base_params, command, detections_summary,  # noqa: E402
                                diag_summary, domain_id, image_summary, ros_env, statuses, write_params)
    from vision_msgs.msg import Detection2DArray  # noqa: E402
except ImportError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"ROS 2 Python packages not importable ({exc})", allow_module_level=True)

if not sorted(DRIVING.glob("*.jpg")):
    pytest.skip(f"real driving frames not found in {DRIVING}", allow_module_level=True)

DET_MODEL = REPO / "models" / "det_yolov5_synth.onnx"
LARGE_FRAMES_PROFILE = REPO / "config" / "fastdds_large_frames.xml"
LANE_MODEL = REPO / "models" / "lane_unet.onnx"


def latest_values(diags: list, name_part: str) -> dict[str, str]:
    found = statuses(diags, name_part)
    return found[-1][3] if found else {}


def test_fuzzing_a_running_container(tmp_path):
    """1,000 malformed Image / CompressedImage messages interleaved with 20 valid frames: every valid
    frame answered with the same detections as the library gives in-process, the container alive
    with no traceback, and every malformed message counted (bad_messages, decode_skipped or
    lost_before_callback: the counts add up to what was sent)."""
    import cv2

    from perception_edge.backends import create_backend
    from perception_edge.core.image_conversion import compressed_to_pixels
    from perception_edge.pipeline import Detector

    rounds, bad_per_round = 20, 50
    domain = domain_id(20)
    env = ros_env(domain, tmp_path)
    params = write_params(tmp_path / "params.yaml", **base_params(
        DET_MODEL, LANE_MODEL, [RAW, JPEG], input_qos="reliable",
        # one valid frame per camera and round: a camera must not be judged stale while its frame
        # crosses a loaded machine
        **{"sync.slop": 0.01, "sync.stale_timeout": 10.0}))
    procs = Procs(tmp_path, env)
    listener = None
    try:
        container = procs.container(params)
        listener = Listener(domain)
        dets = {t: listener.subscribe(Detection2DArray, t.split("/image_raw")[0] + "/detections",
                                      detections_summary) for t in (RAW, JPEG)}
        masks = {t: listener.subscribe(Image, t.split("/image_raw")[0] + "/lane_mask", image_summary)
                 for t in (RAW, JPEG)}
        diags = listener.subscribe(DiagnosticArray, "/diagnostics", diag_summary)
        fuzz = procs.start("fuzz", [sys.executable, str(Path(__file__).resolve()), "fuzz"], stdin=True)
        fuzz.stdout = open(procs.logs[fuzz.pid], "rb")  # replies are read from its log file
        alive = [container, fuzz]

        def reply() -> str:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                line = fuzz.stdout.readline().decode()
                if line.strip() and not line.startswith("["):
                    return line.strip()
                listener.wait(lambda: False, 0.05)
            raise AssertionError(f"no reply from the fuzz publisher:\n{procs.output(fuzz)[-2000:]}")

        assert reply() == "ready"
        # the results are published once per frame: this process must have discovered the
        # container's publishers before the first frame goes out (seen otherwise on a loaded machine:
        # round 0 processed by the container, its results never seen here)
        outputs = [t.split("/image_raw")[0] + kind for t in (RAW, JPEG) for kind in ("/detections", "/lane_mask")]
        assert listener.wait(lambda: all(listener.node.count_publishers(o) for o in outputs), WAIT, alive), outputs
        detector = Detector(create_backend(str(DET_MODEL)))
        frames = [cv2.imread(str(x)) for x in sorted(DRIVING.glob("*.jpg"))[:4]]
        for r in range(rounds):
            command(fuzz, f"valid {r}")
            words = reply().split()
            stamp = (int(words[1]), int(words[2]))

            def answered(stamp=stamp):
                return all(any(d["stamp"] == stamp for d in dets[t]) and any(m["stamp"] == stamp for m in masks[t])
                           for t in (RAW, JPEG))

            assert listener.wait(answered, WAIT, alive), (
                f"round {r}: valid frame not answered: "
                f"{ {t: (len(dets[t]), len(masks[t]), [d['stamp'] for d in dets[t]][-3:]) for t in (RAW, JPEG)} } "
                f"stamp {stamp}; last statuses {[s[:3] for s in diags[-1]] if diags else None}"
                f"\n{procs.output(container)[-3000:]}")
            # answered correctly: the same detections as the library in-process on the same pixels
            jpeg = cv2.imencode(".jpg", frames[r % 4], [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
            expected = detector([(frames[r % 4], "bgr"), compressed_to_pixels("bgr8; jpeg compressed bgr8", jpeg)])
            for topic, exp in zip((RAW, JPEG), expected):
                got = next(d for d in dets[topic] if d["stamp"] == stamp)
                assert len(got["dets"]) == len(exp), (topic, r)
                for (_, _, cx, cy, sx, sy, ((name, score),)), box, s, n in zip(
                        got["dets"], exp.boxes, exp.scores, exp.names()):
                    assert name == n and score == pytest.approx(float(s), abs=1e-3)
                    assert (cx - sx / 2, cy - sy / 2, cx + sx / 2, cy + sy / 2) == pytest.approx(
                        [float(v) for v in box], abs=0.05)
                mask = next(m for m in masks[topic] if m["stamp"] == stamp)
                assert (mask["width"], mask["height"]) == (1280, 720)
            command(fuzz, f"bad {bad_per_round}")
            sent_raw, sent_jpeg = (int(v) for v in reply().split()[1:])
            assert container.poll() is None, procs.output(container)[-3000:]

        # the counts of both cameras add up to what was sent, once the last burst is through
        sent = {RAW: sent_raw, JPEG: sent_jpeg}

        def counted():
            for topic in (RAW, JPEG):
                v = latest_values(diags, f"camera {topic}")
                if not v or int(v["received"]) + int(v["lost_before_callback"]) != sent[topic]:
                    return False
                if int(v["received"]) != (int(v["decoded"]) + int(v["bad_messages"]) + int(v["decode_skipped"])):
                    return False
            return True

        assert listener.wait(counted, WAIT, alive), [latest_values(diags, f"camera {t}") for t in (RAW, JPEG)]
        for topic in (RAW, JPEG):
            v = latest_values(diags, f"camera {topic}")
            assert int(v["decoded"]) == rounds and int(v["batched"]) == rounds, v  # every valid frame, no more
            assert int(v["bad_messages"]) + int(v["decode_skipped"]) + int(v["lost_before_callback"]) \
                == rounds * bad_per_round // 2, v
            assert int(v["bad_messages"]) > 0
        assert container.poll() is None
        command(fuzz, "quit")
        out = procs.output(container)
        assert "Traceback" not in out and "libpng" not in out and "Corrupt JPEG" not in out, out[-3000:]
    finally:
        if listener is not None:
            listener.close()
        procs.close()


def test_camera_with_offset_stamps_costs_the_others_nothing(tmp_path):
    """Three cameras at 2 Hz, one stamping 10 s behind: once it is left out, every frame of the
    other two is answered (as in a synchronized run), the skewed one is reported (WARN, the offset
    named) and nothing of it is answered."""
    from test_nodes_ros import FRONT, LEFT, published_headers

    right = "/cam_right/image_raw"
    cameras = [FRONT, LEFT, right]
    ns = {FRONT: "/cam_front", LEFT: "/cam_left", right: "/cam_right"}
    domain = domain_id(21)
    env = ros_env(domain, tmp_path)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(LARGE_FRAMES_PROFILE)  # whole frames in shared memory
    params = write_params(tmp_path / "params.yaml", **base_params(
        DET_MODEL, "", cameras, input_qos="reliable", **{"sync.stale_timeout": 0.5}))
    procs = Procs(tmp_path, env)
    listener = None
    try:
        container = procs.container(params)
        listener = Listener(domain)
        dets = {c: listener.subscribe(Detection2DArray, ns[c] + "/detections",
                                      lambda m: (m.header.stamp.sec, m.header.stamp.nanosec)) for c in cameras}
        diags = listener.subscribe(DiagnosticArray, "/diagnostics", diag_summary)
        publisher = procs.start("publisher", [
            sys.executable, str(HERE / "test_nodes_ros.py"), "publish", "--cameras", ",".join(cameras),
            "--qos", "reliable", "--rate", "2", "--log", str(tmp_path / "publisher.stamps"),
            "--offset", f"{right}=-10"], stdin=True)
        alive = [container, publisher]

        def reported():
            return any(lv == 1 and v.get("skewed") == "true" and "10.0" in msg and "behind" in msg
                       for _, lv, msg, v in statuses(diags, f"camera {right}"))

        assert listener.wait(reported, WAIT, alive), statuses(diags, f"camera {right}")[-2:]
        window_start = time.time()
        listener.wait(lambda: False, 8.0, alive)
        window_end = time.time() - 1.5  # frames of the last 1.5 s may still be in flight
        listener.wait(lambda: False, 1.5, alive)
        sent = published_headers(tmp_path / "publisher.stamps")
        for c in (FRONT, LEFT):
            in_window = {s for s, _ in sent[c] if window_start <= s[0] + s[1] * 1e-9 <= window_end}
            assert len(in_window) >= 10
            missing = in_window - set(dets[c])
            # every frame answered, but those the middleware lost on the way (counted as such)
            values = latest_values(diags, f"camera {c}")
            assert len(missing) <= int(values["lost_before_callback"]), (c, sorted(missing), values)
            assert len(missing) <= 1, (c, sorted(missing), values)
        assert not dets[right] or max(dets[right])[0] < window_start - 10  # nothing since it was left out
        sync = statuses(diags, "camera_fusion: sync")[-1]
        assert sync[1] == 1 and right in sync[3]["left_out"], sync  # WARN, not ERROR: batches form
        model = statuses(diags, "detection model")[-1]
        assert model[1] == 0, model
        assert container.poll() is None
    finally:
        if listener is not None:
            listener.close()
        procs.close()


def test_diagnostics_tell_idle_from_starved(tmp_path):
    """No frames: the model is idle (OK). Frames that arrive but never form a batch (here: every
    message malformed): the sync status turns ERROR and the model reports itself starved (WARN);
    the camera's counts say why."""
    domain = domain_id(22)
    env = ros_env(domain, tmp_path)
    params = write_params(tmp_path / "params.yaml", **base_params(
        DET_MODEL, "", [RAW], input_qos="reliable", **{"sync.stale_timeout": 0.5}))
    procs = Procs(tmp_path, env)
    listener = None
    try:
        container = procs.container(params)
        listener = Listener(domain)
        diags = listener.subscribe(DiagnosticArray, "/diagnostics", diag_summary)
        alive = [container]

        def model_says(level, text):
            return lambda: any(lv == level and text in msg for _, lv, msg, _ in statuses(diags, "detection model")[-2:])

        assert listener.wait(model_says(0, "idle"), WAIT, alive), statuses(diags, "detection model")[-2:]
        # the fusion node publishes its statuses on a timer of its own: wait for one, idle is not an error
        assert listener.wait(lambda: any(lv == 0 for _, lv, _, _ in statuses(diags, "camera_fusion: sync")[-1:]),
                             WAIT, alive), statuses(diags, "camera_fusion: sync")[-2:]
        fuzz = procs.start("fuzz", [sys.executable, str(Path(__file__).resolve()), "fuzz", "--raw-only"], stdin=True)
        alive.append(fuzz)
        command(fuzz, "bad 60 0.1")  # 10 Hz of malformed frames for 6 s
        assert listener.wait(model_says(1, "starved"), WAIT, alive), statuses(diags, "detection model")[-2:]
        # the fusion node publishes its statuses on a timer of its own: wait for them too
        assert listener.wait(lambda: any(lv == 2 and "no batch has formed" in msg
                                         for _, lv, msg, _ in statuses(diags, "camera_fusion: sync")[-2:]),
                             WAIT, alive), statuses(diags, "camera_fusion: sync")[-2:]
        camera = statuses(diags, f"camera {RAW}")[-1][3]
        assert int(camera["bad_messages"]) >= 1 and camera["decoded"] == "0", camera
        assert container.poll() is None
    finally:
        if listener is not None:
            listener.close()
        procs.close()
