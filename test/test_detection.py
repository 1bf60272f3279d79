"""YOLOv5 decoding + NMS against the official reference, on synthetic head outputs and on a real
YOLOv5n ONNX graph over real frames."""
from __future__ import annotations

import numpy as np
import pytest

from perception_edge.core.detections import decode_efficient_nms, decode_raw, to_source
from perception_edge.core.errors import ModelError
from perception_edge.core.labels import COCO80
from perception_edge.core.transform import letterbox_transform
import yolov5_reference as ref


def synthetic_head(rng, n=2000, nc=5, batch=2):
    xy = rng.uniform(0, 640, (batch, n, 2))
    wh = rng.uniform(4, 200, (batch, n, 2))
    obj = rng.uniform(0, 1, (batch, n, 1)) ** 3
    cls = rng.uniform(0, 1, (batch, n, nc))
    return np.concatenate([xy, wh, obj, cls], 2).astype(np.float32)


def assert_same_rows(ours, theirs, size):
    assert len(ours) == len(theirs)
    np.testing.assert_array_equal(ours[:, 5], theirs[:, 5])
    np.testing.assert_allclose(ours[:, 4], theirs[:, 4], rtol=1e-5)
    np.testing.assert_allclose(ours[:, :4], theirs[:, :4], rtol=0, atol=1e-3 * size)


@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize("conf,iou,max_det", [(0.25, 0.45, 300), (0.05, 0.6, 50), (0.5, 0.3, 1000)])
def test_decode_raw_matches_reference(agnostic, conf, iou, max_det):
    pred = synthetic_head(np.random.default_rng(7))
    ours = decode_raw(pred, conf, iou, max_det, agnostic)
    theirs = ref.non_max_suppression(pred, conf, iou, agnostic, max_det)
    for o, t in zip(ours, theirs):
        assert_same_rows(o, t, 640)


def test_decode_raw_no_candidates_and_single_class():
    pred = synthetic_head(np.random.default_rng(1), nc=1, batch=1)
    (rows,) = decode_raw(pred, 0.3, 0.45, 300)
    assert set(rows[:, 5]) <= {0.0} and len(rows) > 0
    pred[..., 4] = 0.0
    (rows,) = decode_raw(pred, 0.3, 0.45, 300)
    assert rows.shape == (0, 6)


def test_nan_output_is_a_model_error():
    pred = synthetic_head(np.random.default_rng(2), batch=1)
    pred[0, 10, 4] = np.nan
    with pytest.raises(ModelError, match="NaN"):
        decode_raw(pred, 0.25, 0.45, 300)
    pred = synthetic_head(np.random.default_rng(2), batch=1)
    pred[0, pred[0, :, 4].argmax(), 0] = np.inf  # a candidate row with a broken box
    with pytest.raises(ModelError, match="NaN or infinite"):
        decode_raw(pred, 0.25, 0.45, 300)


@pytest.mark.parametrize("shape", [(1, 100), (1, 100, 5), (100, 85)])
def test_wrong_output_shape_is_a_model_error(shape):
    with pytest.raises(ModelError, match="YOLOv5 output"):
        decode_raw(np.zeros(shape, np.float32), 0.25, 0.45, 300)


def test_efficient_nms_outputs():
    num = np.array([[3], [0]], np.int32)
    boxes = np.zeros((2, 100, 4), np.float32)
    boxes[0, :3] = [[10, 20, 110, 220], [0, 0, 640, 640], [300, 300, 310, 305]]
    scores = np.zeros((2, 100), np.float32)
    scores[0, :3] = [0.9, 0.5, 0.2]
    classes = np.zeros((2, 100), np.int32)
    classes[0, :3] = [2, 0, 7]
    a, b = decode_efficient_nms(num, boxes, scores, classes, conf_threshold=0.25, max_det=300)
    np.testing.assert_allclose(a, [[10, 20, 110, 220, 0.9, 2], [0, 0, 640, 640, 0.5, 0]], rtol=1e-6)
    assert b.shape == (0, 6)
    t = letterbox_transform((720, 1280), (640, 640))
    dets = to_source(a, t, ["person", "bicycle", "car"])
    np.testing.assert_allclose(dets.boxes, [[20, 0, 220, 160], [0, 0, 1280, 720]])
    assert dets.names() == ["car", "person"]


# --- the real graph --------------------------------------------------------------------------------

def _conf_for(pred, candidates=300):
    """A confidence threshold that lets about `candidates` rows of a random-weight model through,
    placed in the widest gap between neighbouring scores so float rounding cannot move a row
    across it."""
    conf = np.sort((pred[0, :, 4:5] * pred[0, :, 5:]).max(1))[::-1]
    window = conf[candidates // 2: candidates * 2]
    i = int(np.argmax(window[:-1] - window[1:]))
    return float(window[i] + window[i + 1]) / 2


@pytest.fixture(scope="module")
def session(yolov5n_onnx):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(yolov5n_onnx), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("crop", [None, (slice(0, 720), slice(0, 517)), (slice(100, 433), slice(0, 1280)),
                                  "portrait"])
def test_detector_matches_official_reference_on_real_frames(yolov5n_onnx, session, frames_bgr, crop):
    from perception_edge.backends import create_backend
    from perception_edge.pipeline import Detector

    bgr = frames_bgr[0]
    if crop == "portrait":
        bgr = np.ascontiguousarray(np.rot90(bgr))
    elif crop is not None:
        bgr = np.ascontiguousarray(bgr[crop])
    pred = ref.raw_prediction(session, bgr)
    conf = _conf_for(pred)
    theirs, _ = ref.detect(session, bgr, conf, 0.45)
    assert len(theirs) >= 5, "the recalibrated model should produce candidate boxes"
    detector = Detector(create_backend(str(yolov5n_onnx)), conf_threshold=conf, iou_threshold=0.45)
    (dets,) = detector([(bgr, "bgr")])
    ours = np.concatenate([dets.boxes, dets.scores[:, None], dets.class_ids[:, None]], 1)
    # the reference keeps boxes lying wholly in the padding, collapsed onto the image edge; we drop them
    h, w = bgr.shape[:2]
    x1, y1, x2, y2 = theirs[:, :4].T
    in_padding = ((x1 == x2) & ((x1 == 0) | (x1 == w))) | ((y1 == y2) & ((y1 == 0) | (y1 == h)))
    theirs = theirs[~in_padding]
    assert_same_rows(ours, theirs, max(bgr.shape[:2]))


def test_detector_batches_cameras_in_one_call(yolov5n_onnx, session, frames_bgr):
    from perception_edge.backends import create_backend
    from perception_edge.pipeline import Detector

    pred = ref.raw_prediction(session, frames_bgr[1])
    detector = Detector(create_backend(str(yolov5n_onnx)), conf_threshold=_conf_for(pred))
    images = [(f, "bgr") for f in frames_bgr[:3]]
    batched = detector(images)
    assert detector.inference_calls == 1 and batched.calls == 1  # three cameras, one backend run
    t = batched.timings  # what this call took, returned with its results (ms)
    assert set(t) == {"preprocess", "inference", "postprocess"}
    assert 0 < t["inference"] < 10_000 and 0 < t["preprocess"] < t["inference"] and 0 < t["postprocess"] < 10_000
    singles = [detector([im])[0] for im in images]
    for a, b in zip(batched, singles):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
    assert any(len(d) for d in batched)
    assert not all(np.array_equal(batched[0].boxes, d.boxes) for d in batched[1:]), "outputs depend on the input"


def test_cli_detect_writes_json_in_source_pixels(yolov5n_onnx, session, frame_paths, tmp_path):
    import json

    import cv2

    from perception_edge.cli import main

    bgr = cv2.imread(str(frame_paths[2]))
    pred = ref.raw_prediction(session, bgr)
    conf = _conf_for(pred, 40)
    theirs, _ = ref.detect(session, bgr, conf, 0.45)
    assert main(["detect", "--model", str(yolov5n_onnx), "--output", str(tmp_path), "--conf-thres", str(conf),
                 str(frame_paths[2])]) == 0
    record = json.loads((tmp_path / f"{frame_paths[2].stem}.json").read_text())
    assert (record["width"], record["height"]) == (1280, 720) and record["image"] == str(frame_paths[2])
    rows = np.array([d["box_xyxy"] + [d["score"], d["class_id"]] for d in record["detections"]])
    assert len(rows) == len(theirs) > 0
    np.testing.assert_array_equal(rows[:, 5], theirs[:, 5])
    np.testing.assert_allclose(rows[:, 4], theirs[:, 4], atol=1e-5)  # written with 5 decimals
    np.testing.assert_allclose(rows[:, :4], theirs[:, :4], atol=1e-3 * 1280)
    assert [d["class_name"] for d in record["detections"]] == [COCO80[int(c)] for c in theirs[:, 5]]
    assert cv2.imread(str(tmp_path / f"{frame_paths[2].stem}.jpg")).shape == (720, 1280, 3)
