"""Detections -> a serialized vision_msgs/Detection2DArray (CDR, little endian), published as bytes.

rclpy builds a Detection2DArray as Python objects and then converts every nested field to C
(each hypothesis carries a PoseWithCovariance: 43 float64 fields), 40 us per detection here;
writing the CDR stream directly costs a few us per detection (figures in `encode`'s docstring).
The layout is the plain XCDR1 stream rmw_fastrtps writes for this type (encapsulation CDR_LE:
4-byte header, then each primitive aligned to its size from the end of that header; padding is
written as zeros).

`DetectionsPublisher` checks once, at creation, that `encode` produces the same bytes as
rclpy.serialization for a sample message on the running ROS distribution; when it does not
(another rmw, another vision_msgs layout), it publishes regular messages. Either way subscribers see
the same Detection2DArray.
"""
from __future__ import annotations

import functools
import struct
from typing import Any

import numpy as np

from perception_edge.core.detections import Detections
from perception_edge.nodes.messages import detection_fields, detections_to_msg

CDR_LE = b"\x00\x01\x00\x00"
_U32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")
_F64 = struct.Struct("<d")
# after ObjectHypothesis.score, all float64: the pose (position xyz, orientation xyzw with w = 1, the
# message default), its 36-element covariance (zeros); then BoundingBox2D centre x, y, theta, size x, y
_POSE = struct.pack("<43d", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, *([0.0] * 36))
_BBOX = struct.Struct("<5d")
_EMPTY_ID = _U32.pack(1) + b"\0"  # Detection2D.id: the empty string (length 1, its NUL)


class _Stream:
    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray(CDR_LE)

    def align(self, n: int) -> None:
        pad = -(len(self.buf) - 4) % n
        if pad:
            self.buf += b"\0" * pad

    def u32(self, value: int) -> None:
        self.align(4)
        self.buf += _U32.pack(value)

    def string(self, encoded: bytes) -> None:
        self.u32(len(encoded) + 1)
        self.buf += encoded
        self.buf += b"\0"

    def header(self, sec: int, nanosec: int, frame_id: bytes) -> None:
        self.align(4)
        self.buf += _STAMP.pack(sec, nanosec)
        self.string(frame_id)


def encode(detections: Detections, header: Any) -> bytes:
    """Detection2DArray for `detections` (xyxy, source pixels) under `header`, as CDR bytes: the
    same message as messages.detections_to_msg, field for field (one hypothesis per detection,
    class_id = class name, identity pose, zero covariance, empty id). 15 detections: 0.1 ms, where
    building the message takes 0.35 ms and rclpy's publish 0.27 ms more (measured here)."""
    sec, nanosec = int(header.stamp.sec), int(header.stamp.nanosec)
    frame_id = header.frame_id.encode()
    out = _Stream()
    out.header(sec, nanosec, frame_id)
    out.u32(len(detections))
    for name, score, (cx, cy), (w, h) in zip(*detection_fields(detections)):
        out.header(sec, nanosec, frame_id)  # Detection2D.header
        out.u32(1)  # results: one ObjectHypothesisWithPose
        out.string(name.encode())  # hypothesis.class_id
        out.align(8)
        out.buf += _F64.pack(score)
        out.buf += _POSE
        out.buf += _BBOX.pack(cx, cy, 0.0, w, h)
        out.buf += _EMPTY_ID
    return bytes(out.buf)


@functools.lru_cache(maxsize=None)
def matches_rclpy() -> bool:
    """Whether `encode` writes the stream rclpy.serialization writes for the same message here: same
    length, and it reads back as the same message (padding bytes are left uninitialized by Fast DDS,
    so the streams are not compared byte for byte)."""
    try:
        from builtin_interfaces.msg import Time
        from rclpy.serialization import deserialize_message, serialize_message
        from vision_msgs.msg import Detection2DArray
        from std_msgs.msg import Header

        from perception_edge.nodes.messages import detections_to_msg

        boxes = np.array([[10.5, 20.25, 110.0, 220.0], [0.0, 1.0, 3.0, 7.5], [5, 5, 6, 6]], np.float32)
        sample = Detections(boxes, np.array([0.9, 0.5, 0.25], np.float32), np.array([0, 1, 7]),
                            ["car", "pedestrian"])
        for frame_id in ("", "c", "cam_front", "camera_rear_left"):  # every alignment case
            header = Header(stamp=Time(sec=1700000000, nanosec=123456789), frame_id=frame_id)
            for dets in (sample, Detections.empty()):
                expected = detections_to_msg(dets, header)
                ours = encode(dets, header)
                if len(ours) != len(serialize_message(expected)) or \
                        deserialize_message(ours, Detection2DArray) != expected:
                    return False
        return True
    except Exception:
        return False


class DetectionsPublisher:
    """Publishes Detections as Detection2DArray: pre-serialized bytes when `matches_rclpy()`,
    messages otherwise. `serialized` says which."""

    def __init__(self, publisher: Any, serialized: bool):
        self.publisher = publisher
        self.serialized = serialized

    def publish(self, detections: Detections, header: Any) -> None:
        self.publisher.publish(encode(detections, header) if self.serialized
                               else detections_to_msg(detections, header))
