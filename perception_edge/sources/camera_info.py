"""Camera calibration files in the camera_calibration_parsers YAML format (what `camera_calibration`
writes and camera_info_manager reads), read without ROS:

    image_width: 1280
    image_height: 720
    camera_name: cam_front
    camera_matrix: {rows: 3, cols: 3, data: [fx, 0, cx, 0, fy, cy, 0, 0, 1]}
    distortion_model: plumb_bob
    distortion_coefficients: {rows: 1, cols: 5, data: [k1, k2, t1, t2, k3]}
    rectification_matrix: {rows: 3, cols: 3, data: [...]}
    projection_matrix: {rows: 3, cols: 4, data: [...]}

URLs: a path or file:///path (package:// URLs need ament_index: resolved by the node when given).
"""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

from perception_edge.core.errors import ConfigError

IDENTITY3 = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]


@dataclass
class CameraCalibration:
    width: int
    height: int
    camera_name: str = ""
    k: list[float] = field(default_factory=lambda: [0.0] * 9)
    distortion_model: str = "plumb_bob"
    d: list[float] = field(default_factory=list)
    r: list[float] = field(default_factory=lambda: list(IDENTITY3))
    p: list[float] = field(default_factory=lambda: [0.0] * 12)


def url_path(url: str) -> str:
    if url.startswith("file://"):
        return urllib.parse.unquote(url[len("file://"):])
    if "://" in url:
        raise ConfigError(f"camera_info URL {url}: only file:// URLs and paths are read here")
    return url


def _matrix(doc: dict, key: str, rows: int, cols: int, path: str, required: bool = True) -> list[float] | None:
    m = doc.get(key)
    if m is None:
        if required:
            raise ConfigError(f"{path}: missing {key}")
        return None
    data = m.get("data") if isinstance(m, dict) else m
    if not isinstance(data, list) or (rows * cols and len(data) != rows * cols):
        raise ConfigError(f"{path}: {key} needs {rows}x{cols} numbers")
    try:
        return [float(v) for v in data]
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: {key} holds a value that is not a number") from None


def load_camera_info(url: str) -> CameraCalibration:
    """Read a camera_calibration_parsers YAML file; ConfigError (one line) when it is unreadable."""
    import yaml

    path = url_path(url)
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"cannot read camera_info file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"camera_info file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"camera_info file {path}: expected a mapping")
    try:
        width, height = int(doc["image_width"]), int(doc["image_height"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: needs integer image_width and image_height") from None
    d_doc = doc.get("distortion_coefficients") or {}
    d = d_doc.get("data", []) if isinstance(d_doc, dict) else d_doc
    return CameraCalibration(
        width, height, str(doc.get("camera_name", "")),
        _matrix(doc, "camera_matrix", 3, 3, path),
        str(doc.get("distortion_model", "plumb_bob")),
        [float(v) for v in (d or [])],
        _matrix(doc, "rectification_matrix", 3, 3, path, required=False) or list(IDENTITY3),
        _matrix(doc, "projection_matrix", 3, 4, path, required=False) or [0.0] * 12)


__all__ = ["CameraCalibration", "load_camera_info", "url_path"]
