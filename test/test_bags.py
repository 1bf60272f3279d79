"""Ground-truth bags (perception_edge.data.bags, `perception-edge generate-data --bag`): written with
rosbags, checked for what `ros2 bag info/play` need (metadata version, embedded message
definitions, RIHS01 type hashes equal to the installed interfaces', CDR that rclpy deserializes)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rosbags")

from perception_edge.cli.generate_data import main as generate_data  # noqa: E402
from perception_edge.data import bags  # noqa: E402
from perception_edge.data.synthetic import CLASSES, sequence  # noqa: E402

CAMERAS = ("front", "front_left", "front_right")


@pytest.fixture(scope="module")
def mcap_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "drive"
    assert generate_data(["--bag", str(path), "--steps", "3", "--size", "320x180", "--seed", "5"]) == 0
    return path


def test_generate_data_bag_layout(mcap_bag):
    info = bags.info(mcap_bag)
    expected = {"/tf_static": bags.TF}
    for c in CAMERAS:
        expected.update({f"/{c}/image_raw": bags.IMAGE, f"/{c}/camera_info": bags.CAMERA_INFO,
                         f"/{c}/ground_truth/detections": bags.DETECTIONS,
                         f"/{c}/ground_truth/lane_mask": bags.IMAGE})
    assert info.topics == expected
    assert all(n == 3 for t, n in info.counts.items() if t != "/tf_static")
    assert info.image_topics() == [f"/{c}/image_raw" for c in CAMERAS]
    assert info.start_ns == bags.SYNTHETIC_START_NS
    assert info.custom_data["perception_edge.kind"] == "ground_truth"


def test_ground_truth_round_trip(mcap_bag):
    names: list[str] = list(CLASSES)
    truth = bags.ground_truth(mcap_bag, names)
    assert names == list(CLASSES)
    frames = list(sequence(5, 3, 10.0, (320, 180), CAMERAS))
    assert len(truth) == 9
    for k, step in enumerate(frames):
        stamp = bags.SYNTHETIC_START_NS + k * 100_000_000
        for fr in step:
            t = truth[(f"/{fr.camera}", stamp)]
            np.testing.assert_allclose(t.detections.boxes, fr.boxes, atol=1e-4)
            np.testing.assert_array_equal(t.detections.class_ids, fr.class_ids)
            np.testing.assert_array_equal(t.lane_mask, (fr.mask == 1).astype(np.uint8))
    images = {(t, bags.stamp_ns(m)): bags.pixels_from_msg(m, ty)
              for t, ty, _, m in bags.messages(mcap_bag, ["/front/image_raw"])}
    px, order = images[("/front/image_raw", bags.SYNTHETIC_START_NS)]
    assert order == "rgb"
    np.testing.assert_array_equal(px, frames[0][0].image)


def test_metadata_and_embedded_definitions(mcap_bag):
    meta = yaml.safe_load((mcap_bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8 and meta["storage_identifier"] == "mcap"
    for t in meta["topics_with_message_count"]:
        assert t["topic_metadata"]["type_description_hash"].startswith("RIHS01_")
        assert t["topic_metadata"]["serialization_format"] == "cdr"
    # a reader without any typestore of its own decodes vision_msgs from the definitions in the MCAP file
    from rosbags.highlevel import AnyReader

    with AnyReader([Path(mcap_bag)]) as reader:
        conn = next(c for c in reader.connections if c.topic == "/front/ground_truth/detections")
        assert "vision_msgs/Detection2D" in conn.msgdef.data
        _, _, raw = next(reader.messages(connections=[conn]))
        msg = reader.deserialize(raw, conn.msgtype)
        assert msg.detections[0].results[0].hypothesis.class_id in CLASSES


def _installed_hash(msgtype: str) -> str | None:
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None
    pkg, _, name = msgtype.split("/")
    try:
        path = Path(get_package_share_directory(pkg)) / "msg" / f"{name}.json"
    except Exception:  # package not installed
        return None
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    return next(h["hash_string"] for h in doc["type_hashes"] if h["type_name"] == msgtype)


def test_type_hashes_equal_the_installed_interfaces(mcap_bag, tmp_path):
    meta = yaml.safe_load((mcap_bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    hashes = {t["topic_metadata"]["type"]: t["topic_metadata"]["type_description_hash"]
              for t in meta["topics_with_message_count"]}
    with bags.BagWriter(tmp_path / "r") as w:  # the result types too
        w.write("/c/label_info", bags.LABEL_INFO, bags.label_info_msg(CLASSES, 0.25), 1)
        w.write("/c/replay/input", bags.HEADER, bags.header(1, "c"), 1)
        w.write("/c/image_raw/compressed", bags.COMPRESSED,
                bags.compressed_msg(np.zeros((8, 8, 3), np.uint8), 1, "c"), 1)
    meta = yaml.safe_load((tmp_path / "r" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    hashes.update({t["topic_metadata"]["type"]: t["topic_metadata"]["type_description_hash"]
                   for t in meta["topics_with_message_count"]})
    checked = {t: h for t, h in hashes.items() if _installed_hash(t) is not None}
    if not checked:
        pytest.skip("no ROS 2 interface packages (share/<pkg>/msg/*.json) installed")
    assert {t: _installed_hash(t) for t in checked} == checked
    assert {bags.IMAGE, bags.DETECTIONS, bags.LABEL_INFO} <= set(checked)


def test_rclpy_deserializes_the_bags_cdr(mcap_bag):
    """What `ros2 bag play` publishes: the bag's bytes as the installed message types."""
    serialization = pytest.importorskip("rclpy.serialization")
    vision = pytest.importorskip("vision_msgs.msg")
    from sensor_msgs.msg import Image

    (_, _, _, raw), = list(bags.raw_messages(mcap_bag, ["/front_left/ground_truth/detections"]))[:1]
    msg = serialization.deserialize_message(bytes(raw), vision.Detection2DArray)
    assert msg.header.frame_id == "front_left_optical" and len(msg.detections) > 0
    (_, _, _, raw), = list(bags.raw_messages(mcap_bag, ["/front/image_raw"]))[:1]
    img = serialization.deserialize_message(bytes(raw), Image)
    assert (img.width, img.height, img.encoding, img.step) == (320, 180, "rgb8", 960)


def test_compressed_sqlite3(tmp_path):
    path = tmp_path / "jpeg"
    assert generate_data(["--bag", str(path), "--steps", "2", "--size", "320x180", "--cameras", "front",
                          "--compressed", "--storage", "sqlite3"]) == 0
    info = bags.info(path)
    assert info.topics["/front/image_raw/compressed"] == bags.COMPRESSED
    assert list(path.glob("*.db3"))
    frame = next(iter(sequence(2024, 1, 10.0, (320, 180), ("front",))))[0]
    (_, ty, _, msg), = list(bags.messages(path, ["/front/image_raw/compressed"]))[:1]
    assert msg.format == "rgb8; jpeg compressed bgr8"
    px, order = bags.pixels_from_msg(msg, ty)
    rgb = px if order == "rgb" else px[..., ::-1]
    assert np.abs(rgb.astype(int) - frame.image).mean() < 4  # JPEG quality 90
