"""Rosbag2 files of perception_edge, read and written with rosbags (pure Python, no ROS install).

One topic layout for every bag the package writes or reads, per camera namespace ``<ns>`` (e.g.
``/front``; the namespace of the camera's image topic, core.topics.camera_namespace):

| topic | type | in |
| --- | --- | --- |
| ``<ns>/image_raw`` (``/compressed``) | sensor_msgs/Image (CompressedImage) | ground-truth bags, CARLA results |
| ``<ns>/camera_info`` | sensor_msgs/CameraInfo | ground-truth bags |
| ``<ns>/ground_truth/detections`` | vision_msgs/Detection2DArray (class_id = class name, score 1) | ground truth |
| ``<ns>/ground_truth/lane_mask`` | sensor_msgs/Image mono8 (0 background, 1 lane marking) | ground truth |
| ``<ns>/detections`` | vision_msgs/Detection2DArray | results (what the container publishes) |
| ``<ns>/lane_mask`` | sensor_msgs/Image mono8 | results |
| ``<ns>/label_info`` | vision_msgs/LabelInfo | results |
| ``<ns>/replay/input`` | std_msgs/Header (the input frame's header) | results: one per frame sent |
| ``/diagnostics`` | diagnostic_msgs/DiagnosticArray | results (live) |
| ``/tf_static`` | tf2_msgs/TFMessage | ground-truth bags (base_link -> camera frames) |

Headers: every output and ground-truth message carries its input frame's header (stamp,
frame_id), so results pair with ground truth by (namespace, stamp). Bag (log) time: a ground-truth
bag logs each message at its stamp; a live results bag logs each message at the wall-clock time the
recorder received it (``replay/input``: when it was published), so latency = output log time -
input log time; an offline results bag logs outputs at their input's stamp (no latency, and
bit-identical reruns).

Bags are MCAP by default (message definitions embedded), sqlite3 on request; rosbag2 metadata
version 8 with type hashes (RIHS01; the vision_msgs hashes equal those of the built vision_msgs),
the layout `ros2 bag info/play` of Iron, Jazzy and Kilted read. Humble's rosbag2 writes version 5;
it skips fields it does not know, and where it refuses a newer bag, `ros2 bag reindex` on Humble
rewrites metadata.yaml (the rosbag2 maintainers' advice). ros2cli cannot be installed here, so
neither was run against these bags; rosbags reads them back in the tests.
"""
from __future__ import annotations

import contextlib
import functools
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np

from perception_edge.core.detections import Detections
from perception_edge.core.errors import ConfigError
from perception_edge.core.topics import camera_namespace
from perception_edge.data.frame_sources import _open_reader, pixels_from_msg  # noqa: F401 (bags.pixels_from_msg)

STORAGES = ("mcap", "sqlite3")
OUTPUT_IMAGES = ("lane_mask", "instance_mask", "debug_image")  # <camera ns>/<name>: not camera frames
RESULTS_DIR = "results"  # offline replay and the CARLA loop write OUTPUT/results
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
DETECTIONS = "vision_msgs/msg/Detection2DArray"
LABEL_INFO = "vision_msgs/msg/LabelInfo"
HEADER = "std_msgs/msg/Header"
DIAGNOSTICS = "diagnostic_msgs/msg/DiagnosticArray"
TF = "tf2_msgs/msg/TFMessage"
CLOCK = "rosgraph_msgs/msg/Clock"
IMAGE_TYPES = (IMAGE, COMPRESSED)

GT_DETECTIONS = "ground_truth/detections"
GT_LANE_MASK = "ground_truth/lane_mask"
INPUT_HEADER = "replay/input"

# metadata.yaml custom_data of the bags this package writes (perception_edge.bag_report reads them)
CUSTOM_DATA_KEYS = {
    "perception_edge.kind": "ground_truth | results",
    "perception_edge.mode": "results: offline | live | carla (offline, carla: outputs logged at their input's stamp)",
    "perception_edge.source_bag": "results: the replayed bag (absolute path; ground truth and frames are read from it)",
    "perception_edge.cameras": "results: JSON list of the replayed image topics",
    "perception_edge.detection_model": "results: the detection model file",
    "perception_edge.segmentation_model": "results: the segmentation model file",
    "perception_edge.config": "results: JSON of the configuration (dotted schema names)",
    "perception_edge.seed": "ground truth: the synthetic drive's seed",
    "perception_edge.carla": "results of a CARLA run: JSON of host, port, town, delta, seed, weather",
    "perception_edge.source": "live results: the replayed video / image folder (not a bag)",
    "perception_edge.rate": "live results: the factor of the recorded timing",
    "perception_edge.lockstep": "live results: true | false (each step waited for its results)",
    "perception_edge.remap": "live results: OLD:=NEW,... image topics published under another name",
}


# -- topic names ------------------------------------------------------------------------------------

def image_topic(ns: str, compressed: bool = False) -> str:
    return f"{ns}/image_raw/compressed" if compressed else f"{ns}/image_raw"


def camera_info_topic(ns: str) -> str:
    return f"{ns}/camera_info"


def topic(ns: str, name: str) -> str:
    """<ns>/<name>: name one of "detections", "lane_mask", "label_info", GT_DETECTIONS, GT_LANE_MASK,
    INPUT_HEADER."""
    return f"{ns}/{name}"


def namespace_of(image_topic_name: str) -> str:
    return camera_namespace(image_topic_name)


# -- message definitions ------------------------------------------------------------------------------

# vision_msgs 4.x (Humble ... Kilted): not in rosbags' typestores, registered from their .msg text
# so that bags are written and read without a vision_msgs install.
VISION_MSGS = {
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": "vision_msgs/ObjectHypothesis hypothesis\n"
                                                "geometry_msgs/PoseWithCovariance pose\n",
    "vision_msgs/msg/Detection2D": "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
                                   "vision_msgs/BoundingBox2D bbox\nstring id\n",
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
    "vision_msgs/msg/VisionClass": "uint16 class_id\nstring class_name\n",
    "vision_msgs/msg/LabelInfo": "std_msgs/Header header\nvision_msgs/VisionClass[] class_map\nfloat32 threshold\n",
}


def _rosbags():
    try:
        import rosbags  # noqa: F401
    except ImportError:
        raise ConfigError("rosbags are read and written with the 'rosbags' package: pip install rosbags") from None


@functools.lru_cache(maxsize=1)
def typestore():
    """rosbags' Humble typestore plus vision_msgs (messages of every bag this package writes)."""
    _rosbags()
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    types: dict = {}
    for name, text in VISION_MSGS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def _t(name: str):
    return typestore().types[name]


def _time(ns: int):
    return _t("builtin_interfaces/msg/Time")(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def header(stamp_ns: int, frame_id: str):
    return _t(HEADER)(stamp=_time(stamp_ns), frame_id=str(frame_id))


def stamp_ns(msg) -> int:
    """header.stamp of a deserialized message, in nanoseconds."""
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


def image_msg(pixels: np.ndarray, stamp: int, frame_id: str, encoding: str = "rgb8"):
    """sensor_msgs/Image from H x W x 3 (rgb8 / bgr8) or H x W (mono8) uint8 pixels."""
    px = np.ascontiguousarray(pixels, np.uint8)
    h, w = px.shape[:2]
    channels = 1 if px.ndim == 2 else px.shape[2]
    return _t(IMAGE)(header=header(stamp, frame_id), height=h, width=w, encoding=encoding, is_bigendian=0,
                     step=w * channels, data=px.reshape(-1))


def compressed_msg(rgb: np.ndarray, stamp: int, frame_id: str, quality: int = 90):
    """sensor_msgs/CompressedImage (JPEG) in image_transport's format string."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ConfigError("JPEG encoding failed")
    return _t(COMPRESSED)(header=header(stamp, frame_id), format="rgb8; jpeg compressed bgr8",
                          data=np.asarray(buf, np.uint8).reshape(-1))


def camera_info_msg(width: int, height: int, fx: float, fy: float, cx: float, cy: float, stamp: int,
                    frame_id: str):
    """sensor_msgs/CameraInfo of an ideal pinhole camera (plumb_bob, zero distortion)."""
    k = np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], np.float64)
    p = np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], np.float64)
    roi = _t("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _t(CAMERA_INFO)(header=header(stamp, frame_id), height=int(height), width=int(width),
                           distortion_model="plumb_bob", d=np.zeros(5, np.float64), k=k,
                           r=np.eye(3, dtype=np.float64).reshape(-1), p=p, binning_x=0, binning_y=0, roi=roi)


def _pose_with_covariance():
    g = typestore().types
    pose = g["geometry_msgs/msg/Pose"](position=g["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                                       orientation=g["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
    return g["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36, np.float64))


def detections_msg(dets: Detections, stamp: int, frame_id: str):
    """vision_msgs/Detection2DArray as the detection node publishes it: one hypothesis per box,
    class_id = class name, bbox centre and size in source pixels."""
    g = typestore().types
    hdr = header(stamp, frame_id)
    pose = _pose_with_covariance()
    items = []
    boxes = np.asarray(dets.boxes, np.float64).reshape(-1, 4)
    for name, score, (x1, y1, x2, y2) in zip(dets.names(), np.asarray(dets.scores, np.float64).tolist(),
                                             boxes.tolist()):
        center = g["vision_msgs/msg/Pose2D"](position=g["vision_msgs/msg/Point2D"](x=(x1 + x2) / 2, y=(y1 + y2) / 2),
                                             theta=0.0)
        bbox = g["vision_msgs/msg/BoundingBox2D"](center=center, size_x=x2 - x1, size_y=y2 - y1)
        hyp = g["vision_msgs/msg/ObjectHypothesisWithPose"](
            hypothesis=g["vision_msgs/msg/ObjectHypothesis"](class_id=name, score=float(score)), pose=pose)
        items.append(g["vision_msgs/msg/Detection2D"](header=hdr, results=[hyp], bbox=bbox, id=""))
    return g[DETECTIONS](header=hdr, detections=items)


def label_info_msg(class_names: Sequence[str], threshold: float, stamp: int = 0, frame_id: str = ""):
    g = typestore().types
    return g[LABEL_INFO](header=header(stamp, frame_id), threshold=float(threshold),
                         class_map=[g["vision_msgs/msg/VisionClass"](class_id=i, class_name=str(n))
                                    for i, n in enumerate(class_names)])


def tf_static_msg(transforms: Iterable[tuple[str, str, Sequence[float], Sequence[float]]], stamp: int = 0):
    """tf2_msgs/TFMessage from (parent, child, xyz, quaternion xyzw) tuples."""
    g = typestore().types
    out = []
    for parent, child, xyz, q in transforms:
        tr = g["geometry_msgs/msg/Transform"](
            translation=g["geometry_msgs/msg/Vector3"](x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])),
            rotation=g["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))
        out.append(g["geometry_msgs/msg/TransformStamped"](header=header(stamp, parent), child_frame_id=child,
                                                            transform=tr))
    return g[TF](transforms=out)


def optical_frame_quaternion(yaw_deg: float, pitch_rad: float = 0.0) -> tuple[float, float, float, float]:
    """base_link (x forward, y left, z up; REP 103) -> camera optical frame (z forward, x right, y
    down; REP 103) of a camera yawed by yaw_deg (positive: to the right) and pitched down by pitch_rad."""
    yaw = -math.radians(yaw_deg)  # REP 103 yaw is positive to the left
    rz = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
    ry = np.array([[math.cos(pitch_rad), 0, math.sin(pitch_rad)], [0, 1, 0],
                   [-math.sin(pitch_rad), 0, math.cos(pitch_rad)]])
    optical = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], np.float64)  # columns: optical x, y, z in body axes
    r = rz @ ry @ optical
    w = math.sqrt(max(0.0, 1 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    return (x, y, z, w)


# -- messages -> arrays ---------------------------------------------------------------------------------

def detections_from_msg(msg, class_names: Sequence[str] | None = None) -> Detections:
    """A Detection2DArray (rosbags or rclpy message) -> Detections (xyxy). Class ids index
    `class_names`; names not in it are appended (so ground truth and predictions share one list
    when the same list object is passed for both)."""
    names = list(class_names) if class_names is not None else []
    index = {n: i for i, n in enumerate(names)}
    n = len(msg.detections)
    boxes = np.zeros((n, 4), np.float32)
    scores = np.zeros(n, np.float32)
    ids = np.zeros(n, np.int64)
    for i, d in enumerate(msg.detections):
        cx, cy = d.bbox.center.position.x, d.bbox.center.position.y
        boxes[i] = (cx - d.bbox.size_x / 2, cy - d.bbox.size_y / 2, cx + d.bbox.size_x / 2, cy + d.bbox.size_y / 2)
        label = d.results[0].hypothesis.class_id if d.results else ""
        scores[i] = d.results[0].hypothesis.score if d.results else 0.0
        if label not in index:
            index[label] = len(names)
            names.append(label)
        ids[i] = index[label]
    if class_names is not None and isinstance(class_names, list):
        class_names[len(class_names):] = names[len(class_names):]
    return Detections(boxes, scores, ids, names)


def mono8_from_msg(msg) -> np.ndarray:
    """A mono8 Image (rosbags or rclpy message) -> H x W uint8 (a copy)."""
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, np.uint8)
    return data.reshape(msg.height, msg.step)[:, :msg.width].copy()


# -- writing ------------------------------------------------------------------------------------------------

class BagWriter:
    """A rosbag2 (MCAP or sqlite3) written with rosbags; connections are added on first use.

    write(topic, msgtype, msg, log_ns) serializes a rosbags message; write_raw takes CDR bytes as
    received from rclpy (``raw=True`` subscriptions), so a live recorder never deserializes."""

    def __init__(self, path: str | Path, storage: str = "mcap", custom_data: dict[str, str] | None = None):
        _rosbags()
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise ConfigError(f"bag storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise ConfigError(f"{self.path} exists: a bag is written into a new directory")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=8, storage_plugin=plugin)
        for k, v in (custom_data or {}).items():
            self._writer.set_custom_data(k, str(v))
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def connection(self, topic_name: str, msgtype: str, qos: str = "default"):
        """The topic's connection (added on first use, with offered QoS `qos`: "default" (reliable,
        volatile), "sensor_data" (best effort) or "latched" (reliable, transient local))."""
        conn = self._connections.get(topic_name)
        if conn is None:
            conn = self._writer.add_connection(topic_name, msgtype, typestore=typestore(),
                                               offered_qos_profiles=offered_qos(qos))
            self._connections[topic_name] = conn
        elif conn.msgtype != msgtype:
            raise ConfigError(f"{topic_name}: written as {conn.msgtype}, now given {msgtype}")
        return conn

    def write(self, topic_name: str, msgtype: str, msg, log_ns: int, qos: str = "default") -> None:
        data = typestore().serialize_cdr(msg, msgtype)
        self.write_raw(topic_name, msgtype, data, log_ns, qos)

    def write_raw(self, topic_name: str, msgtype: str, data: bytes | memoryview, log_ns: int,
                  qos: str = "default") -> None:
        self._writer.write(self.connection(topic_name, msgtype, qos), int(log_ns), data)
        self.counts[topic_name] = self.counts.get(topic_name, 0) + 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def offered_qos(kind: str = "default") -> list:
    """rosbags Qos records for metadata.yaml's offered_qos_profiles (what `ros2 bag play` offers):
    "default" (reliable, volatile, keep last 10), "sensor_data" (best effort, keep last 5),
    "latched" (reliable, transient local, keep last 1: /tf_static, label_info)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    if kind not in ("default", "sensor_data", "latched"):
        raise ConfigError(f"QoS must be default, sensor_data or latched, got {kind!r}")
    zero = QosTime(0, 0)
    reliability = QosReliability.BEST_EFFORT if kind == "sensor_data" else QosReliability.RELIABLE
    durability = QosDurability.TRANSIENT_LOCAL if kind == "latched" else QosDurability.VOLATILE
    depth = {"default": 10, "sensor_data": 5, "latched": 1}[kind]
    return [Qos(QosHistory.KEEP_LAST, depth, reliability, durability, zero, zero, QosLiveliness.AUTOMATIC, zero,
                False)]


# -- reading --------------------------------------------------------------------------------------------

@dataclass
class BagInfo:
    path: str
    topics: dict[str, str]  # topic -> message type
    counts: dict[str, int]
    start_ns: int
    end_ns: int
    custom_data: dict[str, str] = field(default_factory=dict)

    def image_topics(self) -> list[str]:
        """The camera image topics: image topics other than the ground-truth and output images."""
        return sorted(t for t, m in self.topics.items() if m in IMAGE_TYPES and not t.endswith(GT_LANE_MASK)
                      and t[len(camera_namespace(t)) + 1:] not in OUTPUT_IMAGES)

    def listing(self, types: Sequence[str] | None = None) -> str:
        items = [(t, m) for t, m in sorted(self.topics.items()) if types is None or m in types]
        return ", ".join(f"{t} ({m.rsplit('/', 1)[-1]})" for t, m in items) or "none"


@contextlib.contextmanager
def open_bag(path: str | Path):
    """An opened rosbags AnyReader that also knows vision_msgs; ConfigError (one line) when the bag
    cannot be read."""

    with _open_reader(str(path), typestore()) as reader:
        yield reader


def info(path: str | Path) -> BagInfo:
    with open_bag(path) as reader:
        counts: dict[str, int] = {}
        for c in reader.connections:
            counts[c.topic] = counts.get(c.topic, 0) + c.msgcount
        return BagInfo(str(path), {c.topic: c.msgtype for c in reader.connections}, counts,
                       int(reader.start_time), int(reader.end_time), _custom_data(Path(path)))


def _custom_data(path: Path) -> dict[str, str]:
    """metadata.yaml's custom_data of a ROS 2 bag ({} for other bags)."""
    meta = (path if path.is_dir() else path.parent) / "metadata.yaml"
    if not meta.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(meta.read_text()) or {}
    except yaml.YAMLError:
        return {}
    custom = (data.get("rosbag2_bagfile_information") or {}).get("custom_data") or {}
    return {str(k): str(v) for k, v in custom.items()}


def check_topics(bag: BagInfo, wanted: Sequence[str], types: Sequence[str] = IMAGE_TYPES) -> None:
    """ConfigError naming the topic and what is available when a wanted topic is missing or not of `types`."""
    for t in wanted:
        if t not in bag.topics:
            raise ConfigError(f"{bag.path}: no topic {t}; topics of type "
                              f"{'/'.join(x.rsplit('/', 1)[-1] for x in types)}: {bag.listing(types)}")
        if bag.topics[t] not in types:
            raise ConfigError(f"{bag.path}: {t} is a {bag.topics[t]}, not "
                              f"{' or '.join(types)}; such topics: {bag.listing(types)}")


def messages(path: str | Path, topics: Sequence[str], start_ns: int | None = None,
             stop_ns: int | None = None) -> Iterator[tuple[str, str, int, Any]]:
    """(topic, msgtype, log_ns, deserialized message) of `topics` in log-time order, one at a time
    (nothing is held beyond the current message)."""
    yield from _read(path, topics, start_ns, stop_ns, raw=False)


def raw_messages(path: str | Path, topics: Sequence[str], start_ns: int | None = None,
                 stop_ns: int | None = None) -> Iterator[tuple[str, str, int, bytes]]:
    """As messages(), with the CDR bytes instead of deserialized messages (for republishing; a ROS 1
    bag's messages are converted to CDR, what a ROS 2 publisher sends)."""
    yield from _read(path, topics, start_ns, stop_ns, raw=True)


def _read(path: str | Path, topics: Sequence[str], start_ns: int | None, stop_ns: int | None,
          raw: bool) -> Iterator[tuple[str, str, int, Any]]:
    if not topics:  # (rosbags reads every connection when given none)
        return
    with open_bag(path) as reader:
        conns = [c for c in reader.connections if c.topic in set(topics)]
        kwargs = {}
        if start_ns is not None:
            kwargs["start"] = int(start_ns)
        if stop_ns is not None:
            kwargs["stop"] = int(stop_ns)
        ros1 = not getattr(reader, "is2", True)
        for conn, log_ns, data in reader.messages(connections=conns, **kwargs):
            if not raw:
                yield conn.topic, conn.msgtype, int(log_ns), reader.deserialize(data, conn.msgtype)
            else:
                if ros1:
                    data = reader.typestore.ros1_to_cdr(data, conn.msgtype)
                yield conn.topic, conn.msgtype, int(log_ns), bytes(data)


def recorded_qos(path: str | Path, topics: Sequence[str]) -> dict[str, str]:
    """{topic: "default" | "sensor_data" | "latched"}: the QoS each topic was recorded with
    (metadata's offered_qos_profiles; "default" where the bag does not say, e.g. ROS 1 bags)."""
    out = {t: "default" for t in topics}
    with open_bag(path) as reader:
        for c in reader.connections:
            if c.topic not in out:
                continue
            profiles = getattr(getattr(c, "ext", None), "offered_qos_profiles", None) or []
            for q in profiles if isinstance(profiles, list) else []:
                if getattr(getattr(q, "reliability", None), "name", "") == "BEST_EFFORT":
                    out[c.topic] = "sensor_data"
                elif getattr(getattr(q, "durability", None), "name", "") == "TRANSIENT_LOCAL":
                    out[c.topic] = "latched"
    return out


_STAMP = struct.Struct("<iII")
_STAMP_BE = struct.Struct(">iII")


def cdr_header(data: bytes | memoryview) -> tuple[int, str, int]:
    """(stamp ns, frame_id, header length) of a CDR message whose first field is a std_msgs/Header
    (Image, CompressedImage, Detection2DArray, LabelInfo, Header itself), read without
    deserializing; data[:length] is that Header as a CDR message of its own."""
    big = bytes(data[1:2]) == b"\x00"  # encapsulation CDR_BE (0x0000) or CDR_LE (0x0001)
    sec, nanosec, n = (_STAMP_BE if big else _STAMP).unpack_from(data, 4)
    if not 0 < n <= len(data) - 16:
        raise ConfigError(f"not a CDR message starting with a std_msgs/Header ({len(data)} bytes)")
    return sec * 1_000_000_000 + nanosec, bytes(data[16:16 + n - 1]).decode("utf-8", "replace"), 16 + n


def camera_steps(path: str | Path, topics: Sequence[str], slop_s: float = 0.05
                 ) -> Iterator[list[tuple[str, str, int, Any]]]:
    """The frames of `topics` grouped into time steps as the fusion node batches cameras, streamed
    (one step held): messages(...) tuples, at most one per topic, in `topics` order, whose header
    stamps lie within slop_s of the step's first frame. A topic seen again or a stamp past the slop
    closes the step (a step may hold fewer topics; nothing is dropped)."""
    order = {t: i for i, t in enumerate(topics)}
    slop_ns = int(round(slop_s * 1e9))
    pending: dict[str, tuple[str, str, int, Any]] = {}
    first = 0
    for item in messages(path, topics):
        stamp = stamp_ns(item[3])
        if pending and (item[0] in pending or abs(stamp - first) > slop_ns):
            yield sorted(pending.values(), key=lambda m: order[m[0]])
            pending = {}
        if not pending:
            first = stamp
        pending[item[0]] = item
        if len(pending) == len(order):
            yield sorted(pending.values(), key=lambda m: order[m[0]])
            pending = {}
    if pending:
        yield sorted(pending.values(), key=lambda m: order[m[0]])


@dataclass
class Truth:
    detections: Detections | None = None
    lane_mask: np.ndarray | None = None


def ground_truth(path: str | Path, class_names: list[str], mask_transform=None, progress: bool = False
                 ) -> dict[tuple[str, int], Truth]:
    """{(namespace, stamp_ns): Truth} of a bag's ground_truth topics (class ids index class_names,
    which is extended with names it lacks). mask_transform(mask) -> what Truth.lane_mask keeps
    (e.g. PNG bytes, so that a long bag's masks stay small in memory); default the H x W array."""
    bag = info(path)
    wanted = [t for t in bag.topics if t.endswith("/" + GT_DETECTIONS) or t.endswith("/" + GT_LANE_MASK)]
    out: dict[tuple[str, int], Truth] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(bag.counts[t] for t in wanted), desc="ground truth", unit="msg")
    for t, _, _, msg in messages(path, wanted):
        if t.endswith(GT_DETECTIONS):
            ns = t[: -len(GT_DETECTIONS) - 1]
            out.setdefault((ns, stamp_ns(msg)), Truth()).detections = detections_from_msg(msg, class_names)
        else:
            ns = t[: -len(GT_LANE_MASK) - 1]
            mask = mono8_from_msg(msg)
            out.setdefault((ns, stamp_ns(msg)), Truth()).lane_mask = mask_transform(mask) if mask_transform else mask
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out


# -- the synthetic drive as a ground-truth bag -------------------------------------------------------

SYNTHETIC_START_NS = 1_700_000_000 * 1_000_000_000  # a fixed, realistic epoch: identical bags per seed


def write_synthetic_bag(out: str | Path, steps: int, size: tuple[int, int] = (1280, 720), seed: int = 2024,
                        cameras: Sequence[str] = ("front", "front_left", "front_right"), fps: float = 10.0,
                        compressed: bool = False, storage: str = "mcap", progress: bool = False) -> BagInfo:
    """The synthetic multi-camera drive (data.synthetic.sequence) as a ground-truth bag: per camera
    namespace /<camera>: image_raw (or image_raw/compressed), camera_info, ground_truth/detections,
    ground_truth/lane_mask; /tf_static with base_link -> <camera>_optical. Stamps (and log times)
    start at SYNTHETIC_START_NS and advance by 1/fps."""
    from perception_edge.data.synthetic import CAMERA_POSES, CLASSES, sample_scene, sequence

    for c in cameras:
        if c not in CAMERA_POSES:
            raise ConfigError(f"unknown synthetic camera {c!r}; cameras: {', '.join(CAMERA_POSES)}")
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    scene = sample_scene(seed)
    w, h = size
    f = (w / 2) / math.tan(scene.hfov / 2)
    frames_of = {c: f"{c}_optical" for c in cameras}
    period = int(round(1e9 / fps))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="generate bag", unit="step")
    with BagWriter(out, storage, custom_data={"perception_edge.kind": "ground_truth",
                                              "perception_edge.seed": str(seed)}) as bag:
        tf = [("base_link", frames_of[c], (1.5, -CAMERA_POSES[c].x_offset, scene.cam_height),
               optical_frame_quaternion(CAMERA_POSES[c].yaw_deg, scene.pitch)) for c in cameras]
        bag.write("/tf_static", TF, tf_static_msg(tf, SYNTHETIC_START_NS), SYNTHETIC_START_NS, qos="latched")
        for k, frames in enumerate(sequence(seed, steps, fps, size, cameras)):
            t = SYNTHETIC_START_NS + k * period
            for fr in frames:
                ns, fid = f"/{fr.camera}", frames_of[fr.camera]
                if compressed:
                    bag.write(image_topic(ns, True), COMPRESSED, compressed_msg(fr.image, t, fid), t)
                else:
                    bag.write(image_topic(ns), IMAGE, image_msg(fr.image, t, fid, "rgb8"), t)
                bag.write(camera_info_topic(ns), CAMERA_INFO, camera_info_msg(w, h, f, f, w / 2, h / 2, t, fid), t)
                gt = Detections(fr.boxes, np.ones(len(fr.boxes), np.float32), fr.class_ids, list(CLASSES))
                bag.write(topic(ns, GT_DETECTIONS), DETECTIONS, detections_msg(gt, t, fid), t)
                bag.write(topic(ns, GT_LANE_MASK), IMAGE, image_msg((fr.mask == 1).astype(np.uint8), t, fid, "mono8"),
                          t)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return info(out)
