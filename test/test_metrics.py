"""perception_edge.core.metrics: mAP@0.5 against hand-computed cases and pycocotools, mask IoU."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from perception_edge.core.metrics import (DetectionMeter, SegmentationMeter, average_precision, binary_iou, box_iou,
                                          mask_iou, match_image, mean_average_precision)


def test_box_iou_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]])
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 50 / 150, 0.0, 0.25])


def test_hand_computed_ap():
    # one class, 3 ground-truth boxes in 2 images; detections by score: TP, FP, TP, TP
    gts = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 0])),
           (np.array([[50, 50, 70, 70]]), np.array([0]))]
    preds = [(np.array([[0, 0, 10, 10], [100, 100, 110, 110], [21, 21, 31, 31]]), np.array([0.9, 0.8, 0.7]),
              np.array([0, 0, 0])),
             (np.array([[50, 50, 70, 71]]), np.array([0.6]), np.array([0]))]
    res = mean_average_precision(preds, gts, num_classes=1)
    # recall 1/3, 1/3, 2/3, 1; precision 1, 1/2, 2/3, 3/4 -> envelope 1, .75, .75, .75
    # 101-point: recall 0.00..0.33 (34 points) at 1.0, 0.34..1.00 (67 points) at 0.75
    assert res.map == pytest.approx((34 * 1.0 + 67 * 0.75) / 101)
    assert res.ap[0] == pytest.approx(0.834158, abs=1e-6)


def test_matching_rules():
    gt = np.array([[0, 0, 10, 10]])
    # a duplicate of a matched box is a false positive; the higher score takes the match
    tp = match_image(np.array([[0, 0, 10, 10], [0, 0, 10, 9]]), np.array([0.5, 0.9]), gt)
    assert tp.tolist() == [False, True]
    # IoU just under the threshold does not match
    assert not match_image(np.array([[0, 0, 10, 4.9]]), np.array([0.9]), gt)[0]
    assert match_image(np.array([[0, 0, 10, 5]]), np.array([0.9]), gt)[0]  # IoU 0.5 exactly matches


def test_classes_and_empty_cases():
    meter = DetectionMeter(3)
    # class 1 predicted where the ground truth is class 0: a miss for 0, a false positive for 1
    meter.add(np.array([[0, 0, 10, 10]]), np.array([0.9]), np.array([1]), np.array([[0, 0, 10, 10]]), np.array([0]))
    res = meter.result()
    assert res.ap[0] == 0.0
    assert np.isnan(res.ap[1]) and np.isnan(res.ap[2])  # no ground truth: left out of the mean
    assert res.map == 0.0
    assert average_precision(np.zeros(0, bool), np.zeros(0), 5) == 0.0
    perfect = mean_average_precision([(np.array([[1, 1, 5, 5]]), np.array([0.3]), np.array([2]))],
                                     [(np.array([[1, 1, 5, 5]]), np.array([2]))], 3)
    assert perfect.map == 1.0


def test_max_det_keeps_best_scores():
    gt = np.array([[0, 0, 10, 10]])
    boxes = np.array([[100 + i, 100, 110 + i, 110] for i in range(5)] + [[0, 0, 10, 10]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    cls = np.zeros(6, int)
    assert mean_average_precision([(boxes, scores, cls)], [(gt, np.array([0]))], 1, max_det=5).map == 0.0
    assert mean_average_precision([(boxes, scores, cls)], [(gt, np.array([0]))], 1, max_det=None).map > 0


def _random_case(seed, n_images=30, nc=3):
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for _ in range(n_images):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 400, (n, 2))
        wh = rng.uniform(10, 80, (n, 2))
        gb = np.concatenate([xy, xy + wh], 1)
        gc = rng.integers(0, nc, n)
        # detections: jittered copies of some ground truth plus random boxes
        keep = rng.random(n) < 0.8
        jit = gb[keep] + rng.normal(0, 6, (int(keep.sum()), 4))
        jit[:, 2:] = np.maximum(jit[:, 2:], jit[:, :2] + 1)
        m = int(rng.integers(0, 4))
        rxy = rng.uniform(0, 400, (m, 2))
        rand = np.concatenate([rxy, rxy + rng.uniform(10, 80, (m, 2))], 1)
        pb = np.concatenate([jit, rand]).round(2)
        pc = np.concatenate([np.where(rng.random(int(keep.sum())) < 0.9, gc[keep], rng.integers(0, nc, int(keep.sum()))),
                             rng.integers(0, nc, m)])
        ps = rng.random(len(pb)).round(4)
        preds.append((pb, ps, pc))
        gts.append((gb.round(2), gc))
    return preds, gts


def test_against_pycocotools():
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    nc = 3
    preds, gts = _random_case(0, nc=nc)
    images, anns, dets = [], [], []
    for i, ((gb, gc), (pb, ps, pc)) in enumerate(zip(gts, preds)):
        images.append({"id": i, "width": 500, "height": 500})
        for b, c in zip(gb, gc):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c), "bbox": [b[0], b[1], w, h],
                         "area": w * h, "iscrowd": 0})
        for b, s, c in zip(pb, ps, pc):
            dets.append({"image_id": i, "category_id": int(c), "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                         "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in range(nc)]}
        coco.createIndex()
        cdt = coco.loadRes(dets)
        ev = COCOeval(coco, cdt, "bbox")
        ev.params.iouThrs = np.array([0.5])
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"][0, :, :, 0, -1]  # [recall, class] at area all, maxDets 100
    coco_ap = np.array([prec[:, k][prec[:, k] > -1].mean() if (prec[:, k] > -1).any() else np.nan
                        for k in range(nc)])
    ours = mean_average_precision(preds, gts, nc)
    np.testing.assert_allclose(ours.ap, coco_ap, atol=1e-9)
    assert ours.map == pytest.approx(float(np.nanmean(coco_ap)), abs=1e-9)


def test_mask_iou():
    gt = np.zeros((4, 4), np.uint8)
    gt[0, :2] = 1  # 2 lane pixels
    pred = np.zeros((4, 4), np.uint8)
    pred[0, 1:3] = 1  # 1 shared, 1 extra
    iou = mask_iou(pred, gt, 2)
    assert iou[1] == pytest.approx(1 / 3)
    assert iou[0] == pytest.approx(13 / 15)
    assert binary_iou(pred, gt) == pytest.approx(1 / 3)
    assert binary_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    meter = SegmentationMeter(3)
    meter.add(pred, gt)
    meter.add(gt, gt)  # accumulates over images: class 1 now 3 / 5
    assert meter.iou()[1] == pytest.approx(3 / 5)
    assert np.isnan(meter.iou()[2])
    with pytest.raises(ValueError):
        meter.add(pred[:2], gt)
