"""The bundled demo models (models/*.onnx) meet their goals on freshly generated held-out synthetic
scenes, run through the package's real pipeline (Segmenter / Detector over ONNX Runtime).

Held-out scenes come from a seed no training run used (perception_edge.evaluation.HELD_OUT_SEED;
training renders seed + 7919 * epoch, validation seed + 1_000_003); models/README.md has the training
commands and the larger evaluation (`perception-edge evaluate`).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from perception_edge.backends import create_backend  # noqa: E402
from perception_edge.data.synthetic import CLASSES  # noqa: E402
from perception_edge.pipeline import Detector  # noqa: E402
from perception_edge.evaluation import ground_truth, held_out_scenes, load_model, score  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "models"
LANE = MODELS / "lane_unet.onnx"
DET = MODELS / "det_yolov5_synth.onnx"
MAX_BYTES = 5 * 1024 * 1024


def held_out_score(path: Path, samples):
    model = load_model(str(path))
    return score(model, [s.image for s in samples], ground_truth(model, samples))


@pytest.fixture(scope="module")
def samples():
    return list(held_out_scenes(32))


def test_lane_model_contract():
    if not LANE.is_file():
        pytest.skip(f"{LANE} not present")
    assert LANE.stat().st_size <= MAX_BYTES
    backend = create_backend(str(LANE))
    assert backend.input.name == "images" and backend.outputs[0].name == "logits"
    assert backend.outputs[0].shape[1] == 1  # binary lane marking
    assert backend.input.dynamic_batch  # every camera of a step in one call
    meta = backend.metadata
    assert json.loads(meta["names"]) == ["background", "lane_marking"] and meta["resize_mode"] in ("letterbox", "stretch")


def test_lane_model_iou_on_held_out_scenes(samples):
    if not LANE.is_file():
        pytest.skip(f"{LANE} not present")
    s = held_out_score(LANE, samples)
    assert s.metric == "IoU lane_marking"
    assert s.value >= 0.80, f"lane-marking IoU {s.value:.3f} on {len(samples)} held-out scenes (goal 0.80)"


def test_detector_contract():
    if not DET.is_file():
        pytest.skip(f"{DET} not present")
    assert DET.stat().st_size <= MAX_BYTES
    det = Detector(create_backend(str(DET)))
    assert det.backend.input.dynamic_batch
    assert det.class_names == CLASSES
    assert det.layout == "raw"


def test_detector_map_on_held_out_scenes(samples):
    if not DET.is_file():
        pytest.skip(f"{DET} not present")
    s = held_out_score(DET, samples)
    goal = 0.7
    assert s.value >= goal, f"mAP@0.5 {s.value:.3f} on {len(samples)} held-out scenes (goal {goal})\n{s.table}"
