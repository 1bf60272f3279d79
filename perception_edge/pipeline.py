"""Detector and Segmenter: a backend plus the model's pre/post-processing, one call per batch.

Every front door (ROS nodes, CLI, replay, bench) runs frames through these, so the pipeline exists
once. Results are plain data; messages are built only in perception_edge.nodes. A call returns its
results together with what the call cost (Results: a list with .timings and .calls), so callers
never read timings back from the model.
"""
from __future__ import annotations

import dataclasses

import os
import time
import warnings
from typing import Any, Generic, Iterable, Mapping, Sequence, Tuple, TypeVar, Union

import numpy as np

from perception_edge import config
from perception_edge.backends import Backend, create_backend
from perception_edge.core.deprecation import moved_names
from perception_edge.core.detections import Detections, decode_efficient_nms, decode_raw, to_source
from perception_edge.core.errors import ModelError
from perception_edge.core.labels import resolve_labels
from perception_edge.core.preprocess import Preprocessor
from perception_edge.core.segmentation import decode_segmentation
from perception_edge.core.transform import Transform

ImageInput = Tuple[np.ndarray, str]  # (H x W x 3 uint8 pixels, "rgb" | "bgr"); was pipeline.Image
EFFICIENT_NMS_NAMES = ("num_dets", "det_boxes", "det_scores", "det_classes")
STAGES = ("preprocess", "inference", "postprocess")
T = TypeVar("T")


class Results(list, Generic[T]):
    """One result per input image (a list), with what producing them took: timings (ms per stage,
    summed over the call's backend runs) and calls (backend runs: 1 when the whole batch fit one)."""

    def __init__(self, items: Iterable[T] = (), timings: dict[str, float] | None = None, calls: int = 0):
        super().__init__(items)
        self.timings: dict[str, float] = timings if timings is not None else {k: 0.0 for k in STAGES}
        self.calls = calls


class BatchedModel:
    """Splits frames into the batch sizes the model accepts; each call returns Results (with the
    stage timings of that call)."""

    def __init__(self, backend: Backend, input_size: int, resize_mode: str, rect: bool = False):
        self.backend = backend
        dims = backend.input.shape[2:]
        fixed = all(isinstance(d, int) for d in dims)
        if fixed:
            input_hw = (int(dims[0]), int(dims[1]))
        else:
            input_hw = (input_size, input_size)
        self.input_hw = input_hw
        # rect: a model with dynamic H/W gets the smallest stride-aligned rectangle per batch (a fixed
        # model's own shape, square or rectangular, is used as it is)
        self.rect_stride = model_stride(backend) if rect and not fixed else 0
        self.preprocess = Preprocessor(input_hw, backend.input.dtype, mode=resize_mode, rect_stride=self.rect_stride)
        self.inference_calls = 0  # backend runs since loading (a running total, for /diagnostics)
        self._last_timings: dict[str, float] = {}

    @property
    def timings(self) -> dict[str, float]:
        """Deprecated: the stage timings of the last call; use the .timings of what the call returns."""
        warnings.warn("BatchedModel.timings is deprecated: a call returns Results with .timings",
                      DeprecationWarning, stacklevel=2)
        return dict(self._last_timings)

    def _run(self, images: Sequence[ImageInput], decode) -> Results:
        results: Results = Results()
        times = results.timings
        start = 0
        for size in self.backend.batch_sizes(len(images)):
            chunk = images[start:start + size]
            start += len(chunk)
            t0 = time.perf_counter()
            tensor, transforms = self.preprocess(chunk, batch=size)
            t1 = time.perf_counter()
            outputs = self.backend.run(tensor)
            results.calls += 1
            t2 = time.perf_counter()
            results.extend(decode(outputs, transforms))
            t3 = time.perf_counter()
            times["preprocess"] += (t1 - t0) * 1e3
            times["inference"] += (t2 - t1) * 1e3
            times["postprocess"] += (t3 - t2) * 1e3
        self.inference_calls += results.calls
        self._last_timings = times
        return results


def model_stride(backend: Backend) -> int:
    """The model's largest stride: the 'stride' metadata of YOLOv5 exports (64 for P6), else 32."""
    try:
        return max(32, int(str(backend.metadata.get("stride", "32")).strip("[]").split(",")[-1]))
    except ValueError:
        return 32


def _output_layout(backend: Backend) -> str:
    outs = backend.outputs
    names = [o.name for o in outs]
    if len(outs) == 2 and len(outs[0].shape) == 3 and len(outs[1].shape) == 4:
        nm = outs[1].shape[1]
        if isinstance(nm, int) and isinstance(outs[0].shape[2], int) and outs[0].shape[2] >= 6 + nm:
            return "raw_seg"  # YOLOv5 v7.0 -seg: output0 [B, N, 5+C+nm], output1 prototypes [B, nm, H/4, W/4]
        raise ModelError(f"{backend.path}: outputs {', '.join(o.describe() for o in outs)} "
                         "look like an instance-segmentation export but do not fit YOLOv5 v7.0's "
                         "[batch, boxes, 5+C+nm] and [batch, nm, H/4, W/4]")
    if len(outs) >= 4 and (all(n in names for n in EFFICIENT_NMS_NAMES) or
                           [len(o.shape) for o in outs[:4]] == [2, 3, 2, 2]):
        return "efficient_nms"
    first = outs[0].shape
    if len(first) == 3:
        c, n = first[2], first[1]
        if isinstance(c, int) and c >= 6 and not (isinstance(n, int) and n < c):
            return "raw"
        if isinstance(n, int) and isinstance(c, int) and n < c:
            raise ModelError(f"{backend.path}: output {outs[0].describe()} is [batch, 4+C, boxes] "
                             "(a YOLOv8-style layout); perception_edge decodes YOLOv5 [batch, boxes, 5+C]")
    raise ModelError(f"{backend.path}: outputs "
                     f"{', '.join(o.describe() for o in outs)} fit no supported detection layout "
                     "(YOLOv5 [batch, boxes, 5+C] or EfficientNMS num_dets/det_boxes/det_scores/det_classes)")


class Detector(BatchedModel):
    """YOLOv5 (raw head, v7.0 instance-segmentation head, or EfficientNMS export): images ->
    Detections in source pixels (with an instance_mask for -seg models)."""

    def __init__(self, backend: Backend, conf_threshold: float = 0.25, iou_threshold: float = 0.45,
                 max_detections: int = 300, agnostic_nms: bool = False, labels: str = "",
                 input_size: int = 640, rect: bool = False):
        super().__init__(backend, input_size, "letterbox", rect)
        self.layout = _output_layout(backend)
        # mask coefficients per box of an instance-segmentation model (0: boxes only)
        self.num_masks = int(backend.outputs[1].shape[1]) if self.layout == "raw_seg" else 0
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.agnostic_nms = agnostic_nms
        if self.layout in ("raw", "raw_seg") and isinstance(backend.outputs[0].shape[2], int):
            num_classes = backend.outputs[0].shape[2] - 5 - self.num_masks
        else:
            from perception_edge.core.labels import names_from_metadata

            meta_names = names_from_metadata(backend.metadata)
            num_classes = len(meta_names) if meta_names else 80
        self.class_names = resolve_labels(num_classes, labels, backend.metadata)

    @property
    def segmentation(self) -> bool:
        """Instance segmentation: each Detections carries an instance_mask."""
        return self.num_masks > 0

    def _decode(self, outputs: list[np.ndarray], transforms: list[Transform]) -> list[Detections]:
        if self.layout == "raw_seg":
            by_name = dict(zip([o.name for o in self.backend.outputs], outputs))
            pred, protos = (by_name["output0"], by_name["output1"]) if {"output0", "output1"} <= set(by_name) \
                else (outputs[0], outputs[1])
            rows = decode_raw(pred, self.conf_threshold, self.iou_threshold, self.max_detections,
                              self.agnostic_nms, nm=self.num_masks)
            return [to_source(r, t, self.class_names, protos[i]) for i, (r, t) in enumerate(zip(rows, transforms))]
        if self.layout == "raw":
            rows = decode_raw(outputs[0], self.conf_threshold, self.iou_threshold, self.max_detections,
                              self.agnostic_nms)
        else:
            by_name = dict(zip([o.name for o in self.backend.outputs], outputs))
            ordered = [by_name[n] for n in EFFICIENT_NMS_NAMES] if all(n in by_name for n in EFFICIENT_NMS_NAMES) \
                else outputs[:4]
            rows = decode_efficient_nms(*ordered, conf_threshold=self.conf_threshold, max_det=self.max_detections)
        return [to_source(r, t, self.class_names) for r, t in zip(rows, transforms)]

    def __call__(self, images: Sequence[ImageInput]) -> Results[Detections]:
        return self._run(images, self._decode)

    @classmethod
    def from_config(cls, cfg: config.Sections, concurrent_models: int = 1) -> Detector:
        """detection.* of the configuration (detection.model already resolved to a file)."""
        d = cfg.detection
        model = cls(backend_for(cfg, d.model, concurrent_models), d.conf_threshold, d.iou_threshold,
                    d.max_detections, d.agnostic_nms, d.labels, d.input_size, d.rect)
        model.preprocess.cache_size = cfg.limits.preprocess_cache
        return model


class Segmenter(BatchedModel):
    """Lane / drivable-area segmentation: images -> class-id masks (uint8) at source size."""

    def __init__(self, backend: Backend, threshold: float = 0.5, resize_mode: str = "letterbox",
                 input_size: int = 640):
        super().__init__(backend, input_size, resize_mode)
        out = backend.outputs[0].shape
        if len(out) != 4:
            raise ModelError(f"{backend.path}: segmentation output "
                             f"{backend.outputs[0].describe()} is not [batch, classes, H, W]")
        self.num_classes = max(2, out[1]) if isinstance(out[1], int) else None
        self.threshold = threshold

    def _decode(self, outputs: list[np.ndarray], transforms: list[Transform]) -> list[np.ndarray]:
        return decode_segmentation(outputs[0], transforms, self.threshold)

    def __call__(self, images: Sequence[ImageInput]) -> Results[np.ndarray]:
        return self._run(images, self._decode)

    @classmethod
    def from_config(cls, cfg: config.Sections, concurrent_models: int = 1) -> Segmenter:
        """segmentation.* of the configuration (segmentation.model already resolved to a file)."""
        s = cfg.segmentation
        model = cls(backend_for(cfg, s.model, concurrent_models, "segmentation"), s.threshold, s.resize_mode,
                    cfg.segmentation_input_size)
        model.preprocess.cache_size = cfg.limits.preprocess_cache
        return model


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def threads_per_model(num_threads: int, concurrent_models: int = 1, cores: int | None = None) -> int:
    """num_threads as configured, or for 0 (automatic) with several models running at the same
    time, the cores split between them (each runtime would otherwise start a thread per core, and
    they would fight over the cores). 0 is returned for one model: the runtime's own default."""
    if num_threads > 0 or concurrent_models <= 1:
        return num_threads
    return max(1, (cores or available_cores()) // concurrent_models)


def backend_for(cfg: config.Sections, model_path: str, concurrent_models: int = 1,
                kind: str = "detection") -> Backend:
    """The backend of one model with the configuration's runtime settings. ONNX Runtime's "auto"
    graph optimization is "all" for detection and "extended" for segmentation: with the bundled
    models, the CPU layout transformations make YOLOv5 1.4-1.5x faster for the same memory, while a
    U-Net's full-resolution feature maps take 1.7x the working memory with them (162 against 96 MB
    at batch 3) for 12% of speed."""
    ort = cfg.onnxruntime
    if ort.graph_optimization == "auto":
        ort = dataclasses.replace(ort, graph_optimization="extended" if kind == "segmentation" else "all")
    return create_backend(model_path, cfg.backend, threads_per_model(cfg.num_threads, concurrent_models),
                          engine=cfg.engine, onnxruntime=ort)


Config = Union[config.Sections, Mapping[str, Any]]


def _sections(cfg: Config) -> config.Sections:
    return cfg if isinstance(cfg, config.Sections) else config.Sections.from_values(cfg)


def detector_from_config(cfg: Config, concurrent_models: int = 1) -> Detector:
    """Detector.from_config, also taking the flat dotted values (config.validate's result)."""
    return Detector.from_config(_sections(cfg), concurrent_models)


def segmenter_from_config(cfg: Config, concurrent_models: int = 1) -> Segmenter:
    """Segmenter.from_config, also taking the flat dotted values (config.validate's result)."""
    return Segmenter.from_config(_sections(cfg), concurrent_models)


__getattr__ = moved_names(__name__, {"Image": f"{__name__}:ImageInput"})
