"""Camera fusion inside a node: subscribe to the cameras, turn messages into Frames, synchronize
them into Batches, and report each camera and the sync in /diagnostics.

`CameraFusion` lives inside a node (the `camera_fusion` node of nodes/camera_fusion.py, or a
standalone detection/segmentation node's own input). Batches go to in-process consumers
(`add_consumer(fn)`) as Python objects: no serialization, pixels stay views over the received
buffers. Consumers must not block (the model nodes put batches into a LatestSlot).
"""
from __future__ import annotations

import collections
import functools
import threading
import time
from typing import Any, Callable, Sequence

from perception_edge import config
from perception_edge.core.errors import PerceptionError
from perception_edge.core.sync import Batch, CameraStats, Frame, FrameSync, LatestSlot, NS_PER_S
from perception_edge.nodes import diagnostics as diag
from perception_edge.nodes.messages import compressed_to_frame, image_to_frame, is_compressed_topic


try:  # Iron and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

BAD_LOG_PERIOD = 10.0  # seconds between log lines about bad messages of one camera


def input_qos_profile(name: str):
    """sensor_data: best effort, keep last 1; reliable: reliable, keep last 1 (both volatile)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    reliability = ReliabilityPolicy.BEST_EFFORT if name == "sensor_data" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


def policy_name(kind: Any) -> str:
    try:
        from rclpy.qos import QoSPolicyKind

        return QoSPolicyKind(int(getattr(kind, "value", kind))).name
    except Exception:
        return str(kind)


MAX_TRACKED_PUBLISHERS = 16  # per camera, for sequence-number gaps (least recently seen first out)


def message_info_callbacks() -> bool:
    """Whether this rclpy hands MessageInfo (publisher gid, sequence number) to two-argument
    subscription callbacks (Iron and newer; Humble calls every callback with the message alone)."""
    from rclpy.subscription import Subscription

    return hasattr(Subscription, "CallbackType")


class LossCounter:
    """Messages a publisher sent that never reached the callback: gaps in its sequence numbers (the
    reader's depth-1 history overwritten, samples lost in transport). The first message seen from a
    publisher starts its count, so what it sent before this node subscribed is not counted."""

    def __init__(self, max_publishers: int = MAX_TRACKED_PUBLISHERS):
        self._last: collections.OrderedDict[bytes, int] = collections.OrderedDict()
        self._max = max_publishers
        self.lost = 0

    def seen(self, info: Any) -> None:
        try:
            seq = int(info["publication_sequence_number"])
            gid = bytes(info["publisher_gid"]["data"])
        except (KeyError, TypeError, ValueError):
            return  # this rmw does not fill them in
        last = self._last.pop(gid, None)
        if last is not None and seq > last + 1:
            self.lost += seq - last - 1
        self._last[gid] = seq if last is None else max(seq, last)
        while len(self._last) > self._max:
            self._last.popitem(last=False)


class _CameraState:
    def __init__(self, topic: str, compressed: bool):
        self.topic = topic
        self.compressed = compressed
        self.messages = 0  # callbacks: messages that reached this node
        self.bad = 0
        self.last_error = ""
        self.last_bad_time = -1e9
        self.last_logged = -1e9
        self.last_message = None  # clock time of the last callback
        self.incompatible_qos = 0
        self.loss = LossCounter()
        self.lost_events = 0  # lost-sample events (where the rmw reports them)
        self.rate = diag.RateMeter()
        self.latency = diag.StageTimes()
        self.size = ""
        self.encoding = ""
        self.decode_slot: LatestSlot[Any] | None = LatestSlot() if compressed else None
        self.decoder: threading.Thread | None = None


class CameraFusion:
    """Camera subscriptions + FrameSync inside `node`; Batches go to the registered consumers.

    Raw images are converted in their subscription callback (a view, or one cvtColor). Compressed
    images are decoded on a thread per camera, fed by a depth-1 slot, so a camera sending large or
    slow-to-decode images never delays another camera's frames; a message that arrives while the
    previous one is still being decoded replaces the one waiting (counted as decode_skipped).
    """

    def __init__(self, node, cfg: config.Sections, clock: Callable[[], float] = time.monotonic,
                 keep_messages: int = 0, local_cameras: Sequence[str] = ()):
        self.node = node
        # local_cameras: fed in-process (feed(frame), from the camera_source node), not subscribed;
        # next to them, the `cameras` topics, unless `cameras` is left at its default
        self.local: set[str] = set(local_cameras)
        topics = [] if local_cameras and list(cfg.cameras) == config.BY_NAME["cameras"].default else list(cfg.cameras)
        self.cameras: list[str] = list(local_cameras) + [c for c in topics if c not in self.local]
        self.qos_name = cfg.input_qos
        self.max_pixels = int(cfg.limits.max_image_pixels)
        self.sync = FrameSync(self.cameras, cfg.sync.slop, cfg.sync.stale_timeout, clock=clock)
        # (camera) -> {stamp: message} of the last few received, for message_of (keep_messages > 0)
        self._keep = keep_messages
        self._messages: dict[str, collections.OrderedDict[int, Any]] = {c: collections.OrderedDict()
                                                                        for c in self.cameras}
        self._clock = clock
        self._started = clock()
        self._consumers: list[Callable[[Batch], None]] = []
        self._state = {cam: _CameraState(cam, is_compressed_topic(cam)) for cam in self.cameras}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.batches = 0
        self.with_info = message_info_callbacks()
        self._cfg = cfg
        self.subscriptions: list[Any] = []
        self.poll_timer = None

    def start(self) -> None:
        """Subscribe to the cameras (once everything downstream is ready: the models are loaded and
        their publishers exist, so the first frames are answered)."""
        from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
        from sensor_msgs.msg import CompressedImage, Image

        if self.subscriptions:
            return
        node, cfg = self.node, self._cfg
        qos = input_qos_profile(self.qos_name)
        for cam in [c for c in self.cameras if c not in self.local]:
            st = self._state[cam]
            lost = functools.partial(self._on_message_lost, cam)
            events = SubscriptionEventCallbacks(incompatible_qos=functools.partial(self._on_incompatible_qos, cam),
                                                **({} if self.with_info else {"message_lost": lost}))
            if self.with_info:
                callback = functools.partial(self._on_message_info, cam)
            else:
                callback = functools.partial(self._on_message, cam)
            # one group per camera: a camera's messages are handled in order, cameras in parallel
            self.subscriptions.append(node.create_subscription(
                CompressedImage if st.compressed else Image, cam, callback,
                qos, callback_group=MutuallyExclusiveCallbackGroup(), event_callbacks=events))
            if st.compressed:
                st.decoder = threading.Thread(target=self._decode_loop, args=(cam,), daemon=True,
                                              name=f"decode {cam}")
                st.decoder.start()
        # a silent camera must release the others even when no message arrives to trigger a check
        period = max(0.01, min(0.1, cfg.sync.stale_timeout / 2))
        self.poll_timer = node.create_timer(period, self.poll, callback_group=MutuallyExclusiveCallbackGroup())
        local = f" (in-process: {', '.join(sorted(self.local))})" if self.local else ""
        node.get_logger().info(
            f"cameras: {', '.join(self.cameras)}{local} (QoS {self.qos_name}, slop {cfg.sync.slop} s, "
            f"stale after {cfg.sync.stale_timeout} s; lost messages counted from "
            f"{'publisher sequence numbers' if self.with_info else 'lost-sample events'})")

    def add_consumer(self, fn: Callable[[Batch], None]) -> None:
        """fn(batch) is called in the subscription thread for every Batch; it must not block."""
        self._consumers.append(fn)

    def close(self) -> None:
        """Stop the decoding threads."""
        self._closing.set()
        for st in self._state.values():
            if st.decode_slot is not None:
                st.decode_slot.close()
            if st.decoder is not None:
                st.decoder.join(2.0)

    # -- callbacks --------------------------------------------------------------------------------
    def _on_message_info(self, camera: str, msg, info) -> None:
        self._state[camera].loss.seen(info)
        self._on_message(camera, msg)

    def _on_message(self, camera: str, msg) -> None:
        st = self._state[camera]
        arrival = self._clock()
        with self._lock:
            st.messages += 1
            st.last_message = arrival
        if st.decode_slot is not None:
            st.decode_slot.put((msg, arrival))  # never blocks; replaces a message not decoded yet
        else:
            self._convert(camera, msg, arrival, image_to_frame)

    def _decode_loop(self, camera: str) -> None:
        slot = self._state[camera].decode_slot
        while not self._closing.is_set():
            item = slot.get(timeout=0.5)  # type: ignore[union-attr]
            if item is not None:
                self._convert(camera, item[0], item[1], compressed_to_frame)

    def _convert(self, camera: str, msg, arrival: float, convert) -> None:
        try:
            frame = convert(msg, camera, arrival, self.max_pixels)
        except PerceptionError as e:
            self._bad_message(camera, str(e))
            return
        except Exception as e:  # anything else a malformed message can provoke
            self._bad_message(camera, f"{type(e).__name__}: {e}")
            return
        if self._keep:
            with self._lock:
                kept = self._messages[camera]
                kept[frame.stamp] = msg
                while len(kept) > self._keep:
                    kept.popitem(last=False)
        self._accept(camera, frame, getattr(msg, "encoding", None) or getattr(msg, "format", ""))

    def feed(self, frame: Frame) -> None:
        """A frame of an in-process camera (local_cameras; frame.camera names it): the same path as a
        received message from here on, without a message. Called in the source's capture thread."""
        camera = frame.camera
        st = self._state.get(camera)
        if st is None or camera not in self.local:
            return
        arrival = self._clock()
        with self._lock:
            st.messages += 1
            st.last_message = arrival
        self._accept(camera, frame, "in-process " + frame.order)

    def _accept(self, camera: str, frame: Frame, encoding: str) -> None:
        st = self._state[camera]
        now_ns = self.node.get_clock().now().nanoseconds
        frame.received = now_ns
        age_ns = now_ns - frame.stamp
        if 0 <= age_ns < 3600 * NS_PER_S:  # header stamp -> here; only meaningful on a shared clock
            st.latency.add("input", age_ns / 1e6)
        st.rate.tick()
        st.size = f"{frame.width}x{frame.height}"
        st.encoding = encoding
        try:
            batch = self.sync.add(frame)
        except Exception as e:  # a bug here must not take the camera's callback down
            self._bad_message(camera, f"sync failed: {type(e).__name__}: {e}")
            return
        self._dispatch(batch)

    def message_of(self, frame: Frame) -> Any | None:
        """The received message a frame came from, while it is among the last keep_messages of its
        camera (None otherwise)."""
        with self._lock:
            return self._messages[frame.camera].get(frame.stamp)

    def poll(self) -> None:
        self._dispatch(self.sync.poll())

    def _dispatch(self, batch: Batch | None) -> None:
        if batch is None:
            return
        with self._lock:
            self.batches += 1
        for fn in self._consumers:
            try:
                fn(batch)
            except Exception as e:
                self.node.get_logger().error(f"batch consumer failed: {type(e).__name__}: {e}")

    def _bad_message(self, camera: str, error: str) -> None:
        st = self._state[camera]
        now = self._clock()
        with self._lock:
            st.bad += 1
            st.last_error = error.splitlines()[0] if error else "bad message"
            st.last_bad_time = now
            log = now - st.last_logged >= BAD_LOG_PERIOD
            if log:
                st.last_logged = now
        if log:
            self.node.get_logger().warn(f"{camera}: dropping bad message ({st.last_error}); "
                                        f"{st.bad} so far, next report in {BAD_LOG_PERIOD:.0f} s at most")

    def _on_message_lost(self, camera: str, event) -> None:
        self._state[camera].lost_events += int(getattr(event, "total_count_change", 0) or 0)

    def _on_incompatible_qos(self, camera: str, event) -> None:
        st = self._state[camera]
        st.incompatible_qos += 1
        policy = policy_name(getattr(event, "last_policy_kind", "?"))
        self.node.get_logger().warn(
            f"{camera}: a publisher offers a QoS incompatible with this subscription (policy {policy}); "
            f"no messages will arrive from it. This node requests input_qos={self.qos_name} "
            f"({'reliable' if self.qos_name == 'reliable' else 'best effort'}, depth 1)"
            + ("; set input_qos: sensor_data to accept best-effort cameras" if policy == "RELIABILITY"
               and self.qos_name == "reliable" else ""))

    # -- diagnostics ------------------------------------------------------------------------------
    def activity(self) -> tuple[float | None, float | None]:
        """(seconds since the last message of any camera, seconds since the last batch); None: never."""
        now = self._clock()
        last_msg = [st.last_message for st in self._state.values() if st.last_message is not None]
        last_batch = self.sync.last_batch
        return (now - max(last_msg) if last_msg else None,
                now - last_batch if last_batch is not None else None)

    def starved_for(self, stats: dict[str, CameraStats] | None = None) -> float:
        """Seconds that messages have been arriving without a batch forming (0 when batches form,
        or when nothing arrives). 'A few periods' of the slowest camera, or twice the stale
        timeout, pass before that is unusual."""
        since_msg, since_batch = self.activity()
        if since_msg is None or since_msg > max(1.0, 2 * self.sync.stale_timeout):
            return 0.0
        waited = since_batch if since_batch is not None else self._clock() - self._started
        stats = stats or self.sync.stats()
        intervals = [stats[c].interval for c in self.cameras]
        limit = max(2 * self.sync.stale_timeout, 3 * max(intervals, default=0.0))
        return waited if waited > limit else 0.0

    def counts(self, camera: str, stats: dict[str, CameraStats] | None = None) -> dict[str, int]:
        """A camera's frame counts. They add up: received = decoded + bad_messages + decode_skipped
        (+ 1 while one is being decoded); decoded = batched + dropped_in_sync + waiting (0 or 1).
        lost_before_callback: sent by a publisher, never delivered to this node."""
        st, s = self._state[camera], (stats or self.sync.stats())[camera]
        skipped = st.decode_slot.dropped if st.decode_slot is not None else 0
        return {"received": st.messages, "decoded": s.received, "bad_messages": st.bad, "decode_skipped": skipped,
                "batched": s.batched, "dropped_in_sync": s.dropped, "waiting": s.waiting,
                "lost_before_callback": st.loss.lost if self.with_info else st.lost_events}

    def statuses(self, period: float = 1.0) -> list[Any]:
        out = []
        stats = self.sync.stats()
        now = self._clock()
        slop = self.sync.slop_ns / NS_PER_S
        for cam in self.cameras:
            st, s = self._state[cam], stats[cam]
            counts = self.counts(cam, stats)
            values = {
                "input_rate_hz": st.rate.rate(),
                "input_latency_ms": st.latency.medians().get("input", float("nan")),
                **counts,
                "dropped": counts["dropped_in_sync"],  # the older name of dropped_in_sync
                "stale": s.is_stale,
                "stale_count": s.stale,
                "skewed": s.is_skewed,
                "skewed_count": s.skewed,
                "stamp_offset_s": s.offset if s.offset is not None else float("nan"),
                "silence_s": self.sync.silence(cam),
                "last_error": st.last_error,
                "incompatible_qos_events": st.incompatible_qos,
                "size": st.size,
                "encoding": st.encoding,
            }
            if s.is_skewed:
                level = diag.WARN
                side = "behind" if (s.offset or 0.0) < 0 else "ahead of"
                message = (f"left out of the batches: its stamps run {abs(s.offset or 0.0):.3f} s {side} the "
                           f"other cameras' (slop {slop:g} s); it rejoins when they match again")
            elif s.is_stale:
                level = diag.WARN
                message = ("stale: no frame yet" if s.last_arrival is None else
                           f"stale: no frame for {values['silence_s']:.1f} s") + " (left out of the batches)"
            elif now - st.last_bad_time <= max(period, 1.0) * 2:
                level, message = diag.WARN, f"bad messages ({st.bad}): {st.last_error}"
            elif values["silence_s"] > 2 * self.sync.stale_timeout:  # every camera silent: nothing waits
                level, message = diag.WARN, f"no frame for {values['silence_s']:.1f} s"
            elif st.incompatible_qos and s.received == 0:
                level, message = diag.WARN, "incompatible QoS publisher"
            else:
                level, message = diag.OK, f"{values['input_rate_hz']:.1f} Hz"
            out.append(diag.make_status(f"{self.node.get_name()}: camera {cam}", level, message, values,
                                        hardware_id=cam))
        out.append(self.sync_status(stats))
        return out

    def sync_status(self, stats) -> Any:
        """One status for the batching itself: ERROR when frames arrive but no batch forms."""
        since_msg, since_batch = self.activity()
        starved = self.starved_for(stats)
        left_out = [c for c in self.cameras if stats[c].is_stale or stats[c].is_skewed]
        values = {"batches": self.sync.batches, "seconds_since_batch": since_batch if since_batch is not None
                  else float("nan"), "waiting_s": self.sync.waiting_for(), "left_out": ",".join(left_out),
                  "cameras": len(self.cameras)}
        if starved:
            level, message = diag.ERROR, (f"frames arrive but no batch has formed for {starved:.1f} s "
                                          "(see the cameras' bad_messages and dropped_in_sync)")
        elif since_msg is None:
            level, message = diag.OK, "idle: no frames yet"
        elif left_out:
            level, message = diag.WARN, f"batching without {', '.join(left_out)}"
        else:
            level, message = diag.OK, f"batching {len(self.cameras)} camera(s)"
        return diag.make_status(f"{self.node.get_name()}: sync", level, message, values)
