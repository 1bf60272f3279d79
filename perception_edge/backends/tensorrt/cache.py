"""TensorRT engine cache: build settings, cache keys, the JSON sidecar, and the checks that keep an
engine from ever being used silently stale. Pure Python: nothing here imports TensorRT or CUDA, so
all of it is tested on machines without a GPU.

An engine is only valid for the TensorRT version, the GPU (compute capability) and the ONNX bytes
it was built from, and it bakes in its precision and batch profiles. Each engine therefore gets a
sidecar, <engine>.json, that records all of these; loading compares it with the running machine,
and a cached engine's file name carries a key over all of them, so a changed ONNX model, setting,
TensorRT upgrade or different GPU never finds an old engine.
"""
from __future__ import annotations

import json
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence


from perception_edge.backends.tensorrt.onnx_io import OnnxIO
from perception_edge.core.errors import ConfigError, ModelError
from perception_edge.core.files import atomic_write, sha256_bytes, sha256_file

PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATORS = ("entropy", "minmax")
SIDECAR_FORMAT = 1
KEY_CHARS = 16  # of the cache key in file names: 64 bits, plenty to tell builds in one folder apart
ENGINE_SUFFIX = ".engine"


# -- build settings --------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchProfile:
    min: int
    opt: int
    max: int

    def validate(self) -> BatchProfile:
        if not (1 <= self.min <= self.opt <= self.max):
            raise ConfigError(f"batch profile needs 1 <= min <= opt <= max, got min {self.min}, "
                              f"opt {self.opt}, max {self.max}")
        return self

    @property
    def fixed(self) -> bool:
        return self.min == self.max

    def serves(self, n: int) -> bool:
        return self.min <= n <= self.max

    def __str__(self) -> str:
        return str(self.min) if self.fixed else f"{self.min}-{self.max} (opt {self.opt})"


@dataclass(frozen=True)
class BuildSettings:
    """Everything a build depends on besides the ONNX bytes and the machine: part of the cache key."""
    precision: str = "fp16"
    batch: BatchProfile = BatchProfile(1, 1, 1)
    inputs: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (name, dims after the batch) per input
    dynamic_batch: bool = True  # the ONNX batch dimension is dynamic (else min = opt = max = it)
    workspace_mb: int = 1024
    dla_core: int = -1
    calibrator: str = ""  # int8 only: entropy | minmax
    calibration_sha256: str = ""  # int8 only: digest of the calibration input (or of its cache)
    explicit_int8: bool = False  # int8 from the model's Q/DQ nodes (no calibrator)
    strongly_typed: bool = False  # TensorRT 10 strongly typed network: precisions from the graph's types

    def validate(self) -> BuildSettings:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        self.batch.validate()
        if not self.inputs:
            raise ConfigError("build settings name no inputs")
        for name, dims in self.inputs:
            if not all(isinstance(d, int) and d > 0 for d in dims):
                raise ConfigError(f"input {name} has dynamic dimensions {list(dims)}: give a fixed "
                                  "input size (--input-size) or export the model with one")
        if not 16 <= self.workspace_mb <= 1 << 20:
            raise ConfigError(f"workspace {self.workspace_mb} MiB is outside 16..1048576")
        if self.dla_core >= 0 and self.precision == "fp32":
            raise ConfigError("DLA runs FP16 or INT8 only: use --precision fp16 or int8 with --dla-core")
        if self.strongly_typed and not self.explicit_int8:
            raise ConfigError("a strongly typed build takes an explicitly quantized (Q/DQ) model")
        if self.explicit_int8:
            if self.precision != "int8":
                raise ConfigError(f"a Q/DQ model builds as int8, not {self.precision}")
            if self.calibrator or self.calibration_sha256:
                raise ConfigError("a Q/DQ model carries its INT8 scales: it takes no calibration")
        elif self.precision == "int8":
            if self.calibrator not in CALIBRATORS:
                raise ConfigError(f"calibrator {self.calibrator!r} is not one of {', '.join(CALIBRATORS)}")
            if not self.calibration_sha256:
                raise ConfigError("INT8 needs calibration frames or a calibration cache")
        elif self.calibrator or self.calibration_sha256:
            raise ConfigError(f"calibration applies to int8 only, precision is {self.precision}")
        return self

    @property
    def build_flags(self) -> list[str]:
        """TensorRT BuilderFlag names this build sets."""
        flags = []
        if self.strongly_typed:  # TensorRT 10 refuses precision flags on strongly typed networks
            return ["GPU_FALLBACK"] if self.dla_core >= 0 else []
        if self.precision in ("fp16", "int8"):
            flags.append("FP16")  # INT8 engines keep FP16 for layers without INT8 kernels
        if self.precision == "int8":
            flags.append("INT8")
        if self.dla_core >= 0:
            flags.append("GPU_FALLBACK")
        return flags

    def profile_shapes(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        b = self.batch
        return {name: ((b.min,) + dims, (b.opt,) + dims, (b.max,) + dims) for name, dims in self.inputs}

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = {name: list(dims) for name, dims in self.inputs}
        for k in ("explicit_int8", "strongly_typed"):  # absent when off: the keys of earlier builds hold
            if not d[k]:
                del d[k]
        return d


def make_settings(onnx: OnnxIO, precision: str = "fp16", min_batch: int | None = None,
                  opt_batch: int | None = None, max_batch: int | None = None,
                  workspace_mb: int = 1024, dla_core: int = -1, calibrator: str = "",
                  calibration_sha256: str = "", input_size: int | None = None,
                  default_max_batch: int = 4, strongly_typed: bool = False) -> BuildSettings:
    """Settings for an ONNX model. A dynamic batch gets the profile min..max (defaults 1..
    default_max_batch, opt = max); a fixed batch B allows only B. Dynamic H/W take input_size.
    An explicitly quantized (Q/DQ) model at precision int8 builds without calibration."""
    first = onnx.inputs[0].shape
    if len(first) < 1:
        raise ModelError(f"ONNX input {onnx.inputs[0].name} has no batch dimension")
    static = first[0] if isinstance(first[0], int) else None
    if static is not None:
        asked = {b for b in (min_batch, opt_batch, max_batch) if b is not None}
        if asked - {static}:
            raise ConfigError(f"the model's batch is fixed at {static} (input {onnx.inputs[0].name} "
                              f"{_dims(first)}); export it with a dynamic batch for other sizes")
        batch = BatchProfile(static, static, static)
    else:
        lo = min_batch if min_batch is not None else 1
        hi = max_batch if max_batch is not None else max(default_max_batch, lo)
        batch = BatchProfile(lo, opt_batch if opt_batch is not None else hi, hi)
    inputs = []
    for t in onnx.inputs:
        dims = list(t.shape[1:])
        for i, d in enumerate(dims):
            if not isinstance(d, int):
                # a dynamic H or W of an image input ([N, C, H, W]) takes the requested size
                if input_size and len(t.shape) == 4 and i in (1, 2):
                    dims[i] = int(input_size)
        inputs.append((t.name, tuple(d if isinstance(d, int) else -1 for d in dims)))
    settings = BuildSettings(precision=precision, batch=batch, inputs=tuple(inputs),
                             dynamic_batch=static is None, workspace_mb=int(workspace_mb),
                             dla_core=int(dla_core), calibrator=calibrator if precision == "int8" else "",
                             calibration_sha256=calibration_sha256 if precision == "int8" else "",
                             explicit_int8=bool(onnx.quantized) and precision == "int8",
                             strongly_typed=strongly_typed)
    return settings.validate()


def _dims(shape: Sequence[Any]) -> str:
    return "x".join(str(d) if isinstance(d, int) and d > 0 else "?" for d in shape)


# -- the machine -----------------------------------------------------------------------------------

def short_version(version: str) -> str:
    """TensorRT version as major.minor.patch: engines move between builds of one release."""
    parts = [p for p in str(version).split(".") if p != ""]
    return ".".join(parts[:3]) if parts else str(version)


@dataclass(frozen=True)
class RuntimeIdentity:
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"

    @property
    def sm(self) -> str:
        return "sm_" + self.compute_capability.replace(".", "")

    def describe(self) -> str:
        return f"TensorRT {short_version(self.tensorrt_version)} on '{self.gpu_name}' ({self.sm})"

    def differences(self, other: RuntimeIdentity) -> list[str]:
        diffs = []
        if short_version(self.tensorrt_version) != short_version(other.tensorrt_version):
            diffs.append("TensorRT version")
        if self.compute_capability != other.compute_capability:
            diffs.append("compute capability")
        if self.gpu_name != other.gpu_name:
            diffs.append("GPU")
        return diffs


def cache_key(onnx_sha256: str, settings: BuildSettings, identity: RuntimeIdentity) -> str:
    payload = {
        "format": SIDECAR_FORMAT,
        "onnx_sha256": onnx_sha256,
        "settings": settings.to_json(),
        "tensorrt": short_version(identity.tensorrt_version),
        "gpu": identity.gpu_name,
        "compute_capability": identity.compute_capability,
    }
    return sha256_bytes(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())


def engine_file_name(onnx_path, settings: BuildSettings, key: str) -> str:
    """<stem>.<precision>.b<min>-<max>[.dla<N>].<key>.engine: readable, and unique per build."""
    b = settings.batch
    batch = f"b{b.min}" if b.fixed else f"b{b.min}-{b.max}"
    dla = f".dla{settings.dla_core}" if settings.dla_core >= 0 else ""
    return f"{Path(onnx_path).stem}.{settings.precision}.{batch}{dla}.{key[:KEY_CHARS]}{ENGINE_SUFFIX}"


def engine_path_for(onnx_path, settings: BuildSettings, key: str, cache_dir: str = "") -> Path:
    folder = Path(cache_dir).expanduser() if cache_dir else Path(onnx_path).resolve().parent
    return folder / engine_file_name(onnx_path, settings, key)


# -- sidecar ---------------------------------------------------------------------------------------

def sidecar_path(engine_path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def make_sidecar(*, onnx_path, onnx_sha256: str, settings: BuildSettings, identity: RuntimeIdentity,
                 key: str, engine_sha256: str = "", onnx_metadata: Mapping[str, str] | None = None,
                 calibration: Mapping[str, Any] | None = None, timing_cache: str = "",
                 build_seconds: float | None = None) -> dict[str, Any]:
    from perception_edge import __version__

    onnx_p = Path(onnx_path)
    stat = onnx_p.stat() if onnx_p.is_file() else None
    shapes = settings.profile_shapes()
    return {
        "format": SIDECAR_FORMAT,
        "perception_edge_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tensorrt_version": identity.tensorrt_version,
        "gpu_name": identity.gpu_name,
        "compute_capability": identity.compute_capability,
        "precision": settings.precision,
        "build_flags": settings.build_flags,
        "int8_mode": (("explicit (Q/DQ)" if settings.explicit_int8 else "calibrated")
                      if settings.precision == "int8" else None),
        "strongly_typed": settings.strongly_typed,
        "workspace_mb": settings.workspace_mb,
        "dla_core": settings.dla_core,
        "inputs": [{"name": name, "shape": [-1 if settings.dynamic_batch else settings.batch.max] + list(dims)}
                   for name, dims in settings.inputs],
        "profiles": [{name: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])}
                      for name, s in shapes.items()}],
        "batch": {"min": settings.batch.min, "opt": settings.batch.opt, "max": settings.batch.max},
        "onnx": {"path": str(onnx_p.resolve()) if stat else str(onnx_p), "sha256": onnx_sha256,
                 "size": stat.st_size if stat else None, "mtime_ns": stat.st_mtime_ns if stat else None},
        "calibration": dict(calibration or {}, calibrator=settings.calibrator,
                            sha256=settings.calibration_sha256) if settings.precision == "int8" else None,
        "timing_cache": timing_cache,
        "engine_sha256": engine_sha256,
        "cache_key": key,
        "settings": settings.to_json(),
        "model_metadata": dict(onnx_metadata or {}),
        "build_seconds": build_seconds,
    }


def write_sidecar(engine_path, data: Mapping[str, Any]) -> Path:
    path = sidecar_path(engine_path)
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    return path


def read_sidecar(engine_path) -> dict[str, Any]:
    """The sidecar's contents; ModelError when missing or unreadable (the message says which)."""
    path = sidecar_path(engine_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"engine {Path(engine_path).name} has no sidecar {path.name}") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"sidecar {path} is unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ModelError(f"sidecar {path} is unreadable (not a JSON object)")
    missing = [k for k in ("tensorrt_version", "gpu_name", "compute_capability", "precision") if k not in data]
    if missing:
        raise ModelError(f"sidecar {path} is unreadable (missing {', '.join(missing)})")
    return data


def sidecar_identity(data: Mapping[str, Any]) -> RuntimeIdentity:
    return RuntimeIdentity(str(data["tensorrt_version"]), str(data["gpu_name"]), str(data["compute_capability"]))


def sidecar_batch_profiles(data: Mapping[str, Any]) -> list[BatchProfile]:
    out = []
    for profile in data.get("profiles") or []:
        first = next(iter(profile.values()), None)
        if first:
            out.append(BatchProfile(first["min"][0], first["opt"][0], first["max"][0]))
    return out


def rebuild_command(data: Mapping[str, Any] | None, engine_path=None) -> str:
    """The build-engine command line that recreates an engine from what its sidecar recorded."""
    if not data:
        args = ["perception-edge", "build-engine", "MODEL.onnx"]
        if engine_path:
            args += ["--output", str(engine_path)]
        return " ".join(shlex.quote(a) for a in args)
    onnx = (data.get("onnx") or {}).get("path") or "MODEL.onnx"
    args = ["perception-edge", "build-engine", onnx, "--precision", str(data.get("precision", "fp16"))]
    batch = data.get("batch") or {}
    if batch:
        if batch["min"] == batch["max"]:
            args += ["--batch", str(batch["min"])]
        else:
            args += ["--min-batch", str(batch["min"]), "--opt-batch", str(batch["opt"]),
                     "--max-batch", str(batch["max"])]
    if data.get("workspace_mb"):
        args += ["--workspace-mb", str(data["workspace_mb"])]
    if int(data.get("dla_core", -1)) >= 0:
        args += ["--dla-core", str(data["dla_core"])]
    if data.get("strongly_typed"):
        args.append("--strongly-typed")
    calib = data.get("calibration") or {}
    if calib.get("source"):
        args += ["--calibration", str(calib["source"])]
        if calib.get("topic"):
            args += ["--calibration-topic", str(calib["topic"])]
        if calib.get("frames"):
            args += ["--calibration-frames", str(calib["frames"])]
    if calib.get("calibrator"):
        args += ["--calibrator", str(calib["calibrator"])]
    if calib.get("cache"):
        args += ["--calibration-cache", str(calib["cache"])]
    if engine_path:
        args += ["--output", str(engine_path)]
    return " ".join(shlex.quote(a) for a in args)


@dataclass
class EngineCheck:
    sidecar: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)


def check_engine(engine_path, expected: RuntimeIdentity, *, require_sidecar: bool = True,
                 engine_sha256: str | None = None, key: str | None = None,
                 check_onnx: bool = True) -> EngineCheck:
    """Refuse (ModelError) an engine that does not fit this machine or is stale; say what differs.

    require_sidecar=False is the user's explicit opt-out (engine.check_sidecar false): problems then
    become warnings, returned for the caller to log, and loading goes on.
    """
    engine_path = Path(engine_path)
    name = engine_path.name
    problems: list[str] = []
    try:
        data: dict[str, Any] | None = read_sidecar(engine_path)
    except ModelError as e:
        data = None
        problems.append(f"{e} (its TensorRT version, GPU and source model are unknown, so it may be stale "
                        f"or built for another device): rebuild with {rebuild_command(None, engine_path)}, "
                        "or set engine.check_sidecar false to load it unchecked")
    if data is not None:
        recorded = sidecar_identity(data)
        diffs = recorded.differences(expected)
        cmd = rebuild_command(data, engine_path)
        if diffs:
            problems.append(f"engine {name} was built with {recorded.describe()}, this is "
                            f"{expected.describe()} ({', '.join(diffs)} differ): rebuild with {cmd}")
        if key is not None and data.get("cache_key") != key:
            problems.append(f"sidecar of engine {name} records other build settings (cache key "
                            f"{str(data.get('cache_key'))[:KEY_CHARS]}, expected {key[:KEY_CHARS]}): rebuild with {cmd}")
        recorded_engine = data.get("engine_sha256")
        if engine_sha256 and recorded_engine and recorded_engine != engine_sha256:
            problems.append(f"engine {name} is not the file its sidecar describes (sha256 "
                            f"{engine_sha256[:12]}, sidecar {recorded_engine[:12]}): it was replaced after "
                            f"the build; rebuild with {cmd}")
        if check_onnx:
            stale = onnx_staleness(data, engine_path)
            if stale:
                problems.append(f"engine {name} is stale: {stale}; rebuild with {cmd}")
    if problems and require_sidecar:
        raise ModelError(problems[0] if len(problems) == 1 else "; ".join(problems))
    return EngineCheck(data, [f"{p} (loaded anyway: engine.check_sidecar is false)" for p in problems])


def onnx_staleness(data: Mapping[str, Any], engine_path=None) -> str:
    """'' when the ONNX model an engine was built from is unchanged or no longer present (a deployed
    engine may travel alone); else what changed. Size and mtime spare hashing an unchanged file."""
    onnx = data.get("onnx") or {}
    path = onnx.get("path")
    if not path or not onnx.get("sha256"):
        return ""
    p = Path(path)
    if not p.is_absolute() and engine_path is not None:
        p = Path(engine_path).parent / p
    if not p.is_file():
        return ""
    stat = p.stat()
    if stat.st_size == onnx.get("size") and stat.st_mtime_ns == onnx.get("mtime_ns"):
        return ""
    now = sha256_file(p)
    if now == onnx["sha256"]:
        return ""
    return (f"its model {p} changed after the build (sha256 {onnx['sha256'][:12]} at build time, "
            f"{now[:12]} now)")


# -- batch profiles --------------------------------------------------------------------------------

def choose_profile(profiles: Sequence[BatchProfile], n: int) -> int | None:
    """Index of the profile that serves batch n (the one whose opt is nearest, then the narrowest),
    or None when none does."""
    best = None
    for i, p in enumerate(profiles):
        if p.serves(n):
            rank = (abs(p.opt - n), p.max - p.min, i)
            if best is None or rank < best[0]:
                best = (rank, i)
    return None if best is None else best[1]


def split_batch(n: int, profiles: Sequence[BatchProfile]) -> list[int]:
    """Call sizes for n frames: as many of the largest batch as fit, then the rest; a rest no profile
    takes is padded up to the smallest size one does (the preprocessor fills empty slots)."""
    if n <= 0:
        return []
    if not profiles:
        raise ModelError("engine has no optimization profile")
    largest = max(p.max for p in profiles)
    sizes = [largest] * (n // largest)
    rest = n % largest
    if rest:
        if choose_profile(profiles, rest) is not None:
            sizes.append(rest)
        else:
            sizes.append(min(max(rest, p.min) for p in profiles if max(rest, p.min) <= p.max))
    return sizes


__all__ = [
    "PRECISIONS", "CALIBRATORS", "BatchProfile", "BuildSettings", "RuntimeIdentity", "EngineCheck",
    "make_settings", "cache_key", "engine_file_name", "engine_path_for", "sidecar_path", "make_sidecar",
    "write_sidecar", "read_sidecar", "check_engine", "onnx_staleness", "choose_profile", "split_batch",
    "rebuild_command", "short_version", "sidecar_identity", "sidecar_batch_profiles",
]
