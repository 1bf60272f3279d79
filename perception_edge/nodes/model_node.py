"""What the detection and segmentation nodes share: parameters, the model, a worker thread fed by a
LatestSlot (one model call per batch, never in a subscription callback, never a queue), and the
model's /diagnostics status."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

from perception_edge.core.errors import ConfigError, PerceptionError
from perception_edge.core.sync import NS_PER_S, Batch, LatestSlot
from perception_edge.nodes import diagnostics as diag
from perception_edge.nodes.camera_fusion import CameraFusion
from perception_edge.nodes.parameters import add_dynamic_updates, declare_schema_parameters, resolved
from rclpy.node import Node

STAGES = ("convert", "preprocess", "inference", "postprocess", "publish")
ERROR_LOG_PERIOD = 10.0


def backend_status(backend: Any) -> str:
    """What the backend object says about itself: "building engine" (a TensorRT engine being built
    in the background), "failed: <reason>", or "" when it is simply ready."""
    if getattr(backend, "building", False):
        return "building engine"
    status = getattr(backend, "status", None)
    if callable(status):
        try:
            status = status()
        except Exception:
            status = None
    if not isinstance(status, str) or status.strip().lower() in ("", "ready", "ok"):
        return ""
    return status


class ModelNode(Node):
    """Base of DetectionNode / SegmentationNode. Subclasses set `kind` and implement load_model,
    setup_outputs, publish_results and (optionally) on_parameter."""

    kind = "model"  # parameter prefix: "detection" or "segmentation"
    dynamic_parameters: Sequence[str] = ()

    def __init__(self, node_name: str, internal_fusion: bool = False, warn_unknown: bool = True,
                 concurrent_models: int = 1, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        self.params = declare_schema_parameters(self, warn_unknown=warn_unknown)
        self.concurrent_models = concurrent_models  # models of this process running at the same time
        key = f"{self.kind}.model"
        if not self.params[key]:
            raise ConfigError(f"parameter {key} is empty: the {node_name} node needs a model")
        model_params = resolved(self.params, key)
        self.model_path = model_params[key]
        self.model = self.load_model(model_params)
        self.backend = self.model.backend
        threads = getattr(self.backend, "num_threads", None)
        self.get_logger().info(
            f"{self.kind} model {self.model_path} on {getattr(self.backend, 'name', '?')} "
            f"(input {self.model.input_hw[0]}x{self.model.input_hw[1]}"
            + (f", {threads or 'default'} thread(s)" if threads is not None else "") + ")")
        self.cameras: list[str] = list(self.params["cameras"])

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

        self.setup_outputs()
        period = self.params["diagnostics_period"]
        self.diagnostics = diag.DiagnosticsPublisher(self, period)
        self.diagnostics.add(self.model_statuses)
        self.fusion: CameraFusion | None = None
        if internal_fusion:  # standalone: this node subscribes to the cameras itself
            self.fusion = CameraFusion(self, self.params)
            self.fusion.add_consumer(self.submit)
            self.input_activity = self.fusion.activity
            self.diagnostics.add(lambda: self.fusion.statuses(period))
        add_dynamic_updates(self, self.on_parameter, self.dynamic_parameters)

    # -- subclass hooks ---------------------------------------------------------------------------
    def load_model(self, params: dict[str, Any]):
        raise NotImplementedError

    def setup_outputs(self) -> None:
        raise NotImplementedError

    def publish_results(self, batch: Batch, results: list[Any]) -> None:
        raise NotImplementedError

    def on_parameter(self, name: str, value: Any) -> None:
        pass

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=f"{self.get_name()}-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self.slot.close()
        if self.fusion is not None:
            self.fusion.close()
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
        if getattr(self.backend, "building", False):
            self.skipped += len(batch)  # the engine is being built: reported as such, not as errors
            return
        try:
            calls_before = self.model.inference_calls
            results = self.model(batch.images())
            calls = self.model.inference_calls - calls_before
            timings = dict(self.model.timings)
            t0 = time.perf_counter()
            self.publish_results(batch, results)
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
        self.last_calls_per_batch = calls
        self.out_rate.tick()
        self.last_batch_time = time.monotonic()
        if not self._ok_after_error:
            self._ok_after_error = True
            self.get_logger().info(f"{self.kind} model running again")

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
        med = self.times.medians()
        e2e = self.e2e.medians().get("end_to_end")
        values: dict[str, Any] = {
            "model": self.model_path,
            "backend": getattr(self.backend, "name", "?"),
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
        recent_error = time.monotonic() - self.last_error_time <= 2 * max(1.0, self.params["diagnostics_period"])
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
