"""Shared fixtures: real frames from ../shared/data/driving and models generated at test time."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import pytest

REPO = Path(__file__).resolve().parents[1]
DRIVING = Path(os.environ.get("PERCEPTION_EDGE_DATA", REPO.parent / "shared" / "data" / "driving"))


def driving_jpegs():
    return sorted(DRIVING.glob("*.jpg")) if DRIVING.is_dir() else []


@pytest.fixture(scope="session")
def frame_paths():
    paths = driving_jpegs()
    if not paths:
        pytest.skip(f"real driving frames not found in {DRIVING} (see README: test data)")
    return paths


@pytest.fixture(scope="session")
def frames_bgr(frame_paths):
    return [cv2.imread(str(p)) for p in frame_paths]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def yolov5n_onnx(models_dir, frames_bgr):
    """A real YOLOv5n graph at 640x640 (random weights, batch-norm statistics recalibrated on the
    real frames so that its outputs depend on the input), exported with the package's exporter."""
    torch = pytest.importorskip("torch")
    from perception_edge.models.export import export_onnx
    from perception_edge.models.yolov5 import YOLOv5, recalibrate_batchnorm

    torch.manual_seed(0)
    model = YOLOv5(nc=80, variant="n")
    recalibrate_batchnorm(model, [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames_bgr], 640)
    path = models_dir / "yolov5n.onnx"
    export_onnx(model, str(path), img_size=(640, 640), batch=1, dynamic_batch=True)
    return path
