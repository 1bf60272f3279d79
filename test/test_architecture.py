"""Import structure of the package, read from the source (ast; nothing is imported): no import cycle
between files, and imports that point one way through the layers (docs in README, Layout).

    cli         perception_edge.cli: argparse + main per command; may import anything; nothing imports it
    tools       perception_edge.tools: deprecated aliases of old paths (cli layer); only tools imports tools
    apps        evaluation -> pipeline, backends, data, core; replay -> nodes, config, data, core;
                engine_request -> backends, config, data, core; model_cache -> models, data, core;
                offline_replay -> pipeline, config, data, core (nodes.parameters: model paths);
                bag_report -> data, core
                compression -> evaluation, training, models, pipeline, backends, data, core
    sim         sim -> pipeline, config, data, core (no rclpy); carla_ros -> sim, data, core
    nodes       nodes -> pipeline, backends, sources, config, core
    sources     sources -> data, config, core (camera / stream / file readers: GStreamer, OpenCV; no ROS)
    pipeline    pipeline -> backends, config, core
    training    training -> models, data, core
    backends    backends -> config, core; backends/tensorrt -> core and backends.base only
    config      config -> core (the schema and its typed sections: pure Python)
    models      models -> core
    data        data -> core
    core        numpy / OpenCV; never rclpy, ROS messages, onnxruntime, tensorrt, CUDA or torch

Every import counts, also those inside functions (imported lazily, they still tie the modules together).
Violations that a later change is meant to remove go in EXPECTED with the reason; each is an xfail
(strict) of its own, so it turns into a failure once fixed and must then leave the list.
"""
from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "perception_edge"
PKG = ROOT.name
CLI = (f"{PKG}.cli", f"{PKG}.tools")  # the command line, and the deprecated aliases of its old paths

# layer -> the package parts it may import (besides itself, its own sub-modules and the root package,
# which holds only __version__). The first matching prefix wins, so sub-layers come first.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (f"{PKG}.backends.tensorrt", (f"{PKG}.core", f"{PKG}.backends.base")),
    (f"{PKG}.backends", (f"{PKG}.core", f"{PKG}.config")),
    (f"{PKG}.core", ()),
    (f"{PKG}.config", (f"{PKG}.core",)),
    (f"{PKG}.data", (f"{PKG}.core",)),
    (f"{PKG}.models", (f"{PKG}.core",)),
    (f"{PKG}.sources", (f"{PKG}.core", f"{PKG}.config", f"{PKG}.data")),  # cameras, streams, files (ROS-free)
    (f"{PKG}.training", (f"{PKG}.core", f"{PKG}.data", f"{PKG}.models")),
    (f"{PKG}.pipeline", (f"{PKG}.core", f"{PKG}.backends", f"{PKG}.config")),
    (f"{PKG}.nodes", (f"{PKG}.core", f"{PKG}.backends", f"{PKG}.pipeline", f"{PKG}.config", f"{PKG}.sources")),
    # library modules the commands share (one concern each, above the nodes / pipeline)
    (f"{PKG}.evaluation", (f"{PKG}.core", f"{PKG}.backends", f"{PKG}.pipeline", f"{PKG}.data")),
    (f"{PKG}.replay", (f"{PKG}.core", f"{PKG}.config", f"{PKG}.data", f"{PKG}.nodes")),
    (f"{PKG}.engine_request", (f"{PKG}.core", f"{PKG}.config", f"{PKG}.data", f"{PKG}.backends")),
    (f"{PKG}.model_cache", (f"{PKG}.core", f"{PKG}.data", f"{PKG}.models")),
    # rosbag replay without middleware (models -> results bag), and the evaluation of results bags
    (f"{PKG}.offline_replay", (f"{PKG}.core", f"{PKG}.config", f"{PKG}.data", f"{PKG}.pipeline",
                               f"{PKG}.nodes.parameters")),
    (f"{PKG}.bag_report", (f"{PKG}.core", f"{PKG}.data")),
    # simulation loops: ROS-free (CARLA's client is imported lazily); carla_ros is their ROS side
    (f"{PKG}.sim", (f"{PKG}.core", f"{PKG}.config", f"{PKG}.data", f"{PKG}.pipeline")),
    (f"{PKG}.carla_ros", (f"{PKG}.core", f"{PKG}.data", f"{PKG}.sim")),
    (f"{PKG}.compression", (f"{PKG}.core", f"{PKG}.backends", f"{PKG}.pipeline", f"{PKG}.data", f"{PKG}.evaluation",
                            f"{PKG}.models", f"{PKG}.training")),
]
CORE_FORBIDDEN = ("rclpy", "rcl_interfaces", "builtin_interfaces", "std_msgs", "sensor_msgs", "vision_msgs",
                  "diagnostic_msgs", "onnxruntime", "onnx", "tensorrt", "pycuda", "cuda", "torch", "torchvision")

# (importer, imported) -> why it is still there. Empty: today's layout keeps every rule.
EXPECTED: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts)
        mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> list[str]:
    """Every module name an import statement of this file refers to (absolute, dotted)."""
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            out += [src] + [f"{src}.{a.name}" for a in node.names]
    return out


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


RAW = {m: _imports(m, p) for m, p in MODULES.items()}
EDGES: dict[str, set[str]] = {
    m: {t for t in (_resolve(n) for n in names if n == PKG or n.startswith(PKG + ".")) if t and t != m}
    for m, names in RAW.items()}


def _inside(module: str, part: str) -> bool:
    return module == part or module.startswith(part + ".")


def _layer(module: str) -> tuple[str, tuple[str, ...]] | None:
    return next(((part, allowed) for part, allowed in LAYERS if _inside(module, part)), None)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one file (Tarjan), without those made only of a
    package and its own modules (an __init__ re-exporting its children)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in EDGES[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10000))
    try:
        for v in MODULES:
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return [c for c in found
            if not all(any(_inside(o, x) or _inside(x, o) for o in c if o != x) for x in c)]


def _layer_breaks(edges: dict[str, set[str]] | None = None) -> set[tuple[str, str]]:
    bad = set()
    for m, targets in (EDGES if edges is None else edges).items():
        if any(_inside(m, c) for c in CLI):
            continue
        for t in targets:
            if any(_inside(t, c) for c in CLI):
                bad.add((m, t))
                continue
            layer = _layer(m)
            if layer is None or t == PKG or _inside(t, layer[0]):
                continue
            if not any(_inside(t, ok) for ok in layer[1]):
                bad.add((m, t))
    return bad


def test_the_walk_sees_the_package():
    """The walk finds every part of the package and the imports between them (guards the test itself)."""
    assert {f"{PKG}.core.sync", f"{PKG}.backends.tensorrt.runtime", f"{PKG}.cli", f"{PKG}.cli.detect",
            f"{PKG}.tools.cli", f"{PKG}.pipeline", f"{PKG}.data.frame_sources", f"{PKG}.training.loop"} <= set(MODULES)
    assert f"{PKG}.core.transform" in EDGES[f"{PKG}.core.preprocess"]
    assert f"{PKG}.backends.tensorrt.cache" in EDGES[f"{PKG}.backends.tensorrt.runtime"]
    assert all(_layer(m) is not None or any(_inside(m, c) for c in CLI) or m == PKG for m in MODULES), \
        [m for m in MODULES if _layer(m) is None and not any(_inside(m, c) for c in CLI) and m != PKG]


def test_no_import_cycles_between_files():
    assert _cycles() == []


def test_imports_point_one_way_through_the_layers():
    unexpected = sorted(_layer_breaks() - set(EXPECTED))
    assert not unexpected, "\n".join(f"{m} imports {t}" for m, t in unexpected)


@pytest.mark.parametrize("edge", sorted(EXPECTED), ids=lambda e: f"{e[0]}->{e[1]}")
def test_expected_layer_breaks(edge):
    if edge in _layer_breaks():
        pytest.xfail(EXPECTED[edge])
    pytest.fail(f"{edge[0]} no longer imports {edge[1]}: remove it from EXPECTED")


def test_a_library_module_importing_the_cli_is_caught():
    """The rule itself: an import of cli (or of the deprecated tools) from the library is a break, from
    cli or tools it is not (guards the check against a layer table that lets everything through)."""
    fake = {f"{PKG}.pipeline": {f"{PKG}.cli.detect"}, f"{PKG}.evaluation": {f"{PKG}.tools.cli"},
            f"{PKG}.core.sync": {f"{PKG}.cli"}, f"{PKG}.cli.bench": {f"{PKG}.nodes.detection", f"{PKG}.evaluation"},
            f"{PKG}.tools.cli": {f"{PKG}.cli"}}
    assert _layer_breaks(fake) == {(f"{PKG}.pipeline", f"{PKG}.cli.detect"),
                                   (f"{PKG}.evaluation", f"{PKG}.tools.cli"), (f"{PKG}.core.sync", f"{PKG}.cli")}


def test_nothing_imports_cli_and_only_the_aliases_import_tools():
    importers = {m: sorted(t for t in ts if any(_inside(t, c) for c in CLI)) for m, ts in EDGES.items()}
    bad = {m: ts for m, ts in importers.items() if ts and not (
        _inside(m, f"{PKG}.tools") or (_inside(m, f"{PKG}.cli") and all(_inside(t, f"{PKG}.cli") for t in ts)))}
    assert not bad, bad


def test_every_command_lives_in_cli_and_has_a_main():
    from perception_edge.cli import COMMANDS

    for name, (module, func, _) in COMMANDS.items():
        assert _inside(module, f"{PKG}.cli") and module in MODULES, (name, module)
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        assert any(isinstance(n, ast.FunctionDef) and n.name == func for n in tree.body), (name, module, func)


def test_core_stays_free_of_runtimes_and_ros():
    bad = [(m, n) for m, names in RAW.items() if _inside(m, f"{PKG}.core")
           for n in names if n.split(".")[0] in CORE_FORBIDDEN]
    assert not bad, bad


def test_sim_stays_free_of_ros():
    ros = ("rclpy", "rcl_interfaces", "builtin_interfaces", "std_msgs", "sensor_msgs", "vision_msgs")
    bad = [(m, n) for m, names in RAW.items() if _inside(m, f"{PKG}.sim") for n in names if n.split(".")[0] in ros]
    assert not bad and any(_inside(m, f"{PKG}.sim") for m in RAW), bad


def test_model_optimizer_is_imported_lazily_by_training_and_models_only():
    """nvidia-modelopt (the optional extra [qat]) is a training-time tool: never imported by the runtime,
    and inside training/ and models/ only within functions (importing those modules does not need it)."""
    bad = [(m, n) for m, names in RAW.items() for n in names if n.split(".")[0] == "modelopt"
           and not (_inside(m, f"{PKG}.training") or _inside(m, f"{PKG}.models"))]
    assert not bad, bad
    top_level = []
    for m, path in MODULES.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            top_level += [(m, n) for n in names if n.split(".")[0] == "modelopt"]
    assert not top_level, top_level
    assert any(n.split(".")[0] == "modelopt" for n in RAW[f"{PKG}.training.qat"])  # guards the walk


def test_tensorrt_package_imports_only_core_and_backend_base():
    bad = [(m, t) for m, ts in EDGES.items() if _inside(m, f"{PKG}.backends.tensorrt") for t in ts
           if not (t == PKG or _inside(t, f"{PKG}.core") or t == f"{PKG}.backends.base"
                   or _inside(t, f"{PKG}.backends.tensorrt"))]
    assert not bad, bad


# -- old import paths keep working, with a DeprecationWarning ---------------------------------------

MOVED = [  # (old module, name, new module[:new name])
    ("perception_edge.backends.tensorrt_backend", "TensorRTBackend", "perception_edge.backends.tensorrt.runtime"),
    ("perception_edge.backends.tensorrt_backend", "create_tensorrt_backend",
     "perception_edge.backends.tensorrt.loader"),
    ("perception_edge.backends.tensorrt_backend", "cuda_memory", "perception_edge.backends.tensorrt.cuda"),
    ("perception_edge.backends.engine_cache", "check_engine", "perception_edge.backends.tensorrt.cache"),
    ("perception_edge.backends.engine_cache", "read_onnx_io", "perception_edge.backends.tensorrt.onnx_io"),
    ("perception_edge.backends.engine_cache", "sha256_file", "perception_edge.core.files"),
    ("perception_edge.tools.frame_sources", "iter_frames", "perception_edge.data.frame_sources"),
    ("perception_edge.tools.frame_sources", "Frame", "perception_edge.data.frame_sources:SourceFrame"),
    ("perception_edge.tools.build_engine", "CalibrationBatches", "perception_edge.core.calibration"),
    ("perception_edge.tools.build_engine", "build_command", "perception_edge.backends.tensorrt.commands"),
    ("perception_edge.tools.build_engine", "resolve", "perception_edge.engine_request"),
    ("perception_edge.tools.build_engine", "BuildRequest", "perception_edge.engine_request"),
    ("perception_edge.tools.build_engine", "main", "perception_edge.cli.build_engine"),
    ("perception_edge.tools.cli", "main", "perception_edge.cli"),
    ("perception_edge.tools.cli", "COMMANDS", "perception_edge.cli"),
    ("perception_edge.tools.infer", "main_detect", "perception_edge.cli.detect:main"),
    ("perception_edge.tools.infer", "main_segment", "perception_edge.cli.segment:main"),
    ("perception_edge.tools.evaluate", "load_model", "perception_edge.evaluation"),
    ("perception_edge.tools.evaluate", "HELD_OUT_SEED", "perception_edge.evaluation"),
    ("perception_edge.tools.evaluate", "main", "perception_edge.cli.evaluate"),
    ("perception_edge.tools.quantize", "quantize_model", "perception_edge.models.quantize"),
    ("perception_edge.tools.quantize", "main", "perception_edge.cli.quantize"),
    ("perception_edge.tools.replay", "run", "perception_edge.replay"),
    ("perception_edge.tools.replay", "Collector", "perception_edge.replay"),
    ("perception_edge.tools.replay", "main", "perception_edge.cli.replay"),
    ("perception_edge.tools.model_cache", "yolov5_onnx", "perception_edge.model_cache"),
    ("perception_edge.tools.bench", "bench", "perception_edge.cli.bench"),
    ("perception_edge.tools.bench_ros", "main", "perception_edge.cli.bench_ros"),
    ("perception_edge.tools.bench_reliability", "main", "perception_edge.cli.bench_reliability"),
    ("perception_edge.tools.generate_data", "main", "perception_edge.cli.generate_data"),
    ("perception_edge.tools.import_carla", "main", "perception_edge.cli.import_carla"),
    ("perception_edge.tools.demo", "main", "perception_edge.cli.demo"),
    ("perception_edge.tools.train_det", "main", "perception_edge.cli.train_det"),
    ("perception_edge.tools.train_seg", "main", "perception_edge.cli.train_seg"),
    ("perception_edge.tools.train_det", "YoloLoss", "perception_edge.training.detection"),
    ("perception_edge.tools.train_det", "store_weights_fp16", "perception_edge.training.detection"),
    ("perception_edge.tools.train_seg", "seg_loss", "perception_edge.training.segmentation"),
    ("perception_edge.data.synthetic", "Frame", "perception_edge.data.synthetic:SyntheticFrame"),
    ("perception_edge.pipeline", "Image", "perception_edge.pipeline:ImageInput"),
]
ALIAS_MODULES = ("perception_edge.backends.tensorrt_backend", "perception_edge.backends.engine_cache",
                 *sorted({old for old, _, _ in MOVED if old.startswith("perception_edge.tools.")})
                 )  # whole modules that warn when imported


@pytest.mark.parametrize("old, name, new", MOVED, ids=lambda v: v.rsplit(".", 1)[-1])
def test_old_import_paths_still_work_and_warn(old, name, new):
    new_module, _, new_name = new.partition(":")
    if old in ALIAS_MODULES:
        sys.modules.pop(old, None)  # imported afresh, so that the import warns here
    with pytest.warns(DeprecationWarning, match="deprecated|moved|is now"):
        obj = getattr(importlib.import_module(old), name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new home itself does not warn
        assert obj is getattr(importlib.import_module(new_module), new_name or name)
