"""YOLOv5 output decoding (raw head, instance-segmentation head or EfficientNMS exports) and NMS,
vectorized."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from perception_edge.core.errors import ModelError
from perception_edge.core.transform import Transform

MAX_NMS_CANDIDATES = 30000  # as the official non_max_suppression: bounds NMS cost on noisy outputs


@dataclass
class Detections:
    """Detections of one image: xyxy boxes in source pixels, scores, integer class ids."""

    boxes: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64
    class_names: list[str] = field(default_factory=list)  # the model's label list (indexed by class id)
    # instance segmentation models only: (src_h, src_w) uint16, pixel value i + 1 = detection i, 0 background
    instance_mask: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def names(self) -> list[str]:
        return [label_of(self.class_names, int(c)) for c in self.class_ids]

    @staticmethod
    def empty(class_names: Sequence[str] = ()) -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                          list(class_names))


def label_of(class_names: Sequence[str], class_id: int) -> str:
    return class_names[class_id] if 0 <= class_id < len(class_names) else f"class_{class_id}"


def nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray | None, iou_threshold: float,
        max_det: int) -> np.ndarray:
    """Indices kept by greedy NMS (class-aware when class_ids is given), best score first."""
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    xywh = boxes.astype(np.float64)  # OpenCV's NMS takes Rect2d (x, y, w, h)
    xywh[:, 2:] -= xywh[:, :2]
    if class_ids is None:
        keep = cv2.dnn.NMSBoxes(xywh, scores.astype(np.float32), 0.0, iou_threshold)
    else:
        keep = cv2.dnn.NMSBoxesBatched(xywh, scores.astype(np.float32), class_ids.astype(np.int32),
                                       0.0, iou_threshold)
    # top_k is not passed: OpenCV applies it before suppression, the official code after
    return np.asarray(keep, np.int64).reshape(-1)[:max_det]


def check_finite(name: str, values: np.ndarray) -> None:
    if not np.isfinite(values).all():
        raise ModelError(f"the model produced NaN or infinite values in {name}; the model or engine is broken "
                         "(for FP16 engines: an overflow; try FP32)")


def decode_raw(pred: np.ndarray, conf_threshold: float, iou_threshold: float, max_det: int,
               agnostic: bool = False, nm: int = 0) -> list[np.ndarray]:
    """Raw YOLOv5 head [B, N, 5+C(+nm)] (cx, cy, w, h, objectness, class scores, mask coefficients)
    -> per image an (M, 6 + nm) array of x1, y1, x2, y2, score, class (, the kept rows' nm mask
    coefficients) in model-input pixels.

    Filters by objectness first (score = obj * cls <= obj), so only a few hundred rows reach the
    class-score arithmetic and NMS.
    """
    if pred.ndim != 3 or pred.shape[2] < 6 + nm:
        raise ModelError(f"YOLOv5 output must be [batch, boxes, 5 + classes{' + ' + str(nm) if nm else ''}], "
                         f"got {list(pred.shape)}")
    mi = pred.shape[2] - nm  # end of the class scores
    obj = pred[:, :, 4]
    check_finite("objectness", obj)
    out = []
    for b in range(pred.shape[0]):
        rows = pred[b, obj[b] > conf_threshold]
        if len(rows):
            check_finite("candidate boxes", rows)
        cls_scores = rows[:, 5:mi] * rows[:, 4:5]
        cls = cls_scores.argmax(1)
        score = cls_scores[np.arange(len(rows)), cls]
        sel = score > conf_threshold
        rows, cls, score = rows[sel], cls[sel], score[sel]
        if len(score) > MAX_NMS_CANDIDATES:
            top = np.argsort(-score, kind="stable")[:MAX_NMS_CANDIDATES]
            rows, cls, score = rows[top], cls[top], score[top]
        boxes = np.empty((len(rows), 4), np.float32)
        half = rows[:, 2:4] * 0.5
        boxes[:, :2] = rows[:, :2] - half
        boxes[:, 2:] = rows[:, :2] + half
        keep = nms(boxes, score, None if agnostic else cls, iou_threshold, max_det)
        parts = [boxes[keep], score[keep, None], cls[keep, None].astype(np.float32)]
        if nm:
            parts.append(rows[keep, mi:].astype(np.float32))
        out.append(np.concatenate(parts, 1))
    return out


def decode_efficient_nms(num_dets: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray,
                         det_classes: np.ndarray, conf_threshold: float, max_det: int) -> list[np.ndarray]:
    """EfficientNMS_TRT outputs (NMS already done in the graph) -> per image (M, 6) like decode_raw."""
    out = []
    for b in range(det_boxes.shape[0]):
        n = int(np.asarray(num_dets[b]).reshape(-1)[0])
        n = max(0, min(n, det_boxes.shape[1]))
        boxes = det_boxes[b, :n].astype(np.float32)
        scores = det_scores[b, :n].astype(np.float32)
        check_finite("EfficientNMS boxes", boxes)
        sel = scores > conf_threshold
        rows = np.concatenate([boxes[sel], scores[sel, None], det_classes[b, :n][sel, None].astype(np.float32)], 1)
        out.append(rows[:max_det])
    return out


def to_source(rows: np.ndarray, transform: Transform, class_names: Sequence[str],
              protos: np.ndarray | None = None) -> Detections:
    """(M, 6) model-pixel rows -> Detections in source pixels, clipped to the image; boxes lying
    wholly in the letterbox padding are dropped (clipping would collapse them onto an edge).

    protos: the image's prototype masks [nm, H/4, W/4] of an instance-segmentation model, whose rows
    then carry nm mask coefficients after the class: fills ``instance_mask`` (see
    core.instance_masks)."""
    boxes = transform.boxes_to_source(rows[:, :4], clip=False)
    inside = ((boxes[:, 2] > 0) & (boxes[:, 0] < transform.src_w) &
              (boxes[:, 3] > 0) & (boxes[:, 1] < transform.src_h))
    boxes = boxes[inside]
    np.clip(boxes[:, 0::2], 0, transform.src_w, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, transform.src_h, out=boxes[:, 1::2])
    dets = Detections(boxes, rows[inside, 4].astype(np.float32), rows[inside, 5].astype(np.int64), list(class_names))
    if protos is not None:
        from perception_edge.core.instance_masks import instance_mask

        dets.instance_mask = instance_mask(protos, rows[inside, 6:], boxes, transform)
    return dets
