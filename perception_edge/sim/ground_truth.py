"""Ground truth of a CARLA camera frame, in plain numpy (no carla import: values in, arrays out).

Conventions (CARLA = Unreal Engine 4): world and actor frames are left-handed, x forward, y right,
z up, metres; rotations are (pitch, yaw, roll) in degrees, yaw positive turning right (from x
towards y), pitch positive nose up. A camera looks along its x axis; its image has u to the right
(+y) and v down (-z), so a point (x, y, z) in camera axes lands at

    u = cx + f * y / x,   v = cy - f * z / x,   f = width / (2 tan(fov / 2)),   cx, cy = w / 2, h / 2

(CARLA's cameras are ideal pinholes with the horizontal field of view ``fov``; the same f holds
for both axes).

- ``intrinsics``: the 3x3 K of a CARLA camera from width, height and FOV.
- ``transform_matrix``: the 4x4 local -> world matrix of a (location, rotation), exactly as
  ``carla.Transform.get_matrix()`` builds it.
- ``box_corners``: the 8 corners of a ``carla.BoundingBox`` in world coordinates (actor boxes are
  relative to their actor's transform; level boxes of ``world.get_level_bbs`` are in the world).
- ``project_box``: the 2-D box of 3-D corners seen by a camera (edges clipped to the near plane,
  so objects partly behind the camera are handled), clipped to the image; None when not in view.
- ``visible_box``: occlusion filtering with the instance segmentation image (R = semantic tag,
  G + 256 B = object id): the tight box of the object's own visible pixels inside the projected
  box, None when fewer than ``min_pixels`` are visible.
- ``project_class``: CARLA actor / semantic classes -> the project's classes (car, truck,
  pedestrian, traffic_sign; data.synthetic.CLASSES).
- ``lane_mask``: 1 where the semantic tag is RoadLines (the tag value is passed in, read by the
  caller from ``carla.CityObjectLabel.RoadLines``: 24 from 0.9.14 on, 6 before).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

NEAR = 0.05  # m: near clipping plane of the projection
# the 12 edges of a box whose corners are ordered as box_corners() returns them
_EDGES = ((0, 1), (1, 3), (3, 2), (2, 0), (4, 5), (5, 7), (7, 6), (6, 4), (0, 4), (1, 5), (2, 6), (3, 7))


def intrinsics(width: int, height: int, fov_deg: float) -> np.ndarray:
    """K of a CARLA camera: f = width / (2 tan(fov / 2)) for both axes, principal point at the centre."""
    f = width / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], np.float64)


def rotation_matrix(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """3x3 rotation of (pitch, yaw, roll) degrees, as carla.Transform.get_matrix() (UE4 order)."""
    cp, sp = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    cy, sy = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    cr, sr = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    return np.array([[cp * cy, cy * sp * sr - sy * cr, -cy * sp * cr - sy * sr],
                     [cp * sy, sy * sp * sr + cy * cr, -sy * sp * cr + cy * sr],
                     [sp, -cp * sr, cp * cr]], np.float64)


def transform_matrix(location: Sequence[float], rotation: Sequence[float]) -> np.ndarray:
    """4x4 local -> world of location (x, y, z) and rotation (pitch, yaw, roll) in degrees."""
    m = np.eye(4)
    m[:3, :3] = rotation_matrix(*rotation)
    m[:3, 3] = location
    return m


def world_to_camera(camera_matrix: np.ndarray) -> np.ndarray:
    """4x4 world -> camera axes (x forward, y right, z up) of a camera's local -> world matrix."""
    r, t = camera_matrix[:3, :3], camera_matrix[:3, 3]
    inv = np.eye(4)
    inv[:3, :3] = r.T
    inv[:3, 3] = -r.T @ t
    return inv


def box_corners(extent: Sequence[float], location: Sequence[float] = (0, 0, 0),
                rotation: Sequence[float] = (0, 0, 0), parent: np.ndarray | None = None) -> np.ndarray:
    """(8, 3) world corners of a box (half sizes `extent`, centre `location` and `rotation` in its
    parent's frame; parent: the actor's 4x4 local -> world matrix, None for world boxes). Corner
    index bits: 4 = +x, 2 = +y, 1 = +z."""
    ex, ey, ez = (float(v) for v in extent)
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
    local = signs * [ex, ey, ez]
    m = transform_matrix(location, rotation)
    if parent is not None:
        m = parent @ m
    return local @ m[:3, :3].T + m[:3, 3]


def project_points(points_cam: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(N, 3) camera-axes points (x > 0) -> (N, 2) pixel coordinates (u, v)."""
    x, y, z = points_cam[:, 0], points_cam[:, 1], points_cam[:, 2]
    return np.stack([k[0, 2] + k[0, 0] * y / x, k[1, 2] - k[1, 1] * z / x], 1)


def project_box(corners_world: np.ndarray, w2c: np.ndarray, k: np.ndarray, width: int, height: int,
                near: float = NEAR) -> np.ndarray | None:
    """xyxy pixel box of a 3-D box's corners seen by a camera (w2c: world_to_camera), clipped to
    the image; None when the box is behind the camera or outside the image. Edges crossing the
    near plane are cut there, so a box partly behind the camera still gets its visible extent."""
    cam = corners_world @ w2c[:3, :3].T + w2c[:3, 3]
    front = cam[:, 0] >= near
    if not front.any():
        return None
    pts = [cam[front]]
    for a, b in _EDGES:
        if front[a] != front[b]:
            t = (near - cam[a, 0]) / (cam[b, 0] - cam[a, 0])
            pts.append((cam[a] + t * (cam[b] - cam[a]))[None])
    uv = project_points(np.concatenate(pts), k)
    x0, y0 = uv.min(0)
    x1, y1 = uv.max(0)
    x0, x1 = max(0.0, x0), min(float(width), x1)
    y0, y1 = max(0.0, y0), min(float(height), y1)
    if x1 <= x0 or y1 <= y0:
        return None
    return np.array([x0, y0, x1, y1], np.float64)


def decode_instance(bgra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A CARLA instance segmentation image (H x W x 4 BGRA, as carla.Image.raw_data) ->
    (semantic tag H x W uint8, object id H x W uint16): R is the tag, G the id's low byte, B its high byte."""
    tags = bgra[:, :, 2]
    ids = bgra[:, :, 1].astype(np.uint16) | (bgra[:, :, 0].astype(np.uint16) << 8)
    return tags, ids


def id_pixel_counts(ids: np.ndarray) -> np.ndarray:
    """Pixels of each instance id (index: the id) of a uint16 id image."""
    return np.bincount(ids.ravel(), minlength=1 << 16)


def visible_box(box: np.ndarray, tags: np.ndarray, ids: np.ndarray | None, class_tags: Sequence[int],
                object_id: int | None = None, min_pixels: int = 16, pad: int = 2,
                id_counts: np.ndarray | None = None) -> tuple[np.ndarray, int] | None:
    """Occlusion filtering: (tight xyxy box of the object's visible pixels, their count) inside
    the projected box (grown by `pad` pixels), or None when fewer than min_pixels are visible.

    The object's pixels: semantic tag in class_tags and, with an instance image (ids), instance id
    object_id; for objects without a known id (object_id None: level objects such as traffic
    signs, whose instance id is no actor id), the id of its classes' pixels that lies most wholly
    inside the box (then the one with most pixels there), so a neighbour reaching into the box
    is not taken for it. id_counts: the pixel count of every id in `ids` (id_pixel_counts), when
    the caller has it for several boxes of one frame."""
    h, w = tags.shape
    x0, y0 = max(0, int(math.floor(box[0])) - pad), max(0, int(math.floor(box[1])) - pad)
    x1, y1 = min(w, int(math.ceil(box[2])) + pad), min(h, int(math.ceil(box[3])) + pad)
    if x1 <= x0 or y1 <= y0:
        return None
    sel = np.isin(tags[y0:y1, x0:x1], np.asarray(list(class_tags), np.int64))
    if ids is not None and sel.any():
        sub = ids[y0:y1, x0:x1]
        if object_id is not None:
            sel = sel & (sub == object_id)
        else:  # the id whose pixels lie inside the box most wholly (then: the most pixels)
            values, counts = np.unique(sub[sel], return_counts=True)
            if id_counts is None:
                id_counts = id_pixel_counts(ids)
            whole = [c / max(1, int(id_counts[v])) for v, c in zip(values.tolist(), counts.tolist())]
            best = max(range(len(values)), key=lambda i: (round(whole[i], 3), counts[i]))
            sel = sel & (sub == values[best])
    n = int(np.count_nonzero(sel))
    if n < min_pixels:
        return None
    rows = np.flatnonzero(sel.any(1))
    cols = np.flatnonzero(sel.any(0))
    return np.array([x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1], np.float64), n


# -- classes ------------------------------------------------------------------------------------------

# CityObjectLabel names (0.9.14+) of each project class; values are read from carla at run time
CLASS_TAG_NAMES = {"car": ("Car",), "truck": ("Truck", "Bus"), "pedestrian": ("Pedestrians",),
                   "traffic_sign": ("TrafficSigns",)}
_TRUCK_WORDS = ("truck", "carlacola", "firetruck", "ambulance", "sprinter", "bus", "van", "european_hgv", "fusorosa")


def project_class(type_id: str, base_type: str = "", semantic_tags: Sequence[str] = ()) -> str | None:
    """A CARLA actor -> "car", "truck", "pedestrian" or None (not a project class: bicycles,
    motorcycles, props). base_type is the blueprint attribute (car, truck, van, bus, motorcycle,
    bicycle; 0.9.14+), semantic_tags the names of the actor's CityObjectLabel tags."""
    tags = set(semantic_tags)
    if type_id.startswith("walker.") or "Pedestrians" in tags:
        return "pedestrian"
    if not type_id.startswith("vehicle."):
        return None
    base = base_type.lower()
    if base in ("motorcycle", "bicycle") or tags & {"Motorcycle", "Bicycle", "Rider"}:
        return None
    if base in ("truck", "van", "bus") or tags & {"Truck", "Bus"}:
        return "truck"
    if base == "car" or "Car" in tags:
        return "car"
    return "truck" if any(w in type_id for w in _TRUCK_WORDS) else "car"


def lane_mask(tags: np.ndarray, roadlines_tag: int) -> np.ndarray:
    """Lane-marking mask (uint8: 1 RoadLines, 0 else) of a semantic tag image."""
    return (tags == int(roadlines_tag)).astype(np.uint8)


@dataclass
class ObjectBox:
    """A 3-D box to project: world corners, project class, CARLA semantic tags of its class, and
    its object id in the instance image (None: unknown, e.g. level objects)."""

    corners: np.ndarray
    class_name: str
    class_tags: tuple[int, ...]
    object_id: int | None = None


def frame_boxes(objects: Sequence[ObjectBox], camera_matrix: np.ndarray, k: np.ndarray, tags: np.ndarray,
                ids: np.ndarray | None, class_names: Sequence[str], min_pixels: int = 16,
                max_distance: float = 120.0) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth boxes of one camera frame: each object projected (project_box) and filtered
    for occlusion (visible_box). Returns (N, 4) float32 xyxy and (N,) int64 indices into class_names.

    Actor ids are matched against the instance image's ids; where the image carries none of the
    frame's actor ids (a server whose instance ids are not actor ids), actors are matched by the
    most frequent id of their classes' pixels instead, as level objects are."""
    h, w = tags.shape
    known = [ob.object_id for ob in objects if ob.object_id is not None]
    ids_are_actor_ids = ids is not None and bool(known) and bool(np.isin(ids, np.asarray(known)).any())
    w2c = world_to_camera(camera_matrix)
    index = {n: i for i, n in enumerate(class_names)}
    boxes, classes = [], []
    cam_pos = camera_matrix[:3, 3]
    id_counts = None  # one pass over the image for all objects matched without an id (below)
    for ob in objects:
        if ob.class_name not in index:
            continue
        if np.linalg.norm(ob.corners.mean(0) - cam_pos) > max_distance:
            continue
        b = project_box(ob.corners, w2c, k, w, h)
        if b is None:
            continue
        object_id = ob.object_id if ids_are_actor_ids else None
        if object_id is None and ids is not None and id_counts is None:
            id_counts = id_pixel_counts(ids)
        vis = visible_box(b, tags, ids, ob.class_tags, object_id, min_pixels, id_counts=id_counts)
        if vis is None:
            continue
        boxes.append(vis[0])
        classes.append(index[ob.class_name])
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64)
