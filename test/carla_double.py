"""A TEST DOUBLE of the CARLA Python client API (``import carla``), for tests only.

No CARLA server can run on the test machines, so perception_edge.sim is tested against this
stand-in, passed as ``carla_module``. It implements the part of the API the package uses, with the
real names and value conventions of CARLA 0.9.16: Client (get_world, load_world, timeouts,
get_trafficmanager), World (settings, blueprint library, try_spawn_actor, get_actors, tick,
get_snapshot, get_level_bbs, weather), WorldSettings, actors with bounding boxes and transforms,
sensors with listen / stop / enable_for_ros, carla.Image with raw BGRA data, CityObjectLabel (the
0.9.14+ tag values), Transform / Location / Rotation, WeatherParameters, TrafficManager.

What the "server" shows: one scene of the project's synthetic generator
(perception_edge.data.synthetic), seen from the ego vehicle, which stays at the world origin
while the scene moves past it (the generator describes the world relative to the ego). Vehicles and
pedestrians of the scene are actors, its traffic signs level bounding boxes, each with a 3-D box
around what the generator paints for it (vehicle body with its ground shadow, pedestrian and sign
billboards), in CARLA's axes (x forward = the generator's z, y right = its x, z up = its y). Per
tick, each camera sensor gets the generator's frame for its pose: the RGB image, a semantic image
(R = CityObjectLabel tag: RoadLines on the lane-marking pixels, Roads, Car / Truck / Pedestrians /
TrafficSigns on the objects' pixels, Sky, Terrain, Buildings), and an instance image (R = tag,
G + 256 B = actor id, or a non-actor id for signs). The generator's own 2-D boxes are kept
(``last_truth``) so tests can compare the package's projection + occlusion result with them.

Faults for the tests: ``World.faults`` -- ``drop`` {(frame, camera, kind)} never delivered,
``late`` {(frame, camera, kind): seconds} delivered from a thread after a delay, ``shuffle`` (deliver
a tick's images in a random order), ``stale`` (re-deliver the previous frame's image first),
``interrupt_at`` (frame at which tick() raises KeyboardInterrupt), ``fail_at`` (RuntimeError).
"""
from __future__ import annotations

import copy
import dataclasses
import fnmatch
import hashlib
import math
import random
import threading
from typing import Any, Callable

import numpy as np

from perception_edge.data import synthetic

VERSION = "0.9.16"


# -- geometry ------------------------------------------------------------------------------------------

class Location:
    def __init__(self, x: float = 0.0, y: float = 0.0, z: float = 0.0):
        self.x, self.y, self.z = float(x), float(y), float(z)

    def __repr__(self) -> str:
        return f"Location(x={self.x:.3f}, y={self.y:.3f}, z={self.z:.3f})"


Vector3D = Location


class Rotation:
    def __init__(self, pitch: float = 0.0, yaw: float = 0.0, roll: float = 0.0):
        self.pitch, self.yaw, self.roll = float(pitch), float(yaw), float(roll)


class Transform:
    def __init__(self, location: Location | None = None, rotation: Rotation | None = None):
        self.location = location or Location()
        self.rotation = rotation or Rotation()


class BoundingBox:
    def __init__(self, location: Location, extent: Vector3D, rotation: Rotation | None = None):
        self.location, self.extent, self.rotation = location, extent, rotation or Rotation()


class CityObjectLabel:  # CARLA 0.9.14+ values
    NONE, Roads, Sidewalks, Buildings, Walls, Fences, Poles, TrafficLight, TrafficSigns = range(9)
    Vegetation, Terrain, Sky, Pedestrians, Rider, Car, Truck, Bus, Train, Motorcycle, Bicycle = range(9, 20)
    Static, Dynamic, Other, Water, RoadLines, Ground, Bridge, RailTrack, GuardRail = range(20, 29)
    Any = 255


class WeatherParameters:
    def __init__(self, name: str = "Default", cloudiness: float = 0.0):
        self.name, self.cloudiness = name, cloudiness


for _n in ("Default", "ClearNoon", "CloudyNoon", "WetNoon", "HardRainNoon", "ClearSunset", "WetCloudySunset"):
    setattr(WeatherParameters, _n, WeatherParameters(_n))


class WorldSettings:
    def __init__(self, synchronous_mode: bool = False, fixed_delta_seconds: float | None = None,
                 no_rendering_mode: bool = False):
        self.synchronous_mode = synchronous_mode
        self.fixed_delta_seconds = fixed_delta_seconds
        self.no_rendering_mode = no_rendering_mode

    def __eq__(self, other) -> bool:
        return isinstance(other, WorldSettings) and vars(self) == vars(other)


# -- blueprints ------------------------------------------------------------------------------------

class ActorAttribute:
    def __init__(self, value: str):
        self.value = str(value)

    def as_str(self) -> str:
        return self.value


class ActorBlueprint:
    def __init__(self, id: str, attributes: dict[str, str]):
        self.id = id
        self._attrs = {k: str(v) for k, v in attributes.items()}

    def has_attribute(self, name: str) -> bool:
        return name in self._attrs

    def get_attribute(self, name: str) -> ActorAttribute:
        return ActorAttribute(self._attrs[name])

    def set_attribute(self, name: str, value: str) -> None:
        if name not in self._attrs:
            raise IndexError(f"blueprint {self.id} has no attribute {name}")
        self._attrs[name] = str(value)


class BlueprintLibrary:
    def __init__(self, blueprints: list[ActorBlueprint]):
        self._bps = blueprints

    def filter(self, pattern: str) -> list[ActorBlueprint]:
        return [copy.deepcopy(b) for b in self._bps if fnmatch.fnmatch(b.id, pattern)]

    def find(self, id: str) -> ActorBlueprint:
        for b in self._bps:
            if b.id == id:
                return copy.deepcopy(b)
        raise IndexError(f"no blueprint {id}")


def _library(ros: bool) -> BlueprintLibrary:
    cam = {"image_size_x": "800", "image_size_y": "600", "fov": "90", "sensor_tick": "0.0", "role_name": "front"}
    if ros:
        cam["ros_name"] = ""
    return BlueprintLibrary([
        ActorBlueprint("vehicle.tesla.model3", {"role_name": "autopilot", "base_type": "car"}),
        ActorBlueprint("vehicle.lincoln.mkz_2020", {"role_name": "autopilot", "base_type": "car"}),
        ActorBlueprint("vehicle.carlamotors.carlacola", {"role_name": "autopilot", "base_type": "truck"}),
        ActorBlueprint("walker.pedestrian.0001", {"role_name": "pedestrian", "is_invincible": "true"}),
        ActorBlueprint("controller.ai.walker", {}),
        ActorBlueprint("sensor.camera.rgb", dict(cam)),
        ActorBlueprint("sensor.camera.semantic_segmentation", dict(cam)),
        ActorBlueprint("sensor.camera.instance_segmentation", dict(cam)),
    ])


# -- actors ----------------------------------------------------------------------------------------

class Actor:
    def __init__(self, world: World, id: int, type_id: str, attributes: dict[str, str], transform: Transform,
                 extent=(0.5, 0.5, 0.5), semantic_tags=(), parent: Actor | None = None):
        self._world, self.id, self.type_id = world, id, type_id
        self.attributes = dict(attributes)
        self._transform = transform
        self.bounding_box = BoundingBox(Location(0, 0, extent[2]), Vector3D(*extent))
        self.semantic_tags = list(semantic_tags)
        self.parent = parent
        self.is_alive = True
        self.autopilot = False

    def get_transform(self) -> Transform:
        return self._transform

    def set_autopilot(self, enabled: bool = True, tm_port: int = 8000) -> None:
        self.autopilot = bool(enabled)

    def destroy(self) -> bool:
        if not self.is_alive:
            return False
        self.is_alive = False
        self._world._actors.pop(self.id, None)
        self._world.destroyed.append(self.id)
        return True


class WalkerAIController(Actor):
    started = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def go_to_location(self, location: Location) -> None:
        self.target = location


class Sensor(Actor):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._callback: Callable | None = None
        self.ros_enabled = False

    @property
    def is_listening(self) -> bool:
        return self._callback is not None

    def listen(self, callback: Callable) -> None:
        self._callback = callback

    def stop(self) -> None:
        self._callback = None

    def enable_for_ros(self) -> None:
        self.ros_enabled = True


class ActorList(list):
    def filter(self, pattern: str) -> ActorList:
        return ActorList(a for a in self if fnmatch.fnmatch(a.type_id, pattern))

    def find(self, id: int):
        return next((a for a in self if a.id == id), None)


class Image:
    def __init__(self, frame: int, timestamp: float, width: int, height: int, fov: float, raw_data: bytes,
                 transform: Transform):
        self.frame = self.frame_number = frame
        self.timestamp = timestamp
        self.width, self.height, self.fov = width, height, fov
        self.raw_data = raw_data
        self.transform = transform


class ActorSnapshot:
    def __init__(self, transform: Transform):
        self._t = transform

    def get_transform(self) -> Transform:
        return self._t


class Timestamp:
    def __init__(self, frame: int, elapsed: float, delta: float):
        self.frame, self.elapsed_seconds, self.delta_seconds = frame, elapsed, delta


class WorldSnapshot:
    def __init__(self, frame: int, elapsed: float, delta: float, transforms: dict[int, Transform]):
        self.frame = frame
        self.timestamp = Timestamp(frame, elapsed, delta)
        self._t = transforms

    def find(self, actor_id: int):
        t = self._t.get(actor_id)
        return ActorSnapshot(t) if t is not None else None


class Map:
    def __init__(self, name: str):
        self.name = name

    def get_spawn_points(self) -> list[Transform]:
        # behind the ego, far outside every camera: spawned traffic exists but is never in view
        return [Transform(Location(-60.0 - 8.0 * i, 0.0, 0.3)) for i in range(20)]


# -- the world ---------------------------------------------------------------------------------------

class World:
    def __init__(self, server: Server):
        self.server = server
        self.settings = WorldSettings()
        self.weather = WeatherParameters.Default
        self.frame = 1000
        self.elapsed = 0.0
        self.destroyed: list[int] = []
        self.faults: dict[str, Any] = {}
        self.last_truth: dict[str, synthetic.SyntheticFrame] = {}  # camera name -> generator frame
        self.rendered: dict[tuple[int, str], str] = {}  # (frame, camera) -> md5 of the RGB frame rendered
        self.stamps: dict[int, float] = {}  # frame -> simulation time (s)
        self.scene = synthetic.sample_scene(server.seed)
        self._next_id = 1
        self._actors: dict[int, Actor] = {}
        self.ticks = 0
        self._threads: list[threading.Thread] = []
        self._scene_actor_ids: list[int] = []  # per labelled object of the scene (-1: sign, no actor)
        for i, v in enumerate(self.scene.vehicles):
            truck = v.cls == synthetic.TRUCK
            a = self._add(Actor, "vehicle.carlamotors.carlacola" if truck else "vehicle.tesla.model3",
                          {"role_name": "scenery", "base_type": "truck" if truck else "car"}, Transform(),
                          (v.length * 1.02 / 2, v.width * 1.05 / 2, v.height / 2),
                          [CityObjectLabel.Truck if truck else CityObjectLabel.Car])
            self._scene_actor_ids.append(a.id)
        for p in self.scene.pedestrians:
            a = self._add(Actor, "walker.pedestrian.0001", {"role_name": "scenery"}, Transform(),
                          (0.3, 0.3, p.height * 1.02 / 2), [CityObjectLabel.Pedestrians])
            self._scene_actor_ids.append(a.id)
        self._scene_actor_ids += [-1] * len(self.scene.signs)
        self._place(0.0)

    # ids of the scene's signs in the instance image: not actor ids (as level objects in CARLA)
    SIGN_ID_BASE = 40000

    def _add(self, cls, type_id, attributes, transform, extent=(0.5, 0.5, 0.5), tags=(), parent=None):
        a = cls(self, self._next_id, type_id, attributes, transform, extent, tags, parent)
        self._actors[a.id] = a
        self._next_id += 1
        return a

    def _rig_x(self) -> float:
        cams = [a for a in self._actors.values() if isinstance(a, Sensor)]
        return cams[0]._transform.location.x if cams else 1.5

    def _place(self, t: float) -> None:
        """Scene objects at time t as actors (CARLA axes; the generator's origin is at the cameras'
        forward position on the ground)."""
        sc = self.scene
        x0 = self._rig_x()
        shift = sc.ego_speed * t
        for v, aid in zip(sc.vehicles, self._scene_actor_ids):
            z = v.z + (v.speed - sc.ego_speed) * t
            x = float(sc.center_x(np.array(z))) + v.x
            heading = sc.road_heading(z) + (math.pi if v.oncoming else 0.0)
            self._actors[aid]._transform = Transform(Location(z + x0, x, 0.0), Rotation(yaw=math.degrees(heading)))
        for p, aid in zip(sc.pedestrians, self._scene_actor_ids[len(sc.vehicles):]):
            self._actors[aid]._transform = Transform(Location(p.z - shift + x0, p.x + p.speed_x * t, 0.0))
        self._sign_boxes = []
        for sg in sc.signs:
            r = sg.radius * 1.15
            self._sign_boxes.append(BoundingBox(Location(sg.z - shift + x0, sg.x, sg.height), Vector3D(r, r, r)))

    # -- API -------------------------------------------------------------------------------------
    def get_settings(self) -> WorldSettings:
        return copy.copy(self.settings)

    def apply_settings(self, settings: WorldSettings) -> int:
        self.settings = copy.copy(settings)
        return self.frame

    def get_map(self) -> Map:
        return Map(self.server.town)

    def get_blueprint_library(self) -> BlueprintLibrary:
        return _library(self.server.ros)

    def get_weather(self) -> WeatherParameters:
        return self.weather

    def set_weather(self, weather: WeatherParameters) -> None:
        self.weather = weather

    def set_pedestrians_seed(self, seed: int) -> None:
        pass

    def get_random_location_from_navigation(self) -> Location:
        return Location(-40.0 - random.Random(self._next_id).uniform(0, 30), 30.0, 0.2)

    def try_spawn_actor(self, bp: ActorBlueprint, transform: Transform, attach_to: Actor | None = None):
        attrs = {k: v.value if isinstance(v, ActorAttribute) else v for k, v in bp._attrs.items()}
        if bp.id.startswith("sensor."):
            if attach_to is not None and attach_to.type_id.startswith("vehicle."):
                attach_to._transform = Transform()  # the ego stays at the origin: the scene is ego-relative
            return self._add(Sensor, bp.id, attrs, transform, parent=attach_to)
        if bp.id == "controller.ai.walker":
            return self._add(WalkerAIController, bp.id, attrs, transform, parent=attach_to)
        tags = [CityObjectLabel.Pedestrians] if bp.id.startswith("walker.") else [CityObjectLabel.Car]
        return self._add(Actor, bp.id, attrs, transform, (2.3, 1.0, 0.8), tags)

    spawn_actor = try_spawn_actor

    def get_actors(self, ids=None) -> ActorList:
        return ActorList(a for a in self._actors.values() if ids is None or a.id in ids)

    def get_level_bbs(self, label=CityObjectLabel.Any) -> list[BoundingBox]:
        return list(self._sign_boxes) if label in (CityObjectLabel.TrafficSigns, CityObjectLabel.Any) else []

    def get_snapshot(self) -> WorldSnapshot:
        return WorldSnapshot(self.frame, self.elapsed, self.settings.fixed_delta_seconds or 0.05,
                             {i: a._transform for i, a in self._actors.items()})

    def wait_for_tick(self, seconds: float = 10.0):
        return self.get_snapshot()

    def tick(self, seconds: float = 10.0) -> int:
        if not self.settings.synchronous_mode:
            raise RuntimeError("tick() in asynchronous mode")  # the real server would just time out
        if self.faults.get("interrupt_at") == self.frame + 1:
            raise KeyboardInterrupt
        if self.faults.get("fail_at") == self.frame + 1:
            raise RuntimeError("time-out of 10000ms while waiting for the simulator")
        self.frame += 1
        self.ticks += 1
        self.elapsed += self.settings.fixed_delta_seconds
        self.stamps[self.frame] = self.elapsed
        self._place(self.elapsed)
        self._deliver()
        return self.frame

    # -- rendering ---------------------------------------------------------------------------------
    def _camera_pose(self, sensor: Sensor) -> str:
        loc, rot = sensor._transform.location, sensor._transform.rotation
        for name, pose in synthetic.CAMERA_POSES.items():
            if abs(pose.yaw_deg - rot.yaw) < 1e-6 and abs(pose.x_offset - loc.y) < 1e-6:
                return name
        raise RuntimeError(f"the double renders only the synthetic rig's poses, not yaw {rot.yaw} y {loc.y}")

    def _render(self, sensor: Sensor):
        width = int(sensor.attributes["image_size_x"])
        height = int(sensor.attributes["image_size_y"])
        fov = float(sensor.attributes["fov"])
        loc, rot = sensor._transform.location, sensor._transform.rotation
        if abs(rot.roll) > 1e-9:
            raise RuntimeError("the double renders cameras without roll")
        scene = dataclasses.replace(self.scene, hfov=math.radians(fov), cam_height=loc.z,
                                    pitch=-math.radians(rot.pitch))
        name = self._camera_pose(sensor)
        fr = synthetic.render(scene, name, (width, height), self.elapsed, drivable=True)
        parent = sensor.parent._transform if sensor.parent is not None else Transform()
        world_tf = Transform(Location(parent.location.x + loc.x, parent.location.y + loc.y, parent.location.z + loc.z),
                             Rotation(rot.pitch, rot.yaw + parent.rotation.yaw, rot.roll))
        return fr, world_tf, fov

    def _images(self, fr: synthetic.SyntheticFrame, horizon: float) -> dict[str, np.ndarray]:
        h, w = fr.mask.shape
        tags = np.full((h, w), CityObjectLabel.Terrain, np.uint8)
        tags[: max(0, int(math.ceil(horizon)))] = CityObjectLabel.Sky
        tags[fr.mask == synthetic.MASK_DRIVABLE] = CityObjectLabel.Roads
        tags[fr.mask == synthetic.MASK_LANE] = CityObjectLabel.RoadLines
        ids = np.zeros((h, w), np.uint16)
        inst = fr.instance
        tags[inst == 65535] = CityObjectLabel.Buildings
        sc = self.scene
        kinds = ([CityObjectLabel.Truck if v.cls == synthetic.TRUCK else CityObjectLabel.Car for v in sc.vehicles]
                 + [CityObjectLabel.Pedestrians] * len(sc.pedestrians) + [CityObjectLabel.TrafficSigns] * len(sc.signs))
        present = np.unique(inst)
        for i, (tag, aid) in enumerate(zip(kinds, self._scene_actor_ids)):
            if i + 1 not in present:
                continue
            sel = inst == i + 1
            tags[sel] = tag
            ids[sel] = aid if aid >= 0 else self.SIGN_ID_BASE + i
        rgb = np.empty((h, w, 4), np.uint8)
        rgb[:, :, :3] = fr.image[:, :, ::-1]
        rgb[:, :, 3] = 255
        sem = np.zeros((h, w, 4), np.uint8)
        sem[:, :, 2] = tags
        sem[:, :, 3] = 255
        ins = np.zeros((h, w, 4), np.uint8)
        ins[:, :, 2] = tags
        ins[:, :, 1] = ids & 0xFF
        ins[:, :, 0] = ids >> 8
        ins[:, :, 3] = 255
        return {"sensor.camera.rgb": rgb, "sensor.camera.semantic_segmentation": sem,
                "sensor.camera.instance_segmentation": ins}

    def _deliver(self) -> None:
        sensors = [a for a in self._actors.values() if isinstance(a, Sensor) and a.is_listening]
        rendered: dict[tuple, Any] = {}
        items = []
        for s in sensors:
            key = (s.parent.id if s.parent else 0, s._transform.location.y, s._transform.rotation.yaw)
            if key not in rendered:
                fr, tf, fov = self._render(s)
                f = (fr.image.shape[1] / 2) / math.tan(math.radians(fov) / 2)
                horizon = fr.image.shape[0] / 2 - f * math.tan(-math.radians(s._transform.rotation.pitch))
                rendered[key] = (fr, tf, fov, self._images(fr, horizon))
                self.last_truth[self._camera_pose(s)] = fr
                self.rendered[(self.frame, self._camera_pose(s))] = hashlib.md5(fr.image.tobytes()).hexdigest()
            fr, tf, fov, imgs = rendered[key]
            px = imgs[s.type_id]
            image = Image(self.frame, self.elapsed, px.shape[1], px.shape[0], fov, px.tobytes(), tf)
            items.append((s, image))
        if self.server.ros_side is not None:  # CARLA's native ROS 2 interface (--ros2): the server publishes
            self.server.ros_side.clock(self.elapsed)
            for sensor, image in items:
                if sensor.ros_enabled and sensor.type_id == "sensor.camera.rgb":
                    role = sensor.parent.attributes.get("role_name", "hero") if sensor.parent else "hero"
                    self.server.ros_side.image(f"/carla/{role}/{sensor.attributes['ros_name']}/image", image,
                                               sensor.attributes["ros_name"])
        if self.faults.get("shuffle"):
            random.Random(self.frame).shuffle(items)
        prev = getattr(self, "_prev_items", {})
        self._prev_items = {}
        for s, image in items:
            kind = {"sensor.camera.rgb": "rgb", "sensor.camera.semantic_segmentation": "semantic",
                    "sensor.camera.instance_segmentation": "instance"}[s.type_id]
            cam = self.camera_name(s)
            key = (self.frame, cam, kind)
            self._prev_items[(cam, kind)] = image
            if self.faults.get("stale") and (cam, kind) in prev:
                s._callback(prev[(cam, kind)])
            if key in self.faults.get("drop", ()):
                continue
            delay = self.faults.get("late", {}).get(key)
            if delay:
                cb = s._callback
                th = threading.Timer(delay, lambda cb=cb, image=image: cb(image))
                th.start()
                self._threads.append(th)
                continue
            s._callback(image)

    def camera_name(self, sensor: Sensor) -> str:
        return self._camera_pose(sensor)


# -- client side -------------------------------------------------------------------------------------

class Server:
    """A running 'server' of the double at (host, port)."""

    def __init__(self, seed: int = 3, town: str = "Carla/Maps/Town10HD_Opt", ros: bool = False,
                 ros_publish: bool = False):
        self.seed, self.town, self.ros = seed, town, ros
        self.ros_side = RosSide() if ros_publish else None  # publish to ROS 2 (a server started with --ros2)
        self.world = World(self)
        self.traffic_manager = TrafficManager()
        self.loaded: list[str] = []


class RosSide:
    """What a CARLA server started with --ros2 publishes for sensors with enable_for_ros(): images on
    /carla/<role_name>/<ros_name>/image (bgra8, header stamp = simulation time) and /clock (rclpy,
    its own context, in the domain of ROS_DOMAIN_ID)."""

    def __init__(self):
        import rclpy
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("carla_server_double", context=self.context)
        self.qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs: dict[str, Any] = {}

    def _pub(self, kind, topic: str):
        if topic not in self.pubs:
            self.pubs[topic] = self.node.create_publisher(kind, topic, self.qos)
        return self.pubs[topic]

    def clock(self, t: float) -> None:
        from rosgraph_msgs.msg import Clock

        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = int(t), int(round((t - int(t)) * 1e9)) % 1_000_000_000
        self._pub(Clock, "/clock").publish(msg)

    def image(self, topic: str, image: Image, frame_id: str) -> None:
        from sensor_msgs.msg import Image as RosImage

        ns = int(round(image.timestamp * 1e9))
        msg = RosImage()
        msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
        msg.header.frame_id = frame_id
        msg.height, msg.width, msg.encoding, msg.is_bigendian = image.height, image.width, "bgra8", 0
        msg.step = image.width * 4
        msg.data = image.raw_data
        self._pub(RosImage, topic).publish(msg)

    def subscribers(self, topic: str) -> int:
        return self.pubs[topic].get_subscription_count() if topic in self.pubs else 0

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


SERVERS: dict[tuple[str, int], Server] = {}


class TrafficManager:
    def __init__(self):
        self.synchronous = False
        self.seed = None

    def set_synchronous_mode(self, enabled: bool) -> None:
        self.synchronous = bool(enabled)

    def set_random_device_seed(self, seed: int) -> None:
        self.seed = int(seed)

    def get_port(self) -> int:
        return 8000


class Client:
    def __init__(self, host: str = "127.0.0.1", port: int = 2000, worker_threads: int = 0):
        self.host, self.port = host, int(port)
        self.timeout = 5.0

    def set_timeout(self, seconds: float) -> None:
        self.timeout = float(seconds)

    def _server(self) -> Server:
        server = SERVERS.get((self.host, self.port))
        if server is None:  # CARLA's own message (after `timeout` seconds there; at once here)
            raise RuntimeError(f"time-out of {int(self.timeout * 1000)}ms while waiting for the simulator, make "
                               f"sure the simulator is ready and connected to {self.host}:{self.port}")
        return server

    def get_server_version(self) -> str:
        self._server()
        return VERSION

    def get_client_version(self) -> str:
        return VERSION

    def get_world(self) -> World:
        return self._server().world

    def load_world(self, town: str) -> World:
        server = self._server()
        server.loaded.append(town)
        server.town = f"Carla/Maps/{town}"
        return server.world

    def get_trafficmanager(self, port: int = 8000) -> TrafficManager:
        return self._server().traffic_manager


def serve(host: str = "127.0.0.1", port: int = 2000, **kwargs) -> Server:
    """Start a double 'server' at (host, port) (replacing one already there)."""
    SERVERS[(host, int(port))] = server = Server(**kwargs)
    return server


def main(argv: list[str] | None = None) -> int:
    """`python test/carla_double.py [--seed N] [--ros] -- ARGS`: `perception-edge carla ARGS` against
    this double (a figure of the loop, NOT of a CARLA server), cameras at the scene's rig."""
    import argparse
    import sys

    from perception_edge.cli.carla import main as carla_main

    argv = list(sys.argv[1:] if argv is None else argv)
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(prog="carla_double.py")
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--port", type=int, default=2000)
    ap.add_argument("--size", default="1280x720")
    args = ap.parse_args(own)
    server = serve(port=args.port, seed=args.seed)
    sc = server.world.scene
    z, p = sc.cam_height, -math.degrees(sc.pitch)
    cams = [f"{n}:1.5,{y},{z:.4f},{p:.4f},{yaw},0"
            for n, y, yaw in (("front", 0, 0), ("front_left", -0.6, -40), ("front_right", 0.6, 40))]
    return carla_main(["--port", str(args.port), "--size", args.size, "--fov", f"{math.degrees(sc.hfov):.4f}",
                       "--cameras", *cams, *rest], carla_module=sys.modules[__name__])


if __name__ == "__main__":
    raise SystemExit(main())
