"""Training (perception_edge.training): short runs lower the loss (segmentation, detection); the YOLOv5
target assignment."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from perception_edge.training import detection, segmentation  # noqa: E402


def test_train_seg_lowers_the_loss_and_exports(tmp_path):
    cfg = segmentation.SegConfig(arch="unet", classes=2, synthetic=12, epochs=5, batch=4, img_size=(128, 80),
                              unet_base=4, unet_depth=2, lr=0.01, val=4, out=str(tmp_path / "seg"), augment=False,
                              threads=1, quiet=True)
    result = segmentation.train(cfg)
    losses = [h["loss"] for h in result["history"]]
    assert len(losses) == 5
    assert losses[-1] < 0.85 * losses[0], losses
    assert "lane_marking" in result["history"][-1]["iou"]
    # the checkpoint rebuilds the model; the export is a runtime-compatible ONNX model
    model, ck = segmentation.load_checkpoint(result["best"])
    assert ck["class_names"] == ["background", "lane_marking"]
    from perception_edge.backends import create_backend
    from perception_edge.pipeline import Segmenter

    seg = Segmenter(create_backend(result["onnx"]), resize_mode="letterbox")
    assert seg.backend.input.dynamic_batch
    masks = seg([(np.zeros((90, 160, 3), np.uint8), "rgb")] * 2)
    assert [m.shape for m in masks] == [(90, 160)] * 2 and seg.inference_calls == 1


def test_train_seg_multiclass_ddrnet_step(tmp_path):
    cfg = segmentation.SegConfig(arch="ddrnet23-slim", classes=3, synthetic=4, epochs=1, batch=2, img_size=(128, 64),
                              val=2, out=str(tmp_path / "dd"), max_steps=2, export=False, threads=1, quiet=True)
    result = segmentation.train(cfg)
    assert result["history"][0]["steps"] == 2 and np.isfinite(result["history"][0]["loss"])
    assert set(result["history"][0]["iou"]) == {"background", "lane_marking", "drivable_area"}


def test_seg_loss_prefers_the_truth():
    target = torch.zeros(2, 16, 16)
    target[:, :, 6:9] = 1.0
    good = (target * 2 - 1)[:, None] * 6
    assert float(segmentation.seg_loss(good, target, True)) < float(segmentation.seg_loss(-good, target, True))
    labels = torch.randint(0, 3, (2, 16, 16))
    logits = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 6
    assert float(segmentation.seg_loss(logits, labels, False)) < float(segmentation.seg_loss(-logits, labels, False))


def test_yolo_target_assignment():
    from perception_edge.models.yolov5 import YOLOv5

    model = YOLOv5(nc=2, variant="n", width_multiple=0.125)
    loss = detection.YoloLoss(model, (64, 64))
    preds = [torch.zeros(1, 3, 64 // s, 64 // s, 7) for s in (8, 16, 32)]
    # one box at (0.3, 0.3), 0.25 x 0.25 of a 64 x 64 input (16 px)
    tcls, tbox, indices, anch = loss.build_targets(preds, torch.tensor([[0, 1, 0.3, 0.3, 0.25, 0.25]]))
    # P3 (8 x 8 cells, anchors 10x13, 16x30, 33x23 px): every anchor within anchor_t = 4; the centre's
    # cell (2, 2) plus its left and upper neighbours (fractions 0.4 < g = 0.5)
    b, a, gj, gi = indices[0]
    assert len(b) == 9
    assert sorted(set(zip(gj.tolist(), gi.tolist()))) == [(1, 2), (2, 1), (2, 2)]
    assert sorted(set(a.tolist())) == [0, 1, 2]
    assert (tcls[0] == 1).all()
    # box offsets relative to each assigned cell lie in (-0.5, 1.5)
    assert ((tbox[0][:, :2] > -0.5) & (tbox[0][:, :2] < 1.5)).all()
    # P5 (anchors 116x90 px and larger): ratios beyond anchor_t, no assignment
    assert len(indices[2][0]) == 0


def test_ciou_of_identical_boxes_is_one():
    boxes = torch.tensor([[5.0, 5.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(detection.bbox_ciou(boxes, boxes).numpy(), [1.0, 1.0], atol=1e-5)
    far = torch.tensor([[50.0, 50.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    assert float(detection.bbox_ciou(boxes[:1], far[:1])[0]) < 0  # no overlap: CIoU penalizes the distance


def test_train_det_lowers_the_loss_and_exports(tmp_path):
    cfg = detection.DetConfig(variant="n", width_multiple=0.125, synthetic=8, epochs=6, batch=4,
                              img_size=(192, 128), optimizer="adamw", lr=0.004, val=2, out=str(tmp_path / "det"),
                              augment=False, threads=1, quiet=True)
    result = detection.train(cfg)
    losses = [h["loss"] for h in result["history"]]
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0], losses
    from perception_edge.backends import create_backend
    from perception_edge.pipeline import Detector

    det = Detector(create_backend(result["onnx"]), conf_threshold=0.01)
    assert det.class_names == ["car", "truck", "pedestrian", "traffic_sign"]
    out = det([(np.zeros((90, 160, 3), np.uint8), "rgb")] * 2)
    assert len(out) == 2 and det.inference_calls == 1  # dynamic batch: both frames in one call


def test_train_det_mosaic_keeps_boxes_inside():
    from perception_edge.data.dataset import SampleSource

    cfg = detection.DetConfig(synthetic=8, img_size=(192, 128), mosaic=1.0)
    data = detection._DetData(SampleSource(synthetic=8, seed=3), cfg, True)
    for i in range(4):
        x, t = data[i]
        assert x.shape == (3, 128, 192) and float(x.min()) >= 0 and float(x.max()) <= 1
        if len(t):
            assert (t[:, 1:] >= 0).all() and (t[:, 1:3] <= 1).all() and (t[:, 3:] > 0).all()
