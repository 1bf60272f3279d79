"""/diagnostics: a small periodic publisher of diagnostic_msgs/DiagnosticArray, plus the counters
the nodes keep for it (rates over a sliding window, medians of recent stage latencies)."""
from __future__ import annotations

import collections
import statistics
import threading
import time
from typing import Any, Callable, Iterable, Mapping

OK, WARN, ERROR, STALE = 0, 1, 2, 3
TOPIC = "/diagnostics"


class RateMeter:
    """Events per second over the last `window` seconds (thread-safe)."""

    def __init__(self, window: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self._clock = clock
        self._times: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self._start = clock()
        self.count = 0

    def tick(self, n: int = 1) -> None:
        now = self._clock()
        with self._lock:
            self.count += n
            for _ in range(n):
                self._times.append(now)
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()

    def rate(self) -> float:
        now = self._clock()
        with self._lock:
            self._trim(now)
            span = min(self.window, max(now - self._start, 1e-3))
            return len(self._times) / span


class StageTimes:
    """Recent samples (ms) per stage; medians for the report (thread-safe)."""

    def __init__(self, keep: int = 100):
        self._samples: dict[str, collections.deque[float]] = {}
        self._keep = keep
        self._lock = threading.Lock()

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            self._samples.setdefault(stage, collections.deque(maxlen=self._keep)).append(float(ms))

    def add_all(self, values: Mapping[str, float]) -> None:
        for k, v in values.items():
            self.add(k, v)

    def medians(self) -> dict[str, float]:
        with self._lock:
            return {k: statistics.median(v) for k, v in self._samples.items() if v}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def make_status(name: str, level: int, message: str, values: Mapping[str, Any] | None = None,
                hardware_id: str = ""):
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    st = DiagnosticStatus()
    st.level = bytes([level])  # a `byte` field: rclpy takes a 1-byte bytes object
    st.name = name
    st.message = message
    st.hardware_id = hardware_id
    st.values = [KeyValue(key=str(k), value=_text(v)) for k, v in (values or {}).items()]
    return st


def level_of(status) -> int:
    lv = status.level
    return lv[0] if isinstance(lv, (bytes, bytearray)) else int(lv)


def values_of(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


class DiagnosticsPublisher:
    """Publishes every `period` seconds one DiagnosticArray with the statuses of its providers
    (callables returning DiagnosticStatus lists). A provider that raises becomes an ERROR status
    instead of stopping the others."""

    def __init__(self, node, period: float, callback_group=None):
        from diagnostic_msgs.msg import DiagnosticArray

        self._node = node
        self._msg_type = DiagnosticArray
        self._providers: list[Callable[[], Iterable[Any]]] = []
        self.publisher = node.create_publisher(DiagnosticArray, TOPIC, 10)
        self.timer = node.create_timer(period, self.publish, callback_group=callback_group)

    def add(self, provider: Callable[[], Iterable[Any]]) -> None:
        self._providers.append(provider)

    def collect(self) -> list[Any]:
        statuses: list[Any] = []
        for provider in self._providers:
            try:
                statuses.extend(provider())
            except Exception as e:  # a bug in one report must not silence the others
                statuses.append(make_status(f"{self._node.get_name()}: diagnostics", ERROR,
                                            f"diagnostics provider failed: {type(e).__name__}: {e}"))
        return statuses

    def publish(self) -> None:
        msg = self._msg_type()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = self.collect()
        if msg.status:
            try:
                self.publisher.publish(msg)
            except Exception:  # context shut down while a timer fired
                pass
