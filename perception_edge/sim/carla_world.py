"""A CARLA world set up for a perception run, and put back as it was afterwards.

``CarlaSession`` (a context manager) connects to a server (one clear error when it does not answer
within the timeout), loads a town if asked, switches the world and the Traffic Manager to
synchronous mode with a fixed delta, sets the weather, spawns an ego vehicle on autopilot (or
attaches to the vehicle whose ``role_name`` is given), attaches the cameras -- per camera an RGB
camera and, at the same transform, a semantic and an instance segmentation camera -- and optional
traffic (vehicles on autopilot, walkers with AI controllers). On exit, normal or by an exception
(KeyboardInterrupt included), it stops and destroys everything it spawned, in reverse order, and
restores the world's settings, the Traffic Manager's synchronous mode and the weather.

The ``carla`` module (PyPI ``carla``, matching the server's version) is imported lazily; tests
pass a double of it (test/carla_double.py) as ``carla_module``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from perception_edge.core.errors import ConfigError

SENSOR_KINDS = {"rgb": "sensor.camera.rgb", "semantic": "sensor.camera.semantic_segmentation",
                "instance": "sensor.camera.instance_segmentation"}
SUPPORTED_VERSIONS = "0.9.14 - 0.9.16"


@dataclass(frozen=True)
class CameraSpec:
    """A camera on the ego vehicle: name (also its ROS name), transform relative to the vehicle
    (x forward, y right, z up in m; pitch, yaw, roll in degrees), image size and horizontal FOV."""

    name: str
    x: float = 1.5
    y: float = 0.0
    z: float = 1.6
    pitch: float = 0.0
    yaw: float = 0.0
    roll: float = 0.0
    width: int = 1280
    height: int = 720
    fov: float = 90.0


# the synthetic drive's rig (data.synthetic.CAMERA_POSES: yaw +-40 deg, +-0.6 m lateral)
DEFAULT_CAMERAS = ("front:1.5,0,1.6,0,0,0", "front_left:1.5,-0.6,1.6,0,-40,0", "front_right:1.5,0.6,1.6,0,40,0")


def parse_camera(text: str, width: int = 1280, height: int = 720, fov: float = 90.0) -> CameraSpec:
    """'NAME' or 'NAME:x,y,z[,pitch,yaw,roll]' -> CameraSpec (defaults: 1.5, 0, 1.6, 0, 0, 0)."""
    name, _, rest = text.partition(":")
    name = name.strip()
    if not name or not name.replace("_", "").isalnum():
        raise ConfigError(f"camera {text!r}: the name must be letters, digits and _ (it becomes a topic name)")
    values = [1.5, 0.0, 1.6, 0.0, 0.0, 0.0]
    if rest.strip():
        try:
            given = [float(v) for v in rest.split(",")]
        except ValueError:
            raise ConfigError(f"camera {text!r}: expected NAME:x,y,z[,pitch,yaw,roll] (numbers)") from None
        if len(given) not in (3, 6):
            raise ConfigError(f"camera {text!r}: expected 3 or 6 numbers after the name, got {len(given)}")
        values[:len(given)] = given
    return CameraSpec(name, *values, width=int(width), height=int(height), fov=float(fov))


@dataclass
class SessionOptions:
    host: str = "127.0.0.1"
    port: int = 2000
    timeout: float = 10.0
    town: str = ""  # empty: keep the loaded town
    delta: float = 0.05  # s per tick
    seed: int = 0
    weather: str = ""  # a carla.WeatherParameters preset name (ClearNoon, WetCloudySunset, ...); empty: keep
    cameras: Sequence[CameraSpec] = field(default_factory=lambda: [parse_camera(c) for c in DEFAULT_CAMERAS])
    vehicles: int = 0
    walkers: int = 0
    role_name: str = "hero"
    attach: bool = False  # attach to the existing vehicle with role_name instead of spawning one
    ros: bool = False  # enable_for_ros on the RGB cameras (CARLA 0.9.15+ server started with --ros2)
    tm_port: int = 8000
    ego_filter: str = "vehicle.*"


def import_carla():
    try:
        import carla
    except ImportError:
        raise ConfigError("the CARLA client is not installed: pip install 'perception_edge[carla]' or "
                          "pip install carla==<your server's version> (" + SUPPORTED_VERSIONS + ")") from None
    return carla


def connect(carla, host: str, port: int, timeout: float):
    """A carla.Client that answered; ConfigError (one line) when no server answers within `timeout` s."""
    client = carla.Client(host, int(port))
    client.set_timeout(float(timeout))
    try:
        server = client.get_server_version()
    except RuntimeError as e:
        raise ConfigError(f"no CARLA server answered at {host}:{port} within {timeout:g} s "
                          f"(start CarlaUE4.sh / CarlaUnreal.sh, or check --host/--port): "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    client_version = client.get_client_version()
    if str(server).split("-")[0] != str(client_version).split("-")[0]:
        print(f"warning: CARLA client {client_version} and server {server} differ; "
              f"install carla=={server} for this server", flush=True)
    return client


class CarlaSession:
    """with CarlaSession(options) as s: s.world, s.ego, s.sensors {camera: {kind: actor}}, s.tick()."""

    def __init__(self, options: SessionOptions, carla_module: Any = None,
                 log: Callable[[str], None] = lambda m: print(m, flush=True)):
        self.options = options
        self.carla = carla_module
        self.log = log
        self.client = self.world = self.ego = self.tm = None
        self.sensors: dict[str, dict[str, Any]] = {}
        self.spawned: list[Any] = []  # in spawn order; destroyed in reverse
        self.controllers: list[Any] = []
        self._settings = None
        self._weather = None
        self._tm_sync = False

    # -- set-up --------------------------------------------------------------------------------
    def __enter__(self) -> CarlaSession:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        o = self.options
        carla = self.carla = self.carla or import_carla()
        names = {c.name for c in o.cameras}
        if len(names) != len(o.cameras) or not o.cameras:
            raise ConfigError("cameras need distinct names (and at least one camera)")
        if not 0.001 <= o.delta <= 1.0:
            raise ConfigError(f"--delta must be in [0.001, 1] s, got {o.delta}")
        self.client = connect(carla, o.host, o.port, o.timeout)
        world = self.client.get_world()
        if o.town and not world.get_map().name.endswith(o.town):
            self.log(f"loading {o.town}")
            world = self.client.load_world(o.town)
        self.world = world
        self._settings = world.get_settings()
        settings = world.get_settings()
        settings.synchronous_mode = True
        settings.fixed_delta_seconds = float(o.delta)
        world.apply_settings(settings)
        self.tm = self.client.get_trafficmanager(int(o.tm_port))
        self.tm.set_synchronous_mode(True)
        self._tm_sync = True
        self.tm.set_random_device_seed(int(o.seed))
        if o.weather:
            preset = getattr(carla.WeatherParameters, o.weather, None)
            if preset is None or not isinstance(preset, carla.WeatherParameters):
                known = sorted(n for n in dir(carla.WeatherParameters)
                               if n[:1].isupper() and isinstance(getattr(carla.WeatherParameters, n), carla.WeatherParameters))
                raise ConfigError(f"unknown weather {o.weather!r}; presets: {', '.join(known)}")
            self._weather = world.get_weather()
            world.set_weather(preset)
        rng = random.Random(o.seed)
        self.ego = self._ego(rng)
        for cam in o.cameras:
            self.sensors[cam.name] = {kind: self._camera(cam, kind) for kind in SENSOR_KINDS}
        if o.vehicles:
            self._traffic(rng, o.vehicles)
        if o.walkers:
            self._walkers(rng, o.walkers)
        world.tick()  # sensors and traffic exist from the next frame on

    def _spawn(self, bp, transform, attach_to=None):
        actor = self.world.try_spawn_actor(bp, transform, attach_to) if attach_to is not None \
            else self.world.try_spawn_actor(bp, transform)
        if actor is not None:
            self.spawned.append(actor)
        return actor

    def _ego(self, rng: random.Random):
        o = self.options
        if o.attach:
            for actor in self.world.get_actors().filter("vehicle.*"):
                if actor.attributes.get("role_name") == o.role_name:
                    self.log(f"attached to {actor.type_id} (id {actor.id}, role_name {o.role_name})")
                    return actor
            raise ConfigError(f"no vehicle with role_name {o.role_name!r} in the world")
        lib = self.world.get_blueprint_library()
        bps = [b for b in lib.filter(o.ego_filter) if _attr(b, "base_type", "car") in ("car", "")]
        if not bps:
            raise ConfigError(f"no vehicle blueprint matches {o.ego_filter!r}")
        bp = rng.choice(sorted(bps, key=lambda b: b.id))
        bp.set_attribute("role_name", o.role_name)
        points = list(self.world.get_map().get_spawn_points())
        rng.shuffle(points)
        for p in points:
            ego = self._spawn(bp, p)
            if ego is not None:
                ego.set_autopilot(True, int(o.tm_port))
                self.log(f"ego {bp.id} (id {ego.id}, role_name {o.role_name}) on autopilot")
                return ego
        raise ConfigError("could not spawn the ego vehicle: every spawn point is taken")

    def _camera(self, cam: CameraSpec, kind: str):
        carla = self.carla
        bp = self.world.get_blueprint_library().find(SENSOR_KINDS[kind])
        bp.set_attribute("image_size_x", str(cam.width))
        bp.set_attribute("image_size_y", str(cam.height))
        bp.set_attribute("fov", str(cam.fov))
        bp.set_attribute("sensor_tick", "0.0")  # every tick
        if self.options.ros and kind == "rgb":
            if not bp.has_attribute("ros_name"):
                raise ConfigError("--ros needs a CARLA 0.9.15+ server and client (camera blueprints without "
                                  "'ros_name'); start the server with --ros2")
            bp.set_attribute("ros_name", cam.name)
        transform = carla.Transform(carla.Location(x=cam.x, y=cam.y, z=cam.z),
                                    carla.Rotation(pitch=cam.pitch, yaw=cam.yaw, roll=cam.roll))
        actor = self._spawn(bp, transform, self.ego)
        if actor is None:
            raise ConfigError(f"could not spawn the {kind} camera {cam.name}")
        if self.options.ros and kind == "rgb":
            actor.enable_for_ros()
        return actor

    def _traffic(self, rng: random.Random, count: int) -> None:
        lib = self.world.get_blueprint_library()
        bps = sorted(lib.filter("vehicle.*"), key=lambda b: b.id)
        points = list(self.world.get_map().get_spawn_points())
        rng.shuffle(points)
        n = 0
        for p in points:
            if n >= count:
                break
            bp = rng.choice(bps)
            if bp.has_attribute("role_name"):
                bp.set_attribute("role_name", "autopilot")
            v = self._spawn(bp, p)
            if v is not None:
                v.set_autopilot(True, int(self.options.tm_port))
                n += 1
        self.log(f"traffic: {n} vehicles" + (f" (of {count} asked: spawn points taken)" if n < count else ""))

    def _walkers(self, rng: random.Random, count: int) -> None:
        carla = self.carla
        lib = self.world.get_blueprint_library()
        bps = sorted(lib.filter("walker.pedestrian.*"), key=lambda b: b.id)
        controller_bp = lib.find("controller.ai.walker")
        self.world.set_pedestrians_seed(int(self.options.seed))
        n = 0
        for _ in range(count * 2):
            if n >= count:
                break
            loc = self.world.get_random_location_from_navigation()
            if loc is None:
                continue
            bp = rng.choice(bps)
            if bp.has_attribute("is_invincible"):
                bp.set_attribute("is_invincible", "false")
            w = self._spawn(bp, carla.Transform(loc))
            if w is None:
                continue
            c = self._spawn(controller_bp, carla.Transform(), w)
            if c is not None:
                self.controllers.append(c)
            n += 1
        self.world.tick()  # controllers need a tick before start()
        for c in self.controllers:
            c.start()
            c.go_to_location(self.world.get_random_location_from_navigation())
        self.log(f"traffic: {n} walkers")

    # -- running ---------------------------------------------------------------------------------
    def tick(self) -> int:
        """Advance the simulation one fixed step; returns the new frame number."""
        return int(self.world.tick())

    # -- tear-down -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop and destroy what was spawned (reverse order), then restore the settings and weather.
        Every step runs even when an earlier one fails; the first failure is reported."""
        errors: list[str] = []

        def attempt(what: str, fn) -> None:
            try:
                fn()
            except Exception as e:  # noqa: BLE001 -- tear-down goes on, the error is reported
                errors.append(f"{what}: {e}")

        for c in reversed(self.controllers):
            attempt("stop walker controller", c.stop)
        self.controllers = []
        for cams in self.sensors.values():
            for s in cams.values():
                if getattr(s, "is_listening", False):
                    attempt("stop sensor", s.stop)
        for actor in reversed(self.spawned):
            attempt(f"destroy {getattr(actor, 'type_id', 'actor')}", actor.destroy)
        self.spawned = []
        self.sensors = {}
        if self.tm is not None and self._tm_sync:
            attempt("traffic manager", lambda: self.tm.set_synchronous_mode(False))
            self._tm_sync = False
        if self.world is not None and self._settings is not None:
            attempt("restore settings", lambda: self.world.apply_settings(self._settings))
            self._settings = None
        if self.world is not None and self._weather is not None:
            attempt("restore weather", lambda: self.world.set_weather(self._weather))
            self._weather = None
        if errors:
            self.log("warning: CARLA clean-up: " + "; ".join(errors))


def _attr(bp, name: str, default: str = "") -> str:
    return bp.get_attribute(name).as_str() if bp.has_attribute(name) else default


def camera_matrix_of(transform) -> Any:
    """4x4 local -> world matrix of a carla.Transform (via ground_truth, so doubles need no get_matrix)."""
    from perception_edge.sim.ground_truth import transform_matrix

    loc, rot = transform.location, transform.rotation
    return transform_matrix((loc.x, loc.y, loc.z), (rot.pitch, rot.yaw, rot.roll))

