"""Letterbox / stretch geometry and its exact inverse; the preprocessing tensor against a direct
computation."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception_edge.core.errors import InputError
from perception_edge.core.preprocess import Preprocessor
from perception_edge.core.transform import letterbox, letterbox_transform, make_transform, stretch_transform

SIZES = [(720, 1280), (1280, 720), (333, 517), (640, 640), (100, 2000), (1, 1), (479, 641)]


@pytest.mark.parametrize("src_hw", SIZES)
@pytest.mark.parametrize("dst_hw", [(640, 640), (384, 640), (192, 320)])
def test_letterbox_geometry_keeps_aspect_and_centres(src_hw, dst_hw):
    t = letterbox_transform(src_hw, dst_hw)
    assert t.new_w <= t.dst_w and t.new_h <= t.dst_h
    assert t.new_w == t.dst_w or t.new_h == t.dst_h  # fills one side
    assert abs(t.new_w / t.new_h - src_hw[1] / src_hw[0]) <= max(1 / t.new_h, t.new_w / t.new_h / t.new_w) * 1.01 + 1e-9 \
        or min(t.new_w, t.new_h) == 1
    assert 0 <= t.dst_w - t.new_w - 2 * t.pad_x <= 1 and 0 <= t.dst_h - t.new_h - 2 * t.pad_y <= 1


@pytest.mark.parametrize("mode", ["letterbox", "stretch"])
@pytest.mark.parametrize("src_hw", SIZES)
def test_box_inverse_round_trips_exactly(mode, src_hw):
    t = make_transform(src_hw, (640, 640), mode)
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 1, (50, 2)) * [src_hw[1], src_hw[0]]
    wh = rng.uniform(0, 1, (50, 2)) * [src_hw[1], src_hw[0]]
    boxes = np.concatenate([xy, np.minimum(xy + wh, [src_hw[1], src_hw[0]])], 1)
    back = t.boxes_to_source(t.boxes_to_model(boxes).astype(np.float32), clip=False)
    np.testing.assert_allclose(back, boxes, rtol=0, atol=1e-3 * max(src_hw))


def test_box_corners_of_content_map_to_image_corners():
    t = letterbox_transform((720, 1280), (640, 640))
    assert (t.new_w, t.new_h, t.pad_x, t.pad_y) == (640, 360, 0, 140)
    corners = np.array([[t.pad_x, t.pad_y, t.pad_x + t.new_w, t.pad_y + t.new_h]], np.float32)
    np.testing.assert_allclose(t.boxes_to_source(corners), [[0, 0, 1280, 720]])
    # boxes reaching into the padding are clipped to the image
    np.testing.assert_allclose(t.boxes_to_source(np.array([[-5, 0, 700, 640]], np.float32)), [[0, 0, 1280, 720]])


@pytest.mark.parametrize("mode", ["letterbox", "stretch"])
@pytest.mark.parametrize("src_hw", [(720, 1280), (333, 517), (1280, 720)])
@pytest.mark.parametrize("stride", [1, 4, 8])
def test_mask_inverse_is_exact_for_block_masks(mode, src_hw, stride):
    """A mask drawn in source pixels, carried into model space, comes back pixel-exact except on
    the block borders that the output stride cannot resolve."""
    t = make_transform(src_hw, (640, 640), mode)
    src = np.zeros(src_hw, np.uint8)
    h, w = src_hw
    src[h // 4: h // 2, w // 3: 2 * w // 3] = 1
    src[3 * h // 4:, : w // 5] = 2
    model_space, _ = letterbox(src[..., None].repeat(3, 2), (640, 640), pad_value=0, mode=mode)
    out_map = cv2.resize(model_space[..., 0], (640 // stride, 640 // stride), interpolation=cv2.INTER_NEAREST)
    back = t.mask_to_source(out_map)
    assert back.shape == src_hw
    wrong = back != src
    # errors only within one output cell (in source pixels) of a class border or of the padding
    borders = cv2.Laplacian(src.astype(np.float32), cv2.CV_32F) != 0
    borders[[0, -1], :] = borders[:, [0, -1]] = True
    edge = cv2.dilate(borders.astype(np.uint8),
                      np.ones((2 * int(np.ceil(stride / min(t.scale_x, t.scale_y))) + 3,) * 2, np.uint8))
    assert not (wrong & (edge == 0)).any()
    assert wrong.mean() < 0.02


def test_preprocessor_matches_direct_computation(frames_bgr):
    pre = Preprocessor((640, 640))
    images = [(frames_bgr[0], "bgr"), (cv2.cvtColor(frames_bgr[1], cv2.COLOR_BGR2RGB), "rgb"),
              (np.ascontiguousarray(frames_bgr[2][:500, :333]), "bgr")]
    blob, transforms = pre(images, batch=4)
    assert blob.shape == (4, 3, 640, 640) and blob.dtype == np.float32
    for i, (pix, order) in enumerate(images):
        rgb = pix[..., ::-1] if order == "bgr" else pix
        boxed, t = letterbox(np.ascontiguousarray(rgb), (640, 640))
        assert t == transforms[i]
        expected = boxed.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        np.testing.assert_array_equal(blob[i], expected)  # bit-identical to YOLOv5's x / 255
    # reusing the buffers with other geometry repaints the padding
    blob2, _ = pre([(np.ascontiguousarray(frames_bgr[0][:300]), "bgr")], batch=4)
    boxed, _ = letterbox(np.ascontiguousarray(frames_bgr[0][:300, :, ::-1]), (640, 640))
    np.testing.assert_allclose(blob2[0], boxed.transpose(2, 0, 1) / 255, atol=1e-6)


def test_preprocessor_half_precision_and_stretch():
    img = np.random.default_rng(0).integers(0, 255, (100, 300, 3), np.uint8)
    blob, (t,) = Preprocessor((64, 96), np.float16, mode="stretch")([(img, "rgb")])
    assert blob.dtype == np.float16 and blob.shape == (1, 3, 64, 96)
    assert (t.pad_x, t.pad_y, t.new_w, t.new_h) == (0, 0, 96, 64)
    ref = cv2.resize(img, (96, 64), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1) / 255
    np.testing.assert_allclose(blob[0].astype(np.float32), ref, atol=2e-3)


@pytest.mark.parametrize("bad", [np.zeros((0, 10, 3), np.uint8), np.zeros((10, 10), np.uint8),
                                 np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 4), np.uint8)])
def test_preprocessor_rejects_bad_images(bad):
    with pytest.raises(InputError):
        Preprocessor((64, 64))([(bad, "rgb")])


def test_zero_size_geometry_is_an_input_error():
    with pytest.raises(InputError, match="zero-size"):
        letterbox_transform((0, 10), (64, 64))
    with pytest.raises(InputError, match="zero-size"):
        stretch_transform((10, 0), (64, 64))


def test_preprocess_memory_is_bounded_across_frame_sizes():
    """80 different frame heights: the resize buffers stay within cache_size (LRU), the batch
    tensor is one buffer for every batch size, and the results equal a fresh preprocessor's."""
    import tracemalloc

    pre = Preprocessor((320, 320), cache_size=4)
    rng = np.random.default_rng(0)
    first = [(rng.integers(0, 255, (240 + k, 400, 3), np.uint8), "bgr") for k in range(3)]
    pre(first)  # warm: the largest batch seen
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for k in range(80):
        img = rng.integers(0, 255, (300 + k, 500, 3), np.uint8)
        blob, (t,) = pre([(img, "rgb")])
        assert len(pre._buffers) <= 4
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert grown < 4 * 320 * 320 * 3 * 2 + 1_000_000, grown  # at most the LRU's buffers, not 80 sets
    fresh, _ = Preprocessor((320, 320))([(img, "rgb")])
    np.testing.assert_array_equal(blob, fresh)
    # a smaller batch after a larger one is a view of the same tensor, with the right content
    again, _ = pre(first[:2], batch=3)
    expect, _ = Preprocessor((320, 320))(first[:2], batch=3)
    np.testing.assert_array_equal(again, expect)  # the unused third slot is padding again
