"""What the detection and segmentation nodes share: parameters, the model (loaded in configure()),
a worker thread fed by a LatestSlot (one model call per batch, never in a subscription callback,
never a queue), a drawing thread for the rendered images, and the model's /diagnostics status."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

from perception_edge.backends import Backend
from perception_edge.core.errors import ConfigError, PerceptionError
from perception_edge.core.sync import NS_PER_S, Batch, Frame, LatestSlot
from perception_edge.nodes import diagnostics as diag
from perception_edge.nodes.fusion import CameraFusion
from perception_edge.nodes.parameters import add_dynamic_updates, declare_parameters, resolve_path
from perception_edge.nodes.runner import Managed
from rclpy.node import Node

STAGES = ("convert", "preprocess", "inference", "postprocess", "publish")
ERROR_LOG_PERIOD = 10.0


def backend_status(backend: Backend) -> str:
    """What the backend says about itself: "building engine" (a TensorRT engine being built in the
    background), "failed: <reason>", or "" when it is simply ready."""
    if backend.building:
        return "building engine"
    status = backend.status
    if not isinstance(status, str) or status.strip().lower() in ("", "ready", "ok"):
        return ""
    return status


class Drawer:
    """Renders and publishes images drawn over the frames (debug image, lane overlay) on a thread of
    its own, fed by a depth-1 slot: the inference worker hands over (frame, result, header,
    publisher) items and carries on; a set the drawer has not started yet is replaced."""

    def __init__(self, name: str, render: Callable[[Frame, Any], Any], on_error: Callable[[BaseException], None]):
        self.render, self.on_error = render, on_error
        self.slot: LatestSlot[list[tuple[Frame, Any, Any, Any]]] = LatestSlot()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, items: list[tuple[Frame, Any, Any, Any]]) -> None:
        if items:
            self.slot.put(items)

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        self.slot.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _work(self) -> None:
        while not self._stopping.is_set():
            items = self.slot.get(timeout=0.5)
            for frame, result, header, pub in items or ():
                try:
                    pub.publish(self.render(frame, result, header))
                except Exception as e:
                    if self._stopping.is_set():
                        return
                    self.on_error(e)


class ModelNode(Managed, Node):
    """Base of DetectionNode / SegmentationNode. Subclasses set `kind` and implement load_model,
    setup_outputs, publish_results (and render, on_parameter where they have them).

    Life cycle: __init__ declares the parameters; configure() loads the model and creates the
    publishers (the executables call it; an invalid or missing model fails there); start() starts
    the worker and drawing threads (the runner); stop() ends them."""

    kind = "model"  # parameter prefix: "detection" or "segmentation"
    dynamic_parameters: Sequence[str] = ()

    def __init__(self, node_name: str, internal_fusion: bool = False, **node_kwargs):
        node_kwargs.pop("warn_unknown", None)  # no longer needed: each node declares what it uses
        concurrent_models = node_kwargs.pop("concurrent_models", 1)
        super().__init__(node_name, **node_kwargs)
        self.internal_fusion = internal_fusion
        self.cfg = declare_parameters(self, self.kind, *(("fusion",) if internal_fusion else ()))
        self.params = self.cfg.values()  # the same, by dotted name
        self.model_key = f"{self.kind}.model"
        self.enabled = bool(self.params[self.model_key])  # a model is set
        self.concurrent_models = concurrent_models
        self.model: Any = None
        self.backend: Backend | None = None
        self.model_path = ""
        self.cameras: list[str] = list(self.cfg.cameras)

        self.slot: LatestSlot[Batch] = LatestSlot()
        self.times = diag.StageTimes()
        self.e2e = diag.StageTimes()
        self.out_rate = diag.RateMeter()
        self.batches = 0
        self.frames = 0
        self.last_batch_size = 0
        self.last_calls_per_batch = 0
        self.errors = 0
        self.skipped = 0  # frames that arrived while the engine was being built
        self.last_error = ""
        self.last_error_time = -1e9
        self.last_batch_time: float | None = None  # monotonic, last batch processed
        self.started = time.monotonic()
        # (seconds since the last camera message, seconds since the last batch formed), from the
        # camera fusion feeding this node: tells "idle, no frames" from "starved"
        self.input_activity: Callable[[], tuple[float | None, float | None]] | None = None
        self._last_error_log = -1e9
        self._ok_after_error = True
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.drawer = Drawer(f"{node_name}-drawing", self.render, self._draw_failed)
        self.fusion: CameraFusion | None = None
        self.diagnostics: diag.DiagnosticsPublisher | None = None
        add_dynamic_updates(self, self._on_parameter, self.dynamic_parameters)

    def configure(self, concurrent_models: int | None = None) -> None:
        """Load the model (its path resolved: current directory, then the package share) and create
        the outputs, the diagnostics and, standalone, the camera input. Raises ConfigError /
        ModelError (one line) for an empty, missing or unreadable model."""
        if concurrent_models is not None:
            self.concurrent_models = concurrent_models
        if not self.enabled:
            raise ConfigError(f"parameter {self.model_key} is empty: the {self.get_name()} node needs a model")
        changes = {self.model_key: resolve_path(self.params[self.model_key], f"{self.kind} model")}
        if self.kind == "detection" and self.cfg.detection.labels:
            changes["detection.labels"] = resolve_path(self.cfg.detection.labels, "labels", ConfigError)
        self.cfg = self.cfg.replace(**changes)
        self.model_path = changes[self.model_key]
        self.model = self.load_model(self.cfg)
        self.backend = self.model.backend
        threads = self.backend.num_threads
        self.get_logger().info(
            f"{self.kind} model {self.model_path} on {self.backend.name} "
            f"(input {self.model.input_hw[0]}x{self.model.input_hw[1]}"
            + (f", {threads or 'default'} thread(s)" if threads is not None else "") + ")")
        self.setup_outputs()
        period = self.cfg.diagnostics_period
        self.diagnostics = diag.DiagnosticsPublisher(self, period)
        self.diagnostics.add(self.model_statuses)
        if self.internal_fusion:  # standalone: this node subscribes to the cameras itself
            self.fusion = CameraFusion(self, self.cfg)
            self.fusion.add_consumer(self.submit)
            self.input_activity = self.fusion.activity
            self.diagnostics.add(lambda: self.fusion.statuses(period))

    # -- subclass hooks ---------------------------------------------------------------------------
    def load_model(self, cfg):
        raise NotImplementedError

    def setup_outputs(self) -> None:
        raise NotImplementedError

    def publish_results(self, batch: Batch, results: list[Any]) -> list[tuple[Frame, Any, Any, Any]]:
        """Publish the results of a batch; returns what the drawing thread is to render:
        (frame, result, header, publisher) for each drawn image someone subscribes to."""
        raise NotImplementedError

    def render(self, frame: Frame, result: Any, header: Any) -> Any:
        """The drawn image message of one frame (drawing thread)."""
        raise NotImplementedError

    def on_parameter(self, name: str, value: Any) -> None:
        pass

    def _on_parameter(self, name: str, value: Any) -> None:
        self.cfg = self.cfg.replace(**{name: value})  # what configure() loads with, if not done yet
        self.params[name] = value
        if self.model is not None:
            self.on_parameter(name, value)

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self.model is None:
            raise RuntimeError(f"{self.get_name()}: configure() (load the model) before start()")
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=f"{self.get_name()}-worker", daemon=True)
            self._thread.start()
            self.drawer.start()
            if self.fusion is not None:
                self.fusion.start()  # the camera subscriptions, last

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self.slot.close()
        if self.fusion is not None:
            self.fusion.close()
        self.drawer.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def destroy_node(self):
        self.stop()
        return super().destroy_node()

    def submit(self, batch: Batch) -> None:
        """Batch consumer: never blocks; a batch the worker has not started yet is replaced."""
        self.slot.put(batch)

    # -- worker -----------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopping.is_set():
            batch = self.slot.get(timeout=0.5)
            if batch is None:
                continue
            self.process(batch)

    def process(self, batch: Batch) -> None:
        """Run the model once over the batch and publish the results (worker thread)."""
        if self.backend.building:
            self.skipped += len(batch)  # the engine is being built: reported as such, not as errors
            return
        try:
            results = self.model(batch.images())
            timings = dict(results.timings)
            t0 = time.perf_counter()
            self.drawer.put(self.publish_results(batch, results))
            timings["publish"] = (time.perf_counter() - t0) * 1e3
        except Exception as e:
            if self._stopping.is_set() or not self.context.ok():
                return  # shutting down (Ctrl-C): the context is gone, nothing to report
            self._failed(e)
            return
        now_ns = self.get_clock().now().nanoseconds
        for f in batch.frames:
            self.times.add("convert", f.convert_ms)
            if 0 < now_ns - f.stamp < 3600 * NS_PER_S:  # only meaningful on a shared clock
                self.e2e.add("end_to_end", (now_ns - f.stamp) / 1e6)
        self.times.add_all(timings)
        self.batches += 1
        self.frames += len(batch)
        self.last_batch_size = len(batch)
        self.last_calls_per_batch = results.calls
        self.out_rate.tick()
        self.last_batch_time = time.monotonic()
        if not self._ok_after_error:
            self._ok_after_error = True
            self.get_logger().info(f"{self.kind} model running again")

    def _draw_failed(self, e: BaseException) -> None:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_PERIOD:
            self._last_error_log = now
            self.get_logger().error(f"drawing failed: {type(e).__name__}: {text}")

    def _failed(self, e: BaseException) -> None:
        self.errors += 1
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not isinstance(e, PerceptionError):
            text = f"{type(e).__name__}: {text}"
        self.last_error = text
        self.last_error_time = time.monotonic()
        self._ok_after_error = False
        if self.last_error_time - self._last_error_log >= ERROR_LOG_PERIOD:
            self._last_error_log = self.last_error_time
            self.get_logger().error(f"{self.kind} failed on a batch ({self.errors} so far): {text}")

    # -- diagnostics ------------------------------------------------------------------------------
    def _quiet_for(self) -> float | None:
        """Seconds without a processed batch when that is longer than a few batch intervals
        (None while batches flow)."""
        now = time.monotonic()
        last = self.last_batch_time if self.last_batch_time is not None else self.started
        rate = self.out_rate.rate()
        limit = max(2.0, 3.0 / rate) if rate > 0 else 2.0
        return now - last if (self.batches == 0 or now - last > limit) else None

    def _quiet_status(self) -> tuple[int, str]:
        """No batches: idle (no frames arrive), starved (frames arrive, no batch forms), or waiting."""
        activity = self.input_activity() if self.input_activity is not None else (None, None)
        since_msg, since_batch = activity
        quiet = self._quiet_for() or 0.0
        if since_msg is None or since_msg > max(2.0, quiet):
            return diag.OK, ("idle: waiting for frames (none has arrived yet)" if since_msg is None else
                             f"idle: no frames for {since_msg:.1f} s")
        if since_batch is None or since_batch >= quiet:
            return diag.WARN, (f"starved: frames arrive but no batch has reached the model for {quiet:.1f} s "
                               "(see the sync and camera statuses)")
        return diag.WARN, f"no batch processed for {quiet:.1f} s although batches form"

    def model_statuses(self) -> list[Any]:
        if self.model is None:
            return []
        med = self.times.medians()
        e2e = self.e2e.medians().get("end_to_end")
        values: dict[str, Any] = {
            "model": self.model_path,
            "backend": self.backend.name,
            "output_rate_hz": self.out_rate.rate(),
            "batches": self.batches,
            "frames": self.frames,
            "batch_size": self.last_batch_size,
            "inference_calls_per_batch": self.last_calls_per_batch,
            "inference_calls_total": self.model.inference_calls,
            "dropped_batches": self.slot.dropped,
            "errors": self.errors,
            "last_error": self.last_error,
        }
        for stage in STAGES:
            values[f"{stage}_ms"] = med.get(stage, float("nan"))
        values["end_to_end_ms"] = e2e if e2e is not None else float("nan")
        values["skipped_frames"] = self.skipped
        status = backend_status(self.backend)
        recent_error = time.monotonic() - self.last_error_time <= 2 * max(1.0, self.cfg.diagnostics_period)
        if status.startswith("failed"):
            level, message = diag.ERROR, f"engine {status}"
        elif status:
            level, message = diag.WARN, status + (" (frames are skipped until it is ready)" if
                                                  status == "building engine" else "")
        elif recent_error and not self._ok_after_error:
            level, message = diag.ERROR, f"{self.kind} failing: {self.last_error}"
        elif self._quiet_for() is not None:
            level, message = self._quiet_status()
        else:
            level, message = diag.OK, (f"{values['output_rate_hz']:.1f} batches/s, inference "
                                       f"{values['inference_ms']:.1f} ms per batch of {self.last_batch_size}")
        if status:
            values["backend_status"] = status
        return [diag.make_status(f"{self.get_name()}: {self.kind} model", level, message, values,
                                 hardware_id=self.model_path)]


def per_camera(cameras: Sequence[str], make: Callable[[str], Any]) -> dict[str, Any]:
    return {cam: make(cam) for cam in cameras}
