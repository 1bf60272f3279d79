"""Frame sources: a folder of real frames, one image, the real driving GIF, and rosbags (ROS 2
sqlite3 and mcap, ROS 1) with Image and CompressedImage topics written at test time."""
from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from perception_edge.core.errors import ConfigError
from perception_edge.data.frame_sources import image_topic, iter_frames, list_image_topics, source_kind

from conftest import DRIVING


@pytest.fixture(scope="module")
def gif_path():
    path = DRIVING / "input1.gif"
    if not path.is_file():
        pytest.skip(f"{path} not found (see README: test data)")
    return path


def test_folder_of_real_frames(frame_paths):
    folder = str(frame_paths[0].parent)
    assert source_kind(folder) == "folder"
    frames = list(iter_frames(folder))
    assert [f[3] for f in frames] == [p.name for p in frame_paths]  # sorted, images only
    pixels, order, stamp, _ = frames[0]
    assert order == "bgr" and pixels.shape == (720, 1280, 3) and pixels.dtype == np.uint8
    assert np.array_equal(pixels, cv2.imread(str(frame_paths[0])))
    assert [f[2] for f in frames] == [float(i) for i in range(len(frame_paths))]
    strided = list(iter_frames(folder, stride=3, limit=2))
    assert [f[3] for f in strided] == [frame_paths[0].name, frame_paths[3].name]
    assert [f[2] for f in strided] == [0.0, 3.0]
    assert list(iter_frames(folder, limit=0)) == []


def test_single_image(frame_paths):
    frames = list(iter_frames(str(frame_paths[1])))
    assert len(frames) == 1 and frames[0][3] == frame_paths[1].name and frames[0][0].shape == (720, 1280, 3)


def test_gif(gif_path):
    assert source_kind(str(gif_path)) == "video"
    frames = list(iter_frames(str(gif_path)))
    assert len(frames) == 72
    assert all(f[0].shape == (240, 320, 3) and f[1] == "bgr" for f in frames)
    stamps = [f[2] for f in frames]
    assert stamps[0] == 0.0 and all(b > a for a, b in zip(stamps, stamps[1:]))
    assert 5.0 < stamps[-1] < 15.0  # a few seconds of clip
    assert frames[5][3] == "input1#000005"
    every_tenth = list(iter_frames(str(gif_path), stride=10))
    assert [f[3] for f in every_tenth] == [f"input1#{i:06d}" for i in range(0, 72, 10)]
    assert np.array_equal(every_tenth[2][0], frames[20][0])
    assert len(list(iter_frames(str(gif_path), limit=5))) == 5


def test_bad_sources(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        list(iter_frames(str(tmp_path / "missing")))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="not an image folder"):
        list(iter_frames(str(tmp_path / "notes.txt")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no images"):
        list(iter_frames(str(empty)))
    with pytest.raises(ConfigError, match="stride"):
        list(iter_frames(str(empty), stride=0))
    cv2.imwrite(str(empty / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ConfigError, match="not a rosbag"):
        list(iter_frames(str(empty), topic="/cam"))


# -- rosbags ---------------------------------------------------------------------------------------

def camera_frames(n=4):
    """Small distinct frames (a gradient plus the frame index)."""
    y, x = np.mgrid[0:48, 0:64]
    return [np.dstack([(x * 4 + i) % 256, (y * 5) % 256, np.full_like(x, 40 * i)]).astype(np.uint8) for i in range(n)]


def image_messages(store, rgb_frames, stamp0=100):
    Image = store.types["sensor_msgs/msg/Image"]
    CompressedImage = store.types["sensor_msgs/msg/CompressedImage"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    raw, compressed = [], []
    for i, rgb in enumerate(rgb_frames):
        stamp = Time(sec=stamp0 + i, nanosec=500_000_000)
        try:
            header = Header(stamp=stamp, frame_id="cam")
        except TypeError:  # ROS 1 headers also carry a sequence number
            header = Header(seq=i, stamp=stamp, frame_id="cam")
        h, w, _ = rgb.shape
        raw.append(Image(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                         data=rgb.reshape(-1).copy()))
        ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))  # lossless: exact comparison
        compressed.append(CompressedImage(header=header, format="png", data=png.reshape(-1)))
    return raw, compressed


def write_ros2_bag(path, storage="sqlite3", n=4):
    pytest.importorskip("rosbags")
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    try:  # rosbags >= 0.10 writes mcap too and takes the bag format version
        from rosbags.rosbag2 import StoragePlugin

        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        open_writer = lambda: Writer(path, version=9, storage_plugin=plugin)  # noqa: E731
    except ImportError:  # older rosbags (the last for Python 3.8): sqlite3 only
        if storage != "sqlite3":
            pytest.skip(f"this rosbags version cannot write {storage} bags")
        open_writer = lambda: Writer(path)  # noqa: E731
    store = get_typestore(Stores.ROS2_HUMBLE)
    frames = camera_frames(n)
    raw, compressed = image_messages(store, frames)
    with open_writer() as writer:
        c_raw = writer.add_connection("/cam_front/image_raw", "sensor_msgs/msg/Image", typestore=store)
        c_comp = writer.add_connection("/cam_front/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
                                       typestore=store)
        c_other = writer.add_connection("/speed", "std_msgs/msg/Float32", typestore=store)
        Float32 = store.types["std_msgs/msg/Float32"]
        for i in range(n):
            t = (200 + i) * 10**9
            writer.write(c_raw, t, store.serialize_cdr(raw[i], "sensor_msgs/msg/Image"))
            writer.write(c_comp, t + 1, store.serialize_cdr(compressed[i], "sensor_msgs/msg/CompressedImage"))
            writer.write(c_other, t + 2, store.serialize_cdr(Float32(data=1.0), "std_msgs/msg/Float32"))
    return frames


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_ros2_bag_image_and_compressed_topics(tmp_path, storage):
    bag = tmp_path / f"drive_{storage}"
    frames = write_ros2_bag(bag, storage)
    assert source_kind(str(bag)) == "rosbag"
    assert list_image_topics(str(bag)) == {"/cam_front/image_raw": "sensor_msgs/msg/Image",
                                           "/cam_front/image_raw/compressed": "sensor_msgs/msg/CompressedImage"}
    raw = list(iter_frames(str(bag), topic="/cam_front/image_raw"))
    assert len(raw) == 4
    for i, (pixels, order, stamp, name) in enumerate(raw):
        assert order == "rgb" and np.array_equal(pixels, frames[i]) and pixels.flags.writeable
        assert stamp == pytest.approx(100 + i + 0.5) and name == f"/cam_front/image_raw#{i}"
    comp = list(iter_frames(str(bag), topic="/cam_front/image_raw/compressed", stride=2))
    assert len(comp) == 2
    for (pixels, order, stamp, _), i in zip(comp, (0, 2)):
        assert order == "bgr" and np.array_equal(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB), frames[i])
        assert stamp == pytest.approx(100 + i + 0.5)
    assert len(list(iter_frames(str(bag), topic="/cam_front/image_raw", limit=3))) == 3


def test_bag_topic_errors_list_the_image_topics(tmp_path):
    bag = tmp_path / "drive"
    write_ros2_bag(bag)
    with pytest.raises(ConfigError, match=r"no image topic /cam_rear/image_raw; image topics: "
                                          r"/cam_front/image_raw \(Image\), /cam_front/image_raw/compressed "
                                          r"\(CompressedImage\)"):
        list(iter_frames(str(bag), topic="/cam_rear/image_raw"))
    with pytest.raises(ConfigError, match="several image topics"):
        list(iter_frames(str(bag)))
    with pytest.raises(ConfigError, match="no image topic /speed"):
        image_topic(str(bag), "/speed")
    assert image_topic(str(bag), "/cam_front/image_raw") == "/cam_front/image_raw"
    # the .db3 file itself opens its bag
    db3 = next(bag.glob("*.db3"))
    assert len(list(iter_frames(str(db3), topic="/cam_front/image_raw"))) == 4


def test_ros1_bag(tmp_path):
    pytest.importorskip("rosbags")
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC)
    frames = camera_frames(3)
    raw, _ = image_messages(store, frames, stamp0=0)
    bag = tmp_path / "drive.bag"
    with Writer(bag) as writer:
        conn = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        for i, msg in enumerate(raw):
            msg.header.stamp.sec = 0  # no header stamp: the bag's receive time is used
            msg.header.stamp.nanosec = 0
            writer.write(conn, (50 + i) * 10**9, store.serialize_ros1(msg, "sensor_msgs/msg/Image"))
    got = list(iter_frames(str(bag)))  # one image topic: no topic needed
    assert [f[3] for f in got] == ["/camera/image_raw#0", "/camera/image_raw#1", "/camera/image_raw#2"]
    assert all(np.array_equal(f[0], frames[i]) and f[1] == "rgb" for i, f in enumerate(got))
    assert [f[2] for f in got] == [50.0, 51.0, 52.0]


def test_missing_rosbags_is_a_clear_error(tmp_path, monkeypatch):
    bag = tmp_path / "b.bag"
    bag.write_bytes(b"#ROSBAG V2.0\n")
    monkeypatch.setitem(sys.modules, "rosbags.highlevel", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match="needs the 'rosbags' package: pip install rosbags"):
        list(iter_frames(str(bag)))


def test_unreadable_bag(tmp_path):
    pytest.importorskip("rosbags")
    bag = tmp_path / "broken.bag"
    bag.write_bytes(b"not a bag at all")
    with pytest.raises(ConfigError, match="cannot read rosbag"):
        list(iter_frames(str(bag)))
