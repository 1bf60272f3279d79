"""Accuracy metrics (numpy only): detection mAP at an IoU threshold (DetectionMeter), COCO
mAP@0.5 and mAP@0.5:0.95 with per-class AP and precision/recall curves (CocoDetectionMeter),
segmentation IoU.

Detection AP follows COCO's evaluation (pycocotools COCOeval, one IoU threshold, area "all"):
per image and class, detections in descending score order each take the unmatched ground-truth box
of highest IoU at or above the threshold; per class, the precision/recall curve of all images is
made monotone (precision envelope) and sampled at 101 recall points 0, 0.01, ..., 1 (the precision
at the first point reaching each recall, 0 past the last); AP is their mean. Classes without
ground truth are left out of the mean (their AP is nan), as COCO does. Boxes are xyxy, areas
w * h (no +1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy -> (N, M) IoU."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_image(pred_boxes: np.ndarray, pred_scores: np.ndarray, gt_boxes: np.ndarray,
                iou_threshold: float = 0.5) -> np.ndarray:
    """COCO greedy matching of one image and class: a bool per prediction (in the given order),
    True where it matched a ground-truth box."""
    n = len(pred_scores)
    if n == 0 or len(gt_boxes) == 0:
        return np.zeros(n, bool)
    order = np.argsort(-np.asarray(pred_scores), kind="mergesort")
    return _greedy_match(box_iou(pred_boxes, gt_boxes), order, iou_threshold)


def _greedy_match(ious: np.ndarray, order: np.ndarray, iou_threshold: float) -> np.ndarray:
    tp = np.zeros(ious.shape[0], bool)
    free = np.ones(ious.shape[1], bool)
    thr = min(iou_threshold, 1 - 1e-10)
    for i in order:
        cand = np.where(free & (ious[i] >= thr), ious[i], -1.0)
        j = int(cand.argmax())
        if cand[j] >= 0:
            free[j] = False
            tp[i] = True
    return tp


def average_precision(tp: np.ndarray, scores: np.ndarray, n_gt: int) -> float:
    """101-point interpolated AP of one class from all its detections (tp flags, scores)."""
    if n_gt == 0:
        return float("nan")
    if len(tp) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    hits = np.asarray(tp, np.float64)[order]
    tps = np.cumsum(hits)
    fps = np.cumsum(1.0 - hits)
    recall = tps / n_gt
    precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0.0)
    return float(sampled.mean())


@dataclass
class DetectionResult:
    map: float  # mean AP over classes with ground truth
    ap: np.ndarray  # (C,) per-class AP (nan: no ground truth)
    n_gt: np.ndarray  # (C,) ground-truth boxes per class
    precision: np.ndarray  # (C,) at the best-F1 point of each class
    recall: np.ndarray  # (C,)
    class_names: list[str] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{'class':<16}{'gt':>6}{'AP@.5':>8}{'P':>7}{'R':>7}"]
        for c in range(len(self.ap)):
            name = self.class_names[c] if c < len(self.class_names) else str(c)
            ap = "-" if np.isnan(self.ap[c]) else f"{self.ap[c]:.3f}"
            lines.append(f"{name:<16}{int(self.n_gt[c]):>6}{ap:>8}{self.precision[c]:>7.3f}{self.recall[c]:>7.3f}")
        lines.append(f"{'all':<16}{int(self.n_gt.sum()):>6}{self.map:>8.3f}")
        return "\n".join(lines)


class DetectionMeter:
    """Accumulates predictions and ground truth image by image; result() gives mAP at one IoU."""

    def __init__(self, num_classes: int, iou_threshold: float = 0.5, max_det: int | None = 100,
                 class_names: Sequence[str] = ()):
        self.num_classes = num_classes
        self.iou_threshold = iou_threshold
        self.max_det = max_det
        self.class_names = list(class_names)
        self._tp: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._cls: list[np.ndarray] = []
        self.n_gt = np.zeros(num_classes, np.int64)

    def add(self, pred_boxes: np.ndarray, pred_scores: np.ndarray, pred_classes: np.ndarray,
            gt_boxes: np.ndarray, gt_classes: np.ndarray) -> None:
        pb = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
        ps = np.asarray(pred_scores, np.float64).reshape(-1)
        pc = np.asarray(pred_classes, np.int64).reshape(-1)
        gb = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
        gc = np.asarray(gt_classes, np.int64).reshape(-1)
        if self.max_det is not None and len(ps) > self.max_det:  # COCO keeps the best maxDets per image
            keep = np.argsort(-ps, kind="mergesort")[:self.max_det]
            pb, ps, pc = pb[keep], ps[keep], pc[keep]
        self.n_gt += np.bincount(gc[(gc >= 0) & (gc < self.num_classes)], minlength=self.num_classes)
        for c in np.unique(pc):
            sel = pc == c
            self._tp.append(match_image(pb[sel], ps[sel], gb[gc == c], self.iou_threshold))
            self._scores.append(ps[sel])
            self._cls.append(np.full(int(sel.sum()), c, np.int64))

    def result(self) -> DetectionResult:
        tp = np.concatenate(self._tp) if self._tp else np.zeros(0, bool)
        sc = np.concatenate(self._scores) if self._scores else np.zeros(0)
        cl = np.concatenate(self._cls) if self._cls else np.zeros(0, np.int64)
        ap = np.full(self.num_classes, np.nan)
        prec = np.zeros(self.num_classes)
        rec = np.zeros(self.num_classes)
        for c in range(self.num_classes):
            sel = cl == c
            ap[c] = average_precision(tp[sel], sc[sel], int(self.n_gt[c]))
            if sel.any() and self.n_gt[c] > 0:
                order = np.argsort(-sc[sel], kind="mergesort")
                t = np.cumsum(tp[sel][order])
                p = t / np.arange(1, len(t) + 1)
                r = t / self.n_gt[c]
                f1 = 2 * p * r / np.maximum(p + r, 1e-12)
                k = int(f1.argmax())
                prec[c], rec[c] = p[k], r[k]
        valid = ~np.isnan(ap)
        m = float(ap[valid].mean()) if valid.any() else float("nan")
        return DetectionResult(m, ap, self.n_gt.copy(), prec, rec, self.class_names)


def mean_average_precision(preds: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                           gts: Sequence[tuple[np.ndarray, np.ndarray]], num_classes: int,
                           iou_threshold: float = 0.5, max_det: int | None = 100) -> DetectionResult:
    """preds: per image (boxes, scores, classes); gts: per image (boxes, classes)."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} prediction lists for {len(gts)} images")
    meter = DetectionMeter(num_classes, iou_threshold, max_det)
    for (pb, ps, pc), (gb, gc) in zip(preds, gts):
        meter.add(pb, ps, pc, gb, gc)
    return meter.result()


# ------------------------------------------------------------------------------ COCO mAP@0.5:0.95

COCO_IOUS = np.linspace(0.5, 0.95, 10)  # IoU thresholds 0.50:0.05:0.95


@dataclass
class CocoResult:
    """COCO box AP (area "all", maxDets per image and class) at each IoU threshold, plus the
    precision/recall curves at IoU 0.5 and the precision/recall of every prediction given (the
    operating point: predictions as published, already cut at the model's threshold)."""
    iou_thresholds: np.ndarray  # (T,)
    ap: np.ndarray  # (T, C) (nan: class without ground truth)
    n_gt: np.ndarray  # (C,)
    n_pred: np.ndarray  # (C,)
    tp50: np.ndarray  # (C,) true positives at IoU 0.5 of all predictions
    curves: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]  # class -> (recall, precision, score) at 0.5
    class_names: list[str] = field(default_factory=list)

    def _mean(self, row: np.ndarray) -> float:
        valid = ~np.isnan(row)
        return float(row[valid].mean()) if valid.any() else float("nan")

    @property
    def map50(self) -> float:
        return self._mean(self.ap[int(np.argmin(np.abs(self.iou_thresholds - 0.5)))])

    @property
    def map50_95(self) -> float:
        per_class = self.ap50_95
        return self._mean(per_class)

    @property
    def ap50(self) -> np.ndarray:
        return self.ap[int(np.argmin(np.abs(self.iou_thresholds - 0.5)))]

    @property
    def ap50_95(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.where(self.n_gt > 0, np.nanmean(np.where(np.isnan(self.ap), 0.0, self.ap), axis=0), np.nan)

    def precision(self) -> np.ndarray:
        """(C,) precision at IoU 0.5 of all predictions given (nan: class never predicted)."""
        return np.where(self.n_pred > 0, self.tp50 / np.maximum(self.n_pred, 1), np.nan)

    def recall(self) -> np.ndarray:
        return np.where(self.n_gt > 0, self.tp50 / np.maximum(self.n_gt, 1), np.nan)

    def overall_precision_recall(self) -> tuple[float, float]:
        p = float(self.tp50.sum() / self.n_pred.sum()) if self.n_pred.sum() else float("nan")
        r = float(self.tp50.sum() / self.n_gt.sum()) if self.n_gt.sum() else float("nan")
        return p, r


class CocoDetectionMeter:
    """pycocotools' COCOeval for boxes (iouType "bbox", area range "all", iscrowd 0), image by image:
    per image and class the best `max_det` predictions by score are kept (COCO's maxDets=100 is
    applied per image and category) and matched greedily at each IoU threshold; per class and
    threshold, the 101-point interpolated AP of all images (average_precision). Boxes xyxy, area
    w * h (pycocotools' xywh boxes: no +1)."""

    def __init__(self, num_classes: int, iou_thresholds: Sequence[float] = COCO_IOUS, max_det: int | None = 100,
                 class_names: Sequence[str] = ()):
        self.num_classes = num_classes
        self.iou_thresholds = np.asarray(iou_thresholds, np.float64)
        self.max_det = max_det
        self.class_names = list(class_names)
        self._tp: list[np.ndarray] = []  # (T, n) per added group
        self._scores: list[np.ndarray] = []
        self._cls: list[np.ndarray] = []
        self.n_gt = np.zeros(num_classes, np.int64)
        self.images = 0

    def add(self, pred_boxes: np.ndarray, pred_scores: np.ndarray, pred_classes: np.ndarray,
            gt_boxes: np.ndarray, gt_classes: np.ndarray) -> np.ndarray:
        """One image; returns its per-prediction match flags at IoU 0.5 (input order; False for
        predictions past max_det)."""
        pb = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
        ps = np.asarray(pred_scores, np.float64).reshape(-1)
        pc = np.asarray(pred_classes, np.int64).reshape(-1)
        gb = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
        gc = np.asarray(gt_classes, np.int64).reshape(-1)
        self.images += 1
        self.n_gt += np.bincount(gc[(gc >= 0) & (gc < self.num_classes)], minlength=self.num_classes)
        flags = np.zeros(len(ps), bool)
        i50 = int(np.argmin(np.abs(self.iou_thresholds - 0.5)))
        for c in np.unique(pc):
            if not 0 <= c < self.num_classes:
                continue
            idx = np.flatnonzero(pc == c)
            idx = idx[np.argsort(-ps[idx], kind="mergesort")]
            if self.max_det is not None:
                idx = idx[:self.max_det]
            g = gb[gc == c]
            tp = np.zeros((len(self.iou_thresholds), len(idx)), bool)
            if len(g):
                ious = box_iou(pb[idx], g)
                for t, thr in enumerate(self.iou_thresholds):
                    tp[t] = _greedy_match(ious, np.arange(len(idx)), float(thr))
            flags[idx] = tp[i50]
            self._tp.append(tp)
            self._scores.append(ps[idx])
            self._cls.append(np.full(len(idx), c, np.int64))
        return flags

    def result(self) -> CocoResult:
        t_count = len(self.iou_thresholds)
        tp = np.concatenate(self._tp, axis=1) if self._tp else np.zeros((t_count, 0), bool)
        sc = np.concatenate(self._scores) if self._scores else np.zeros(0)
        cl = np.concatenate(self._cls) if self._cls else np.zeros(0, np.int64)
        ap = np.full((t_count, self.num_classes), np.nan)
        n_pred = np.bincount(cl, minlength=self.num_classes)[:self.num_classes]
        i50 = int(np.argmin(np.abs(self.iou_thresholds - 0.5)))
        tp50 = np.zeros(self.num_classes, np.int64)
        curves: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for c in range(self.num_classes):
            sel = cl == c
            for t in range(t_count):
                ap[t, c] = average_precision(tp[t, sel], sc[sel], int(self.n_gt[c]))
            tp50[c] = int(tp[i50, sel].sum())
            if sel.any() and self.n_gt[c] > 0:
                order = np.argsort(-sc[sel], kind="mergesort")
                hits = np.cumsum(tp[i50, sel][order])
                curves[c] = (hits / self.n_gt[c], hits / np.arange(1, len(hits) + 1), sc[sel][order])
        return CocoResult(self.iou_thresholds.copy(), ap, self.n_gt.copy(), n_pred, tp50, curves, self.class_names)


# ------------------------------------------------------------------------------ segmentation

class SegmentationMeter:
    """Confusion matrix over all pixels of all images: per-class IoU = TP / (TP + FP + FN)."""

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = np.zeros((num_classes, num_classes), np.int64)  # [gt, pred]

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
        g = gt.reshape(-1).astype(np.int64)
        p = pred.reshape(-1).astype(np.int64)
        valid = (g >= 0) & (g < self.num_classes)
        if self.ignore_index is not None:
            valid &= g != self.ignore_index
        p = np.clip(p[valid], 0, self.num_classes - 1)
        self.confusion += np.bincount(g[valid] * self.num_classes + p,
                                      minlength=self.num_classes ** 2).reshape(self.num_classes, self.num_classes)

    def iou(self) -> np.ndarray:
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        v = self.iou()
        return float(np.nanmean(v)) if (~np.isnan(v)).any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")


def mask_iou(pred: np.ndarray, gt: np.ndarray, num_classes: int = 2) -> np.ndarray:
    """Per-class IoU of one pair of class-id masks (nan where a class is absent from both)."""
    m = SegmentationMeter(num_classes)
    m.add(pred, gt)
    return m.iou()


def binary_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of the foreground (non-zero) of two masks; 1.0 when both are empty."""
    p, g = np.asarray(pred) > 0, np.asarray(gt) > 0
    union = np.count_nonzero(p | g)
    return float(np.count_nonzero(p & g) / union) if union else 1.0


def summarize_ious(ious: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    return {(names[i] if i < len(names) else str(i)): float(v) for i, v in enumerate(ious)}


def percentiles(values: Sequence[float], count: bool = False) -> dict[str, float] | None:
    """p50 / p90 / p99 / max of a latency series (ms, 2 decimals), with count: also "n"; None when empty."""
    if not len(values):
        return None
    a = np.asarray(values, np.float64)
    out = {"p50": round(float(np.percentile(a, 50)), 2), "p90": round(float(np.percentile(a, 90)), 2),
           "p99": round(float(np.percentile(a, 99)), 2), "max": round(float(a.max()), 2)}
    if count:
        out["n"] = int(len(a))
    return out

