"""ONNX Runtime backend and the backend factory: model I/O reporting and one-line errors."""
from __future__ import annotations

import numpy as np
import pytest

from perception_edge.backends import create_backend
from perception_edge.core.errors import ConfigError, InputError, ModelError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx_graphs import identity_head_graph, segmentation_graph  # noqa: E402


def test_reports_inputs_outputs_and_dynamic_batch(tmp_path):
    b = create_backend(str(segmentation_graph(tmp_path / "seg.onnx", classes=3)))
    assert b.name == "onnxruntime" and b.input.name == "images"
    assert b.input.shape[1:] == (3, 96, 128) and b.input.dynamic_batch and b.max_batch is None
    assert b.outputs[0].shape[1:] == (3, 24, 32) and b.input.dtype == np.float32
    assert b.batch_sizes(5) == [5]
    out = b.run(np.zeros((2, 3, 96, 128), np.float32))
    assert out[0].shape == (2, 3, 24, 32)


def test_fixed_batch_model_splits_and_pads(tmp_path):
    b = create_backend(str(segmentation_graph(tmp_path / "seg.onnx", batch=2)))
    assert b.max_batch == 2 and b.batch_sizes(3) == [2, 2] and b.batch_sizes(2) == [2]


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="model file not found: .*nope.onnx"):
        create_backend(str(tmp_path / "nope.onnx"))


def test_corrupt_model_file(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    with pytest.raises(ModelError, match="cannot load ONNX model .*corrupt.onnx"):
        create_backend(str(path))


def test_unknown_backend_and_engine_on_onnxruntime(tmp_path):
    path = segmentation_graph(tmp_path / "seg.onnx")
    with pytest.raises(ConfigError, match="unknown backend 'openvino'"):
        create_backend(str(path), "openvino")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    with pytest.raises(ModelError, match="TensorRT engine"):
        create_backend(str(engine), "onnxruntime")


def test_wrong_input_shape_and_dtype(tmp_path):
    b = create_backend(str(segmentation_graph(tmp_path / "seg.onnx")))
    with pytest.raises(InputError, match=r"input tensor shape \(1, 3, 64, 64\) does not fit the model input images \[\?x3x96x128\]"):
        b.run(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(InputError, match="float64"):
        b.run(np.zeros((1, 3, 96, 128), np.float64))


@pytest.mark.parametrize("shape,match", [((1, 84, 8400), "YOLOv8-style"), ((1, 100), "no supported detection layout"),
                                         ((1, 100, 4), "no supported detection layout")])
def test_detector_rejects_unsupported_layouts(tmp_path, shape, match):
    from perception_edge.pipeline import Detector

    b = create_backend(str(identity_head_graph(tmp_path / "odd.onnx", shape)))
    with pytest.raises(ModelError, match=match):
        Detector(b)


def test_cli_prints_one_line_errors(tmp_path, capsys):
    from perception_edge.cli import main

    img = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(img), np.zeros((10, 10, 3), np.uint8))
    assert main(["detect", "--model", str(tmp_path / "missing.onnx"), "--output", str(tmp_path / "o"), str(img)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"perception-edge detect: error: model file not found: {tmp_path / 'missing.onnx'}"]
    seg = segmentation_graph(tmp_path / "seg.onnx")
    assert main(["detect", "--model", str(seg), "--output", str(tmp_path / "o"), str(img)]) == 1
    assert "no supported detection layout" in capsys.readouterr().err
    assert main(["segment", "--model", str(seg), "--output", str(tmp_path / "o"), str(tmp_path / "nope.png")]) == 1
    assert capsys.readouterr().err.strip() == f"perception-edge segment: error: cannot read image {tmp_path / 'nope.png'}"
    assert main(["detect", "--model", str(seg), "--conf-thres", "1.5", "--output", "o", str(img)]) == 1
    assert "outside [0.0, 1.0]" in capsys.readouterr().err


def test_onnxruntime_memory_settings_follow_the_schema(tmp_path):
    """The backend's own defaults are the schema's (every front door gets the bounded footprint),
    and configured values reach the session."""
    import inspect

    import onnxruntime as ort

    from perception_edge import config
    from perception_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    defaults = inspect.signature(OnnxRuntimeBackend.__init__).parameters
    for name in ("cpu_arena", "memory_pattern", "graph_optimization"):
        assert defaults[name].default == config.BY_NAME[f"onnxruntime.{name}"].default, name
    path = str(segmentation_graph(tmp_path / "seg.onnx"))
    b = create_backend(path, onnxruntime={"cpu_arena": False, "memory_pattern": True, "graph_optimization": "basic"})
    opts = b.session.get_session_options()
    assert (opts.enable_cpu_mem_arena, opts.enable_mem_pattern) == (False, True)
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts = create_backend(path).session.get_session_options()
    assert (opts.enable_cpu_mem_arena, opts.enable_mem_pattern) == (True, False)
    with pytest.raises(ConfigError, match="graph_optimization"):
        create_backend(path, onnxruntime={"graph_optimization": "turbo"})


def test_threads_are_split_between_concurrent_models():
    from perception_edge.pipeline import threads_per_model

    assert threads_per_model(0, 1, cores=8) == 0  # one model: the runtime's default
    assert threads_per_model(0, 2, cores=8) == 4 and threads_per_model(0, 2, cores=2) == 1
    assert threads_per_model(0, 3, cores=2) == 1  # never below one
    assert threads_per_model(3, 2, cores=8) == 3  # an explicit value wins


def test_auto_graph_optimization_per_model_kind(tmp_path):
    import onnxruntime as ort

    from perception_edge import config
    from perception_edge.pipeline import backend_for

    path = str(segmentation_graph(tmp_path / "seg.onnx"))
    cfg = config.Sections.defaults()
    level = {k: backend_for(cfg, path, kind=k).session.get_session_options().graph_optimization_level
             for k in ("detection", "segmentation")}
    assert level == {"detection": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                     "segmentation": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}
    fixed = cfg.replace(**{"onnxruntime.graph_optimization": "all"})
    assert backend_for(fixed, path, kind="segmentation").session.get_session_options().graph_optimization_level \
        == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
