"""Frames from files for offline work (engine calibration, replay, quantization, evaluation): a folder
of images, one image, a video or GIF, or an image topic of a rosbag (ROS 2 .db3/.mcap directory or
ROS 1 .bag).

Every source yields the same tuple, a SourceFrame (pixels, order, stamp_seconds, name): H x W x 3
uint8 pixels in "bgr" or "rgb" order (as the runtime preprocessor takes them), a time stamp, and a
name for logs.
rosbags (pure Python) is imported only when a bag is read, so the other sources need only OpenCV.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Tuple

import cv2
import numpy as np

from perception_edge.core.errors import ConfigError, InputError

SourceFrame = Tuple[np.ndarray, str, float, str]  # (pixels, "bgr"|"rgb", stamp seconds, name)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
VIDEO_SUFFIXES = (".gif", ".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mjpeg")
BAG_SUFFIXES = (".bag", ".db3", ".mcap")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def source_kind(source: str) -> str:
    """"folder", "image", "video" or "rosbag" for a path; ConfigError when it is none of these."""
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"frame source not found: {source}")
    if path.is_dir():
        if (path / "metadata.yaml").is_file() or any(path.glob("*.db3")) or any(path.glob("*.mcap")):
            return "rosbag"
        return "folder"
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in BAG_SUFFIXES:
        return "rosbag"
    raise ConfigError(f"{source}: not an image folder, image, video ({', '.join(VIDEO_SUFFIXES)}) or rosbag "
                      "(.bag file, ROS 2 bag directory)")


def iter_frames(source: str, topic: str | None = None, limit: int | None = None,
                stride: int = 1) -> Iterator[SourceFrame]:
    """Yield (pixels, order, stamp_seconds, name) from source, every `stride`-th frame, at most `limit`.

    Image files are read in sorted name order; their stamp is their index in that order (a folder
    has no timing). Videos stamp frames with the container's timestamp, bags with header.stamp (the
    bag's receive time when the header is zero). `topic` is needed only for a bag with several
    image topics.
    """
    if stride < 1:
        raise ConfigError(f"stride must be >= 1, got {stride}")
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}")
    kind = source_kind(source)
    if kind != "rosbag" and topic:
        raise ConfigError(f"a topic ({topic}) was given but {source} is not a rosbag")
    frames = {"folder": _folder_frames, "image": _image_frames, "video": _video_frames,
              "rosbag": _bag_frames}[kind](source, topic, stride)
    if limit is None:
        yield from frames
        return
    if limit == 0:
        return
    for count, frame in enumerate(frames, 1):
        yield frame
        if count >= limit:
            return


def image_files(folder: str) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(path: Path) -> np.ndarray:
    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)  # grey and 16-bit files come back as 8-bit BGR
    if pixels is None:
        raise InputError(f"cannot read image {path}")
    return pixels


def _folder_frames(source: str, topic, stride: int) -> Iterator[SourceFrame]:
    files = image_files(source)
    if not files:
        raise ConfigError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {source}")
    for index in range(0, len(files), stride):
        yield _read_image(files[index]), "bgr", float(index), files[index].name


def _image_frames(source: str, topic, stride: int) -> Iterator[SourceFrame]:
    path = Path(source)
    yield _read_image(path), "bgr", 0.0, path.name


def _video_frames(source: str, topic, stride: int) -> Iterator[SourceFrame]:
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        raise ConfigError(f"cannot open video {source} (OpenCV has no reader for it)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    stem = Path(source).stem
    last_stamp = -1.0
    index = 0
    try:
        while True:
            if index % stride:
                if not cap.grab():  # skipped frames are not converted to BGR
                    return
                index += 1
                continue
            ok, pixels = cap.read()
            if not ok or pixels is None:
                return
            # POS_MSEC follows the container's own timing (GIF frame delays vary); some backends
            # leave it at 0, then the nominal frame rate gives the stamp.
            stamp = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if not stamp > last_stamp and index > 0:
                stamp = index / fps if fps > 0 else float(index)
            last_stamp = stamp
            if pixels.ndim == 2:
                pixels = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
            yield pixels, "bgr", stamp, f"{stem}#{index:06d}"
            index += 1
    finally:
        cap.release()


# -- rosbags ----------------------------------------------------------------------------------------

def _bag_path(source: str) -> Path:
    """The path rosbags opens: a ROS 1 .bag file, or a ROS 2 bag's directory (also for its .db3/.mcap)."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() in (".db3", ".mcap"):
        if (path.parent / "metadata.yaml").is_file():
            return path.parent
    return path


@contextlib.contextmanager
def _open_reader(source: str, default_store=None):
    """An opened rosbags AnyReader (ROS 1 or ROS 2 bag); ConfigError when rosbags is missing or the
    bag cannot be read. `default_store`: the typestore for bags without embedded message
    definitions (default: rosbags' Humble store)."""
    try:
        from rosbags.highlevel import AnyReader
    except ImportError:
        raise ConfigError("reading rosbags needs the 'rosbags' package: pip install rosbags") from None
    try:  # rosbags >= 0.9.20: typestores; a ROS 2 bag without embedded definitions needs one
        from rosbags.typesys import Stores, get_typestore

        if default_store is None:
            default_store = get_typestore(Stores.ROS2_HUMBLE)
    except ImportError:
        pass
    path = _bag_path(source)
    try:
        reader = AnyReader([path], default_typestore=default_store) if default_store is not None \
            else AnyReader([path])
        reader.open()
    except Exception as e:  # rosbags raises its own ReaderError types for unreadable bags
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot read rosbag {source}: {first}") from None
    try:
        yield reader
    finally:
        reader.close()


def list_image_topics(source: str) -> dict[str, str]:
    """Image topics of a bag: {topic: message type}."""
    with _open_reader(source) as reader:
        return {c.topic: c.msgtype for c in reader.connections if c.msgtype in IMAGE_TYPES}


def image_topic(source: str, topic: str | None = None) -> str:
    """The bag's image topic to read: `topic` if the bag has it, else its only image topic."""
    return _pick_topic(source, topic, list_image_topics(source))


def _pick_topic(source: str, topic: str | None, topics: dict[str, str]) -> str:
    listing = ", ".join(f"{t} ({m.rsplit('/', 1)[-1]})" for t, m in sorted(topics.items())) or "none"
    if topic:
        if topic in topics:
            return topic
        raise ConfigError(f"rosbag {source} has no image topic {topic}; image topics: {listing}")
    if len(topics) == 1:
        return next(iter(topics))
    if not topics:
        raise ConfigError(f"rosbag {source} has no sensor_msgs/Image or CompressedImage topic")
    raise ConfigError(f"rosbag {source} has several image topics, choose one with a topic: {listing}")


def pixels_from_msg(msg, msgtype: str, max_pixels: int = 1 << 24) -> tuple[np.ndarray, str]:
    """An Image / CompressedImage -> (H x W x 3 uint8, "rgb" | "bgr"), as the runtime converts them
    (limits.max_image_pixels checked before decoding)."""
    from perception_edge.core.image_conversion import compressed_to_pixels, image_to_pixels

    if msgtype.endswith("CompressedImage"):
        return compressed_to_pixels(msg.format, msg.data, max_pixels)
    return image_to_pixels(msg.width, msg.height, msg.encoding, msg.step, msg.is_bigendian, msg.data, max_pixels)


def _bag_frames(source: str, topic: str | None, stride: int) -> Iterator[SourceFrame]:
    with _open_reader(source) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections if c.msgtype in IMAGE_TYPES}
        chosen = _pick_topic(source, topic, topics)
        connections = [c for c in reader.connections if c.topic == chosen]
        for index, (connection, bag_ns, raw) in enumerate(reader.messages(connections=connections)):
            if index % stride:
                continue
            msg = reader.deserialize(raw, connection.msgtype)
            pixels, order = pixels_from_msg(msg, connection.msgtype)
            stamp = getattr(getattr(msg, "header", None), "stamp", None)
            seconds = stamp.sec + stamp.nanosec * 1e-9 if stamp is not None else 0.0
            if seconds == 0.0:
                seconds = bag_ns * 1e-9
            # Image views alias the deserialized message buffer; copy so frames outlive the reader.
            yield np.array(pixels, copy=True), order, seconds, f"{chosen}#{index}"


__all__ = ["SourceFrame", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "BAG_SUFFIXES", "IMAGE_TYPES", "source_kind",
           "iter_frames", "image_files", "list_image_topics", "image_topic"]
