"""Live replay: a rosbag's camera topics through a `perception_container` over ROS 2, the container's
outputs recorded into a results bag (the library of `perception-edge replay`, `make demo` and
`bench-replay`).

What happens:
  1. the source's image topics (all of a bag's, or the ones asked for, renamed with --remap) are
     published with the bag's own timing (scaled by `rate`, optionally looped, from a start offset),
     republishing the recorded CDR bytes (Image and CompressedImage alike: stamps, frame_ids and
     payloads exactly as recorded); with `clock`, /clock carries the bag time, and the container is
     started with use_sim_time;
  2. a `perception_container` is started for those topics (parameters from the one config schema),
     or a running one is used (`launch=False`); it is checked for life while every step waits, so a
     container that dies ends the replay with its reason (ConfigError naming the tail of container.log);
  3. the container's outputs (<ns>/detections, <ns>/lane_mask, <ns>/label_info, /diagnostics) are
     recorded with raw subscriptions straight into a results bag (data/bags.py's layout; the bytes
     as received, logged at their receive time, wall clock), with <ns>/replay/input: the header of
     each frame sent, logged when it was published. Latency and dropped frames are computed from the
     bag afterwards (`summarize`; the full report: perception_edge.bag_report).

Timed (default): each message goes out at start + (log time - first log time) / rate, whatever the
container does (a frame it is still busy with is dropped, as with a real camera). Lockstep: a step
(one frame per camera) goes out once the previous step's results all arrived (or `timeout` passed),
so every frame is scored. Sources other than bags (video, GIF, image folder) are replayed as one
/cam/image_raw topic stamped with the source's own timing. Nothing is held beyond the message being
sent: frames stream from the source, results stream into the bag.

The pacing (`timeline`, `paced`, `lockstep_steps`) is plain Python on an injected clock, unit-tested
on a simulated one; rclpy is imported only by Collector.
"""
from __future__ import annotations

import collections
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from perception_edge import config
from perception_edge.core.errors import ConfigError
from perception_edge.core.metrics import percentiles
from perception_edge.core.topics import camera_namespace, output_topic
from perception_edge.data import bags

LARGE_FRAMES_PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_frames.xml"
OUTPUTS = {"detections": bags.DETECTIONS, "lane_mask": bags.IMAGE, "label_info": bags.LABEL_INFO}
QOS_CHOICES = ("recorded", "sensor_data", "reliable")
DRAIN_IDLE = 3.0  # seconds without an output after the last frame: the frames still awaited were dropped
START_TIMEOUT = 120.0  # seconds for the container to load its models and subscribe (a busy 2-core machine)
NS = 1_000_000_000

RawMessage = tuple  # (topic, msgtype, log_ns, CDR bytes)


# -- sources ---------------------------------------------------------------------------------------

@dataclass
class Source:
    """Image messages to replay: topic -> type, recorded QoS, and `open(start_ns)`, a fresh iterator
    of (topic, msgtype, log_ns, CDR bytes) in log-time order from start_ns (None: the beginning)."""
    name: str
    topics: dict[str, str]
    qos: dict[str, str]
    start_ns: int
    open: Callable[[int | None], Iterator[RawMessage]]
    frames: int | None = None  # image messages in one pass (None: unknown)
    ground_truth: str | None = None  # the bag, when it carries ground_truth topics
    bag: bool = True  # a rosbag (else a video / image folder)


def bag_source(path: str | Path, topics: Sequence[str] | None = None) -> Source:
    """A rosbag's image topics (or `topics`, checked: a missing topic or one that is not an image is a
    ConfigError naming it and what the bag has)."""
    info = bags.info(path)
    wanted = list(topics) if topics else info.image_topics()
    if not wanted:
        raise ConfigError(f"{path}: no sensor_msgs/Image or CompressedImage topic; topics: {info.listing()}")
    bags.check_topics(info, wanted)
    gt = str(path) if any(t.endswith("/" + bags.GT_DETECTIONS) or t.endswith("/" + bags.GT_LANE_MASK)
                          for t in info.topics) else None
    return Source(str(path), {t: info.topics[t] for t in wanted}, bags.recorded_qos(path, wanted), info.start_ns,
                  lambda start: bags.raw_messages(path, wanted, start_ns=start), sum(info.counts[t] for t in wanted),
                  gt)


def frames_source(path: str, topic: str = "/cam/image_raw", frame_id: str = "cam") -> Source:
    """A video, GIF, image or image folder as one Image topic (rgb8), stamped with the source's timing
    (video: its timestamps; folder: one frame per second) from bags.SYNTHETIC_START_NS."""
    from perception_edge.core.image_conversion import to_rgb
    from perception_edge.data.frame_sources import iter_frames, source_kind

    if source_kind(path) == "rosbag":
        return bag_source(path)
    base = bags.SYNTHETIC_START_NS

    def messages(start_ns: int | None) -> Iterator[RawMessage]:
        for pixels, order, stamp_s, _ in iter_frames(path):
            t = base + int(round(stamp_s * NS))
            if start_ns is not None and t < start_ns:
                continue
            msg = bags.image_msg(to_rgb(pixels, order), t, frame_id, "rgb8")
            yield topic, bags.IMAGE, t, bytes(bags.typestore().serialize_cdr(msg, bags.IMAGE))

    return Source(path, {topic: bags.IMAGE}, {topic: "default"}, base, messages, bag=False)


# -- timing (pure: tested on a simulated clock) -----------------------------------------------------

@dataclass
class Item:
    due: float  # seconds after the replay started
    topic: str
    msgtype: str
    log_ns: int  # bag time
    data: bytes
    loop: int = 0


def timeline(open_pass: Callable[[int | None], Iterable[RawMessage]], start_ns: int, rate: float = 1.0,
             start_offset: float = 0.0, loop: bool = False) -> Iterator[Item]:
    """The source's messages with their due times: (log time - first log time) / rate, from
    start_ns + start_offset. With `loop`, each pass starts again at the offset, one frame interval
    (the smallest gap between two messages of one topic) after the previous pass's last message."""
    if not rate > 0:
        raise ConfigError(f"rate must be > 0 (a factor of the recorded timing), got {rate}")
    if start_offset < 0:
        raise ConfigError(f"start offset must be >= 0 seconds, got {start_offset}")
    first = int(start_ns) + int(round(start_offset * NS))
    base = 0.0
    k = 0
    while True:
        t0 = last = None
        step = None
        seen: dict[str, int] = {}
        for topic, msgtype, log_ns, data in open_pass(first):
            if t0 is None:
                t0 = log_ns
            prev = seen.get(topic)
            if prev is not None and log_ns > prev:
                step = log_ns - prev if step is None else min(step, log_ns - prev)
            seen[topic] = last = log_ns
            yield Item(base + (log_ns - t0) / NS / rate, topic, msgtype, log_ns, data, k)
        if t0 is None:
            if k == 0:
                raise ConfigError(f"nothing to replay {start_offset:g} s into the source")
            return
        if not loop:
            return
        base += ((last - t0) + (step if step is not None else NS // 10)) / NS / rate
        k += 1


def paced(items: Iterable[Item], clock: Callable[[], float], wait_until: Callable[[float], None]) -> Iterator[Item]:
    """Each item once clock() reached (start + item.due); a late item goes at once (no catching up
    by bursts beyond what is due)."""
    t0 = None
    for it in items:
        if t0 is None:
            t0 = clock()
        wait_until(t0 + it.due)
        yield it


def lockstep_steps(items: Iterable[Item]) -> Iterator[list[Item]]:
    """Consecutive messages grouped into steps of one message per topic (a step ends when a topic repeats)."""
    step: list[Item] = []
    topics: set[str] = set()
    for it in items:
        if it.topic in topics:
            yield step
            step, topics = [], set()
        step.append(it)
        topics.add(it.topic)
    if step:
        yield step


def parse_remap(pairs: Sequence[str], topics: Sequence[str]) -> dict[str, str]:
    """["old:=new", ...] -> {source topic: published topic} for every topic (unmapped: itself)."""
    out = {t: t for t in topics}
    for pair in pairs or ():
        old, sep, new = pair.partition(":=")
        if not sep or not old or not new:
            raise ConfigError(f"--remap takes OLD:=NEW, got {pair!r}")
        if old not in out:
            raise ConfigError(f"--remap {pair}: {old} is not a replayed topic; replayed: {', '.join(topics)}")
        out[old] = new
    if len(set(out.values())) != len(out):
        raise ConfigError(f"--remap maps two topics to one: {out}")
    return out


# -- the container -----------------------------------------------------------------------------------

class ContainerDied(ConfigError):
    pass


class Container:
    """A perception_container subprocess, its output in `log`; check() raises ContainerDied (its exit
    code and the reason from the end of its log) once it has exited."""

    def __init__(self, params: Path, log: Path, env: dict[str, str], ros_args: Sequence[str] = ()):
        self.log = log
        with open(log, "wb") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "perception_edge.nodes.container", "--ros-args",
                                          "--params-file", str(params), *ros_args], stdout=f,
                                         stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        rc = self.proc.poll()
        if rc is not None:
            raise ContainerDied(f"perception_container exited with code {rc}: {self.reason()}")

    def reason(self, lines: int = 6) -> str:
        """The FATAL/ERROR line of the log when there is one, then the log's last lines."""
        try:
            text = [x for x in self.log.read_text(errors="replace").splitlines() if x.strip()]
        except OSError:
            text = []
        fatal = [x for x in text if "FATAL" in x or "error" in x.lower() or "Traceback" in x]
        tail = text[-lines:]
        head = fatal[-1].strip() if fatal else (tail[-1].strip() if tail else "(no output)")
        return head + f"\n--- last lines of {self.log}:\n" + "\n".join(tail)

    def close(self) -> None:
        stop_process(self.proc, 10)


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a ROS process as Ctrl-C would (SIGINT: its nodes shut down cleanly), killed after `timeout` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def write_params(path: Path, cameras: list[str], det_model: str, seg_model: str, base: str | None,
                 input_qos: str = "reliable") -> Path:
    values = config.load_file(base) if base else config.defaults()
    values.update({"cameras": cameras, "detection.model": det_model, "segmentation.model": seg_model,
                   "input_qos": input_qos, "debug_image": False})
    return config.write_ros_params(path, values)


def vm_rss_mb(pid: int) -> float | None:
    """Resident memory (VmRSS) of a process in MiB; None without /proc."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


# -- the ROS side ------------------------------------------------------------------------------------

def _msg_class(msgtype: str):
    import importlib

    pkg, _, name = msgtype.rpartition("/")
    return getattr(importlib.import_module(pkg.replace("/", ".")), name)


def _qos(kind: str):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    best_effort = kind == "sensor_data"
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth={"sensor_data": 5, "latched": 1}.get(kind, 10),
                      reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if kind == "latched" else DurabilityPolicy.VOLATILE)


class Collector:
    """This process's ROS side: a raw publisher per replayed topic (and /clock), raw subscriptions to
    the container's outputs written straight into `writer` at receive time, and what is still
    awaited per frame (bounded: the oldest are forgotten beyond `max_pending`)."""

    def __init__(self, publish: dict[str, tuple[str, str]], writer: bags.BagWriter, clock: bool = False,
                 max_pending: int = 1000):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from perception_edge.nodes.allocator import keep_frame_buffers

        keep_frame_buffers()
        self.writer = writer
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("perception_replay", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.publishers = {t: self.node.create_publisher(_msg_class(m), t, _qos(q)) for t, (m, q) in publish.items()}
        self.types = {t: m for t, (m, _) in publish.items()}
        self.clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            self.clock_pub = self.node.create_publisher(Clock, "/clock", 10)
        self.expected: tuple[str, ...] = ()
        self.pending: collections.OrderedDict[tuple[str, int], set[str]] = collections.OrderedDict()
        self.max_pending = max_pending
        self.received = 0
        self.last_output = 0.0  # monotonic time of the last awaited output
        self.local_receive_times = 0  # messages logged at callback time (no usable middleware receive time)
        self._raw_ok = True
        results = _qos("default")
        results.depth = 50
        self.output_topics: dict[str, tuple[str, str]] = {}  # topic -> (namespace, kind)
        for t in publish:
            for kind, msgtype in OUTPUTS.items():
                topic = output_topic(t, kind)
                self.output_topics[topic] = (camera_namespace(t), kind)
                self._subscribe(topic, msgtype, _qos("latched") if kind == "label_info" else results)
        self._subscribe("/diagnostics", bags.DIAGNOSTICS, results)

    def _subscribe(self, topic: str, msgtype: str, qos) -> None:
        """A raw subscription recording into the bag; with the middleware's MessageInfo (receive
        time) where rclpy passes it (Iron and newer; Humble calls with the message alone)."""
        from perception_edge.nodes.fusion import message_info_callbacks

        if message_info_callbacks():
            def callback(data, info):
                self._record(topic, msgtype, data, info)
        else:
            def callback(data):
                self._record(topic, msgtype, data, None)
        self.node.create_subscription(_msg_class(msgtype), topic, callback, qos, raw=True)

    def _record(self, topic: str, msgtype: str, data: bytes, info: Any) -> None:
        now = time.time_ns()
        try:  # the middleware's receive time (wall clock) where it gives one
            recv = int(info["received_timestamp"])
            if not 0 <= now - recv < 10 * NS:
                recv = now
                self.local_receive_times += 1
        except (KeyError, TypeError, ValueError):
            recv = now
            self.local_receive_times += 1
        self.writer.write_raw(topic, msgtype, data, recv)
        self.received += 1
        where = self.output_topics.get(topic)
        if where is not None and where[1] in self.expected:
            self.last_output = time.monotonic()
            stamp, _, _ = bags.cdr_header(data)
            missing = self.pending.get((where[0], stamp))
            if missing is not None:
                missing.discard(where[1])
                if not missing:
                    del self.pending[(where[0], stamp)]

    def publish(self, it: Item, topic: str) -> None:
        """Publish the recorded bytes on `topic`, and log the frame's header (replay/input) at publish time."""
        stamp, _, n = bags.cdr_header(it.data)
        if self.expected:
            self.pending[(camera_namespace(topic), stamp)] = set(self.expected)
            while len(self.pending) > self.max_pending:
                self.pending.popitem(last=False)
        pub = self.publishers[topic]
        t = time.time_ns()
        if self._raw_ok:
            try:
                pub.publish(it.data)
            except TypeError:  # an rclpy without serialized publishing
                self._raw_ok = False
        if not self._raw_ok:
            from rclpy.serialization import deserialize_message

            pub.publish(deserialize_message(it.data, _msg_class(self.types[topic])))
        self.writer.write_raw(bags.topic(camera_namespace(topic), bags.INPUT_HEADER), bags.HEADER, it.data[:n], t)

    def publish_clock(self, bag_ns: int) -> None:
        if self.clock_pub is not None:
            from rosgraph_msgs.msg import Clock

            from perception_edge.nodes.messages import ns_to_stamp

            self.clock_pub.publish(Clock(clock=ns_to_stamp(int(bag_ns))))

    def spin(self, seconds: float) -> None:
        self.executor.spin_once(timeout_sec=max(0.0, seconds))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


# -- the replay ----------------------------------------------------------------------------------------

@dataclass
class Options:
    rate: float = 1.0
    loop: bool = False
    start_offset: float = 0.0
    clock: bool = False
    remap: Sequence[str] = ()
    qos: str = "recorded"
    lockstep: bool = False
    limit: int | None = None  # image messages published at most (None: all; with loop: forever)
    timeout: float = 10.0  # lockstep: per step; timed: for the last results after the last frame
    launch: bool = True
    config_file: str | None = None
    progress: bool = True
    storage: str = "mcap"


def free_path(folder: Path, name: str) -> Path:
    """folder/name, or folder/name_2, _3 ... when taken (bags are written into new directories)."""
    path, k = folder / name, 1
    while path.exists():
        k += 1
        path = folder / f"{name}_{k}"
    return path


def ros_environment(launch: bool) -> dict[str, str]:
    """The environment of the container and of this process's ROS side: discovery on this host, the
    large-frames Fast DDS profile, and (when launching, unless set) a domain of this replay's own."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if launch:
        env.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(LARGE_FRAMES_PROFILE))  # whole frames in shared memory
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID",
                                           "FASTDDS_DEFAULT_PROFILES_FILE") if k in env})
    return env


def run(source: Source, output: str | Path, det_model: str = "", seg_model: str = "",
        options: Options | None = None, log: Callable[[str], None] = print) -> Path:
    """Replay `source` live through a perception_container (started here unless options.launch is
    False); returns the results bag (under `output`). Raises ContainerDied when the container exits."""
    opt = options or Options()
    if opt.qos not in QOS_CHOICES:
        raise ConfigError(f"qos must be one of {', '.join(QOS_CHOICES)}, got {opt.qos!r}")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    remap = parse_remap(opt.remap, list(source.topics))
    qos = {remap[t]: (source.qos.get(t, "default") if opt.qos == "recorded" else
                      ("sensor_data" if opt.qos == "sensor_data" else "default")) for t in source.topics}
    publish = {remap[t]: (m, qos[remap[t]]) for t, m in source.topics.items()}
    cameras = list(publish)
    items = timeline(source.open, source.start_ns, opt.rate, opt.start_offset, opt.loop)
    env = ros_environment(opt.launch)
    results = free_path(out, "results")
    custom = {"perception_edge.kind": "results", "perception_edge.mode": "live",
              "perception_edge.cameras": json.dumps(cameras), "perception_edge.rate": f"{opt.rate:g}",
              "perception_edge.lockstep": str(opt.lockstep).lower(), "perception_edge.detection_model": str(det_model),
              "perception_edge.segmentation_model": str(seg_model)}
    if source.bag:  # where bag_report finds ground truth and frames
        custom["perception_edge.source_bag"] = str(Path(source.name).resolve())
    else:
        custom["perception_edge.source"] = source.name
    if any(a != b for a, b in remap.items()):
        custom["perception_edge.remap"] = ",".join(f"{a}:={b}" for a, b in remap.items() if a != b)
    params = None
    if opt.launch:
        if not det_model and not seg_model:
            raise ConfigError("nothing to run: give a detection and/or a segmentation model")
        input_qos = "sensor_data" if "sensor_data" in qos.values() else "reliable"
        params = write_params(out / "container_params.yaml", cameras, str(det_model), str(seg_model),
                              opt.config_file, input_qos)
        custom["perception_edge.config"] = json.dumps(config.load_file(str(params)), sort_keys=True)
    container = None
    writer = bags.BagWriter(results, opt.storage, custom_data=custom)
    collector = None
    bar = None
    try:
        if params is not None:
            container = Container(params, out / "container.log", env,
                                  ["-p", "use_sim_time:=true"] if opt.clock else [])
        collector = Collector(publish, writer, clock=opt.clock)
        check = container.check if container is not None else (lambda: None)
        _wait_ready(collector, check, det_model, seg_model, opt.launch, log)
        if opt.progress:
            from tqdm import tqdm

            total = opt.limit if opt.limit is not None else (None if opt.loop else source.frames)
            bar = tqdm(total=total, desc="replay", unit="frame", dynamic_ncols=True)
        sent = _play(items, collector, remap, opt, check, bar)
        _drain(collector, check, opt.timeout)
        if bar is not None:
            bar.close()
            bar = None
        log(f"replay: {sent} frames sent on {len(cameras)} topic(s); results bag {results}")
        if collector.local_receive_times:
            log(f"  {collector.local_receive_times} of {collector.received} outputs logged at callback time "
                "(no middleware receive time)")
        if container is not None:
            rss = vm_rss_mb(container.pid)
            if rss is not None:
                log(f"  container resident memory at the end: {rss:.0f} MiB")
            check()
    except KeyboardInterrupt:
        log(f"replay interrupted; results so far in {results}")
    finally:
        if bar is not None:
            bar.close()
        if collector is not None:
            collector.close()
        if container is not None:
            container.close()
        writer.close()
    return results


def _spin_until(collector: Collector, check: Callable[[], None], done: Callable[[], bool], timeout: float,
                clock_of: Callable[[], int | None] = lambda: None) -> bool:
    """Spin until done() or `timeout` seconds; the container is checked every 0.2 s, /clock
    published every 50 ms where clock_of() gives the bag time."""
    now = time.monotonic()
    deadline = now + timeout
    next_check = next_clock = now
    while True:
        if done():
            return True
        now = time.monotonic()
        if now >= next_check:
            check()
            next_check = now + 0.2
        if now >= next_clock:
            t = clock_of()
            if t is not None:
                collector.publish_clock(t)
            next_clock = now + 0.05
        if now >= deadline:
            return done()
        collector.spin(min(deadline - now, 0.01))


def _wait_ready(collector: Collector, check, det_model, seg_model, launch: bool, log) -> None:
    """Until the container subscribes to every replayed topic and its outputs are discovered."""
    cameras = list(collector.publishers)
    subscribed = lambda: all(p.get_subscription_count() > 0 for p in collector.publishers.values())  # noqa: E731
    if not _spin_until(collector, check, subscribed, START_TIMEOUT if launch else 10.0):
        missing = [t for t, p in collector.publishers.items() if p.get_subscription_count() == 0]
        raise ConfigError(f"no subscriber on {', '.join(missing)} after "
                          f"{START_TIMEOUT if launch else 10.0:g} s" +
                          ("" if launch else " (is a perception_container with these cameras running, "
                           "in this ROS_DOMAIN_ID?)"))
    if launch:
        kinds = tuple(k for k, m in (("detections", det_model), ("lane_mask", seg_model)) if m)
    else:  # a running container: whatever it publishes for these cameras
        _spin_until(collector, check, lambda: False, 1.0)
        kinds = tuple(k for k in ("detections", "lane_mask")
                      if collector.node.count_publishers(output_topic(cameras[0], k)) > 0)
        log(f"attached to a running container: it publishes {', '.join(kinds) or 'nothing recognised'}")
    outputs = [output_topic(c, k) for c in cameras for k in kinds]
    _spin_until(collector, check, lambda: all(collector.node.count_publishers(t) > 0 for t in outputs), 10.0)
    collector.expected = kinds


def _play(items: Iterator[Item], collector: Collector, remap: dict[str, str], opt: Options, check, bar) -> int:
    sent = 0
    limit = opt.limit
    last_bag_ns: list[int] = []  # the bag time of the last message sent, for /clock between messages
    last_wall = [0.0]

    def bag_now() -> int | None:
        if not opt.clock or not last_bag_ns:
            return None
        return last_bag_ns[0] + int((time.monotonic() - last_wall[0]) * opt.rate * NS)

    def send(it: Item) -> None:
        nonlocal sent
        if opt.clock:
            last_bag_ns[:] = [it.log_ns]
            last_wall[0] = time.monotonic()
            collector.publish_clock(it.log_ns)
        collector.publish(it, remap[it.topic])
        sent += 1
        if bar is not None:
            bar.update(1)

    if opt.lockstep:
        for step in lockstep_steps(items):
            if limit is not None:
                step = step[: max(0, limit - sent)]
                if not step:
                    break
            for it in step:
                send(it)
            _spin_until(collector, check, lambda: not collector.pending, opt.timeout, bag_now)
        return sent

    def wait_until(t: float) -> None:
        _spin_until(collector, check, lambda: time.monotonic() >= t, max(0.0, t - time.monotonic()) + 1.0, bag_now)

    if limit is not None:  # cut before pacing: no wait for a message that is not sent
        items = itertools.islice(items, limit)
    for it in paced(items, time.monotonic, wait_until):
        send(it)
    return sent


def _drain(collector: Collector, check, timeout: float, idle: float = DRAIN_IDLE) -> None:
    """After the last frame: until every frame's results arrived, or `timeout`, or nothing came for
    `idle` seconds (the frames still awaited were dropped), then a moment for the outputs in flight
    that were not awaited (label_info, /diagnostics)."""
    start = time.monotonic()

    def done() -> bool:
        quiet = time.monotonic() - max(start, collector.last_output) > idle
        return not collector.pending or quiet

    _spin_until(collector, check, done, timeout)
    _spin_until(collector, check, lambda: False, 0.3)


# -- summary from a results bag ---------------------------------------------------------------------

def summarize(results: str | Path) -> dict[str, Any]:
    """Per camera namespace, from a live results bag (nothing deserialized but headers): frames sent,
    frames with detections / lane masks, dropped (a frame without every output kind the bag has),
    end-to-end latency (publish -> last output of the frame received) p50/p90/p99 in ms."""
    info = bags.info(results)
    kinds = [k for k in ("detections", "lane_mask") if any(t.endswith("/" + k) for t in info.topics)]
    wanted = [t for t in info.topics if t.endswith("/" + bags.INPUT_HEADER) or
              any(t.endswith("/" + k) for k in kinds)]
    sent: dict[tuple[str, int], list[int]] = collections.defaultdict(list)
    got: dict[tuple[str, str, int], list[int]] = collections.defaultdict(list)
    for topic, _, log_ns, data in bags.raw_messages(results, wanted):
        stamp, _, _ = bags.cdr_header(data)
        if topic.endswith("/" + bags.INPUT_HEADER):
            sent[(topic[: -len(bags.INPUT_HEADER) - 1], stamp)].append(log_ns)
        else:
            ns, _, kind = topic.rpartition("/")
            got[(kind, ns, stamp)].append(log_ns)
    cams: dict[str, dict[str, Any]] = {}
    lat_all: list[float] = []
    for (ns, stamp), times in sorted(sent.items()):
        c = cams.setdefault(ns, {"sent": 0, **{k: 0 for k in kinds}, "dropped": 0, "_lat": []})
        for i, t_in in enumerate(times):  # a looped bag sends a stamp once per pass: paired in order
            c["sent"] += 1
            outs = []
            for k in kinds:
                arr = got.get((k, ns, stamp), [])
                if i < len(arr):
                    c[k] += 1
                    outs.append(arr[i])
            if len(outs) == len(kinds) and kinds:
                ms = (max(outs) - t_in) / 1e6
                c["_lat"].append(ms)
                lat_all.append(ms)
            else:
                c["dropped"] += 1
    for c in cams.values():
        c["latency_ms"] = percentiles(c.pop("_lat"))
    total = sum(c["sent"] for c in cams.values())
    return {"results": str(results), "outputs": kinds, "cameras": cams, "sent": total,
            "dropped": sum(c["dropped"] for c in cams.values()), "latency_ms": percentiles(lat_all),
            "duration_s": round((info.end_ns - info.start_ns) / NS, 2)}


def print_summary(s: dict[str, Any], log: Callable[[str], None] = print) -> None:
    log(f"live replay: {s['sent']} frames sent, {s['dropped']} without all of {'+'.join(s['outputs']) or 'outputs'}"
        f" (dropped), over {s['duration_s']} s")
    for ns, c in s["cameras"].items():
        lat = c["latency_ms"]
        figures = f"p50 {lat['p50']} / p90 {lat['p90']} / p99 {lat['p99']} ms" if lat else "no latency"
        log(f"  {ns or '/':<22} sent {c['sent']:>4}  " + "  ".join(f"{k} {c[k]:>4}" for k in s["outputs"]) +
            f"  dropped {c['dropped']:>3}  end-to-end {figures}")
    if s["latency_ms"]:
        lat = s["latency_ms"]
        log(f"  end-to-end latency (publish -> last output of a frame), all cameras: p50 {lat['p50']} ms, "
            f"p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")


__all__ = ["Collector", "Container", "ContainerDied", "Item", "LARGE_FRAMES_PROFILE", "Options", "Source",
           "bag_source", "frames_source", "lockstep_steps", "paced", "parse_remap", "print_summary", "run",
           "stop_process", "summarize", "timeline", "vm_rss_mb", "write_params"]
