"""Rosbag replay, live and offline (perception_edge.replay, perception_edge.offline_replay, `perception-edge
replay`): the CI regression of the replay workflow.

A small ground-truth bag (3 cameras x 8 steps, 640x360, 1 Hz: data.bags.write_synthetic_bag) is replayed
LIVE -- `perception-edge replay` in a process of its own, which starts perception_container as another
process; frames and results cross Fast DDS in this test's own ROS_DOMAIN_ID -- and OFFLINE (the same
models without middleware). Both results bags are scored against the bag's ground truth with the
project's report (bag_report.evaluate_bag); the thresholds come from the bundled models' figures
(models/README.md: mAP@0.5 0.869, lane IoU 0.915 on 256 scenes at conf 0.001; 0.79 / 0.93 on this
bag) less a margin for 24 frames at the operating threshold (conf 0.25). No frame may be dropped at
the bag's rate, and live and offline detections must agree. The pacing logic is tested on a
simulated clock (no timed assertions anywhere).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perception_edge import replay
from perception_edge.core.errors import ConfigError
from perception_edge.data import bags

REPO = Path(__file__).resolve().parents[1]
DET = REPO / "models" / "det_yolov5_synth.onnx"
SEG = REPO / "models" / "lane_unet.onnx"
STEPS, FPS, SIZE = 8, 1.0, (640, 360)
MIN_MAP50, MIN_LANE_IOU = 0.65, 0.85  # bundled: 0.869 / 0.915 (models/README.md); here 0.79 / 0.93
BOX_TOLERANCE_PX = 1.0


# -- pacing on a simulated clock -------------------------------------------------------------------------

class SimClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def wait_until(self, t: float) -> None:
        self.now = max(self.now, t)


def fake_pass(log_times: dict[str, list[int]]):
    """open(start_ns) of a source whose topics carry messages at these log times (ns)."""
    rows = sorted((t, topic) for topic, ts in log_times.items() for t in ts)

    def open_pass(start_ns):
        for t, topic in rows:
            if start_ns is None or t >= start_ns:
                yield topic, bags.IMAGE, t, b""
    return open_pass


S = 1_000_000_000
TWO_CAMERAS = {"/a/image_raw": [0, S // 2, S], "/b/image_raw": [10_000_000, S // 2 + 10_000_000, S + 10_000_000]}


def sent_times(items, clock: SimClock, publish_cost: float = 0.0):
    out = []
    for it in replay.paced(items, clock, clock.wait_until):
        out.append((round(clock() - 100.0, 6), it.topic, it.log_ns))
        clock.now += publish_cost
    return out


def test_timed_replay_keeps_the_recorded_timing_scaled_by_rate():
    clock = SimClock()
    got = sent_times(replay.timeline(fake_pass(TWO_CAMERAS), 0, rate=2.0), clock)
    assert [t for t, _, _ in got] == [0.0, 0.005, 0.25, 0.255, 0.5, 0.505]
    assert [topic for _, topic, _ in got] == ["/a/image_raw", "/b/image_raw"] * 3


def test_a_late_message_goes_at_once_without_shifting_the_schedule():
    clock = SimClock()  # publishing takes 0.3 s: the schedule is kept, late messages go as soon as possible
    got = sent_times(replay.timeline(fake_pass(TWO_CAMERAS), 0, rate=1.0), clock, publish_cost=0.3)
    assert [t for t, _, _ in got] == [0.0, 0.3, 0.6, 0.9, 1.2, 1.5]


def test_start_offset_skips_the_beginning_and_loop_starts_again_one_frame_later():
    clock = SimClock()
    items = replay.timeline(fake_pass(TWO_CAMERAS), 0, rate=1.0, start_offset=0.4, loop=True)
    got = []
    for it in replay.paced(items, clock, clock.wait_until):
        got.append((round(clock() - 100.0, 6), it.log_ns, it.loop))
        if len(got) == 8:
            break
    # pass 0 and 1 both start at 0.4 s into the bag (first message at 0.5 s); a pass lasts 0.51 s
    # (first to last message) + 0.5 s (the frame interval)
    assert got == [(0.0, S // 2, 0), (0.01, S // 2 + 10_000_000, 0), (0.5, S, 0), (0.51, S + 10_000_000, 0),
                   (1.01, S // 2, 1), (1.02, S // 2 + 10_000_000, 1), (1.51, S, 1), (1.52, S + 10_000_000, 1)]


def test_timing_arguments_are_checked():
    with pytest.raises(ConfigError, match="rate"):
        next(replay.timeline(fake_pass(TWO_CAMERAS), 0, rate=0.0))
    with pytest.raises(ConfigError, match="offset"):
        next(replay.timeline(fake_pass(TWO_CAMERAS), 0, start_offset=-1))
    with pytest.raises(ConfigError, match="nothing to replay 5 s"):
        next(replay.timeline(fake_pass(TWO_CAMERAS), 0, start_offset=5))


def test_a_folder_source_streams_every_frame_with_its_timing():
    """--source FOLDER: every frame (no 30-frame cap), one /cam/image_raw topic, one second apart."""
    from conftest import driving_jpegs

    paths = driving_jpegs()
    if not paths:
        pytest.skip("real driving frames not found")
    src = replay.frames_source(str(paths[0].parent))
    items = list(replay.timeline(src.open, src.start_ns))
    assert len(items) == len(paths) and {it.topic for it in items} == {"/cam/image_raw"}
    assert [it.due for it in items] == [float(k) for k in range(len(paths))]
    stamp, frame_id, _ = bags.cdr_header(items[-1].data)
    assert (stamp, frame_id) == (items[-1].log_ns, "cam")


def test_lockstep_steps_hold_one_frame_per_camera():
    steps = list(replay.lockstep_steps(replay.timeline(fake_pass(TWO_CAMERAS), 0)))
    assert [[it.topic for it in s] for s in steps] == [["/a/image_raw", "/b/image_raw"]] * 3


def test_remap():
    topics = ["/front/image_raw", "/rear/image_raw/compressed"]
    assert replay.parse_remap(["/front/image_raw:=/cam_front/image_raw"], topics) == {
        "/front/image_raw": "/cam_front/image_raw", "/rear/image_raw/compressed": "/rear/image_raw/compressed"}
    with pytest.raises(ConfigError, match="OLD:=NEW"):
        replay.parse_remap(["/front/image_raw=/x"], topics)
    with pytest.raises(ConfigError, match="/side/image_raw is not a replayed topic; replayed: /front/image_raw"):
        replay.parse_remap(["/side/image_raw:=/x"], topics)


def test_cdr_header_reads_stamp_and_frame_id_without_deserializing():
    msg = bags.image_msg(np.zeros((2, 3, 3), np.uint8), 1_700_000_000_123_456_789, "front_optical")
    data = bytes(bags.typestore().serialize_cdr(msg, bags.IMAGE))
    stamp, frame_id, n = bags.cdr_header(data)
    assert (stamp, frame_id) == (1_700_000_000_123_456_789, "front_optical")
    header = bags.typestore().deserialize_cdr(data[:n], bags.HEADER)
    assert (bags.stamp_ns(type("M", (), {"header": header})), header.frame_id) == (stamp, frame_id)


# -- bags on disk --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gt_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("gt") / "drive"
    bags.write_synthetic_bag(path, STEPS, SIZE, seed=7, fps=FPS)
    return path


def cli_in_process(argv, capsys):
    from perception_edge import cli

    rc = cli.main(argv)
    return rc, capsys.readouterr().err.strip()


def test_a_missing_topic_is_one_line_naming_what_the_bag_has(gt_bag, capsys, tmp_path):
    rc, err = cli_in_process(["replay", str(gt_bag), "--topics", "/rear/image_raw", "--output", str(tmp_path)], capsys)
    assert rc == 1 and len(err.splitlines()) == 1
    assert "no topic /rear/image_raw" in err and "/front/image_raw (Image)" in err


def test_a_topic_that_is_not_an_image_is_one_line(gt_bag, capsys, tmp_path):
    rc, err = cli_in_process(["replay", str(gt_bag), "--topics", "/front/camera_info", "--output", str(tmp_path)],
                             capsys)
    assert rc == 1 and len(err.splitlines()) == 1
    assert "/front/camera_info is a sensor_msgs/msg/CameraInfo" in err and "/front_left/image_raw" in err


# -- live, over Fast DDS --------------------------------------------------------------------------------

def ros_env(tmp_path: Path, index: int) -> dict[str, str]:
    env = dict(os.environ, ROS_DOMAIN_ID=str(1 + (os.getpid() * 7 + index * 41) % 100),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=str(tmp_path / "ros_log"),
               PYTHONUNBUFFERED="1")
    env.pop("ROS_LOCALHOST_ONLY", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH", "")] if p])
    return env


def replay_process(args: list[str], tmp_path: Path, index: int, timeout: float = 180):
    pytest.importorskip("rclpy")
    pytest.importorskip("vision_msgs.msg")
    return subprocess.run([sys.executable, "-m", "perception_edge.cli", "replay", *args, "--quiet"],
                          cwd=str(REPO), env=ros_env(tmp_path, index), capture_output=True, text=True,
                          timeout=timeout)


def detections_by_frame(results: Path, names: list[str]) -> dict:
    out = {}
    for topic, _, _, msg in bags.messages(results, [t for t in bags.info(results).topics if t.endswith("/detections")]):
        out[(topic[: -len("/detections")], bags.stamp_ns(msg))] = bags.detections_from_msg(msg, names)
    return out


def masks_by_frame(results: Path) -> dict:
    return {(topic[: -len("/lane_mask")], bags.stamp_ns(msg)): bags.mono8_from_msg(msg)
            for topic, _, _, msg in bags.messages(results, [t for t in bags.info(results).topics
                                                             if t.endswith("/lane_mask")])}


def report(results: Path, gt_bag: Path) -> dict:
    """The project's report of a results bag against the ground-truth bag (bag_report.evaluate_bag)."""
    from perception_edge.bag_report import evaluate_bag

    return evaluate_bag(str(results), str(gt_bag), str(results.parent / f"report_{results.parent.name}"),
                        video=False, progress=False)


@pytest.fixture(scope="module")
def live_and_offline(gt_bag, tmp_path_factory):
    from perception_edge.offline_replay import run_offline

    tmp = tmp_path_factory.mktemp("replay")
    proc = replay_process([str(gt_bag), "--detection-model", str(DET), "--segmentation-model", str(SEG),
                           "--output", str(tmp / "live"), "--no-report"], tmp, 0)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    offline = run_offline(str(gt_bag), tmp / "offline", str(DET), str(SEG), progress=False)
    return tmp / "live" / "results", offline, proc.stdout


def test_live_replay_at_the_bags_rate_drops_no_frame(live_and_offline, gt_bag):
    live, _, stdout = live_and_offline
    s = replay.summarize(live)
    assert s["sent"] == 3 * STEPS and s["dropped"] == 0, stdout
    assert set(s["cameras"]) == {"/front", "/front_left", "/front_right"}
    assert all(c["detections"] == STEPS and c["lane_mask"] == STEPS for c in s["cameras"].values())
    assert s["latency_ms"]["p99"] > 0
    # the inputs went out as recorded: the bag's topics, stamps and frame_ids (one replay/input each)
    cams = ("/front", "/front_left", "/front_right")
    sent = sorted((t[: -len("/replay/input")], bags.stamp_ns(type("M", (), {"header": m})), m.frame_id)
                  for t, _, _, m in bags.messages(live, [f"{c}/replay/input" for c in cams]))
    recorded = sorted((bags.namespace_of(t), bags.stamp_ns(m), m.header.frame_id)
                      for t, _, _, m in bags.messages(gt_bag, [f"{c}/image_raw" for c in cams]))
    assert sent == recorded
    info = bags.info(live)
    assert info.custom_data["perception_edge.mode"] == "live"
    assert info.counts.get("/diagnostics", 0) >= 1 and info.counts["/front/label_info"] == 1


def test_live_and_offline_accuracy_stay_above_the_bundled_models_figures(live_and_offline, gt_bag):
    live, offline, _ = live_and_offline
    for results in (live, offline):
        r = report(results, gt_bag)
        assert r["detection"]["frames"] == 3 * STEPS and r["lane"]["frames"] == 3 * STEPS
        assert r["detection"]["map50"] >= MIN_MAP50, (results, r["detection"])
        assert r["lane"]["iou"]["lane_marking"] >= MIN_LANE_IOU, (results, r["lane"])
        assert all(c["dropped"] == 0 for c in r["cameras"].values()), r["cameras"]
        if results == live:  # latency from the bag's log times: publish -> receive
            assert all(c["latency_ms"]["p50"] > 0 for c in r["cameras"].values()), r["cameras"]


def test_live_and_offline_detections_agree(live_and_offline):
    live, offline, _ = live_and_offline
    names: list[str] = []
    a, b = detections_by_frame(live, names), detections_by_frame(offline, names)
    assert set(a) == set(b) and len(a) == 3 * STEPS
    boxes = 0
    for key in a:
        x, y = a[key], b[key]
        assert sorted(x.class_ids.tolist()) == sorted(y.class_ids.tolist()), key
        ox, oy = np.lexsort(x.boxes.T[::-1]), np.lexsort(y.boxes.T[::-1])
        assert np.abs(x.boxes[ox] - y.boxes[oy]).max(initial=0) <= BOX_TOLERANCE_PX, key
        boxes += len(x)
    assert boxes >= 3 * STEPS  # the comparison compared something
    ma, mb = masks_by_frame(live), masks_by_frame(offline)
    assert all(np.array_equal(ma[k], mb[k]) or (ma[k] != mb[k]).mean() < 1e-3 for k in ma)


def test_a_dead_container_ends_the_replay_with_its_reason(gt_bag, tmp_path):
    proc = replay_process([str(gt_bag), "--detection-model", str(tmp_path / "missing.onnx"), "--segmentation-model",
                           "", "--output", str(tmp_path / "out"), "--no-report"], tmp_path, 1)
    assert proc.returncode != 0
    assert "perception_container exited with code 2" in proc.stderr
    assert "missing.onnx" in proc.stderr and "container.log" in proc.stderr


def test_compressed_images_remap_clock_and_lockstep(tmp_path):
    """CompressedImage topics are republished as recorded; --remap renames the topic (and so the
    output namespace); --clock publishes the bag time on /clock and the container runs on it (its
    /diagnostics stamps are bag time); --lockstep scores every frame; --limit stops early."""
    bag = tmp_path / "compressed"
    bags.write_synthetic_bag(bag, 4, SIZE, seed=3, cameras=("front",), fps=FPS, compressed=True)
    proc = replay_process([str(bag), "--remap", "/front/image_raw/compressed:=/cam_x/image_raw/compressed",
                           "--clock", "--lockstep", "--limit", "3", "--segmentation-model", "",
                           "--detection-model", str(DET), "--output", str(tmp_path / "out"), "--no-report"],
                          tmp_path, 2)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = tmp_path / "out" / "results"
    info = bags.info(results)
    assert info.counts["/cam_x/detections"] == 3 and info.counts["/cam_x/replay/input"] == 3
    assert not any(t.startswith("/front") for t in info.topics)
    dets = [m for _, _, _, m in bags.messages(results, ["/cam_x/detections"])]
    assert [bags.stamp_ns(m) for m in dets] == [bags.SYNTHETIC_START_NS + k * S for k in range(3)]
    assert {m.header.frame_id for m in dets} == {"front_optical"} and sum(len(m.detections) for m in dets) > 0
    diag = [bags.stamp_ns(m) for _, _, _, m in bags.messages(results, ["/diagnostics"])]
    in_bag_time = [t for t in diag if bags.SYNTHETIC_START_NS <= t <= bags.SYNTHETIC_START_NS + 10 * S]
    assert in_bag_time and all(t == 0 or t in in_bag_time for t in diag), diag


def test_a_container_dying_during_the_replay_ends_it_with_its_exit_code(gt_bag, tmp_path, monkeypatch):
    """The container is checked while every step waits, not only at start: it is killed after the
    first frame went out, and the replay stops at once (ContainerDied naming the exit code)."""
    pytest.importorskip("rclpy")
    pytest.importorskip("vision_msgs.msg")
    import signal

    if not Path("/proc/self/stat").is_file():
        pytest.skip("finds the container process through /proc")
    for k, v in ros_env(tmp_path, 3).items():
        if k.startswith("ROS_") or k == "FASTDDS_DEFAULT_PROFILES_FILE":
            monkeypatch.setenv(k, v)
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", str(replay.LARGE_FRAMES_PROFILE))
    source = replay.bag_source(gt_bag)
    opened = source.open

    def container_pids() -> list[int]:
        me = os.getpid()
        pids = []
        for p in Path("/proc").iterdir():
            try:
                stat = (p / "stat").read_text()
                cmd = (p / "cmdline").read_bytes()
            except OSError:
                continue
            if p.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == me and b"nodes.container" in cmd:
                pids.append(int(p.name))
        return pids

    def killing(start):
        for k, msg in enumerate(opened(start)):
            if k == 1:
                for pid in container_pids():
                    os.kill(pid, signal.SIGKILL)
            yield msg

    source.open = killing
    with pytest.raises(replay.ContainerDied, match="exited with code -9"):
        replay.run(source, tmp_path / "out", str(DET), str(SEG), replay.Options(progress=False), log=lambda s: None)
    assert (tmp_path / "out" / "results" / "metadata.yaml").is_file()  # what was recorded is kept
