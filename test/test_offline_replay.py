"""Offline replay (perception_edge.offline_replay): a real ground-truth bag written with rosbags, the
bundled ONNX models, a results bag read back with rosbags."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")

from perception_edge.core.errors import ConfigError  # noqa: E402
from perception_edge.data import bags  # noqa: E402
from perception_edge.data.synthetic import sequence  # noqa: E402
from perception_edge.offline_replay import replay_offline, run_offline, steps  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DET = str(REPO / "models" / "det_yolov5_synth.onnx")
SEG = str(REPO / "models" / "lane_unet.onnx")
CAMERAS = ("front", "front_left", "front_right")


@pytest.fixture(scope="module")
def gt_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("gt") / "drive"
    bags.write_synthetic_bag(path, 3, (640, 360), seed=7, cameras=CAMERAS)
    return path


@pytest.fixture(scope="module")
def results(gt_bag, tmp_path_factory):
    out = tmp_path_factory.mktemp("offline")
    return replay_offline(gt_bag, out, DET, SEG, progress=False)


def _all(path):
    topics = list(bags.info(path).topics)
    return list(bags.raw_messages(path, topics))


def test_results_bag_has_the_container_topics_with_input_headers(gt_bag, results):
    assert results.steps == 3 and results.frames == 9
    info = bags.info(results.results)
    for cam in CAMERAS:
        ns = f"/{cam}"
        assert info.topics[f"{ns}/detections"] == bags.DETECTIONS
        assert info.topics[f"{ns}/lane_mask"] == bags.IMAGE
        assert info.topics[f"{ns}/label_info"] == bags.LABEL_INFO
        assert info.topics[f"{ns}/replay/input"] == bags.HEADER
        assert info.counts[f"{ns}/detections"] == info.counts[f"{ns}/lane_mask"] == 3
        assert info.counts[f"{ns}/label_info"] == 1
    assert info.custom_data["perception_edge.kind"] == "results"
    assert info.custom_data["perception_edge.source_bag"] == str(Path(gt_bag).resolve())
    assert info.custom_data["perception_edge.detection_model"].endswith("det_yolov5_synth.onnx")
    inputs = {(t, bags.stamp_ns(m), m.header.frame_id)
              for t, _, _, m in bags.messages(gt_bag, [f"/{c}/image_raw" for c in CAMERAS])}
    seen = set()
    for t, _, log_ns, m in bags.messages(results.results, [f"/{c}/{k}" for c in CAMERAS
                                                          for k in ("detections", "lane_mask")]):
        ns, kind = t.rsplit("/", 1)
        assert log_ns == bags.stamp_ns(m)  # offline: logged at the input's stamp
        assert (f"{ns}/image_raw", bags.stamp_ns(m), m.header.frame_id) in inputs
        seen.add((f"{ns}/image_raw", bags.stamp_ns(m), m.header.frame_id))
        if kind == "lane_mask":
            assert (m.width, m.height, m.encoding) == (640, 360, "mono8")
            assert np.asarray(m.data).max() == 1  # lane markings found
    assert seen == inputs
    (label,) = [m for _, _, _, m in bags.messages(results.results, ["/front/label_info"])]
    assert [c.class_name for c in label.class_map] == ["car", "truck", "pedestrian", "traffic_sign"]
    assert label.threshold == pytest.approx(0.25)


def test_rerun_is_bit_identical(gt_bag, results, tmp_path):
    again = run_offline(str(gt_bag), tmp_path, DET, SEG, progress=False)
    first, second = _all(results.results), _all(again)
    assert len(first) == len(second) == 3 * (1 + 1 + 1) * 3 + 3
    for a, b in zip(first, second):
        assert a[:3] == b[:3]
        assert bytes(a[3]) == bytes(b[3])


def test_compressed_sqlite3_bag_and_topic_selection(tmp_path):
    bag = tmp_path / "jpeg"
    bags.write_synthetic_bag(bag, 2, (640, 360), seed=3, cameras=("front", "front_left"), compressed=True,
                             storage="sqlite3")
    summary = replay_offline(bag, tmp_path / "out", DET, "", topics=["/front_left/image_raw/compressed"],
                             progress=False)
    info = bags.info(summary.results)
    assert summary.frames == 2 and summary.per_topic == {"/front_left/image_raw/compressed": 2}
    assert set(info.topics) == {"/front_left/detections", "/front_left/label_info", "/front_left/replay/input"}
    dets = [m for _, _, _, m in bags.messages(summary.results, ["/front_left/detections"])]
    assert all(m.header.frame_id == "front_left_optical" for m in dets)
    assert sum(len(m.detections) for m in dets) > 0


def _write_skewed(path, offsets_ms):
    """Three cameras, per step k at 10 Hz: camera i stamped at k * 100 ms + offsets_ms[i]."""
    px = np.zeros((8, 8, 3), np.uint8)
    base = bags.SYNTHETIC_START_NS
    msgs = []
    for k in range(3):
        for i, off in enumerate(offsets_ms):
            t = base + k * 100_000_000 + off * 1_000_000
            msgs.append((t, f"/c{i}/image_raw", t))
    with bags.BagWriter(path) as w:
        for t, topic, stamp in sorted(msgs):
            w.write(topic, bags.IMAGE, bags.image_msg(px, stamp, topic[1:3]), t)


def test_steps_group_frames_within_the_slop(tmp_path):
    _write_skewed(tmp_path / "a", (0, 10, 15))
    got = [[f.topic for f in s] for s in steps(tmp_path / "a", ["/c0/image_raw", "/c1/image_raw", "/c2/image_raw"],
                                               0.02)]
    assert got == [["/c0/image_raw", "/c1/image_raw", "/c2/image_raw"]] * 3
    _write_skewed(tmp_path / "b", (0, 10, 50))  # camera 2 outside the 20 ms slop: a step of its own
    got = [[f.topic for f in s] for s in steps(tmp_path / "b", ["/c0/image_raw", "/c1/image_raw", "/c2/image_raw"],
                                               0.02)]
    assert got == [["/c0/image_raw", "/c1/image_raw"], ["/c2/image_raw"]] * 3


def test_clear_errors(gt_bag, tmp_path):
    with pytest.raises(ConfigError, match=r"no topic /rear/image_raw; camera image topics: /front/image_raw "
                                          r"\(Image\), /front_left/image_raw \(Image\), /front_right/image_raw \(Image\)$"):
        run_offline(str(gt_bag), tmp_path / "x", DET, SEG, topics=["/rear/image_raw"], progress=False)
    with pytest.raises(ConfigError, match=r"/front/camera_info is a sensor_msgs/msg/CameraInfo, not a "
                                          r"sensor_msgs/msg/Image or CompressedImage; camera image topics: /front/"):
        run_offline(str(gt_bag), tmp_path / "y", DET, SEG, topics=["/front/camera_info"], progress=False)
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "metadata.yaml").write_text("not: a bag\n")
    with pytest.raises(ConfigError, match="cannot read rosbag"):
        run_offline(str(bad), tmp_path / "z", DET, SEG, progress=False)
    with pytest.raises(ConfigError, match="model file not found"):
        run_offline(str(gt_bag), tmp_path / "w", "missing.onnx", "", progress=False)


def test_bad_frames_are_recorded_as_inputs_without_outputs(tmp_path, capsys):
    """A corrupt JPEG and an image over limits.max_image_pixels: one line each, the replay goes on."""
    frame = next(iter(sequence(1, 1, 10.0, (320, 180), ("front",))))[0].image
    t0 = bags.SYNTHETIC_START_NS
    with bags.BagWriter(tmp_path / "bad") as w:
        w.write("/cam/image_raw/compressed", bags.COMPRESSED, bags.compressed_msg(frame, t0, "cam"), t0)
        broken = bags.compressed_msg(frame, t0 + 100_000_000, "cam")
        broken.data = broken.data[:200]
        w.write("/cam/image_raw/compressed", bags.COMPRESSED, broken, t0 + 100_000_000)
        big = np.zeros((2000, 2000, 3), np.uint8)
        w.write("/cam/image_raw/compressed", bags.COMPRESSED, bags.compressed_msg(big, t0 + 200_000_000, "cam"),
                t0 + 200_000_000)
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    limits:\n      max_image_pixels: 1000000\n")
    summary = replay_offline(tmp_path / "bad", tmp_path / "out", DET, "", config_file=str(params), progress=False)
    assert summary.frames == 3 and summary.bad_frames == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("offline replay: skipped a frame: /cam/image_raw/compressed at stamp")
                                 for line in err)
    assert "limits.max_image_pixels" in err[1]
    counts = bags.info(summary.results).counts
    assert counts["/cam/replay/input"] == 3 and counts["/cam/detections"] == 1
