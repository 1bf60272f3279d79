"""Class names: a labels file, the model's own metadata, or COCO-80 by default."""
from __future__ import annotations

import ast
import json
from typing import Mapping

from perception_edge.core.errors import ConfigError

COCO80 = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
]


def read_labels(path: str) -> list[str]:
    """One class name per line; blank lines and '#' comments skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            names = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    except OSError as e:
        raise ConfigError(f"cannot read labels file {path}: {e.strerror}") from None
    if not names:
        raise ConfigError(f"labels file {path} has no class names")
    return names


def names_from_metadata(metadata: Mapping[str, str]) -> list[str] | None:
    """The 'names' entry the YOLOv5 exporter writes ("{0: 'person', ...}" or a JSON list/dict)."""
    raw = metadata.get("names")
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        try:
            value = ast.literal_eval(raw)  # literals only: never executes code
        except (ValueError, SyntaxError):
            return None
    if isinstance(value, dict):
        return [str(value[k]) for k in sorted(value, key=int)]
    if isinstance(value, list):
        return [str(v) for v in value]
    return None


def resolve_labels(num_classes: int, labels_file: str = "", metadata: Mapping[str, str] | None = None) -> list[str]:
    """Labels file > model metadata > COCO-80 (for 80 classes) > class_<id>."""
    if labels_file:
        names = read_labels(labels_file)
        if len(names) != num_classes:
            raise ConfigError(f"labels file {labels_file} has {len(names)} names but the model has "
                              f"{num_classes} classes")
        return names
    names = names_from_metadata(metadata or {})
    if names and len(names) == num_classes:
        return names
    if num_classes == 80:
        return list(COCO80)
    return [f"class_{i}" for i in range(num_classes)]
