"""Models generated on first use (no downloads are possible): a YOLOv5n graph for the benchmark and
the demo when no trained model is given. Cached under build/ so the export runs once."""
from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "build" / "models"
DRIVING = REPO.parent / "shared" / "data" / "driving"


def calibration_images(limit: int = 8) -> list[np.ndarray]:
    """RGB frames to recalibrate batch-norm statistics on: the real frames when present, else synthetic."""
    paths = sorted(glob.glob(str(DRIVING / "*.jpg")))[:limit]
    if paths:
        return [cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in paths]
    from perception_edge.data.synthetic import scene_frames

    return [scene_frames(seed=i, size=(1280, 720))[0].image for i in range(limit)]


def yolov5_onnx(variant: str = "n", img_size: int = 640, dynamic_batch: bool = True, dynamic: bool = False) -> Path:
    """A YOLOv5 graph with random weights and recalibrated batch norm (outputs depend on the input).
    dynamic: batch, height and width dynamic (rectangular inference)."""
    path = CACHE / f"yolov5{variant}_{img_size}{'_dynhw' if dynamic else '_dyn' if dynamic_batch else ''}.onnx"
    if path.is_file():
        return path
    import torch

    from perception_edge.models.export import export_onnx
    from perception_edge.models.yolov5 import YOLOv5, recalibrate_batchnorm

    torch.manual_seed(0)
    model = YOLOv5(nc=80, variant=variant)
    recalibrate_batchnorm(model, calibration_images(), img_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    export_onnx(model, str(tmp), img_size=(img_size, img_size), batch=1, dynamic_batch=dynamic_batch, dynamic=dynamic)
    tmp.replace(path)
    return path
