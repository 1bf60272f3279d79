"""Evaluation of results bags (perception_edge.bag_report, `perception-edge evaluate --bag`) and the
COCO metrics behind it (core.metrics.CocoDetectionMeter, cross-checked with pycocotools)."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags")

from perception_edge.bag_report import collect, evaluate_bag, video_source  # noqa: E402
from perception_edge.cli.evaluate import main as evaluate_main  # noqa: E402
from perception_edge.core.detections import Detections  # noqa: E402
from perception_edge.core.errors import ConfigError  # noqa: E402
from perception_edge.core.metrics import CocoDetectionMeter  # noqa: E402
from perception_edge.data import bags  # noqa: E402
from perception_edge.data.synthetic import CLASSES, sequence  # noqa: E402
from perception_edge.offline_replay import run_offline  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DET = str(REPO / "models" / "det_yolov5_synth.onnx")
SEG = str(REPO / "models" / "lane_unet.onnx")
CAMERAS = ("front", "front_left", "front_right")


# -- COCO mAP against pycocotools ----------------------------------------------------------------------

def _perturbed(seed: int = 0, steps: int = 8):
    """Synthetic ground truth (seed 3: every class present) and predictions made from it: boxes
    jittered by 0-15 % of their size (IoUs spread over 0.5-0.95), 10 % missed, 5 % with the wrong
    class, a few false positives, random scores; one image with 130 false positives of one class
    (COCO keeps 100 per image and class)."""
    rng = np.random.default_rng(seed)
    frames = [f for step in sequence(3, steps, 10.0, (640, 360), CAMERAS) for f in step]
    gts, preds = [], []
    for i, f in enumerate(frames):
        gb, gc = np.asarray(f.boxes, np.float64).reshape(-1, 4), np.asarray(f.class_ids, np.int64)
        wh = np.concatenate([gb[:, 2:] - gb[:, :2]] * 2, axis=1)
        pb = gb + rng.normal(0, 1, gb.shape) * wh * rng.uniform(0.0, 0.15, (len(gb), 1))
        pc = gc.copy()
        swap = rng.random(len(pc)) < 0.05
        pc[swap] = rng.integers(0, len(CLASSES), int(swap.sum()))
        keep = rng.random(len(gb)) > 0.1
        pb, pc = pb[keep], pc[keep]
        n_fp = 130 if i == 5 else int(rng.integers(0, 4))
        xy = rng.uniform(0, 1, (n_fp, 2)) * [560, 280]
        pb = np.concatenate([pb, np.concatenate([xy, xy + rng.uniform(10, 80, (n_fp, 2))], 1)])
        pc = np.concatenate([pc, np.full(n_fp, 2) if i == 5 else rng.integers(0, len(CLASSES), n_fp)])
        pb[:, [0, 2]] = np.clip(pb[:, [0, 2]], 0, 640)
        pb[:, [1, 3]] = np.clip(pb[:, [1, 3]], 0, 360)
        ok = (pb[:, 2] > pb[:, 0] + 1) & (pb[:, 3] > pb[:, 1] + 1)
        scores = rng.uniform(0.05, 1.0, len(pb))
        gts.append((gb, gc))
        preds.append((pb[ok], scores[ok], pc[ok]))
    return gts, preds


def _pycocotools(gts, preds, n_classes):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for i, ((gb, gc), (pb, ps, pc)) in enumerate(zip(gts, preds)):
        images.append({"id": i + 1, "width": 640, "height": 360})
        for b, c in zip(gb, gc):  # xywh, area w * h
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1, "iscrowd": 0,
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                         "area": float((b[2] - b[0]) * (b[3] - b[1]))})
        for b, s, c in zip(pb, ps, pc):
            dets.append({"image_id": i + 1, "category_id": int(c) + 1, "score": float(s),
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": c + 1, "name": str(c)} for c in range(n_classes)]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # per class AP@0.5: precision[T, R, K, area all, maxDets 100]
    per_class = ev.eval["precision"][0, :, :, 0, -1].mean(axis=0)
    return ev.stats[0], ev.stats[1], per_class


def test_coco_map_agrees_with_pycocotools():
    pytest.importorskip("pycocotools")
    gts, preds = _perturbed()
    meter = CocoDetectionMeter(len(CLASSES))
    for (gb, gc), (pb, ps, pc) in zip(gts, preds):
        meter.add(pb, ps, pc, gb, gc)
    res = meter.result()
    assert (res.n_gt > 0).all()
    map50_95, map50, per_class = _pycocotools(gts, preds, len(CLASSES))
    assert 0.3 < map50_95 < map50 < 0.95  # a spread of IoUs: the thresholds matter
    assert res.map50_95 == pytest.approx(map50_95, abs=1e-3)
    assert res.map50 == pytest.approx(map50, abs=1e-3)
    np.testing.assert_allclose(res.ap50, per_class, atol=1e-3)


def test_coco_meter_operating_point():
    meter = CocoDetectionMeter(2)
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    meter.add(np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 29]], float), np.array([0.9, 0.8, 0.7]),
              np.array([0, 0, 1]), gt, np.array([0, 1]))
    res = meter.result()
    np.testing.assert_allclose(res.precision(), [0.5, 1.0])
    np.testing.assert_allclose(res.recall(), [1.0, 1.0])
    assert res.overall_precision_recall() == pytest.approx((2 / 3, 1.0))
    assert res.ap[:, 1].tolist() == [1.0] * 9 + [0.0]  # IoU 0.9 box: a hit up to 0.9, a miss at 0.95
    assert res.map50 == pytest.approx(1.0)


# -- results bags -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    root = tmp_path_factory.mktemp("drive")
    gt = root / "gt"
    bags.write_synthetic_bag(gt, 4, (640, 360), seed=2024, cameras=CAMERAS)
    results = run_offline(str(gt), root / "offline", DET, SEG, progress=False)
    return gt, results


def test_offline_results_report(drive, tmp_path):
    gt, results = drive
    report = evaluate_bag(str(results), None, tmp_path, progress=False)
    assert report["ground_truth"] == str(Path(gt).resolve())  # found through the results bag's source_bag
    det, lane = report["detection"], report["lane"]
    # bundled models at 1280x720 (README): mAP@0.5 0.909, lane IoU 0.866; here 4 steps at 640x360
    # give mAP@0.5 0.921, mAP@0.5:0.95 0.648, P = R = 0.917, lane IoU 0.879
    assert det["frames"] == 12 and det["frames_without_truth"] == 0
    assert det["map50"] > 0.8 and 0.5 < det["map50_95"] < det["map50"]
    assert det["precision"] > 0.8 and det["recall"] > 0.8
    assert set(det["per_class"]) <= set(CLASSES)
    assert lane["iou"]["lane_marking"] > 0.8
    for ns in ("/front", "/front_left", "/front_right"):
        cam = report["cameras"][ns]
        assert cam["inputs"] == cam["detections"] == cam["lane_mask"] == 4
        assert cam["dropped"] == 0 and cam["latency_ms"] is None
        assert cam["detections_hz"] == pytest.approx(10.0)
    assert json.loads((tmp_path / "report.json").read_text()) == report
    md = (tmp_path / "report.md").read_text()
    assert f"| detection mAP@0.5 | {det['map50']:.3f} |" in md
    for name in ("pr_curves.png", "lane_iou.png"):
        assert cv2.imread(str(tmp_path / name)) is not None
    video = cv2.VideoCapture(str(tmp_path / "replay.mp4"))
    assert video.get(cv2.CAP_PROP_FRAME_COUNT) == 4
    assert (video.get(cv2.CAP_PROP_FRAME_WIDTH), video.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (3 * 640, 360)
    ok, frame = video.read()
    assert ok and frame.std() > 10


def _live_like(gt: Path, out: Path, latency_ms: dict[str, float], drop: tuple[str, int]) -> Path:
    """A results bag as a live replay of a CARLA-style run records it: frames, ground truth and
    predictions in one bag; frames and replay/input logged at publication (no replay/input for
    /front_right: its frames are the inputs), outputs `latency_ms` later (per namespace), one frame's
    outputs missing (`drop`: namespace, step). Predictions = ground truth."""
    wall0 = 1_800_000_000 * 1_000_000_000  # the recorder's clock, not the bag's
    with bags.BagWriter(out) as w:
        names = list(CLASSES)
        w.write("/front/label_info", bags.LABEL_INFO, bags.label_info_msg(names, 0.25), wall0, qos="latched")
        for t, ty, log_ns, msg in bags.messages(gt, [x for x in bags.info(gt).topics if x != "/tf_static"]):
            ns = bags.namespace_of(t) if t.endswith("image_raw") else t.split("/ground_truth/")[0] if \
                "/ground_truth/" in t else None
            sent = wall0 + (log_ns - bags.SYNTHETIC_START_NS)
            w.write(t, ty, msg, sent)
            if ns is None:
                continue
            step = (bags.stamp_ns(msg) - bags.SYNTHETIC_START_NS) // 100_000_000
            stamp, fid = bags.stamp_ns(msg), msg.header.frame_id
            if t.endswith("image_raw") and ns != "/front_right":
                w.write(f"{ns}/replay/input", bags.HEADER, bags.header(stamp, fid), sent)
            if (ns, step) == drop:
                continue
            done = sent + int(latency_ms[ns] * 1e6) + int(step) * 1_000_000  # + 1 ms per step
            if t.endswith(bags.GT_DETECTIONS):
                d = bags.detections_from_msg(msg, names)
                w.write(f"{ns}/detections", bags.DETECTIONS,
                        bags.detections_msg(Detections(d.boxes, np.full(len(d), 0.9, np.float32), d.class_ids, names),
                                            stamp, fid), done)
            elif t.endswith(bags.GT_LANE_MASK):
                w.write(f"{ns}/lane_mask", bags.IMAGE, msg, done)
    return out


def test_live_results_latency_drops_and_baseline(drive, tmp_path):
    gt, offline = drive
    live = _live_like(gt, tmp_path / "live", {"/front": 20.0, "/front_left": 30.0, "/front_right": 40.0},
                      ("/front_left", 2))
    out = tmp_path / "report"
    assert evaluate_main(["--bag", str(live), "--baseline", str(offline), "--output", str(out), "--no-video"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["ground_truth"] == str(live)  # the results bag's own ground-truth topics
    assert report["detection"]["map50"] == pytest.approx(1.0)  # predictions are the ground truth
    assert report["detection"]["map50_95"] == pytest.approx(1.0)
    assert report["lane"]["iou"]["lane_marking"] == pytest.approx(1.0)
    front, left = report["cameras"]["/front"], report["cameras"]["/front_left"]
    assert front["dropped"] == 0 and left["dropped"] == 1 and left["inputs"] == 4
    assert front["latency_ms"]["p50"] == pytest.approx(21.5) and front["latency_ms"]["n"] == 4  # 20 + 0..3 ms
    assert front["latency_ms"]["p99"] == pytest.approx(22.97)
    assert left["latency_ms"]["n"] == 3
    right = report["cameras"]["/front_right"]  # inputs: its camera frames
    assert right["inputs"] == 4 and right["dropped"] == 0 and right["latency_ms"]["max"] == 43.0
    base = report["baseline"]
    assert report["deltas"]["detection"]["map50"] == pytest.approx(1.0 - base["detection"]["map50"], abs=1e-6)
    assert report["deltas"]["cameras"]["/front_left"]["dropped"] == 1
    md = (out / "report.md").read_text()
    assert "| detection mAP@0.5 | 1.000 |" in md and "baseline" in md
    assert cv2.imread(str(out / "latency.png")) is not None
    assert "video_frames_from" not in report and not (out / "replay.mp4").exists()
    assert video_source(collect(str(live)), str(gt)) == str(live)  # a CARLA-style bag has the frames itself


def test_clear_errors(drive, tmp_path):
    gt, results = drive
    with pytest.raises(ConfigError, match="not a results bag"):
        evaluate_bag(str(gt), None, tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"no <ns>/ground_truth/detections .* topics"):
        evaluate_bag(str(results), str(results), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="cannot read rosbag"):
        evaluate_bag(str(tmp_path / "missing"), None, tmp_path, progress=False)
