"""`perception-edge build-engine`: ONNX -> TensorRT engine + JSON sidecar.

FP32 / FP16 / INT8 (entropy or min-max calibration on frames from a folder, video or rosbag, fed
through the runtime Preprocessor so the scales match what the engine sees in service), dynamic batch
profiles, workspace limit, DLA with GPU fallback, timing-cache reuse, progress output, and the
equivalent trtexec command. Arguments are validated before TensorRT is imported, and
--print-trtexec works without TensorRT.

Calibration batching and the calibration-cache file are plain Python (CalibrationBatches,
CalibrationCache) so they are tested without a GPU.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shlex
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from perception_edge.backends import ENGINE_SUFFIXES
from perception_edge.backends.engine_cache import (
    CALIBRATORS, PRECISIONS, BuildSettings, OnnxIO, cache_key, engine_path_for, make_settings, make_sidecar,
    read_onnx_io, sidecar_path, write_sidecar)
from perception_edge.core.calibration import CalibrationBatches
from perception_edge.core.errors import ConfigError, ModelError
from perception_edge.core.files import atomic_write, digest_path, sha256_bytes, sha256_file

DEFAULT_CALIBRATION_FRAMES = 512
DEFAULT_CALIBRATION_BATCH = 8


# -- calibration (pure) ----------------------------------------------------------------------------

class CalibrationCache:
    """TensorRT's calibration cache file plus <cache>.json naming the calibration input it came from.

    read() returns the cache only when it was made from the expected input (expected_digest), so a
    cache left over from other frames or another model size is recalibrated, not silently reused.
    expected_digest=None (a cache given without frames) takes the file as it is.
    """

    def __init__(self, path: str, expected_digest: str | None = None):
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.name + ".json")
        self.expected_digest = expected_digest
        self.note = ""  # why an existing cache was not used

    def read(self) -> bytes | None:
        if not self.path.is_file():
            return None
        if self.expected_digest is not None:
            try:
                meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                meta = {}
            if meta.get("calibration_sha256") != self.expected_digest:
                self.note = (f"calibration cache {self.path} was made from other frames or settings; "
                             "recalibrating")
                return None
        data = self.path.read_bytes()
        return data or None

    def write(self, data: bytes) -> None:
        data = bytes(data)
        atomic_write(self.path, data)
        meta = {"calibration_sha256": self.expected_digest, "cache_sha256": sha256_bytes(data),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic_write(self.meta_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


@dataclass(frozen=True)
class CalibrationPlan:
    source: str  # folder / video / rosbag, or "" when only a cache is given
    topic: str
    frames: int
    batch_size: int
    calibrator: str
    cache_path: str
    mode: str  # the runtime resize mode: letterbox | stretch
    input_hw: tuple[int, int]
    digest: str  # what the engine's calibration depends on: part of the cache key
    stride: int = 1

    @property
    def expected_cache_digest(self) -> str | None:
        return self.digest if self.source else None

    def record(self) -> dict[str, Any]:
        return {"source": str(Path(self.source).resolve()) if self.source else "", "topic": self.topic,
                "frames": self.frames, "batch_size": self.batch_size, "stride": self.stride,
                "cache": self.cache_path, "resize_mode": self.mode}


def calibration_digest(source: str, topic: str, frames: int, batch_size: int, mode: str,
                       input_hw: tuple[int, int], stride: int = 1) -> str:
    payload = {"source": digest_path(source), "topic": topic or "", "frames": frames, "batch": batch_size,
               "mode": mode, "input_hw": list(input_hw), "stride": stride}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# -- command lines (pure) --------------------------------------------------------------------------

def _shape(dims: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in dims)


def build_command(onnx_path: str, settings: BuildSettings, cache_dir: str = "", output: str = "",
                  input_size: int | None = None, calibration: CalibrationPlan | None = None) -> str:
    """The build-engine command line for these settings (what error messages tell users to run)."""
    b = settings.batch
    args = ["perception-edge", "build-engine", str(onnx_path), "--precision", settings.precision]
    if settings.dynamic_batch:
        args += ["--batch", str(b.min)] if b.fixed else \
            ["--min-batch", str(b.min), "--opt-batch", str(b.opt), "--max-batch", str(b.max)]
    args += ["--workspace-mb", str(settings.workspace_mb)]
    if input_size:
        args += ["--input-size", str(input_size)]
    if settings.dla_core >= 0:
        args += ["--dla-core", str(settings.dla_core)]
    if calibration is not None:
        if calibration.source:
            args += ["--calibration", calibration.source]
            if calibration.topic:
                args += ["--calibration-topic", calibration.topic]
            args += ["--calibration-frames", str(calibration.frames)]
        args += ["--calibrator", calibration.calibrator]
        if calibration.cache_path:
            args += ["--calibration-cache", calibration.cache_path]
    if output:
        args += ["--output", str(output)]
    elif cache_dir:
        args += ["--cache-dir", str(cache_dir)]
    return " ".join(shlex.quote(a) for a in args)


def trtexec_command(onnx_path: str, engine_path: str, settings: BuildSettings, onnx: OnnxIO,
                    calibration_cache: str = "", timing_cache: str = "") -> str:
    """The trtexec command that builds the same engine. trtexec cannot calibrate from images: for INT8
    it reads the scales from the calibration cache that build-engine writes."""
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if settings.precision in ("fp16", "int8"):
        args.append("--fp16")
    if settings.precision == "int8":
        args.append("--int8")
        if calibration_cache:
            args.append(f"--calib={calibration_cache}")
    dynamic = [name for (name, _), t in zip(settings.inputs, onnx.inputs)
               if any(not isinstance(d, int) for d in t.shape)]
    if dynamic:
        shapes = settings.profile_shapes()
        for flag, k in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
            args.append(f"{flag}=" + ",".join(f"{name}:{_shape(shapes[name][k])}" for name in dynamic))
    args.append(f"--memPoolSize=workspace:{settings.workspace_mb}M")
    if settings.dla_core >= 0:
        args += [f"--useDLACore={settings.dla_core}", "--allowGPUFallback"]
    if timing_cache:
        args.append(f"--timingCacheFile={timing_cache}")
    return " ".join(shlex.quote(a) for a in args)


# -- arguments -------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="perception-edge build-engine",
        description="Build a TensorRT engine (+ JSON sidecar) from an ONNX model. Run it on the device "
                    "that will use the engine: engines are specific to the TensorRT version and GPU.")
    p.add_argument("model", help="ONNX model")
    p.add_argument("--precision", choices=PRECISIONS, help="engine precision (default: engine.precision, fp16)")
    g = p.add_argument_group("INT8 calibration")
    g.add_argument("--calibration", metavar="SRC", help="calibration frames: image folder, video/GIF or rosbag")
    g.add_argument("--calibration-topic", metavar="T", help="image topic when SRC is a rosbag")
    g.add_argument("--calibration-frames", type=int, default=DEFAULT_CALIBRATION_FRAMES, metavar="N",
                   help=f"frames to calibrate on (default {DEFAULT_CALIBRATION_FRAMES})")
    g.add_argument("--calibration-stride", type=int, default=1, metavar="S", help="use every S-th frame")
    g.add_argument("--calibration-batch", type=int, default=None, metavar="B",
                   help=f"calibration batch size (default {DEFAULT_CALIBRATION_BATCH}; a fixed-batch model's batch)")
    g.add_argument("--calibrator", choices=CALIBRATORS, default="entropy",
                   help="entropy (IInt8EntropyCalibrator2, default) or minmax (IInt8MinMaxCalibrator)")
    g.add_argument("--calibration-cache", metavar="FILE",
                   help="calibration cache to reuse/write (default: next to the engine, .calib)")
    g.add_argument("--resize-mode", choices=("letterbox", "stretch"),
                   help="preprocessing of calibration frames (default: the config's mode for this model, "
                        "else letterbox)")
    b = p.add_argument_group("shapes")
    b.add_argument("--batch", type=int, help="fixed batch size (min = opt = max)")
    b.add_argument("--min-batch", type=int)
    b.add_argument("--opt-batch", type=int)
    b.add_argument("--max-batch", type=int, help="(default: engine.max_batch, 4)")
    b.add_argument("--input-size", type=int, help="square size for a model whose H/W are dynamic")
    p.add_argument("--workspace-mb", type=int, help="builder workspace limit in MiB (default: engine.workspace_mb)")
    p.add_argument("--dla-core", type=int, help="build for this DLA core, with GPU fallback (Xavier/Orin)")
    p.add_argument("--timing-cache", metavar="FILE", help="TensorRT timing cache to reuse and update")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--output", metavar="ENGINE", help="engine file to write (.engine/.plan)")
    out.add_argument("--cache-dir", metavar="DIR", help="write into this engine cache folder (cache-key name)")
    p.add_argument("--config", metavar="YAML", help="perception parameter file: engine.* values are the defaults")
    p.add_argument("--print-trtexec", action="store_true", help="print the equivalent trtexec command and exit")
    p.add_argument("--verbose", action="store_true", help="TensorRT INFO log")
    return p


@dataclass(frozen=True)
class BuildRequest:
    onnx_path: str
    onnx: OnnxIO
    settings: BuildSettings
    calibration: CalibrationPlan | None
    output: str
    cache_dir: str
    timing_cache: str
    input_size: int | None
    print_trtexec: bool
    verbose: bool
    notes: tuple[str, ...] = ()


def _config_values(path: str | None) -> dict[str, Any]:
    from perception_edge import config

    return config.load_file(path) if path else config.defaults()


def _same_file(a: str, b: str) -> bool:
    try:
        return bool(a) and bool(b) and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def resolve(args: argparse.Namespace) -> BuildRequest:
    """Validate the arguments (no TensorRT needed) into a BuildRequest."""
    from perception_edge.tools.frame_sources import image_topic, source_kind

    model = Path(args.model)
    if model.suffix.lower() != ".onnx":
        raise ConfigError(f"{args.model}: build-engine takes an .onnx model")
    if not model.is_file():
        raise ModelError(f"model file not found: {args.model}")
    onnx = read_onnx_io(str(model))
    values = _config_values(args.config)
    precision = args.precision or values["engine.precision"]
    workspace = args.workspace_mb if args.workspace_mb is not None else values["engine.workspace_mb"]
    dla = args.dla_core if args.dla_core is not None else values["engine.dla_core"]
    if dla < -1:
        raise ConfigError(f"--dla-core must be >= 0 (or -1 for none), got {dla}")
    if args.batch is not None and any(v is not None for v in (args.min_batch, args.opt_batch, args.max_batch)):
        raise ConfigError("give either --batch or --min-batch/--opt-batch/--max-batch, not both")
    lo = hi = opt = args.batch
    if args.batch is None:
        lo, opt, hi = args.min_batch, args.opt_batch, args.max_batch
    if args.output and Path(args.output).suffix.lower() not in ENGINE_SUFFIXES:
        raise ConfigError(f"--output {args.output}: use an {'/'.join(ENGINE_SUFFIXES)} file name")
    input_size = args.input_size
    spatial = onnx.inputs[0].shape[2:]
    if all(isinstance(d, int) for d in spatial):
        if input_size is not None and tuple(spatial) != (input_size, input_size):
            raise ConfigError(f"--input-size {input_size}: the model's input is fixed at "
                              f"{'x'.join(str(d) for d in spatial)}")
        input_size = None
    elif input_size is None:
        input_size = values["detection.input_size"]
    mode = args.resize_mode or (values["segmentation.resize_mode"]
                                if _same_file(str(model), values["segmentation.model"]) else "letterbox")
    notes: list[str] = []

    calibration = None
    if precision == "int8":
        if not args.calibration and not (args.calibration_cache and Path(args.calibration_cache).is_file()):
            raise ConfigError("--precision int8 needs calibration frames (--calibration SRC) or an existing "
                              "--calibration-cache FILE")
        if args.calibration_frames < 1 or args.calibration_stride < 1:
            raise ConfigError("--calibration-frames and --calibration-stride must be >= 1")
    else:
        stray = [f for f, v in (("--calibration", args.calibration), ("--calibration-topic", args.calibration_topic),
                                ("--calibration-cache", args.calibration_cache)) if v]
        if stray:
            raise ConfigError(f"{', '.join(stray)} applies to --precision int8 only (precision is {precision})")

    # settings without calibration first: they fix the input size the calibration digest depends on
    settings = make_settings(onnx, precision if precision != "int8" else "fp16", lo, opt, hi, workspace,
                             dla if precision != "int8" else -1, input_size=input_size,
                             default_max_batch=values["engine.max_batch"])
    dims = settings.inputs[0][1]
    input_hw = (int(dims[-2]), int(dims[-1]))
    if precision == "int8":
        cal_batch = args.calibration_batch
        if not settings.dynamic_batch:
            if cal_batch not in (None, settings.batch.max):
                raise ConfigError(f"--calibration-batch {cal_batch}: the model's batch is fixed at {settings.batch.max}")
            cal_batch = settings.batch.max
        cal_batch = cal_batch or DEFAULT_CALIBRATION_BATCH
        if cal_batch < 1:
            raise ConfigError(f"--calibration-batch must be >= 1, got {cal_batch}")
        source, topic = args.calibration or "", args.calibration_topic or ""
        if source:
            kind = source_kind(source)
            if topic and kind != "rosbag":
                raise ConfigError(f"--calibration-topic applies to rosbags; {source} is a {kind}")
            if kind == "rosbag":
                topic = image_topic(source, topic or None)
            digest = calibration_digest(source, topic, args.calibration_frames, cal_batch, mode, input_hw,
                                        args.calibration_stride)
        else:
            digest = sha256_file(args.calibration_cache)
            notes.append(f"INT8 scales come from the calibration cache {args.calibration_cache} as it is")
        calibration = CalibrationPlan(source, topic, args.calibration_frames, cal_batch, args.calibrator,
                                      args.calibration_cache or "", mode, input_hw, digest, args.calibration_stride)
        settings = make_settings(onnx, "int8", lo, opt, hi, workspace, dla, args.calibrator, digest,
                                 input_size=input_size, default_max_batch=values["engine.max_batch"])
    if settings.dla_core >= 0 and not settings.batch.fixed:
        notes.append("DLA runs static shapes only: with a batch range, layers fall back to the GPU "
                     "(use --batch N for a DLA engine)")
    return BuildRequest(str(model), onnx, settings, calibration, args.output or "",
                        args.cache_dir if args.cache_dir is not None else values["engine.cache_dir"],
                        args.timing_cache or "", input_size, args.print_trtexec, args.verbose, tuple(notes))


# -- building (TensorRT) ---------------------------------------------------------------------------

def make_calibrator(trt, kind: str, batches: CalibrationBatches | None, cache: CalibrationCache, cuda,
                    batch_size: int, log: Callable[[str], None] = print):
    """An IInt8EntropyCalibrator2 / IInt8MinMaxCalibrator that feeds `batches` and keeps `cache`."""
    base = trt.IInt8EntropyCalibrator2 if kind == "entropy" else trt.IInt8MinMaxCalibrator

    class Calibrator(base):
        def __init__(self):
            base.__init__(self)
            self._batches = iter(batches) if batches is not None else iter(())
            self._alloc, self._ptr = None, 0
            self.error: BaseException | None = None  # exceptions cannot cross TensorRT: kept here
            self.count, self._last_log = 0, 0.0

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names, *_):
            try:
                batch = next(self._batches)
                if self._alloc is None:
                    self._alloc, self._ptr = cuda.malloc(batch.nbytes)
                cuda.h2d(self._ptr, batch)
            except StopIteration:
                return None
            except Exception as e:
                self.error = e
                return None
            self.count += 1
            now = time.monotonic()
            if now - self._last_log >= 5.0 or self.count == 1:
                self._last_log = now
                log(f"  calibration batch {self.count} ({self.count * batch_size} frames)")
            return [self._ptr for _ in names]

        def read_calibration_cache(self):
            data = cache.read()
            if cache.note:
                log("  " + cache.note)
            if data:
                log(f"  using calibration cache {cache.path}")
            return data

        def write_calibration_cache(self, data):
            try:
                cache.write(bytes(data))
                log(f"  wrote calibration cache {cache.path}")
            except Exception as e:
                self.error = e

        def free(self):
            if self._alloc is not None:
                cuda.free(self._alloc)
                self._alloc = None

    return Calibrator()


class _Ticker:
    """Progress lines for TensorRT without IProgressMonitor (before 8.6): elapsed time, periodically."""

    def __init__(self, log: Callable[[str], None], period: float = 20.0):
        self.log, self.period = log, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = time.monotonic()

    def _run(self):
        while not self._stop.wait(self.period):
            self.log(f"  still building ({time.monotonic() - self.start:.0f} s)")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()


def _progress_monitor(trt, log: Callable[[str], None], cancel: threading.Event | None):
    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}
            self.last = 0.0

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.steps[phase_name] = num_steps
            if parent_phase is None:
                log(f"  {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name, step):
            now = time.monotonic()
            if now - self.last >= 5.0:
                self.last = now
                log(f"  {phase_name}: {step + 1}/{self.steps.get(phase_name, '?')}")
            return not (cancel is not None and cancel.is_set())  # False cancels the build

        def phase_finish(self, phase_name):
            self.steps.pop(phase_name, None)

    return Monitor()


def _parse_onnx(trt, network, logger, onnx_bytes: bytes, onnx_path: str) -> None:
    parser = trt.OnnxParser(network, logger)
    try:
        ok = parser.parse(onnx_bytes, str(Path(onnx_path).resolve()))  # path: external weights resolve
    except TypeError:
        ok = parser.parse(onnx_bytes)
    if not ok:
        errors = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            errors.append(e.desc() if hasattr(e, "desc") else str(e))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors[0] if errors else 'unknown error'}")


def build_serialized(trt, onnx_bytes: bytes, onnx_path: str, settings: BuildSettings, cuda,
                     calibration: CalibrationPlan | None = None, timing_cache: str = "",
                     log: Callable[[str], None] = print, cancel: threading.Event | None = None,
                     verbose: bool = False) -> bytes:
    """Parse, configure and build; the serialized engine. Call inside cuda.activate()."""
    from perception_edge.backends.tensorrt_backend import trt_logger

    logger = trt_logger(trt, verbose)
    builder = trt.Builder(logger)
    flags = 0
    if int(str(trt.__version__).split(".")[0]) < 10:  # explicit batch is the only mode in 10.x
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    _parse_onnx(trt, network, logger, onnx_bytes, onnx_path)
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):  # 8.4+
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    else:
        config.max_workspace_size = settings.workspace_mb << 20
    for flag in settings.build_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if "FP16" in settings.build_flags and not getattr(builder, "platform_has_fast_fp16", True):
        log("  note: this GPU has no fast FP16; the engine may be no faster than FP32")
    if settings.dla_core >= 0:
        cores = int(getattr(builder, "num_DLA_cores", 0))
        if settings.dla_core >= cores:
            raise ConfigError(f"--dla-core {settings.dla_core}: this device has {cores} DLA core(s)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = settings.dla_core

    shapes = settings.profile_shapes()
    profile = builder.create_optimization_profile()
    dynamic = []
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        if any(int(d) < 0 for d in inp.shape):
            if inp.name not in shapes:
                raise ModelError(f"network input {inp.name} is not among the settings' inputs {list(shapes)}")
            lo, opt, hi = shapes[inp.name]
            profile.set_shape(inp.name, lo, opt, hi)
            dynamic.append(inp.name)
    if dynamic:
        config.add_optimization_profile(profile)

    calibrator = None
    if settings.precision == "int8":
        if calibration is None:
            raise ConfigError("INT8 needs a calibration plan")
        from perception_edge.tools.frame_sources import iter_frames

        cache = CalibrationCache(calibration.cache_path, calibration.expected_cache_digest)
        batches = None
        if calibration.source:
            frames = iter_frames(calibration.source, calibration.topic or None, calibration.frames,
                                 calibration.stride)
            batches = CalibrationBatches(frames, calibration.input_hw, calibration.batch_size,
                                         calibration.frames, calibration.mode)
        calibrator = make_calibrator(trt, calibration.calibrator, batches, cache, cuda, calibration.batch_size, log)
        config.int8_calibrator = calibrator
        if dynamic:  # calibration runs at one fixed shape: the calibration batch
            cal_profile = builder.create_optimization_profile()
            for name in dynamic:
                s = (calibration.batch_size,) + tuple(shapes[name][0][1:])
                cal_profile.set_shape(name, s, s, s)
            config.set_calibration_profile(cal_profile)

    timing = None
    if timing_cache:
        data = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        timing = config.create_timing_cache(data)
        if not config.set_timing_cache(timing, False):
            log(f"  timing cache {timing_cache} is from another device or TensorRT; starting a new one")
            timing = config.create_timing_cache(b"")
            config.set_timing_cache(timing, False)
        elif data:
            log(f"  reusing timing cache {timing_cache}")

    monitor = _progress_monitor(trt, log, cancel) if hasattr(trt, "IProgressMonitor") else None  # 8.6+
    if monitor is not None:
        config.progress_monitor = monitor  # the local reference keeps it alive through the build
    progress = contextlib.nullcontext() if monitor is not None else _Ticker(log)
    with progress:
        serialized = builder.build_serialized_network(network, config)
    if calibrator is not None:
        calibrator.free()
        if calibrator.error is not None:
            raise ModelError(f"calibration failed: {calibrator.error}") from calibrator.error
        if batches is not None and calibrator.count:
            extra = f", last {batches.dropped} dropped" if batches.dropped else ""
            extra += f", {batches.repeated} slots repeated" if batches.repeated else ""
            log(f"  calibrated on {batches.frames_used} frames in {batches.batches} batches of "
                f"{calibration.batch_size}{extra}")
        elif batches is not None and not cache.read():
            raise ModelError(f"no calibration frames were read from {calibration.source}")
    if cancel is not None and cancel.is_set():
        raise ModelError("engine build cancelled")
    if serialized is None:
        raise ModelError(f"TensorRT could not build an engine from {onnx_path} (see the TensorRT messages above)")
    if timing is not None:
        atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def build_engine_file(onnx_path: str, settings: BuildSettings, engine_path: str, *, identity, cuda,
                      onnx_bytes: bytes | None = None, key: str | None = None,
                      calibration: CalibrationPlan | None = None, timing_cache: str = "",
                      log: Callable[[str], None] = print, cancel: threading.Event | None = None,
                      verbose: bool = False) -> dict[str, Any]:
    """Build, write the engine (atomically) and its sidecar; the sidecar's contents."""
    from perception_edge.backends.tensorrt_backend import import_tensorrt

    trt = import_tensorrt()
    onnx_bytes = onnx_bytes if onnx_bytes is not None else Path(onnx_path).read_bytes()
    onnx_sha = sha256_bytes(onnx_bytes)
    key = key or cache_key(onnx_sha, settings, identity)
    start = time.monotonic()
    log(f"building {settings.precision} engine for {onnx_path} (batch {settings.batch}, "
        f"{identity.describe()}); this takes minutes on a Jetson")
    with cuda.activate():
        data = build_serialized(trt, onnx_bytes, onnx_path, settings, cuda, calibration, timing_cache,
                                log, cancel, verbose)
    atomic_write(engine_path, data)
    sidecar = make_sidecar(onnx_path=onnx_path, onnx_sha256=onnx_sha, settings=settings, identity=identity,
                           key=key, engine_sha256=sha256_bytes(data), onnx_metadata=read_onnx_io(onnx_bytes).metadata,
                           calibration=calibration.record() if calibration is not None else None,
                           timing_cache=timing_cache, build_seconds=round(time.monotonic() - start, 1))
    write_sidecar(engine_path, sidecar)
    return sidecar


def _identity_or_none():
    try:
        from perception_edge.backends.tensorrt_backend import cuda_memory, import_tensorrt, runtime_identity

        return runtime_identity(import_tensorrt(), cuda_memory())
    except Exception:
        return None


def _engine_path(req: BuildRequest, identity) -> str:
    if req.output:
        return req.output
    if identity is None:  # no TensorRT here: the cache name's key is unknown
        folder = Path(req.cache_dir).expanduser() if req.cache_dir else Path(req.onnx_path).resolve().parent
        return str(folder / f"{Path(req.onnx_path).stem}.{req.settings.precision}.engine")
    key = cache_key(sha256_file(req.onnx_path), req.settings, identity)
    return str(engine_path_for(req.onnx_path, req.settings, key, req.cache_dir))


def _with_cache_path(req: BuildRequest, engine_path: str) -> CalibrationPlan | None:
    cal = req.calibration
    if cal is not None and not cal.cache_path:
        cal = replace(cal, cache_path=str(Path(engine_path).with_suffix(".calib")))
    return cal


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    req = resolve(args)
    for note in req.notes:
        print(f"note: {note}", file=sys.stderr)
    if req.print_trtexec:
        identity = _identity_or_none()
        engine_path = _engine_path(req, identity)
        cal = _with_cache_path(req, engine_path)
        if req.settings.precision == "int8":
            print("note: trtexec reads INT8 scales from the calibration cache (--calib) and cannot calibrate "
                  "from frames; build-engine writes that cache", file=sys.stderr)
        print(trtexec_command(req.onnx_path, engine_path, req.settings, req.onnx,
                              cal.cache_path if cal else "", req.timing_cache))
        return 0

    from perception_edge.backends.tensorrt_backend import cuda_memory, import_tensorrt, runtime_identity

    trt = import_tensorrt()
    cuda = cuda_memory()
    identity = runtime_identity(trt, cuda)
    engine_path = _engine_path(req, identity)
    cal = _with_cache_path(req, engine_path)
    start = time.monotonic()
    build_engine_file(req.onnx_path, req.settings, engine_path, identity=identity, cuda=cuda, calibration=cal,
                      timing_cache=req.timing_cache, log=lambda s: print(s, flush=True), verbose=req.verbose)
    size = Path(engine_path).stat().st_size / 1e6
    print(f"wrote {engine_path} ({size:.1f} MB) and {sidecar_path(engine_path).name} in "
          f"{time.monotonic() - start:.0f} s")
    print("equivalent trtexec command:\n  " + trtexec_command(req.onnx_path, engine_path, req.settings, req.onnx,
                                                               cal.cache_path if cal else "", req.timing_cache))
    return 0


__all__ = ["main", "parser", "resolve", "BuildRequest", "CalibrationBatches", "CalibrationCache", "CalibrationPlan",
           "calibration_digest", "build_command", "trtexec_command", "make_calibrator", "build_serialized",
           "build_engine_file"]
