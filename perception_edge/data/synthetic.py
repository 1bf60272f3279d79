"""Synthetic driving scenes without a simulator (numpy + OpenCV): frames, lane masks and boxes.

A scene is a world description sampled from a seed: a road on a flat ground plane (2-4 lanes,
curvature, lane width), lane markings (solid, dashed, double; white or yellow; width, wear),
vehicles (cars, trucks; same or oncoming direction), pedestrians, traffic signs, roadside scenery
(buildings, trees, poles), ground shadows, sky and lighting. ``render`` projects it through a
pinhole camera (field of view, mounting height, pitch; yaw and lateral offset per camera pose) and
returns a ``SyntheticFrame``:

* ``image``: H x W x 3 uint8 RGB,
* ``mask``: H x W uint8, 0 background, 1 lane marking, 2 drivable road surface (``drivable=True``),
* ``boxes`` / ``class_ids``: tight xyxy pixel boxes (x2, y2 exclusive: a box covers pixel columns
  x1 .. x2-1) of the visible pixels of each labelled object, classes in ``CLASSES``.

The mask and the boxes come from the very polygons that paint the image (no anti-aliasing on the
labelled shapes), so they are exact: the mask is 1 wherever a marking is visible, 0 where a vehicle,
pedestrian or sign occludes it. Camera poses (``CAMERA_POSES``) look at the same world, and
``scene_frames`` gives every camera of one instant the same timestamp; ``sequence`` moves the ego
vehicle and the traffic through time. Everything is deterministic for a seed.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import cv2
import numpy as np

from perception_edge.core.deprecation import moved_names

CLASSES = ["car", "truck", "pedestrian", "traffic_sign"]
CAR, TRUCK, PEDESTRIAN, TRAFFIC_SIGN = range(4)
MASK_BACKGROUND, MASK_LANE, MASK_DRIVABLE = 0, 1, 2
SEG_CLASSES = ["background", "lane_marking", "drivable_area"]

_SHIFT = 3  # fillPoly sub-pixel bits
_ONE = 1 << _SHIFT
_NEAR = 0.4  # m: near clipping plane
_SCENERY_ID = 65535  # instance id of unlabelled occluders (buildings, trees, poles)
MIN_MARKING_PX = 2.0  # markings are at least this wide in the rendered image


@dataclass(frozen=True)
class CameraPose:
    """A camera of the rig relative to the front camera: yaw (deg, + turns right) and lateral offset (m)."""

    yaw_deg: float = 0.0
    x_offset: float = 0.0


CAMERA_POSES: dict[str, CameraPose] = {
    "front": CameraPose(0.0, 0.0),
    "front_left": CameraPose(-40.0, -0.6),
    "front_right": CameraPose(40.0, 0.6),
}


@dataclass
class SyntheticFrame:
    """One rendered camera frame with its exact labels."""

    image: np.ndarray  # H x W x 3 uint8 RGB
    mask: np.ndarray  # H x W uint8
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels
    class_ids: np.ndarray  # (N,) int64
    camera: str = "front"
    stamp: float = 0.0
    seed: int = 0
    # H x W uint16 instance map: labelled object i (vehicles, then pedestrians, then signs) is i + 1,
    # unlabelled scenery 65535, nothing 0 (the occlusion truth the boxes come from)
    instance: np.ndarray | None = None

    @property
    def class_names(self) -> list[str]:
        return [CLASSES[int(c)] for c in self.class_ids]


@dataclass
class Marking:
    offset: float  # lateral offset from the road's left edge (m)
    kind: str  # solid | dashed | double
    width: float  # m
    color: tuple[int, int, int]
    dash: float = 3.0
    gap: float = 9.0
    phase: float = 0.0
    double_gap: float = 0.12


@dataclass
class Vehicle:
    cls: int
    x: float  # lateral offset from the road's left edge (m)
    z: float  # forward distance (m) at t = 0
    speed: float  # m/s along the road (negative: oncoming)
    width: float
    height: float
    length: float
    color: tuple[int, int, int]
    oncoming: bool = False
    cabin_color: tuple[int, int, int] = (40, 45, 55)


@dataclass
class Pedestrian:
    x: float  # absolute lateral position (m, ego frame)
    z: float
    height: float
    speed_x: float
    colors: tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]  # shirt, trousers, skin
    stride: float


@dataclass
class Sign:
    x: float
    z: float
    height: float  # plate centre height (m)
    radius: float
    shape: str  # circle | triangle | rect | octagon | diamond
    colors: tuple[tuple[int, int, int], tuple[int, int, int]]


@dataclass
class Prop:  # unlabelled roadside scenery
    kind: str  # building | tree | pole
    x: float
    z: float
    width: float
    height: float
    color: tuple[int, int, int]
    color2: tuple[int, int, int] = (0, 0, 0)


@dataclass
class Shadow:
    x: float
    z: float
    sx: float
    sz: float
    angle: float
    factor: float
    kind: str  # blob | band


@dataclass
class Scene:
    seed: int
    hfov: float
    cam_height: float
    pitch: float  # rad, + looks down
    n_lanes: int
    lane_width: float
    road_left: float  # x of the road's left edge at z=0 (ego at x=0)
    heading: float  # dx/dz of the road at z=0
    curvature: float  # 1/m
    ego_speed: float
    markings: list[Marking]
    vehicles: list[Vehicle]
    pedestrians: list[Pedestrian]
    signs: list[Sign]
    props: list[Prop]
    shadows: list[Shadow]
    asphalt: tuple[int, int, int]
    terrain: tuple[int, int, int]
    sidewalk: tuple[int, int, int] | None
    sky_top: tuple[int, int, int]
    sky_horizon: tuple[int, int, int]
    brightness: float
    contrast: float
    tint: tuple[float, float, float]
    noise: float
    blur: float
    patches: list[tuple[float, float, float, float, int]] = field(default_factory=list)  # x, z, w, l, delta

    @property
    def road_width(self) -> float:
        return self.n_lanes * self.lane_width

    def center_x(self, z: np.ndarray) -> np.ndarray:
        """Lateral position of the road's left edge at forward distance z (ego frame)."""
        return self.road_left + self.heading * z + 0.5 * self.curvature * z * z

    def road_heading(self, z: float) -> float:
        return math.atan(self.heading + self.curvature * z)


def _color(rng, base, jitter) -> tuple[int, int, int]:
    return tuple(int(np.clip(b + rng.uniform(-jitter, jitter), 0, 255)) for b in base)


VEHICLE_COLORS = [(200, 200, 205), (30, 30, 35), (120, 125, 130), (160, 20, 25), (20, 50, 140), (230, 230, 225),
                  (90, 90, 95), (40, 90, 60), (180, 150, 90), (210, 120, 30), (70, 20, 90), (240, 200, 40)]


def sample_scene(seed: int) -> Scene:
    """A random world description; the same seed always gives the same scene."""
    rng = np.random.default_rng(seed)
    n_lanes = int(rng.integers(2, 5))
    lane_w = float(rng.uniform(3.0, 3.8))
    ego_lane = int(rng.integers(0, n_lanes))
    road_left = -(ego_lane + 0.5) * lane_w + float(rng.uniform(-0.5, 0.5))
    curvature = 0.0 if rng.random() < 0.35 else float(rng.uniform(-1, 1) / rng.uniform(250, 900))
    heading = float(rng.uniform(-0.03, 0.03))
    two_way = n_lanes >= 2 and rng.random() < 0.5
    split = n_lanes // 2 if two_way else -1  # boundary index of the centre line
    white = _color(rng, (235, 235, 230), 20)
    yellow = _color(rng, (225, 180, 40), 25)
    wear = float(rng.uniform(0.55, 1.0))
    markings: list[Marking] = []
    base_w = float(rng.uniform(0.10, 0.20))
    for b in range(n_lanes + 1):
        off = b * lane_w
        edge = b in (0, n_lanes)
        if edge:
            r = rng.random()
            if r < 0.12:
                continue  # no edge line
            kind = "solid" if r < 0.92 else "dashed"
            color = yellow if (b == 0 and rng.random() < 0.25) else white
            width = base_w * float(rng.uniform(1.0, 1.6))
            inset = 0.25 if b == 0 else -0.25
            off += inset
        elif b == split:
            kind = "double" if rng.random() < 0.7 else "solid"
            color = yellow if rng.random() < 0.75 else white
            width = base_w
        else:
            kind = "dashed" if rng.random() < 0.85 else "solid"
            color = white
            width = base_w
        period = float(rng.choice([6.0, 9.0, 12.0, 15.0]))
        dash = period * float(rng.uniform(0.25, 0.5))
        markings.append(Marking(off, kind, width, color, dash, period - dash, float(rng.uniform(0, period)),
                                float(rng.uniform(0.10, 0.2))))
    asphalt_v = float(rng.uniform(55, 125))
    asphalt = _color(rng, (asphalt_v, asphalt_v, asphalt_v + 3), 6)
    # markings are paint over asphalt: worn paint blends toward the road colour
    for m in markings:
        m.color = tuple(int(a + wear * (c - a)) for a, c in zip(asphalt, m.color))
    terrain = [(70, 115, 45), (105, 120, 60), (135, 115, 85), (120, 120, 118), (85, 95, 60)][int(rng.integers(0, 5))]
    terrain = _color(rng, terrain, 15)
    sidewalk = _color(rng, (150, 148, 140), 20) if rng.random() < 0.5 else None
    sky = int(rng.integers(0, 4))
    sky_top, sky_hor = [((70, 120, 200), (170, 200, 230)), ((140, 145, 155), (200, 200, 205)),
                        ((60, 80, 140), (230, 160, 110)), ((95, 150, 215), (200, 220, 240))][sky]
    sky_top, sky_hor = _color(rng, sky_top, 15), _color(rng, sky_hor, 15)
    ego_speed = float(rng.uniform(5, 25))

    vehicles: list[Vehicle] = []
    occupied: list[tuple[int, float]] = []
    for _ in range(int(rng.integers(0, 8))):
        lane = int(rng.integers(0, n_lanes))
        z = float(rng.uniform(5.0, 65.0))
        if lane == ego_lane and z < 8:
            z += 8
        if any(lane == l2 and abs(z - z2) < 9 for l2, z2 in occupied):
            continue
        occupied.append((lane, z))
        oncoming = two_way and lane < split
        truck = rng.random() < 0.28
        if truck:
            w, h, length = rng.uniform(2.3, 2.6), rng.uniform(3.0, 3.9), rng.uniform(7, 12)
        else:
            w, h, length = rng.uniform(1.65, 1.95), rng.uniform(1.35, 1.75), rng.uniform(3.9, 4.9)
        color = VEHICLE_COLORS[int(rng.integers(0, len(VEHICLE_COLORS)))]
        speed = float(rng.uniform(5, 25)) * (-1 if oncoming else 1)
        vehicles.append(Vehicle(TRUCK if truck else CAR, (lane + 0.5) * lane_w + float(rng.uniform(-0.35, 0.35)), z,
                                speed, float(w), float(h), float(length), _color(rng, color, 12), oncoming,
                                _color(rng, (35, 40, 50), 12)))
    pedestrians: list[Pedestrian] = []
    for _ in range(int(rng.integers(0, 5))):
        side = -1 if rng.random() < 0.5 else 1
        z = float(rng.uniform(5.0, 40.0))
        if rng.random() < 0.15:  # crossing the road
            x_rel = float(rng.uniform(0, n_lanes * lane_w))
        else:
            x_rel = (-float(rng.uniform(0.6, 4.0)) if side < 0 else n_lanes * lane_w + float(rng.uniform(0.6, 4.0)))
        x = road_left + heading * z + 0.5 * curvature * z * z + x_rel
        shirt = _color(rng, VEHICLE_COLORS[int(rng.integers(0, len(VEHICLE_COLORS)))], 30)
        trousers = _color(rng, [(40, 40, 60), (30, 30, 30), (90, 80, 60), (60, 70, 110)][int(rng.integers(0, 4))], 15)
        skin = _color(rng, [(230, 190, 160), (190, 140, 100), (120, 80, 55)][int(rng.integers(0, 3))], 10)
        pedestrians.append(Pedestrian(x, z, float(rng.uniform(1.5, 1.9)), float(rng.uniform(-1.2, 1.2)),
                                      (shirt, trousers, skin), float(rng.uniform(0.0, 0.35))))
    signs: list[Sign] = []
    for _ in range(int(rng.integers(0, 4))):
        right = rng.random() < 0.6
        z = float(rng.uniform(8.0, 60.0))
        x_rel = (n_lanes * lane_w + float(rng.uniform(0.8, 2.5))) if right else -float(rng.uniform(0.8, 2.5))
        shape = ["circle", "triangle", "rect", "octagon", "diamond"][int(rng.integers(0, 5))]
        colors = {"circle": ((200, 20, 30), (245, 245, 245)), "triangle": ((200, 20, 30), (245, 240, 230)),
                  "rect": ([(20, 70, 170), (20, 120, 60)][int(rng.integers(0, 2))], (245, 245, 245)),
                  "octagon": ((190, 20, 25), (245, 245, 245)), "diamond": ((240, 190, 20), (30, 30, 30))}[shape]
        signs.append(Sign(road_left + heading * z + 0.5 * curvature * z * z + x_rel, z,
                          float(rng.uniform(1.9, 2.8)), float(rng.uniform(0.3, 0.45)), shape,
                          (_color(rng, colors[0], 15), _color(rng, colors[1], 10))))
    props: list[Prop] = []
    for _ in range(int(rng.integers(0, 10))):
        kind = ["building", "tree", "tree", "pole"][int(rng.integers(0, 4))]
        side = -1 if rng.random() < 0.5 else 1
        z = float(rng.uniform(10.0, 160.0)) if kind != "pole" else float(rng.uniform(8.0, 80.0))
        margin = {"building": rng.uniform(6, 25), "tree": rng.uniform(3, 15), "pole": rng.uniform(0.5, 2.0)}[kind]
        x_rel = -float(margin) if side < 0 else n_lanes * lane_w + float(margin)
        x = road_left + heading * z + 0.5 * curvature * z * z + x_rel
        if kind == "building":
            props.append(Prop(kind, x, z, float(rng.uniform(8, 30)), float(rng.uniform(6, 30)),
                              _color(rng, [(150, 140, 130), (120, 110, 100), (170, 165, 160), (110, 80, 70)]
                                     [int(rng.integers(0, 4))], 20), _color(rng, (60, 70, 90), 15)))
        elif kind == "tree":
            props.append(Prop(kind, x, z, float(rng.uniform(2, 6)), float(rng.uniform(4, 10)),
                              _color(rng, (50, 95, 40), 20), _color(rng, (80, 60, 40), 10)))
        else:
            props.append(Prop(kind, x, z, 0.15, float(rng.uniform(5, 8)), _color(rng, (130, 130, 135), 15)))
    shadows: list[Shadow] = []
    for _ in range(int(rng.integers(0, 5))):
        band = rng.random() < 0.3
        z = float(rng.uniform(4, 60))
        shadows.append(Shadow(road_left + heading * z + 0.5 * curvature * z * z + float(rng.uniform(-3, n_lanes * lane_w + 3)),
                              z, float(rng.uniform(2, 6)) if not band else n_lanes * lane_w + 10,
                              float(rng.uniform(2, 8)), float(rng.uniform(0, math.pi)),
                              float(rng.uniform(0.45, 0.8)), "band" if band else "blob"))
    patches = []
    for _ in range(int(rng.integers(0, 4))):
        patches.append((float(rng.uniform(0, n_lanes * lane_w)), float(rng.uniform(5, 50)), float(rng.uniform(0.5, 3)),
                        float(rng.uniform(1, 6)), int(rng.integers(-25, 25))))
    return Scene(
        seed=int(seed), hfov=math.radians(float(rng.uniform(60, 90))), cam_height=float(rng.uniform(1.2, 1.7)),
        pitch=math.radians(float(rng.uniform(-1.0, 5.0))), n_lanes=n_lanes, lane_width=lane_w,
        road_left=road_left, heading=heading, curvature=curvature, ego_speed=ego_speed, markings=markings,
        vehicles=vehicles, pedestrians=pedestrians, signs=signs, props=props, shadows=shadows, asphalt=asphalt,
        terrain=terrain, sidewalk=sidewalk, sky_top=sky_top, sky_horizon=sky_hor,
        brightness=float(rng.uniform(0.65, 1.2)), contrast=float(rng.uniform(0.8, 1.15)),
        tint=tuple(float(v) for v in rng.uniform(0.92, 1.08, 3)), noise=float(rng.uniform(0, 5)),
        blur=float(rng.choice([0.0, 0.0, 0.6, 0.9])), patches=patches,
    )


class _Camera:
    def __init__(self, scene: Scene, pose: CameraPose, width: int, height: int):
        self.w, self.h = width, height
        self.f = (width / 2) / math.tan(scene.hfov / 2)
        self.cx, self.cy = width / 2, height / 2
        self.height = scene.cam_height
        self.x0 = pose.x_offset
        yaw = math.radians(pose.yaw_deg)
        self.cyaw, self.syaw = math.cos(yaw), math.sin(yaw)
        cp, sp = math.cos(scene.pitch), math.sin(scene.pitch)
        ry = np.array([[self.cyaw, 0, -self.syaw], [0, 1, 0], [self.syaw, 0, self.cyaw]])
        rp = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
        self.rot_t = np.ascontiguousarray((rp @ ry).T)  # world offset row vectors @ rot_t -> camera
        self.horizon = self.cy - self.f * math.tan(scene.pitch)
        self.pos = np.array([self.x0, self.height, 0.0])

    def to_cam(self, pts: np.ndarray) -> np.ndarray:
        """(..., 3) world (x right, y up, z forward) -> (..., 3) camera (x right, y up, z depth)."""
        return (pts - self.pos) @ self.rot_t

    def project(self, cam: np.ndarray) -> np.ndarray:
        inv = self.f / cam[..., 2:3]
        uv = cam[..., :2] * inv
        uv[..., 0] += self.cx
        uv[..., 1] = self.cy - uv[..., 1]
        return uv

    def depth(self, x: float, z: float) -> float:
        return self.syaw * (x - self.x0) + self.cyaw * z

    def _pts(self, cam: np.ndarray) -> np.ndarray:
        uv = self.project(cam) * _ONE
        if np.abs(uv).max() > 1e7:
            np.clip(uv, -1e7, 1e7, out=uv)
        return np.rint(uv).astype(np.int32)

    def poly(self, world: np.ndarray) -> np.ndarray | None:
        """A world polygon -> fillPoly points (int32, _SHIFT bits), clipped to the near plane."""
        cam = self.to_cam(world)
        inside = cam[:, 2] >= _NEAR
        if not inside.all():
            if not inside.any():
                return None
            cam = _clip_near(cam, inside)
            if len(cam) < 3:
                return None
        return self._pts(cam)

    def polys(self, world: np.ndarray) -> list[np.ndarray]:
        """(S, N, 3) world polygons -> fillPoly point arrays (near-clipped; empty ones dropped)."""
        cam = self.to_cam(world)
        inside = cam[..., 2] >= _NEAR
        full = inside.all(1)
        out = list(self._pts(cam[full])) if full.any() else []
        for i in np.flatnonzero(~full & inside.any(1)):
            c = _clip_near(cam[i], inside[i])
            if len(c) >= 3:
                out.append(self._pts(c))
        return out


def _clip_near(cam: np.ndarray, inside: np.ndarray) -> np.ndarray:
    out = []
    n = len(cam)
    for i in range(n):
        j = (i + 1) % n
        a, b = cam[i], cam[j]
        if inside[i]:
            out.append(a)
        if inside[i] != inside[j]:
            t = (_NEAR - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out)


_GEOM = {}


def _geom_t(n: int) -> np.ndarray:
    t = _GEOM.get(n)
    if t is None:
        t = _GEOM[n] = np.linspace(0.0, 1.0, n)
    return t


class _Canvas:
    def __init__(self, cam: _Camera, image: np.ndarray, mask: np.ndarray, inst: np.ndarray):
        self.cam, self.image, self.mask, self.inst = cam, image, mask, inst
        self.extent: dict[int, list[int]] = {}  # instance id -> [x0, y0, x1, y1] drawn region (pixels)
        self.drawn: dict[int, int] = {}

    def _grow(self, obj: int, pts: np.ndarray, pad: int = 2) -> None:
        x0, y0 = (pts.min(0) >> _SHIFT) - pad
        x1, y1 = (pts.max(0) >> _SHIFT) + pad + 1
        e = self.extent.get(obj)
        self.extent[obj] = [min(x0, e[0]), min(y0, e[1]), max(x1, e[2]), max(y1, e[3])] if e else [x0, y0, x1, y1]

    def fill(self, pts: np.ndarray | None, color, obj: int = 0, mask_value: int = -1) -> None:
        """Paint a polygon; obj > 0 records it in the instance map (an occluder / labelled object)."""
        if pts is None:
            return
        cv2.fillPoly(self.image, [pts], color, cv2.LINE_8, _SHIFT)
        if mask_value >= 0:
            cv2.fillPoly(self.mask, [pts], mask_value, cv2.LINE_8, _SHIFT)
        if obj:
            cv2.fillPoly(self.inst, [pts], obj, cv2.LINE_8, _SHIFT)
            self._grow(obj, pts)

    def fill_many(self, pts: list[np.ndarray], color, mask_value: int = -1) -> None:
        """Several non-overlapping polygons of one colour (ground layer: no instance id)."""
        if not pts:
            return
        cv2.fillPoly(self.image, pts, color, cv2.LINE_8, _SHIFT)
        if mask_value >= 0:
            cv2.fillPoly(self.mask, pts, mask_value, cv2.LINE_8, _SHIFT)

    def world_fill(self, world: np.ndarray, color, obj: int = 0, mask_value: int = -1) -> None:
        self.fill(self.cam.poly(world), color, obj, mask_value)

    def circle(self, center_uv, radius_px: float, color, obj: int) -> None:
        c = (int(round(center_uv[0] * _ONE)), int(round(center_uv[1] * _ONE)))
        r = max(1, int(round(radius_px * _ONE)))
        cv2.circle(self.image, c, r, color, -1, cv2.LINE_8, _SHIFT)
        cv2.circle(self.inst, c, r, obj, -1, cv2.LINE_8, _SHIFT)
        pts = np.array([[c[0] - r, c[1] - r], [c[0] + r, c[1] + r]], np.int32)
        self._grow(obj, pts)


def _ribbons(scene: Scene, cam: _Camera, offset: float, half_width: float, spans: np.ndarray, n: int) -> np.ndarray:
    """Ground strips along the road at a lateral offset (from the left edge), one per (z0, z1) span,
    sampled geometrically (dense near the camera) and widened with distance so that they stay at
    least MIN_MARKING_PX wide (far markings smear over a couple of pixels in real cameras, and lane
    labels are drawn at a minimum width): (S, 2n, 3) polygons."""
    spans = np.asarray(spans, np.float64).reshape(-1, 2)
    z0 = np.maximum(spans[:, :1], 0.5)
    z = z0 * (np.maximum(spans[:, 1:], z0 + 1e-3) / z0) ** _geom_t(n)  # (S, n)
    xc = scene.center_x(z) + offset
    hw = np.maximum(half_width, 0.5 * MIN_MARKING_PX * z / cam.f)
    out = np.zeros((len(z), 2 * n, 3))
    out[:, :n, 0] = xc - hw
    out[:, :n, 2] = z
    out[:, n:, 0] = (xc + hw)[:, ::-1]
    out[:, n:, 2] = z[:, ::-1]
    return out


def _ribbon(scene: Scene, cam: _Camera, offset: float, half_width: float, z0: float, z1: float, n: int) -> np.ndarray:
    return _ribbons(scene, cam, offset, half_width, np.array([[z0, z1]]), n)[0]


Z_FAR = 160.0


def _draw_ground(scene: Scene, cam: _Camera, cv: _Canvas, shift: float, markings: bool, drivable: bool) -> None:
    road_w = scene.road_width
    if scene.sidewalk is not None:
        for off in (-2.5, road_w + 2.5):
            cv.world_fill(_ribbon(scene, cam, off, 2.3, 0.5, Z_FAR, 40), scene.sidewalk)
    road = _ribbon(scene, cam, road_w / 2, road_w / 2 + 0.4, 0.5, Z_FAR, 48)
    cv.world_fill(road, scene.asphalt, mask_value=MASK_DRIVABLE if drivable else -1)
    for x, z, w, length, delta in scene.patches:
        z = z - shift
        if z < 1:
            continue
        color = tuple(int(min(255, max(0, c + delta))) for c in scene.asphalt)
        cv.fill_many(cam.polys(_ribbons(scene, cam, x, w / 2, np.array([[z, z + length]]), 4)), color)
    if not markings:
        return
    for m in scene.markings:
        offsets = [m.offset] if m.kind != "double" else [m.offset - m.double_gap / 2 - m.width / 2,
                                                         m.offset + m.double_gap / 2 + m.width / 2]
        polys: list[np.ndarray] = []
        for off in offsets:
            if m.kind == "dashed":
                period = m.dash + m.gap
                start = (m.phase - shift) % period - period
                a = start + period * np.arange(int((Z_FAR - start) // period) + 1)
                spans = np.stack([np.maximum(a, 0.6), np.minimum(a + m.dash, Z_FAR)], 1)
                spans = spans[spans[:, 1] > spans[:, 0] + 0.05]
                polys += cam.polys(_ribbons(scene, cam, off, m.width / 2, spans, 5))
            else:
                polys += cam.polys(_ribbons(scene, cam, off, m.width / 2, np.array([[0.6, Z_FAR]]), 40))
        cv.fill_many(polys, m.color, MASK_LANE)


def _shade(scene: Scene, cam: _Camera, image: np.ndarray, shift: float) -> None:
    """Ground shadows: darken the road (and its markings) under blobs and bands."""
    if not scene.shadows:
        return
    h = image.shape[0]
    top = int(max(0, min(h, math.floor(cam.horizon))))
    if top >= h:
        return
    sm = np.zeros((h - top, image.shape[1]), np.uint8)
    factors = []
    for i, s in enumerate(scene.shadows):
        z = s.z - shift
        if z < 1:
            continue
        if s.kind == "band":
            world = np.array([[s.x - s.sx / 2, 0, z], [s.x + s.sx / 2, 0, z + s.sz * 0.3],
                              [s.x + s.sx / 2, 0, z + s.sz], [s.x - s.sx / 2, 0, z + s.sz * 0.7]])
        else:
            a = np.linspace(0, 2 * math.pi, 12, endpoint=False)
            r = 1 + 0.25 * np.sin(3 * a + s.angle)
            world = np.stack([s.x + s.sx / 2 * r * np.cos(a + s.angle), np.zeros_like(a),
                              z + s.sz / 2 * r * np.sin(a)], 1)
        pts = cam.poly(world)
        if pts is None:
            continue
        pts = pts - np.array([0, top * _ONE], np.int32)
        cv2.fillPoly(sm, [pts], len(factors) + 1, cv2.LINE_8, _SHIFT)
        factors.append(s.factor)
    if not factors:
        return
    lut = np.array([1.0] + factors + [1.0] * (255 - len(factors)), np.float32)
    region = image[top:]
    shaded = sm > 0
    if shaded.any():
        f = lut[sm[shaded]][:, None]
        region[shaded] = (region[shaded] * f).astype(np.uint8)


def _box_world(cx: float, cz: float, heading: float, w: float, length: float, y0: float, y1: float,
               z_off: float = 0.0) -> np.ndarray:
    """8 corners of an oriented box: index bits (x side, z side, top)."""
    c, s = math.cos(heading), math.sin(heading)
    out = []
    for top in (0, 1):
        for zs in (-1, 1):
            for xs in (-1, 1):
                lx, lz = xs * w / 2, zs * length / 2 + z_off
                out.append([cx + c * lx + s * lz, y1 if top else y0, cz - s * lx + c * lz])
    return np.array(out)


# faces of _box_world: corner indices (outline order) and local outward normal
_FACES = {
    "rear": ([0, 1, 5, 4], (0, 0, -1)), "front": ([2, 3, 7, 6], (0, 0, 1)),
    "left": ([0, 2, 6, 4], (-1, 0, 0)), "right": ([1, 3, 7, 5], (1, 0, 0)), "top": ([4, 5, 7, 6], (0, 1, 0)),
}


def _shade_color(color, k: float):
    return tuple(int(np.clip(c * k, 0, 255)) for c in color)


def _draw_box(cv: _Canvas, corners: np.ndarray, heading: float, color, obj: int,
              shades=(("top", 1.1), ("left", 0.75), ("right", 0.75), ("rear", 0.92), ("front", 0.92))) -> list[str]:
    cam = cv.cam
    c, s = math.cos(heading), math.sin(heading)
    visible = []
    for name, k in shades:
        idx, (nx, ny, nz) = _FACES[name]
        normal = np.array([c * nx + s * nz, ny, -s * nx + c * nz])
        center = corners[idx].mean(0)
        if float(np.dot(normal, cam.pos - center)) > 0:
            cv.world_fill(corners[idx], _shade_color(color, k), obj)
            visible.append(name)
    return visible


def _face_quad(corners: np.ndarray, face: str, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    """A sub-rectangle of a vertical face: u along the face's width (0..1), v up (0..1)."""
    idx = _FACES[face][0]
    p0, p1, p2, p3 = corners[idx[0]], corners[idx[1]], corners[idx[2]], corners[idx[3]]  # bl, br, tr, tl

    def at(u, v):
        bottom = p0 + (p1 - p0) * u
        top = p3 + (p2 - p3) * u
        return bottom + (top - bottom) * v

    return np.array([at(u0, v0), at(u1, v0), at(u1, v1), at(u0, v1)])


def _draw_vehicle(scene: Scene, cv: _Canvas, v: Vehicle, z: float, obj: int) -> None:
    x = float(scene.center_x(np.array(z))) + v.x
    heading = scene.road_heading(z) + (math.pi if v.oncoming else 0.0)
    dark = (20, 20, 22)
    # shadow on the ground under the vehicle
    sh = _box_world(x, z, heading, v.width * 1.05, v.length * 1.02, 0.0, 0.0)
    cv.world_fill(sh[[0, 1, 3, 2]], _shade_color(scene.asphalt, 0.35), obj)
    if v.cls == TRUCK:
        cab_len = 2.3
        body = _box_world(x, z, heading, v.width, v.length - cab_len, 0.45, v.height, -cab_len / 2)
        cab = _box_world(x, z, heading, v.width * 0.97, cab_len, 0.45, v.height * 0.78, (v.length - cab_len) / 2)
        chassis = _box_world(x, z, heading, v.width * 0.9, v.length, 0.25, 0.5)
        _draw_box(cv, chassis, heading, dark, obj)
        # draw the part further from the camera first
        parts = [(body, v.color), (cab, _shade_color(v.color, 0.8) if v.oncoming else (200, 200, 205))]
        parts.sort(key=lambda p: -float(np.linalg.norm(p[0].mean(0) - cv.cam.pos)))
        for corners, col in parts:
            faces = _draw_box(cv, corners, heading, col, obj)
            if corners is cab and "front" in faces:
                cv.world_fill(_face_quad(corners, "front", 0.08, 0.92, 0.55, 0.95), v.cabin_color, obj)
            if corners is body and "rear" in faces:
                cv.world_fill(_face_quad(corners, "rear", 0.49, 0.51, 0.02, 0.98), _shade_color(col, 0.6), obj)
                cv.world_fill(_face_quad(corners, "rear", 0.04, 0.14, 0.03, 0.1), (200, 30, 30), obj)
                cv.world_fill(_face_quad(corners, "rear", 0.86, 0.96, 0.03, 0.1), (200, 30, 30), obj)
        wheel = _box_world(x, z, heading, v.width, v.length * 0.98, 0.0, 0.55)
        face = "front" if v.oncoming else "rear"
        if face in _draw_faces_visible(cv, wheel, heading):  # wheels seen from behind / in front
            for side in (0.02, 0.78):
                cv.world_fill(_face_quad(wheel, face, side, side + 0.2, 0.0, 1.0), dark, obj)
        return
    body_h = v.height * 0.55
    body = _box_world(x, z, heading, v.width, v.length, 0.18, body_h)
    cabin = _box_world(x, z, heading, v.width * 0.86, v.length * 0.5, body_h, v.height, -v.length * 0.05)
    wheels = _box_world(x, z, heading, v.width * 0.98, v.length * 0.75, 0.0, 0.36)
    wf = _draw_faces_visible(cv, wheels, heading)
    for face in ("rear", "front", "left", "right"):
        if face in wf:
            cv.world_fill(_face_quad(wheels, face, 0.0, 0.22, 0, 1), dark, obj)
            cv.world_fill(_face_quad(wheels, face, 0.78, 1.0, 0, 1), dark, obj)
    faces = _draw_box(cv, body, heading, v.color, obj)
    end = "front" if v.oncoming else "rear"
    if end in faces:
        light = (235, 235, 210) if v.oncoming else (190, 25, 25)
        cv.world_fill(_face_quad(body, end, 0.04, 0.2, 0.55, 0.85), light, obj)
        cv.world_fill(_face_quad(body, end, 0.8, 0.96, 0.55, 0.85), light, obj)
        cv.world_fill(_face_quad(body, end, 0.38, 0.62, 0.2, 0.42), (225, 225, 225) if not v.oncoming else dark, obj)
    cfaces = _draw_box(cv, cabin, heading, _shade_color(v.color, 0.95), obj)
    for face in cfaces:
        if face != "top":
            cv.world_fill(_face_quad(cabin, face, 0.08, 0.92, 0.08, 0.9), v.cabin_color, obj)


def _draw_faces_visible(cv: _Canvas, corners: np.ndarray, heading: float) -> list[str]:
    c, s = math.cos(heading), math.sin(heading)
    out = []
    for name, (idx, (nx, ny, nz)) in _FACES.items():
        normal = np.array([c * nx + s * nz, ny, -s * nx + c * nz])
        if float(np.dot(normal, cv.cam.pos - corners[idx].mean(0))) > 0:
            out.append(name)
    return out


def _billboard(cam: _Camera, x: float, z: float, pts_xy: np.ndarray) -> np.ndarray:
    """Points (lateral, height) on a vertical plane at (x, z) facing the camera -> world points."""
    d = np.array([x - cam.x0, z])
    n = np.linalg.norm(d)
    right = np.array([d[1], -d[0]]) / max(n, 1e-6)  # perpendicular to the line of sight, on the ground
    return np.stack([x + pts_xy[:, 0] * right[0], pts_xy[:, 1], z + pts_xy[:, 0] * right[1]], 1)


def _draw_pedestrian(cv: _Canvas, p: Pedestrian, x: float, z: float, phase: float, obj: int) -> None:
    cam = cv.cam
    h = p.height
    shirt, trousers, skin = p.colors
    s = p.stride * math.sin(phase)
    parts = [
        (np.array([[-0.16 - s * 0.3, 0], [-0.04 - s * 0.3, 0], [0.0, 0.48 * h], [-0.15, 0.48 * h]]), trousers),
        (np.array([[0.04 + s * 0.3, 0], [0.16 + s * 0.3, 0], [0.15, 0.48 * h], [0.0, 0.48 * h]]), trousers),
        (np.array([[-0.19, 0.46 * h], [0.19, 0.46 * h], [0.21, 0.81 * h], [-0.21, 0.81 * h]]), shirt),
        (np.array([[-0.27, 0.5 * h], [-0.2, 0.5 * h], [-0.19, 0.8 * h], [-0.26, 0.79 * h]]), _shade_color(shirt, 0.8)),
        (np.array([[0.2, 0.5 * h], [0.27, 0.5 * h], [0.26, 0.79 * h], [0.19, 0.8 * h]]), _shade_color(shirt, 0.8)),
        (np.array([[-0.06, 0.8 * h], [0.06, 0.8 * h], [0.06, 0.86 * h], [-0.06, 0.86 * h]]), skin),
    ]
    for xy, col in parts:
        cv.world_fill(_billboard(cam, x, z, xy), col, obj)
    head = cam.to_cam(_billboard(cam, x, z, np.array([[0.0, 0.92 * h]])))
    if head[0, 2] > _NEAR:
        uv = cam.project(head)[0]
        cv.circle(uv, cam.f * 0.075 * h / head[0, 2], skin, obj)


def _draw_sign(cv: _Canvas, sg: Sign, x: float, z: float, obj: int) -> None:
    cam = cv.cam
    r = sg.radius
    outer, inner = sg.colors
    if sg.shape == "circle":
        a = np.linspace(0, 2 * math.pi, 20, endpoint=False)
        unit = np.stack([np.cos(a), np.sin(a)], 1)
    elif sg.shape == "octagon":
        a = np.linspace(0, 2 * math.pi, 8, endpoint=False) + math.pi / 8
        unit = np.stack([np.cos(a), np.sin(a)], 1)
    elif sg.shape == "triangle":
        unit = np.array([[-1, -0.6], [1, -0.6], [0, 1.1]])
    elif sg.shape == "diamond":
        unit = np.array([[0, -1], [1, 0], [0, 1], [-1, 0]])
    else:
        unit = np.array([[-1, -0.7], [1, -0.7], [1, 0.7], [-1, 0.7]])
    cv.world_fill(_billboard(cam, x, z, unit * r + [0, sg.height]), outer, obj)
    k = 0.7 if sg.shape in ("circle", "triangle") else 0.85
    inner_unit = unit * k + ([0, -0.08] if sg.shape == "triangle" else [0, 0])
    cv.world_fill(_billboard(cam, x, z, inner_unit * r + [0, sg.height]), inner, obj)
    if sg.shape in ("circle", "rect", "octagon"):
        bar = np.array([[-0.45, -0.12], [0.45, -0.12], [0.45, 0.12], [-0.45, 0.12]]) * r
        cv.world_fill(_billboard(cam, x, z, bar + [0, sg.height]), outer if sg.shape != "rect" else (30, 30, 30), obj)


def _draw_prop(scene: Scene, cv: _Canvas, p: Prop, z: float) -> None:
    cam = cv.cam
    if p.kind == "building":
        heading = scene.road_heading(z)
        corners = _box_world(p.x, z + p.width / 2, heading, p.width, p.width, 0.0, p.height)
        faces = _draw_box(cv, corners, heading, p.color, _SCENERY_ID)
        for face in faces:
            if face == "top":
                continue
            for i in range(3):
                for j in range(max(1, int(p.height // 4))):
                    u0 = 0.1 + i * 0.3
                    v0 = 0.15 + j * (0.8 / max(1, int(p.height // 4)))
                    cv.world_fill(_face_quad(corners, face, u0, u0 + 0.18, v0, v0 + 0.08 * 4 / max(p.height / 4, 1)),
                                  p.color2, _SCENERY_ID)
    elif p.kind == "tree":
        trunk = np.array([[-0.15, 0], [0.15, 0], [0.15, p.height * 0.5], [-0.15, p.height * 0.5]])
        cv.world_fill(_billboard(cam, p.x, z, trunk), p.color2, _SCENERY_ID)
        a = np.linspace(0, 2 * math.pi, 14, endpoint=False)
        rr = 1 + 0.15 * np.sin(5 * a + p.x)
        crown = np.stack([p.width / 2 * rr * np.cos(a), p.height * 0.68 + p.height * 0.32 * rr * np.sin(a)], 1)
        cv.world_fill(_billboard(cam, p.x, z, crown), p.color, _SCENERY_ID)
    else:
        pole = np.array([[-p.width / 2, 0], [p.width / 2, 0], [p.width / 2, p.height], [-p.width / 2, p.height]])
        cv.world_fill(_billboard(cam, p.x, z, pole), p.color, _SCENERY_ID)


def _sky_and_ground(scene: Scene, cam: _Camera, rng: np.random.Generator) -> np.ndarray:
    h, w = cam.h, cam.w
    rows = np.arange(h, dtype=np.float32)[:, None]
    hz = cam.horizon
    top = np.array(scene.sky_top, np.float32)
    hor = np.array(scene.sky_horizon, np.float32)
    t = np.clip(rows / max(hz, 1.0), 0, 1)
    sky = top + (hor - top) * t
    ground_t = np.clip((rows - hz) / max(h - hz, 1.0), 0, 1)
    terr = np.array(scene.terrain, np.float32)
    ground = hor * 0.6 + terr * 0.4 + (terr - (hor * 0.6 + terr * 0.4)) * np.minimum(1, ground_t * 4)
    col = np.where(rows < hz, sky, ground)  # (h, 3)
    image = np.empty((h, w, 3), np.uint8)
    image[:] = np.clip(col, 0, 255).astype(np.uint8)[:, None, :]
    # ground texture: low-resolution noise, upsampled
    g0 = int(max(0, min(h, math.ceil(hz))))
    if g0 < h:
        small = rng.normal(1.0, 0.08, (max(2, (h - g0) // 6), max(2, w // 6))).astype(np.float32)
        tex = cv2.cvtColor(cv2.resize(small, (w, h - g0), interpolation=cv2.INTER_LINEAR), cv2.COLOR_GRAY2RGB)
        image[g0:] = cv2.multiply(image[g0:], tex, dtype=cv2.CV_8U)
    return image


def _finish(scene: Scene, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera response: brightness/contrast/tint, optional blur, sensor noise (image only)."""
    gain = np.array(scene.tint, np.float32) * scene.brightness * scene.contrast
    offset = 128.0 * (1 - scene.contrast) * scene.brightness
    lut = np.clip(np.arange(256, dtype=np.float32)[:, None] * gain[None, :] + offset, 0, 255).astype(np.uint8)
    out = cv2.LUT(image, lut.reshape(256, 1, 3))
    if scene.blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), scene.blur)
    if scene.noise > 0.5:
        h, w = out.shape[:2]
        noise = rng.normal(0, scene.noise, (h // 2 + 1, w // 2 + 1)).astype(np.float32)
        noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_NEAREST)
        out = cv2.add(out, cv2.cvtColor(noise, cv2.COLOR_GRAY2RGB), dtype=cv2.CV_8U)
    return out


def _render_rng(scene: Scene, camera: str, t: float) -> np.random.Generator:
    return np.random.default_rng([scene.seed & 0xFFFFFFFF, zlib.crc32(camera.encode()), int(round(t * 1000)) & 0xFFFFFFFF])


def render(scene: Scene, camera: str = "front", size: tuple[int, int] = (640, 360), t: float = 0.0,
           drivable: bool = False, background: bool = True, markings: bool = True,
           objects: Sequence[int] | None = None, effects: bool = True,
           min_box: float = 8.0, min_visible: float = 0.2) -> SyntheticFrame:
    """Render ``scene`` from one camera at time t (s). size is (width, height).

    objects: indices into the scene's labelled objects (vehicles, then pedestrians, then signs) to
    draw; None draws all. background=False paints only the labelled objects on a flat grey frame,
    effects=False skips the camera response (for pixel-exact tests). min_box: objects whose
    projected height is below min_box * width / 640 pixels are not drawn; min_visible: objects with
    less than this fraction of their pixels visible keep their pixels but get no label.
    """
    width, height = int(size[0]), int(size[1])
    pose = CAMERA_POSES.get(camera)
    if pose is None:
        raise ValueError(f"unknown camera {camera!r}; one of {', '.join(CAMERA_POSES)}")
    cam = _Camera(scene, pose, width, height)
    rng = _render_rng(scene, camera, t)
    shift = scene.ego_speed * t
    if background:
        image = _sky_and_ground(scene, cam, rng)
    else:
        image = np.full((height, width, 3), 128, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    inst = np.zeros((height, width), np.uint16)
    cv = _Canvas(cam, image, mask, inst)
    if background:
        _draw_ground(scene, cam, cv, shift, markings, drivable)
        _shade(scene, cam, image, shift)

    # upright things, painted far to near
    items = []  # (depth, kind, payload, label index or -1)
    if background:
        for p in scene.props:
            z = p.z - shift
            d = cam.depth(p.x, z)
            if d > _NEAR + 1:
                items.append((d, "prop", (p, z), -1))
        for sg in scene.signs:  # sign poles are scenery: the sign plate is the labelled object
            z = sg.z - shift
            if cam.depth(sg.x, z) > _NEAR + 1:
                pole = Prop("pole", sg.x, z, 0.08, sg.height - sg.radius * 0.5, (120, 120, 125))
                items.append((cam.depth(sg.x, z) + 0.01, "prop", (pole, z), -1))
    min_px = min_box * width / 640
    label = 0
    for v in scene.vehicles:
        z = v.z + (v.speed - scene.ego_speed) * t
        x = float(scene.center_x(np.array(z))) + v.x
        d = cam.depth(x, z) - v.length / 2 * (1 if not v.oncoming else 1)
        if d > 2.0 and cam.f * v.height / max(d + v.length / 2, 1e-3) >= min_px:
            items.append((cam.depth(x, z), "vehicle", (v, z), label))
        label += 1
    for p in scene.pedestrians:
        x = p.x + p.speed_x * t
        z = p.z - shift
        d = cam.depth(x, z)
        if d > 2.0 and cam.f * p.height / d >= min_px:
            items.append((d, "pedestrian", (p, x, z), label))
        label += 1
    for sg in scene.signs:
        z = sg.z - shift
        d = cam.depth(sg.x, z)
        if d > 2.0 and cam.f * 2 * sg.radius / d >= 0.75 * min_px:
            items.append((d, "sign", (sg, z), label))
        label += 1
    items.sort(key=lambda it: -it[0])
    classes: dict[int, int] = {}
    for depth, kind, payload, idx in items:
        if idx >= 0 and objects is not None and idx not in objects:
            continue
        obj = _SCENERY_ID if idx < 0 else idx + 1
        if kind == "prop":
            _draw_prop(scene, cv, payload[0], payload[1])
        elif kind == "vehicle":
            _draw_vehicle(scene, cv, payload[0], payload[1], obj)
            classes[obj] = payload[0].cls
        elif kind == "pedestrian":
            _draw_pedestrian(cv, payload[0], payload[1], payload[2], t * 6.0 + payload[0].z, obj)
            classes[obj] = PEDESTRIAN
        else:
            _draw_sign(cv, payload[0], payload[0].x, payload[1], obj)
            classes[obj] = TRAFFIC_SIGN
        if idx >= 0:
            cv.drawn[obj] = _count(inst, cv.extent.get(obj), obj)
    if background:
        mask[inst > 0] = MASK_BACKGROUND
    boxes, cls_ids = [], []
    for obj, cls in classes.items():
        e = cv.extent.get(obj)
        if e is None:
            continue
        x0, y0 = max(0, e[0]), max(0, e[1])
        x1, y1 = min(width, e[2]), min(height, e[3])
        if x1 <= x0 or y1 <= y0:
            continue
        sub = inst[y0:y1, x0:x1] == obj
        n = int(sub.sum())
        if n < 12 or n < min_visible * max(cv.drawn.get(obj, n), 1):
            continue
        ys = np.flatnonzero(sub.any(1))
        xs = np.flatnonzero(sub.any(0))
        bx0, by0, bx1, by1 = x0 + xs[0], y0 + ys[0], x0 + xs[-1] + 1, y0 + ys[-1] + 1
        if bx1 - bx0 < 3 or by1 - by0 < 3:
            continue
        boxes.append([bx0, by0, bx1, by1])
        cls_ids.append(cls)
    if effects and background:
        image = _finish(scene, image, rng)
    return SyntheticFrame(image, mask, np.array(boxes, np.float32).reshape(-1, 4), np.array(cls_ids, np.int64),
                          camera, float(t), scene.seed, inst)


def _count(inst: np.ndarray, extent, obj: int) -> int:
    if extent is None:
        return 0
    x0, y0 = max(0, extent[0]), max(0, extent[1])
    x1, y1 = min(inst.shape[1], extent[2]), min(inst.shape[0], extent[3])
    if x1 <= x0 or y1 <= y0:
        return 0
    return int((inst[y0:y1, x0:x1] == obj).sum())


def scene_frames(seed: int, size: tuple[int, int] = (640, 360), cameras: Sequence[str] = ("front",),
                 stamp: float = 0.0, drivable: bool = False) -> list[SyntheticFrame]:
    """One scene seen by several cameras at the same instant (every frame gets the same stamp)."""
    scene = sample_scene(seed)
    frames = [render(scene, cam, size, 0.0, drivable) for cam in cameras]
    for f in frames:
        f.stamp = float(stamp)
    return frames


def sequence(seed: int, n_frames: int, fps: float = 10.0, size: tuple[int, int] = (640, 360),
             cameras: Sequence[str] = ("front",), drivable: bool = False,
             start_stamp: float = 0.0) -> Iterator[list[SyntheticFrame]]:
    """A drive through one scene: per time step, one frame per camera, all with the same stamp."""
    scene = sample_scene(seed)
    for k in range(n_frames):
        t = k / fps
        frames = [render(scene, cam, size, t, drivable) for cam in cameras]
        for f in frames:
            f.stamp = start_stamp + t
        yield frames


def scene_seed(seed: int, index: int) -> int:
    """The seed of scene ``index`` of a data set generated with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(1)[0])


# SyntheticFrame's name until perception_edge.core.sync.Frame became the only Frame
__getattr__ = moved_names(__name__, {"Frame": f"{__name__}:SyntheticFrame"})
