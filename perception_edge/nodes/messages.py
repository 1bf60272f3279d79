"""ROS messages <-> the core's plain data. Conversions themselves live in perception_edge.core.

Image / CompressedImage -> Frame; Detections -> vision_msgs/Detection2DArray; class names ->
vision_msgs/LabelInfo; class-id mask -> mono8 Image; instance mask -> mono16 Image; RGB -> rgb8 Image. Headers of results are the
source image's header (stamp and frame_id), so results can be matched to their frame.
"""
from __future__ import annotations

import copy
import time
from typing import Sequence

import numpy as np

from perception_edge.core.detections import Detections
from perception_edge.core.image_conversion import (DEFAULT_MAX_PIXELS, compressed_to_pixels, image_to_pixels,
                                                   pixels_to_image_fields)
from perception_edge.core.sync import NS_PER_S, Frame


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_stamp(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=int(ns // NS_PER_S), nanosec=int(ns % NS_PER_S))


def image_to_frame(msg, camera: str, arrival: float | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Frame:
    """sensor_msgs/Image -> Frame (a view over msg.data for rgb8/bgr8). Raises InputError."""
    t0 = time.perf_counter()
    pixels, order = image_to_pixels(msg.width, msg.height, msg.encoding, msg.step, msg.is_bigendian, msg.data,
                                    max_pixels)
    return Frame(pixels, order, stamp_to_ns(msg.header.stamp), msg.header.frame_id, camera, arrival,
                 (time.perf_counter() - t0) * 1e3)


def compressed_to_frame(msg, camera: str, arrival: float | None = None,
                        max_pixels: int = DEFAULT_MAX_PIXELS) -> Frame:
    """sensor_msgs/CompressedImage -> Frame (decoded; the size its header declares is checked
    against max_pixels first). Raises InputError."""
    t0 = time.perf_counter()
    pixels, order = compressed_to_pixels(msg.format, msg.data, max_pixels)
    return Frame(pixels, order, stamp_to_ns(msg.header.stamp), msg.header.frame_id, camera, arrival,
                 (time.perf_counter() - t0) * 1e3)


def is_compressed_topic(topic: str) -> bool:
    return topic.rstrip("/").endswith("/compressed")


def header_of(frame: Frame):
    """The source image's header (stamp, exact to the nanosecond, and frame_id)."""
    from std_msgs.msg import Header

    return Header(stamp=ns_to_stamp(frame.stamp), frame_id=frame.frame_id)


_TEMPLATES: dict = {}


def _templates():
    """Default-constructed messages to copy from: ObjectHypothesisWithPose() alone costs ~100 us
    (its PoseWithCovariance's 36-element covariance is checked element by element), a shallow copy
    ~3 us. The copies share the template's all-zero pose, which is only ever read."""
    if not _TEMPLATES:
        from vision_msgs.msg import Detection2D, ObjectHypothesisWithPose

        _TEMPLATES["detection"] = Detection2D()
        _TEMPLATES["hypothesis"] = ObjectHypothesisWithPose()
    return _TEMPLATES["detection"], _TEMPLATES["hypothesis"]


def detection_fields(detections: Detections) -> tuple[list[str], list[float], list, list]:
    """Per detection, as Python floats: class name, score, bbox centre (x, y), bbox size (w, h)."""
    boxes = np.asarray(detections.boxes, np.float64)
    centers = ((boxes[:, :2] + boxes[:, 2:]) * 0.5).tolist()
    sizes = (boxes[:, 2:] - boxes[:, :2]).tolist()
    return detections.names(), np.asarray(detections.scores, np.float64).tolist(), centers, sizes


def detections_to_msg(detections: Detections, header):
    """Detections (xyxy, source pixels) -> vision_msgs/Detection2DArray: one Detection2D per box
    (header = the image's), bbox center/size in source pixels, one hypothesis (class name, score)."""
    from vision_msgs.msg import BoundingBox2D, Detection2DArray, ObjectHypothesis

    out = Detection2DArray(header=header)
    n = len(detections)
    if n == 0:
        return out
    det_template, hyp_template = _templates()
    names, scores, centers, sizes = detection_fields(detections)
    items = []
    for i in range(n):
        d = copy.copy(det_template)
        d.header = header
        bbox = BoundingBox2D()
        c = bbox.center.position
        c.x, c.y = centers[i]
        bbox.size_x, bbox.size_y = sizes[i]
        d.bbox = bbox
        h = copy.copy(hyp_template)
        h.hypothesis = ObjectHypothesis(class_id=names[i], score=scores[i])
        d.results = [h]
        items.append(d)
    out.detections = items
    return out


def label_info_msg(class_names: Sequence[str], threshold: float, header=None):
    """vision_msgs/LabelInfo: class id -> name, and the score threshold in use."""
    from std_msgs.msg import Header
    from vision_msgs.msg import LabelInfo, VisionClass

    msg = LabelInfo(header=header if header is not None else Header())
    msg.class_map = [VisionClass(class_id=i, class_name=str(n)) for i, n in enumerate(class_names)]
    msg.threshold = float(threshold)
    return msg


def image_msg(pixels: np.ndarray, encoding: str, header):
    """sensor_msgs/Image from an H x W x 3 RGB array (rgb8/bgr8) or H x W array (mono8)."""
    from sensor_msgs.msg import Image

    msg = Image(header=header)
    for k, v in pixels_to_image_fields(pixels, encoding).items():
        setattr(msg, k, v)
    return msg


def mask_to_msg(mask: np.ndarray, header):
    """(H, W) uint8 class ids at source size -> mono8 Image."""
    return image_msg(mask, "mono8", header)


def instance_mask_to_msg(mask: np.ndarray, header):
    """(H, W) uint16 instance ids at source size (i + 1 = detection i, 0 background) -> mono16 Image
    (little-endian, step 2 W)."""
    from sensor_msgs.msg import Image

    h, w = mask.shape[:2]
    data = np.ascontiguousarray(mask, dtype="<u2")
    return Image(header=header, height=int(h), width=int(w), encoding="mono16", is_bigendian=0, step=int(2 * w),
                 data=data.tobytes())


def rgb_to_msg(rgb: np.ndarray, header):
    return image_msg(rgb, "rgb8", header)
