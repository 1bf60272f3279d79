"""Segmentation decoding: class maps at source size against a direct numpy computation."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception_edge.core.errors import ModelError
from perception_edge.core.segmentation import class_map, colorize, decode_segmentation, overlay
from perception_edge.core.transform import letterbox, make_transform

pytest.importorskip("onnxruntime")
from onnx_graphs import TIE_BREAK, segmentation_graph  # noqa: E402


def reference_mask(rgb, size, classes, stride, mode):
    """What the graph computes, evaluated directly on the resized image, then taken to source size."""
    boxed, t = letterbox(rgb, size, mode=mode)
    x = boxed.astype(np.float32) / 255
    if classes == 1:
        logits = (8 * x[..., 0] - 8 * x[..., 1] + TIE_BREAK)[None]
    else:
        logits = np.stack([np.full(x.shape[:2], TIE_BREAK, np.float32), 8 * x[..., 0] - 4 * x[..., 1] - 4 * x[..., 2],
                           -4 * x[..., 0] - 4 * x[..., 1] + 8 * x[..., 2]][:classes])
    h, w = size
    pooled = logits.reshape(len(logits), h // stride, stride, w // stride, stride).mean((2, 4))
    return t.mask_to_source(class_map(pooled, 0.5)), t


@pytest.mark.parametrize("classes", [1, 2, 3])
@pytest.mark.parametrize("mode", ["letterbox", "stretch"])
def test_segmenter_matches_reference_on_real_frames(tmp_path, frames_bgr, classes, mode):
    from perception_edge.backends import create_backend
    from perception_edge.pipeline import Segmenter

    seg = Segmenter(create_backend(str(segmentation_graph(tmp_path / "s.onnx", classes=classes))), resize_mode=mode)
    images = [frames_bgr[0], np.ascontiguousarray(frames_bgr[1][:600, :500])]
    masks = seg([(im, "bgr") for im in images])
    assert seg.inference_calls == 1 and masks.calls == 1 and len(masks) == 2
    assert all(0 < masks.timings[k] < 10_000 for k in ("preprocess", "inference", "postprocess"))
    for im, mask in zip(images, masks):
        assert mask.shape == im.shape[:2] and mask.dtype == np.uint8
        expected, _ = reference_mask(cv2.cvtColor(im, cv2.COLOR_BGR2RGB), (96, 128), classes, 4, mode)
        np.testing.assert_array_equal(mask, expected)
        assert len(np.unique(mask)) >= 2


def test_binary_threshold_and_argmax():
    logits = np.array([[[-2.0, 0.0, 0.5, 3.0]]], np.float32)
    np.testing.assert_array_equal(class_map(logits, 0.5), [[0, 0, 1, 1]])
    np.testing.assert_array_equal(class_map(logits, 0.9), [[0, 0, 0, 1]])  # logit(0.9) = 2.197
    three = np.stack([np.zeros((2, 2)), np.eye(2), 2 * np.eye(2)[::-1]]).astype(np.float32)
    np.testing.assert_array_equal(class_map(three), [[1, 2], [2, 1]])


def test_bad_segmentation_outputs():
    with pytest.raises(ModelError, match="NaN"):
        class_map(np.full((2, 4, 4), np.nan, np.float32))
    with pytest.raises(ModelError, match=r"\[batch, classes, H, W\]"):
        decode_segmentation(np.zeros((1, 4, 4), np.float32), [make_transform((4, 4), (4, 4))])


def test_colorize_and_overlay():
    mask = np.array([[0, 1], [2, 0]], np.uint8)
    rgb = np.full((2, 2, 3), 100, np.uint8)
    col = colorize(mask)
    assert col.shape == (2, 2, 3) and (col[0, 0] == 0).all() and (col[0, 1] != col[1, 0]).any()
    out = overlay(rgb, mask, alpha=0.5)
    assert (out[0, 0] == 100).all() and (out[1, 1] == 100).all() and (out[0, 1] != 100).any()


def test_segmenter_takes_its_own_input_size(tmp_path):
    """segmentation.input_size sizes a dynamic segmentation model; 0 keeps detection.input_size."""
    from perception_edge import config
    from perception_edge.pipeline import Segmenter

    path = str(segmentation_graph(tmp_path / "dyn.onnx", classes=2, size=("height", "width")))
    cfg = config.Sections.from_values({"segmentation.model": path, "detection.input_size": 320})
    assert Segmenter.from_config(cfg).input_hw == (320, 320)
    assert Segmenter.from_config(cfg.replace(**{"segmentation.input_size": 256})).input_hw == (256, 256)
