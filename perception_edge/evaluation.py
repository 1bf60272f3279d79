"""Accuracy and CPU latency of models, scored as `perception-edge evaluate` (perception_edge.cli.evaluate)
prints them side by side.

Scored through the runtime pipeline (Detector / Segmenter over the chosen backend), in source pixels:
- against ground truth: freshly generated held-out synthetic scenes (default) or a data set folder
  (images/ + masks/ and/or labels/, see perception_edge.data.dataset);
- against a reference model (``--reference FP32.onnx``): agreement instead of accuracy, which also
  works on unlabelled frames (``--frames`` folder, video or rosbag, e.g. the real dash-cam frames).
  The reference's detections at --reference-conf act as ground truth; its masks likewise.

Detection: mAP@0.5 (COCO-style 101-point AP, conf 0.001, NMS IoU 0.6). Segmentation: IoU of the
foreground classes. Latency: median of the backend call alone at batch 1 (preprocessing is the
same for every model of a table).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np

from perception_edge.backends import create_backend
from perception_edge.core.detections import Detections
from perception_edge.core.errors import ConfigError
from perception_edge.core.metrics import DetectionMeter, SegmentationMeter
from perception_edge.data.dataset import Sample, SampleSource
from perception_edge.pipeline import Detector, Segmenter

HELD_OUT_SEED = 20240607  # no training run uses it (train-* seeds: 0 + 7919 * epoch, validation 1_000_003)
EVAL_CONF = 0.001
EVAL_IOU = 0.6
Model = Union[Detector, Segmenter]


def held_out_scenes(count: int, seed: int = HELD_OUT_SEED, size=(640, 360)) -> SampleSource:
    """Synthetic scenes with ground truth, cameras front, front, front_left, front_right in turn."""
    return SampleSource(synthetic=count, seed=seed, size=tuple(size))


def load_model(path: str, backend: str = "auto", num_threads: int = 0, conf: float = EVAL_CONF,
               iou: float = EVAL_IOU) -> Model:
    """A Detector or a Segmenter, whichever the model's outputs describe (4-D logits: segmentation)."""
    b = create_backend(path, backend, num_threads=num_threads)
    if b.metadata.get("task") == "segment" or (len(b.outputs) == 1 and len(b.outputs[0].shape) == 4):
        return Segmenter(b, threshold=0.5, resize_mode=b.metadata.get("resize_mode", "letterbox"))
    return Detector(b, conf_threshold=conf, iou_threshold=iou, max_detections=300)


def _seg_classes(seg: Segmenter) -> int:
    return seg.num_classes or 2


def _lane_truth(seg: Segmenter, mask: np.ndarray) -> np.ndarray:
    # a binary model predicts "lane marking" (class 1 of the data); other classes count as background
    return (mask == 1).astype(np.uint8) if _seg_classes(seg) == 2 else mask


def _run(model: Model, images: Sequence[np.ndarray], batch: int) -> list:
    """Results for all images, `batch` frames per call (bounds the batch tensor's memory)."""
    out: list = []
    for i in range(0, len(images), batch):
        out.extend(model([(im, "rgb") for im in images[i:i + batch]]))
    return out


@dataclass
class Score:
    metric: str  # "mAP@0.5" | "IoU <class>" (with "vs reference" when scored against a model)
    value: float
    per_class: dict[str, float] = field(default_factory=dict)
    table: str = ""


def score_detector(det: Detector, images: Sequence[np.ndarray], truth: Sequence[Detections],
                   label: str = "mAP@0.5") -> Score:
    meter = DetectionMeter(len(det.class_names), 0.5, class_names=det.class_names)
    for d, t in zip(_run(det, images, 4), truth):
        meter.add(d.boxes, d.scores, d.class_ids, t.boxes, t.class_ids)
    res = meter.result()
    per = {n: float(a) for n, a in zip(det.class_names, res.ap) if not np.isnan(a)}
    return Score(label, res.map, per, res.table())


def score_segmenter(seg: Segmenter, images: Sequence[np.ndarray], truth: Sequence[np.ndarray],
                    label: str = "IoU") -> Score:
    n = _seg_classes(seg)
    meter = SegmentationMeter(n)
    for m, t in zip(_run(seg, images, 4), truth):
        meter.add(m, t)
    iou = meter.iou()
    names = seg.backend.metadata.get("names")
    names = json.loads(names) if names else [f"class_{c}" for c in range(n)]
    per = {names[c] if c < len(names) else str(c): float(iou[c]) for c in range(1, n)}
    first = next(iter(per))
    return Score(f"{label} {first}", per[first], per)


def ground_truth(model: Model, samples: Sequence[Sample]) -> list:
    if isinstance(model, Segmenter):
        if any(s.mask is None for s in samples):
            raise ConfigError("segmentation needs masks: the data set has images without masks/")
        return [_lane_truth(model, s.mask) for s in samples]
    return [Detections(s.boxes, np.ones(len(s.boxes), np.float32), s.class_ids) for s in samples]


def reference_truth(reference: Model, images: Sequence[np.ndarray], conf: float) -> list:
    outs = _run(reference, images, 4)
    if isinstance(reference, Segmenter):
        return outs
    return [Detections(d.boxes[d.scores >= conf], d.scores[d.scores >= conf], d.class_ids[d.scores >= conf])
            for d in outs]


def score(model: Model, images: Sequence[np.ndarray], truth: Sequence, against_reference: bool = False) -> Score:
    suffix = " vs reference" if against_reference else ""
    if isinstance(model, Segmenter):
        s = score_segmenter(model, images, truth)
    else:
        s = score_detector(model, images, truth)
    s.metric += suffix
    return s


def inference_ms(model: Model, image: np.ndarray, runs: int = 20) -> float:
    """Median time of the backend call alone for one preprocessed frame (batch 1)."""
    tensor, _ = model.preprocess([(image, "rgb")], batch=model.backend.batch_sizes(1)[0])
    tensor = tensor.copy()
    model.backend.run(tensor)  # warm-up: ORT allocates and picks kernels on the first call
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.backend.run(tensor)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))
