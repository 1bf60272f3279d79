"""The bundled demo models (models/*.onnx) meet their goals on freshly generated held-out synthetic
scenes, run through the package's real pipeline (Segmenter / Detector over ONNX Runtime).

Held-out scenes come from a seed no training run used (training: seeds 1 + 7919 * epoch, validation
1_000_004); see models/README.md for the training commands and the full-size evaluation.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from perception_edge.backends import create_backend  # noqa: E402
from perception_edge.core.metrics import DetectionMeter, SegmentationMeter  # noqa: E402
from perception_edge.data.synthetic import CLASSES, render, sample_scene, scene_seed  # noqa: E402
from perception_edge.pipeline import Detector, Segmenter  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "models"
LANE = MODELS / "lane_unet.onnx"
DET = MODELS / "det_yolov5_synth.onnx"
HELD_OUT_SEED = 20240607
CAMERAS = ("front", "front", "front_left", "front_right")
MAX_BYTES = 5 * 1024 * 1024


def held_out_frames(n: int, offset: int = 0, size=(640, 360)):
    return [render(sample_scene(scene_seed(HELD_OUT_SEED, offset + i)), CAMERAS[i % len(CAMERAS)], size)
            for i in range(n)]


def lane_iou(path: Path, frames) -> float:
    backend = create_backend(str(path))
    seg = Segmenter(backend, threshold=0.5, resize_mode=backend.metadata.get("resize_mode", "letterbox"))
    meter = SegmentationMeter(2)
    for i in range(0, len(frames), 4):
        chunk = frames[i:i + 4]
        for f, m in zip(chunk, seg([(f.image, "rgb") for f in chunk])):
            meter.add(m, (f.mask == 1).astype(np.uint8))
    return float(meter.iou()[1])


def detection_map(path: Path, frames):
    det = Detector(create_backend(str(path)), conf_threshold=0.001, iou_threshold=0.6, max_detections=300)
    meter = DetectionMeter(len(CLASSES), 0.5, class_names=CLASSES)
    for f in frames:
        d = det([(f.image, "rgb")])[0]
        meter.add(d.boxes, d.scores, d.class_ids, f.boxes, f.class_ids)
    return meter.result()


@pytest.fixture(scope="module")
def frames():
    return held_out_frames(32)


def test_lane_model_contract():
    if not LANE.is_file():
        pytest.skip(f"{LANE} not present")
    assert LANE.stat().st_size <= MAX_BYTES
    backend = create_backend(str(LANE))
    assert backend.input.name == "images" and backend.outputs[0].name == "logits"
    assert backend.outputs[0].shape[1] == 1  # binary lane marking
    meta = backend.metadata
    assert json.loads(meta["names"]) == ["background", "lane_marking"] and meta["resize_mode"] in ("letterbox", "stretch")


def test_lane_model_iou_on_held_out_scenes(frames):
    if not LANE.is_file():
        pytest.skip(f"{LANE} not present")
    iou = lane_iou(LANE, frames)
    assert iou >= 0.80, f"lane-marking IoU {iou:.3f} on {len(frames)} held-out scenes (goal 0.80)"


def test_detector_contract():
    if not DET.is_file():
        pytest.skip(f"{DET} not present")
    assert DET.stat().st_size <= MAX_BYTES
    det = Detector(create_backend(str(DET)))
    assert det.class_names == CLASSES
    assert det.layout == "raw"


def test_detector_map_on_held_out_scenes(frames):
    if not DET.is_file():
        pytest.skip(f"{DET} not present")
    res = detection_map(DET, frames)
    goal = 0.7
    assert res.map >= goal, f"mAP@0.5 {res.map:.3f} on {len(frames)} held-out scenes (goal {goal})\n{res.table()}"
