"""Synthetic scenes (perception_edge.data.synthetic) and data set folders (perception_edge.data.dataset)."""
from __future__ import annotations


import cv2
import numpy as np
import pytest

from perception_edge.data import dataset as ds
from perception_edge.cli import generate_data, import_carla
from perception_edge.data.synthetic import (CAMERA_POSES, CLASSES, MASK_DRIVABLE, MASK_LANE, render, sample_scene,
                                            scene_frames, scene_seed, sequence)

SIZE = (640, 360)


def _busy_seed(min_objects=4):
    """A seed whose scene has several labelled objects in the front camera."""
    for s in range(200):
        f = render(sample_scene(s), "front", SIZE)
        if len(f.boxes) >= min_objects:
            return s
    raise AssertionError("no busy scene in 200 seeds")


def test_deterministic_for_a_seed():
    a = scene_frames(11, SIZE, ["front", "front_left"], drivable=True)
    b = scene_frames(11, SIZE, ["front", "front_left"], drivable=True)
    for fa, fb in zip(a, b):
        assert np.array_equal(fa.image, fb.image)
        assert np.array_equal(fa.mask, fb.mask)
        assert np.array_equal(fa.boxes, fb.boxes)
        assert np.array_equal(fa.class_ids, fb.class_ids)
    c = scene_frames(12, SIZE, ["front"])[0]
    assert not np.array_equal(a[0].image, c.image)
    assert scene_seed(0, 1) != scene_seed(0, 2) and scene_seed(0, 1) == scene_seed(0, 1)


def test_frame_contract():
    f = render(sample_scene(3), "front", SIZE, drivable=True)
    assert f.image.shape == (360, 640, 3) and f.image.dtype == np.uint8
    assert f.mask.shape == (360, 640) and f.mask.dtype == np.uint8
    assert set(np.unique(f.mask)) <= {0, MASK_LANE, MASK_DRIVABLE}
    assert (f.mask == MASK_LANE).any() and (f.mask == MASK_DRIVABLE).any()
    assert f.boxes.dtype == np.float32 and f.boxes.shape[1] == 4
    assert ((f.boxes[:, 2] > f.boxes[:, 0]) & (f.boxes[:, 3] > f.boxes[:, 1])).all()
    assert (f.boxes[:, :2] >= 0).all() and (f.boxes[:, 2] <= 640).all() and (f.boxes[:, 3] <= 360).all()
    assert set(f.class_ids.tolist()) <= set(range(len(CLASSES)))
    assert render(sample_scene(3), "front", SIZE).mask.max() <= MASK_LANE  # no drivable class unless asked


@pytest.mark.parametrize("camera", list(CAMERA_POSES))
def test_mask_is_exactly_the_drawn_markings(camera):
    for seed in range(6):
        scene = sample_scene(seed)
        with_m = render(scene, camera, SIZE, markings=True, effects=False)
        without = render(scene, camera, SIZE, markings=False, effects=False)
        changed = (with_m.image != without.image).any(2)
        lane = with_m.mask == MASK_LANE
        assert np.array_equal(changed, lane), f"seed {seed}: {np.count_nonzero(changed ^ lane)} pixels differ"


def test_objects_occlude_the_mask():
    seed = _busy_seed()
    scene = sample_scene(seed)
    full = render(scene, "front", SIZE, effects=False)
    bare = render(scene, "front", SIZE, objects=[], effects=False)
    covered = (full.image != bare.image).any(2)
    assert covered.any()
    assert not (full.mask[covered] == MASK_LANE).any()
    assert (bare.mask == MASK_LANE).sum() >= (full.mask == MASK_LANE).sum()


def test_boxes_are_tight_around_the_drawn_objects():
    checked = 0
    for seed in range(40):
        scene = sample_scene(seed)
        n_obj = len(scene.vehicles) + len(scene.pedestrians) + len(scene.signs)
        empty = render(scene, "front", SIZE, background=False, objects=[], effects=False)
        assert len(empty.boxes) == 0
        full = render(scene, "front", SIZE, effects=False)
        for i in range(n_obj):
            alone = render(scene, "front", SIZE, background=False, objects=[i], effects=False)
            changed = (alone.image != empty.image).any(2)
            if not changed.any():
                assert len(alone.boxes) == 0
                continue
            ys, xs = np.nonzero(changed)
            if len(alone.boxes) == 0:  # too few pixels to label
                assert len(ys) < 12 or (xs.max() - xs.min() < 3) or (ys.max() - ys.min() < 3)
                continue
            assert len(alone.boxes) == 1
            np.testing.assert_array_equal(alone.boxes[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            checked += 1
        # with every object (and the background), visible boxes lie inside the unoccluded ones
        for b in full.boxes:
            assert b[2] - b[0] >= 3 and b[3] - b[1] >= 3
    assert checked >= 30


def test_cameras_see_one_scene_at_one_stamp():
    frames = scene_frames(5, SIZE, list(CAMERA_POSES), stamp=12.5)
    assert [f.camera for f in frames] == list(CAMERA_POSES)
    assert all(f.stamp == 12.5 for f in frames)
    assert not np.array_equal(frames[0].image, frames[1].image)
    steps = list(sequence(5, 3, fps=10.0, size=(320, 180), cameras=["front", "front_right"], start_stamp=100.0))
    assert len(steps) == 3
    for k, group in enumerate(steps):
        assert len({f.stamp for f in group}) == 1 and group[0].stamp == pytest.approx(100.0 + k * 0.1)
    assert not np.array_equal(steps[0][0].image, steps[2][0].image)  # the ego vehicle moved
    with pytest.raises(ValueError):
        render(sample_scene(0), "rear", SIZE)


def test_dataset_round_trip(tmp_path):
    n = ds.generate_dataset(str(tmp_path / "d"), 3, (320, 180), seed=7, cameras=["front", "front_left"])
    assert n == 6
    folder = ds.DatasetFolder(str(tmp_path / "d"), need_masks=True, need_labels=True)
    assert len(folder) == 6 and folder.classes == CLASSES
    stamps = (tmp_path / "d" / "stamps.csv").read_text().splitlines()
    assert stamps[0] == "name,camera,stamp" and stamps[1].startswith("000000_front,front,0.0")
    assert stamps[2].split(",")[2] == stamps[1].split(",")[2]  # both cameras of a scene share the stamp
    from perception_edge.data.synthetic import render as r
    ref = r(sample_scene(scene_seed(7, 0)), "front", (320, 180))
    s = folder[0]
    assert s.name == "000000_front"
    assert np.array_equal(s.mask, ref.mask)
    np.testing.assert_allclose(s.boxes, ref.boxes, atol=2e-3)
    assert np.array_equal(s.class_ids, ref.class_ids)
    assert np.abs(s.image.astype(int) - ref.image).mean() < 3  # JPEG


def test_synthetic_sample_source_iterates_its_length():
    source = ds.SampleSource(synthetic=3, seed=5, size=(160, 96))
    samples = list(source)  # bounded, though __getitem__ renders any index
    assert [s.name for s in samples] == ["syn000000", "syn000001", "syn000002"]
    assert np.array_equal(samples[1].image, source[1].image)


def test_yolo_label_text():
    text = ds.boxes_to_yolo(np.array([[10, 20, 30, 60]]), np.array([2]), 100, 200)
    assert text == "2 0.200000 0.200000 0.200000 0.200000\n"
    b, c = ds.yolo_to_boxes(text, 100, 200)
    np.testing.assert_allclose(b, [[10, 20, 30, 60]], atol=1e-4)
    with pytest.raises(ds.InputError):
        ds.yolo_to_boxes("1 2 3\n", 10, 10)


def test_generate_data_cli(tmp_path, capsys):
    assert generate_data.main(["--out", str(tmp_path / "g"), "--count", "2", "--size", "160x96", "--cameras",
                               "front,front_right", "--format", "png"]) == 0
    assert len(list((tmp_path / "g" / "images").glob("*.png"))) == 4
    with pytest.raises(ds.ConfigError):
        generate_data.main(["--out", str(tmp_path / "h"), "--count", "1", "--cameras", "rear"])
    with pytest.raises(ds.ConfigError):
        ds.parse_size("640")


def _carla_semantic(tags_new: bool):
    """A fake CARLA raw semantic frame (BGR as cv2 reads it): road in the lower half, lines on it."""
    road, line = (1, 24) if tags_new else (7, 6)
    sem = np.zeros((60, 80, 3), np.uint8)
    sem[:30, :, 2] = 11 if tags_new else 13  # sky
    sem[30:, :, 2] = road
    sem[30:, 20:23, 2] = line
    sem[30:, 60:62, 2] = line
    truth = np.zeros((60, 80), np.uint8)
    truth[30:] = 2
    truth[30:, 20:23] = 1
    truth[30:, 60:62] = 1
    return sem, truth


def test_carla_raw_tags_both_versions():
    for new in (True, False):
        sem, truth = _carla_semantic(new)
        assert ds.carla_semantic_encoding(sem) == "raw"
        assert np.array_equal(ds.carla_lane_mask(sem, drivable=True), truth)
        assert np.array_equal(ds.carla_lane_mask(sem), (truth == 1).astype(np.uint8))
        explicit = ds.carla_lane_mask(sem, "raw", "0.9.14+" if new else "legacy", drivable=True)
        assert np.array_equal(explicit, truth)
    # single-channel tag image (the red channel saved alone)
    sem, truth = _carla_semantic(True)
    assert np.array_equal(ds.carla_lane_mask(sem[:, :, 2], drivable=True), truth)


def test_carla_cityscapes_palette_and_import(tmp_path):
    sem, truth = _carla_semantic(True)
    palette = np.zeros_like(sem)
    palette[:30] = (180, 130, 70)  # sky (BGR)
    palette[truth == 2] = ds.CARLA_ROAD_COLOR[::-1]
    palette[truth == 1] = ds.CARLA_ROADLINE_COLOR[::-1]
    assert ds.carla_semantic_encoding(palette) == "cityscapes"
    assert np.array_equal(ds.carla_lane_mask(palette, drivable=True), truth)
    (tmp_path / "rgb").mkdir()
    (tmp_path / "sem").mkdir()
    cv2.imwrite(str(tmp_path / "rgb" / "000123.png"), np.full((60, 80, 3), 90, np.uint8))
    bgra = np.concatenate([sem, np.full((60, 80, 1), 255, np.uint8)], 2)  # save_to_disk writes BGRA
    cv2.imwrite(str(tmp_path / "sem" / "000123.png"), bgra)
    assert import_carla.main(["--rgb", str(tmp_path / "rgb"), "--semantic", str(tmp_path / "sem"),
                              "--out", str(tmp_path / "out")]) == 0
    sample = ds.DatasetFolder(str(tmp_path / "out"), need_masks=True)[0]
    assert np.array_equal(sample.mask, (truth == 1).astype(np.uint8))


def test_training_input_matches_the_runtime_preprocessor():
    from perception_edge.core.preprocess import Preprocessor

    f = render(sample_scene(4), "front", SIZE)
    for mode, hw in (("letterbox", (192, 320)), ("stretch", (200, 300))):
        fitted, cov, boxes, t = ds.fit_to_input(f.image, f.mask, f.boxes, hw, mode)
        blob, (tr,) = Preprocessor(hw, mode=mode)([(f.image, "rgb")])
        np.testing.assert_allclose(fitted.transpose(2, 0, 1) / np.float32(255), blob[0], atol=1e-6)
        assert tr == t
        assert cov.shape == hw and 0 <= cov.min() and cov.max() <= 1
        np.testing.assert_allclose(t.boxes_to_source(boxes), f.boxes, atol=1e-3)


def test_augment_moves_labels_with_the_image():
    f = render(sample_scene(_busy_seed()), "front", SIZE, effects=False)
    rng = np.random.default_rng(0)
    img, mask, boxes, cls = ds.augment(f.image, f.mask, f.boxes, f.class_ids, rng, flip=1.0, scale=0, shift=0,
                                       brightness=0, contrast=0, saturation=0)
    assert np.array_equal(img, f.image[:, ::-1]) and np.array_equal(mask, f.mask[:, ::-1])
    np.testing.assert_allclose(boxes[:, [0, 2]], 640 - f.boxes[:, [2, 0]])
    img, mask, boxes, cls = ds.augment(f.image, f.mask, f.boxes, f.class_ids, np.random.default_rng(3), flip=0)
    assert img.shape == f.image.shape and mask.shape == f.mask.shape and len(boxes) == len(cls) <= len(f.boxes)
