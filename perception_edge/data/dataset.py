"""Data set folders (images + lane masks + YOLO box labels), synthetic generation, CARLA captures.

Folder layout (every part optional except images/):

    DIR/images/NAME.jpg|png     RGB frames
    DIR/masks/NAME.png          lane masks, uint8 class ids (0 background, 1 lane marking, 2 drivable)
    DIR/labels/NAME.txt         YOLO boxes: "class cx cy w h" per line, normalized to [0, 1]
    DIR/classes.txt             box class names, one per line
    DIR/seg_classes.txt         mask class names, one per line
    DIR/stamps.csv              name,camera,stamp (synthetic sets: frames of one instant share a stamp)

CARLA semantic segmentation camera (``import-carla``): pairs of an RGB image and a semantic image
with the same file stem. The semantic image is either raw (``image.save_to_disk(path)``: the class
tag in the red channel) or converted with ``carla.ColorConverter.CityScapesPalette``. CARLA 0.9.14
renumbered the tags to follow CityScapes: RoadLine is 24 and Road 1 from 0.9.14 on, RoadLine 6 and
Road 7 up to 0.9.13; the palette colours are the same in both (RoadLine (157, 234, 50), Road
(128, 64, 128)).
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from perception_edge.core.errors import ConfigError, InputError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class Sample:
    name: str
    image: np.ndarray  # H x W x 3 uint8 RGB
    mask: np.ndarray | None  # H x W uint8 or None
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels
    class_ids: np.ndarray  # (N,) int64


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360) as (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"size must be WIDTHxHEIGHT (e.g. 640x360), got {text!r}") from None
    if w < 32 or h < 32 or w > 8192 or h > 8192:
        raise ConfigError(f"size {w}x{h} is out of range (32..8192 per side)")
    return w, h


def boxes_to_yolo(boxes: np.ndarray, class_ids: np.ndarray, width: int, height: int) -> str:
    lines = []
    for (x0, y0, x1, y1), c in zip(np.asarray(boxes, np.float64), class_ids):
        lines.append(f"{int(c)} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                     f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def yolo_to_boxes(text: str, width: int, height: int, source: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise InputError(f"{source}:{n}: expected 'class cx cy w h', got {line.strip()!r}")
        try:
            rows.append([float(v) for v in parts])
        except ValueError:
            raise InputError(f"{source}:{n}: not numbers: {line.strip()!r}") from None
    if not rows:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    a = np.array(rows, np.float64)
    cx, cy, w, h = a[:, 1] * width, a[:, 2] * height, a[:, 3] * width, a[:, 4] * height
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).astype(np.float32)
    return boxes, a[:, 0].astype(np.int64)


def write_sample(root: str, name: str, image: np.ndarray, mask: np.ndarray | None = None,
                 boxes: np.ndarray | None = None, class_ids: np.ndarray | None = None,
                 image_ext: str = "jpg", jpeg_quality: int = 95) -> None:
    """Write one sample (image RGB) into a data set folder."""
    r = Path(root)
    (r / "images").mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if image_ext in ("jpg", "jpeg") else []
    if not cv2.imwrite(str(r / "images" / f"{name}.{image_ext}"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params):
        raise InputError(f"cannot write {r / 'images' / name}.{image_ext}")
    if mask is not None:
        (r / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(r / "masks" / f"{name}.png"), mask)
    if boxes is not None:
        (r / "labels").mkdir(exist_ok=True)
        h, w = image.shape[:2]
        (r / "labels" / f"{name}.txt").write_text(boxes_to_yolo(boxes, class_ids, w, h))


def read_names(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


class DatasetFolder:
    """A data set folder (see the module docstring); samples sorted by name."""

    def __init__(self, root: str, need_masks: bool = False, need_labels: bool = False):
        self.root = Path(root)
        img_dir = self.root / "images"
        if not img_dir.is_dir():
            raise InputError(f"{root}: no images/ folder (expected DIR/images, DIR/masks, DIR/labels)")
        self.images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not self.images:
            raise InputError(f"{img_dir}: no images ({', '.join(IMAGE_EXTS)})")
        if need_masks:
            missing = [p.stem for p in self.images if not (self.root / "masks" / f"{p.stem}.png").is_file()]
            if missing:
                raise InputError(f"{root}: {len(missing)} image(s) without a mask in masks/ (first: {missing[0]}.png)")
        if need_labels and not (self.root / "labels").is_dir():
            raise InputError(f"{root}: no labels/ folder with YOLO box labels")
        self.classes = read_names(self.root / "classes.txt")
        self.seg_classes = read_names(self.root / "seg_classes.txt")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Sample:
        p = self.images[i]
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"cannot read image {p}")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        mask = None
        mp = self.root / "masks" / f"{p.stem}.png"
        if mp.is_file():
            mask = cv2.imread(str(mp), cv2.IMREAD_UNCHANGED)
            if mask is None or mask.shape[:2] != image.shape[:2]:
                raise InputError(f"mask {mp} is unreadable or not the image's size {image.shape[1]}x{image.shape[0]}")
            if mask.ndim == 3:
                mask = mask[:, :, 0]
        lp = self.root / "labels" / f"{p.stem}.txt"
        if lp.is_file():
            boxes, cls = yolo_to_boxes(lp.read_text(), image.shape[1], image.shape[0], str(lp))
        else:
            boxes, cls = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        return Sample(p.stem, image, mask, boxes, cls)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]


def generate_dataset(out: str, count: int, size: tuple[int, int] = (640, 360), seed: int = 0,
                     cameras: Sequence[str] = ("front",), drivable: bool = False, image_ext: str = "jpg",
                     stamp_step: float = 0.1, progress: bool = False) -> int:
    """Generate ``count`` synthetic scenes, each seen by every camera; returns the number of frames."""
    from perception_edge.data.synthetic import CAMERA_POSES, CLASSES, SEG_CLASSES, render, sample_scene, scene_seed

    unknown = [c for c in cameras if c not in CAMERA_POSES]
    if unknown:
        raise ConfigError(f"unknown camera(s) {', '.join(unknown)}; choose from {', '.join(CAMERA_POSES)}")
    if count < 1:
        raise ConfigError(f"count must be >= 1, got {count}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "seg_classes.txt").write_text("\n".join(SEG_CLASSES[:3 if drivable else 2]) + "\n")
    n = 0
    t0 = time.time()
    with open(root / "stamps.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "camera", "stamp"])
        for i in range(count):
            scene = sample_scene(scene_seed(seed, i))
            stamp = round(i * stamp_step, 6)
            for cam in cameras:
                f = render(scene, cam, size, 0.0, drivable)
                name = f"{i:06d}_{cam}"
                write_sample(str(root), name, f.image, f.mask, f.boxes, f.class_ids, image_ext)
                writer.writerow([name, cam, f"{stamp:.6f}"])
                n += 1
            if progress and ((i + 1) % 100 == 0 or i + 1 == count):
                print(f"  {i + 1}/{count} scenes, {n} frames, {time.time() - t0:.1f} s", flush=True)
    return n


# ---------------------------------------------------------------------------------------- CARLA

CARLA_ROADLINE_COLOR = (157, 234, 50)  # RGB, CityScapesPalette (all versions)
CARLA_ROAD_COLOR = (128, 64, 128)
CARLA_TAGS = {"0.9.14+": {"roadline": 24, "road": 1}, "legacy": {"roadline": 6, "road": 7}}


def _carla_tags_version(tags: np.ndarray) -> str:
    """Guess the tag numbering of a raw semantic image: the road under the camera dominates the
    lower third of a driving frame (Road = 1 from 0.9.14 on, 7 before)."""
    low = tags[tags.shape[0] * 2 // 3:]
    return "0.9.14+" if np.count_nonzero(low == 1) >= np.count_nonzero(low == 7) else "legacy"


def carla_semantic_encoding(semantic_bgr: np.ndarray) -> str:
    """'raw' (tag in the red channel, green/blue empty) or 'cityscapes' (palette colours)."""
    if semantic_bgr.ndim == 2:
        return "raw"
    if int(semantic_bgr[:, :, :2].max()) == 0 and int(semantic_bgr[:, :, 2].max()) < 64:
        return "raw"
    return "cityscapes"


def carla_lane_mask(semantic_bgr: np.ndarray, encoding: str = "auto", tags: str = "auto",
                    drivable: bool = False) -> np.ndarray:
    """A CARLA semantic image as read by cv2 (BGR or BGRA, or a single tag channel) -> lane mask
    (1 RoadLine, 2 Road if drivable, else 0)."""
    if semantic_bgr is None or semantic_bgr.ndim not in (2, 3):
        raise InputError("CARLA semantic image must be an H x W (x 3|4) array")
    if encoding == "auto":
        encoding = carla_semantic_encoding(semantic_bgr)
    mask = np.zeros(semantic_bgr.shape[:2], np.uint8)
    if encoding == "raw":
        tag = semantic_bgr if semantic_bgr.ndim == 2 else semantic_bgr[:, :, 2]
        version = _carla_tags_version(tag) if tags == "auto" else tags
        if version not in CARLA_TAGS:
            raise ConfigError(f"unknown CARLA tag set {tags!r} (auto, 0.9.14+ or legacy)")
        ids = CARLA_TAGS[version]
        if drivable:
            mask[tag == ids["road"]] = 2
        mask[tag == ids["roadline"]] = 1
    elif encoding == "cityscapes":
        if semantic_bgr.ndim != 3:
            raise InputError("a CityScapes-palette semantic image needs colour channels")
        b, g, r = semantic_bgr[:, :, 0], semantic_bgr[:, :, 1], semantic_bgr[:, :, 2]
        if drivable:
            rr, gg, bb = CARLA_ROAD_COLOR
            mask[(r == rr) & (g == gg) & (b == bb)] = 2
        rr, gg, bb = CARLA_ROADLINE_COLOR
        mask[(r == rr) & (g == gg) & (b == bb)] = 1
    else:
        raise ConfigError(f"unknown CARLA semantic encoding {encoding!r} (auto, raw or cityscapes)")
    return mask


def import_carla(rgb_dir: str, semantic_dir: str, out: str, encoding: str = "auto", tags: str = "auto",
                 drivable: bool = False, image_ext: str = "png") -> int:
    """Convert CARLA RGB + semantic captures (paired by file stem) into a data set folder."""
    rgb = {p.stem: p for p in Path(rgb_dir).iterdir() if p.suffix.lower() in IMAGE_EXTS} \
        if Path(rgb_dir).is_dir() else None
    if rgb is None:
        raise InputError(f"{rgb_dir}: not a folder")
    if not Path(semantic_dir).is_dir():
        raise InputError(f"{semantic_dir}: not a folder")
    sem = {p.stem: p for p in Path(semantic_dir).iterdir() if p.suffix.lower() in IMAGE_EXTS}
    pairs = sorted(set(rgb) & set(sem))
    if not pairs:
        raise InputError(f"no RGB image in {rgb_dir} has a semantic image of the same name in {semantic_dir}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    (root / "seg_classes.txt").write_text("\n".join(["background", "lane_marking"] +
                                                    (["drivable_area"] if drivable else [])) + "\n")
    for stem in pairs:
        bgr = cv2.imread(str(rgb[stem]), cv2.IMREAD_COLOR)
        s = cv2.imread(str(sem[stem]), cv2.IMREAD_UNCHANGED)
        if bgr is None or s is None:
            raise InputError(f"cannot read {rgb[stem]} or {sem[stem]}")
        if s.shape[:2] != bgr.shape[:2]:
            raise InputError(f"{sem[stem]} is {s.shape[1]}x{s.shape[0]}, its RGB image {bgr.shape[1]}x{bgr.shape[0]}")
        if s.ndim == 3 and s.shape[2] == 4:
            s = s[:, :, :3]
        mask = carla_lane_mask(s, encoding, tags, drivable)
        write_sample(str(root), stem, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), mask, image_ext=image_ext)
    return len(pairs)


# ------------------------------------------------------------------------------ training input

def fit_to_input(image: np.ndarray, mask: np.ndarray | None, boxes: np.ndarray | None,
                 input_hw: tuple[int, int], mode: str = "letterbox", num_mask_classes: int = 2):
    """A source sample -> model-input geometry exactly as the runtime Preprocessor places a frame
    (perception_edge.core.transform: letterbox or stretch, INTER_LINEAR, pad 114).

    Returns (image uint8 at input size, mask target, boxes in input pixels, Transform). The mask
    target is a float32 coverage map of class 1 (binary: the fraction of each input pixel's source
    footprint that is lane marking, area-resampled) when num_mask_classes == 2, else int64 class
    ids (largest coverage); padding is background.
    """
    from perception_edge.core.transform import letterbox

    fitted, t = letterbox(image, input_hw, mode=mode)
    target = None
    if mask is not None:
        h, w = t.dst_h, t.dst_w
        interp = cv2.INTER_AREA if (t.new_w <= t.src_w and t.new_h <= t.src_h) else cv2.INTER_LINEAR
        if num_mask_classes <= 2:
            cov = cv2.resize((mask == 1).astype(np.float32), (t.new_w, t.new_h), interpolation=interp)
            target = np.zeros((h, w), np.float32)
            target[t.pad_y:t.pad_y + t.new_h, t.pad_x:t.pad_x + t.new_w] = np.clip(cov, 0.0, 1.0)
        else:
            covs = np.zeros((num_mask_classes, h, w), np.float32)
            covs[0] = 1.0
            for c in range(num_mask_classes):
                covs[c, t.pad_y:t.pad_y + t.new_h, t.pad_x:t.pad_x + t.new_w] = cv2.resize(
                    (mask == c).astype(np.float32), (t.new_w, t.new_h), interpolation=interp)
            target = covs.argmax(0).astype(np.int64)
    out_boxes = None
    if boxes is not None:
        out_boxes = t.boxes_to_model(np.asarray(boxes, np.float64).reshape(-1, 4)).astype(np.float32)
    return fitted, target, out_boxes, t


def augment(image: np.ndarray, mask: np.ndarray | None, boxes: np.ndarray | None,
            class_ids: np.ndarray | None, rng: np.random.Generator, flip: float = 0.5, scale: float = 0.1,
            shift: float = 0.05, brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.3):
    """Photometric + small geometric augmentation of a source sample (image RGB uint8, mask, xyxy
    boxes in pixels). Geometric changes move the mask and the boxes with the image; boxes that
    leave the frame or lose most of their area are dropped."""
    h, w = image.shape[:2]
    boxes = None if boxes is None else np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    class_ids = None if class_ids is None else np.asarray(class_ids, np.int64).copy()
    if flip > 0 and rng.random() < flip:
        image = image[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
        if boxes is not None and len(boxes):
            boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    if scale > 0 or shift > 0:
        s = float(rng.uniform(1 - scale, 1 + scale))
        tx = float(rng.uniform(-shift, shift)) * w
        ty = float(rng.uniform(-shift, shift)) * h
        m = np.array([[s, 0, (1 - s) * w / 2 + tx], [0, s, (1 - s) * h / 2 + ty]], np.float64)
        image = cv2.warpAffine(np.ascontiguousarray(image), m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(114, 114, 114))
        if mask is not None:
            mask = cv2.warpAffine(np.ascontiguousarray(mask), m, (w, h), flags=cv2.INTER_NEAREST,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if boxes is not None and len(boxes):
            area0 = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            boxes = boxes * s + np.array([m[0, 2], m[1, 2], m[0, 2], m[1, 2]])
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
            area1 = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            keep = (area1 > 0.4 * area0 * s * s) & (boxes[:, 2] - boxes[:, 0] > 2) & (boxes[:, 3] - boxes[:, 1] > 2)
            boxes, class_ids = boxes[keep], class_ids[keep]
    if brightness > 0 or contrast > 0 or saturation > 0:
        b = float(rng.uniform(-brightness, brightness)) * 128
        c = float(rng.uniform(1 - contrast, 1 + contrast))
        sat = float(rng.uniform(1 - saturation, 1 + saturation))
        img = np.ascontiguousarray(image).astype(np.float32)
        if saturation > 0:
            gray = img.mean(2, keepdims=True)
            img = gray + (img - gray) * sat
        img = (img - 128.0) * c + 128.0 + b
        image = np.clip(img, 0, 255).astype(np.uint8)
    image = np.ascontiguousarray(image)
    mask = None if mask is None else np.ascontiguousarray(mask)
    return image, mask, (None if boxes is None else boxes.astype(np.float32)), class_ids


class SampleSource:
    """Training samples from a data set folder or from synthetic scenes rendered on demand.

    synthetic: scene i of this source is sample_scene(scene_seed(seed, i)) seen by camera
    cameras[i % len(cameras)], so two sources with different seeds never share a scene.
    """

    def __init__(self, folder: DatasetFolder | None = None, indices: Sequence[int] | None = None,
                 synthetic: int = 0, seed: int = 0, size: tuple[int, int] = (640, 360),
                 cameras: Sequence[str] = ("front", "front", "front_left", "front_right"), drivable: bool = False):
        self.folder = folder
        self.indices = list(indices) if indices is not None else (list(range(len(folder))) if folder else [])
        self.synthetic = int(synthetic)
        self.seed, self.size, self.cameras, self.drivable = seed, size, list(cameras), drivable
        if folder is None and synthetic <= 0:
            raise ConfigError("no training data: give a data set folder or a number of synthetic scenes")

    def __len__(self) -> int:
        return self.synthetic if self.folder is None else len(self.indices)

    def __iter__(self) -> Iterator[Sample]:  # bounded: synthetic __getitem__ never raises IndexError
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i: int) -> Sample:
        if self.folder is not None:
            return self.folder[self.indices[i]]
        from perception_edge.data.synthetic import render, sample_scene, scene_seed

        f = render(sample_scene(scene_seed(self.seed, i)), self.cameras[i % len(self.cameras)], self.size,
                   drivable=self.drivable)
        return Sample(f"syn{i:06d}", f.image, f.mask, f.boxes, f.class_ids)


def split_folder(folder: DatasetFolder, val_fraction: float) -> tuple[list[int], list[int]]:
    """Deterministic train/val split by image name (a stable hash), so adding files keeps it."""
    import zlib

    val = [i for i, p in enumerate(folder.images) if (zlib.crc32(p.stem.encode()) % 1000) < val_fraction * 1000]
    val_set = set(val)
    train = [i for i in range(len(folder)) if i not in val_set]
    if not train:
        raise InputError(f"{folder.root}: no training images left after the validation split")
    return train, val
