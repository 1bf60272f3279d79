"""TensorRT on a real GPU (Jetson or desktop): engines built from small generated ONNX models with
build-engine, compared with ONNX Runtime. Skipped where TensorRT is not installed.

    python3 -m pytest -m gpu test/gpu
"""
from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

try:
    import tensorrt as trt
except Exception:  # ImportError, or OSError when the package is there but libnvinfer is not
    pytest.skip("tensorrt not installed", allow_module_level=True)

from perception_edge.backends import create_backend  # noqa: E402
from perception_edge.backends.tensorrt import cuda as trt_cuda  # noqa: E402
from perception_edge.backends.tensorrt import loader, runtime  # noqa: E402
from perception_edge.backends.tensorrt.cache import read_sidecar, sidecar_path  # noqa: E402
from perception_edge.core.errors import InputError, ModelError  # noqa: E402
from perception_edge.cli import build_engine as be  # noqa: E402

TOL = dict(atol=3e-2, rtol=3e-2)  # FP16 (and TF32 for FP32 engines) against FP32 ONNX Runtime


@pytest.fixture(scope="module", autouse=True)
def gpu_memory():
    try:
        return trt_cuda.cuda_memory()
    except ModelError as e:
        pytest.skip(f"no GPU memory access: {e}")


def tiny_net(path, size=64):
    """A small YOLOv5-shaped graph: conv3x3 -> relu -> conv1x1 to 85 channels as [batch, boxes, 85]
    ("output0"), plus an int32 output that is 7 for every image ("num_dets")."""
    from onnx import TensorProto, helper, numpy_helper

    from onnx_graphs import save

    rng = np.random.default_rng(0)
    init = {
        "w1": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
        "b1": (rng.standard_normal(8) * 0.1).astype(np.float32),
        "w2": (rng.standard_normal((85, 8, 1, 1)) * 0.3).astype(np.float32),
        "b2": np.zeros(85, np.float32),
        "flat_shape": np.array([0, 85, -1], np.int64),
        "zero": np.array(0.0, np.float32),
        "seven": np.array(7.0, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[1, 1]),
        helper.make_node("Reshape", ["c2", "flat_shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["output0"], perm=[0, 2, 1]),
        helper.make_node("Mul", ["images", "zero"], ["z"]),
        helper.make_node("Add", ["z", "seven"], ["s"]),
        helper.make_node("ReduceMax", ["s"], ["m"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Flatten", ["m"], ["mf"], axis=1),
        helper.make_node("Cast", ["mf"], ["num_dets"], to=TensorProto.INT32),
    ]
    return save(nodes, [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, size, size])],
                [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", size * size, 85]),
                 helper.make_tensor_value_info("num_dets", TensorProto.INT32, ["batch", 1])],
                [numpy_helper.from_array(v, k) for k, v in init.items()], path,
                metadata={"stride": "32", "names": "{0: 'car'}"})


def ort_run(path, x):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("onnx")
    return tiny_net(tmp_path_factory.mktemp("trt") / "tiny.onnx")


@pytest.fixture(scope="module")
def fp16_engine(tiny):
    engine = tiny.parent / "tiny.fp16.engine"
    timing = tiny.parent / "timing.cache"
    assert be.main([str(tiny), "--precision", "fp16", "--max-batch", "4", "--output", str(engine),
                    "--timing-cache", str(timing)]) == 0
    assert engine.is_file() and sidecar_path(engine).is_file() and timing.is_file()
    return engine


def test_fp16_engine_matches_onnxruntime_for_batches_1_to_4(tiny, fp16_engine):
    side = read_sidecar(fp16_engine)
    assert side["precision"] == "fp16" and side["build_flags"] == ["FP16"]
    assert side["tensorrt_version"] == trt.__version__
    backend = create_backend(str(fp16_engine), "tensorrt")
    try:
        assert isinstance(backend, runtime.TensorRTBackend)
        assert backend.inputs[0].shape == (None, 3, 64, 64) and backend.max_batch == 4
        assert [o.name for o in backend.outputs] == ["output0", "num_dets"]
        assert backend.outputs[1].dtype == np.int32
        assert backend.metadata["stride"] == "32"  # ONNX metadata travels in the sidecar
        rng = np.random.default_rng(1)
        for n in (1, 2, 3, 4, 1):
            x = rng.random((n, 3, 64, 64), dtype=np.float32)
            got, ref = backend.run(x), ort_run(tiny, x)
            assert got[0].shape == (n, 4096, 85) and got[1].shape == (n, 1)
            np.testing.assert_allclose(got[0], ref[0], **TOL)
            assert got[1].dtype == np.int32 and (got[1] == 7).all()
        with pytest.raises(InputError, match="outside the engine's profiles"):
            backend.run(np.zeros((5, 3, 64, 64), np.float32))
        assert backend.batch_sizes(6) == [4, 2]
    finally:
        backend.close()


def test_rebuild_reuses_the_timing_cache(tiny, fp16_engine, tmp_path, capsys):
    assert be.main([str(tiny), "--batch", "1", "--output", str(tmp_path / "b1.engine"),
                    "--timing-cache", str(tiny.parent / "timing.cache")]) == 0
    assert "reusing timing cache" in capsys.readouterr().out


def test_detector_splits_batches_over_the_engine(fp16_engine):
    from perception_edge.pipeline import Detector

    backend = create_backend(str(fp16_engine), "tensorrt")
    try:
        detector = Detector(backend, conf_threshold=0.9)
        rng = np.random.default_rng(2)
        frames = [(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), "bgr") for _ in range(6)]
        assert len(detector(frames)) == 6
        assert detector.inference_calls == 2  # 4 + 2
    finally:
        backend.close()


def test_api_generations_and_cuda_libraries_agree(fp16_engine):
    apis = [runtime.API_TENSORS] if hasattr(trt.IExecutionContext, "execute_async_v3") else []
    if hasattr(trt.ICudaEngine, "num_bindings"):  # TensorRT 8.x
        apis.append(runtime.API_BINDINGS)
    x = np.random.default_rng(3).random((3, 3, 64, 64), dtype=np.float32)
    results = {}
    for kind in ("pycuda", "cuda-python"):
        try:
            memory = trt_cuda.cuda_memory(kind)
        except ModelError:
            continue
        for api in apis:
            backend = runtime.TensorRTBackend(str(fp16_engine), sidecar=read_sidecar(fp16_engine), api=api, cuda=memory)
            try:
                assert backend.api == api
                results[(api, kind)] = backend.run(x)[0]
            finally:
                backend.close()
    assert results
    first = next(iter(results.values()))
    for key, out in results.items():
        np.testing.assert_allclose(out, first, atol=1e-5, err_msg=str(key))


def test_fixed_batch_fp32_engine(tiny, tmp_path):
    engine = tmp_path / "tiny.fp32.b2.plan"
    assert be.main([str(tiny), "--precision", "fp32", "--batch", "2", "--output", str(engine)]) == 0
    backend = create_backend(str(engine), "tensorrt")
    try:
        assert backend.inputs[0].shape == (2, 3, 64, 64) and backend.batch_sizes(3) == [2, 2]
        x = np.random.default_rng(4).random((2, 3, 64, 64), dtype=np.float32)
        np.testing.assert_allclose(backend.run(x)[0], ort_run(tiny, x)[0], **TOL)
    finally:
        backend.close()


def test_mismatched_or_missing_sidecar_is_refused(tiny, fp16_engine, tmp_path):
    engine = tmp_path / "copy.engine"
    shutil.copy(fp16_engine, engine)
    side = read_sidecar(fp16_engine)
    side.update(tensorrt_version="8.5.2.2", gpu_name="Xavier", compute_capability="7.2")
    sidecar_path(engine).write_text(json.dumps(side))
    with pytest.raises(ModelError, match=r"was built with TensorRT 8\.5\.2 on 'Xavier' \(sm_72\), this is TensorRT "):
        create_backend(str(engine), "tensorrt")
    backend = create_backend(str(engine), "tensorrt", engine={"check_sidecar": False})  # explicit opt-out
    backend.run(np.zeros((1, 3, 64, 64), np.float32))
    backend.close()
    # the model the engine was built from changed since: stale
    side = read_sidecar(fp16_engine)
    changed = tmp_path / "changed.onnx"
    changed.write_bytes(tiny.read_bytes() + b"\0")
    side["onnx"]["path"] = str(changed)
    sidecar_path(engine).write_text(json.dumps(side))
    with pytest.raises(ModelError, match="is stale"):
        create_backend(str(engine), "tensorrt")
    sidecar_path(engine).unlink()
    with pytest.raises(ModelError, match="has no sidecar"):
        create_backend(str(engine), "tensorrt")


def test_onnx_model_goes_through_the_engine_cache(tiny, tmp_path):
    options = {"cache_dir": str(tmp_path / "engines"), "max_batch": 2}
    with pytest.raises(ModelError, match="perception-edge build-engine") as err:
        create_backend(str(tiny), "tensorrt", engine=options)
    args = shlex.split(str(err.value).split("`")[1])  # the command the message names, run as is
    assert args[:2] == ["perception-edge", "build-engine"]
    assert be.main(args[2:]) == 0
    backend = create_backend(str(tiny), "tensorrt", engine=options)
    try:
        assert isinstance(backend, runtime.TensorRTBackend)
        assert Path(backend.path).parent == tmp_path / "engines" and backend.max_batch == 2
    finally:
        backend.close()


def test_auto_build_in_the_background(tiny, tmp_path):
    options = {"cache_dir": str(tmp_path), "auto_build": True, "max_batch": 2}
    proxy = create_backend(str(tiny), "tensorrt", engine=options)
    try:
        assert isinstance(proxy, loader.EngineBuildInProgress)
        assert proxy.status in ("building engine", "ready")
        assert proxy.wait(600), proxy.status
        assert proxy.status == "ready"
        x = np.random.default_rng(5).random((2, 3, 64, 64), dtype=np.float32)
        np.testing.assert_allclose(proxy.run(x)[0], ort_run(tiny, x)[0], **TOL)
    finally:
        proxy.close()
    again = create_backend(str(tiny), "tensorrt", engine=options)  # found in the cache now
    assert isinstance(again, runtime.TensorRTBackend)
    again.close()


def test_int8_calibration_from_frames_and_cache_reuse(tiny, tmp_path, capsys):
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        pytest.skip("this TensorRT has no INT8 calibrators")
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    y, x = np.mgrid[0:100, 0:150]
    for i in range(12):
        img = np.dstack([(x * (i + 1)) % 256, (y * 3 + 20 * i) % 256, ((x + y) * 2) % 256]).astype(np.uint8)
        cv2.imwrite(str(frames / f"{i:02d}.png"), img)
    engine = tmp_path / "tiny.int8.engine"
    args = [str(tiny), "--precision", "int8", "--calibration", str(frames), "--calibration-frames", "12",
            "--calibration-batch", "4", "--max-batch", "4", "--output", str(engine)]
    assert be.main(args) == 0
    out = capsys.readouterr().out
    assert "calibrated on 12 frames in 3 batches of 4" in out
    assert (tmp_path / "tiny.int8.calib").is_file() and (tmp_path / "tiny.int8.calib.json").is_file()
    side = read_sidecar(engine)
    assert side["precision"] == "int8" and "INT8" in side["build_flags"] and len(side["calibration"]["sha256"]) == 64
    backend = create_backend(str(engine), "tensorrt")
    try:
        x = np.random.default_rng(6).random((4, 3, 64, 64), dtype=np.float32)
        got, ref = backend.run(x)[0], ort_run(tiny, x)[0]
        assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.95
    finally:
        backend.close()
    assert be.main(args) == 0  # same frames: the calibration cache is reused
    assert "using calibration cache" in capsys.readouterr().out


def test_cuda_python_import_names():
    """cuda-python moved its runtime module to cuda.bindings.runtime (12.6+); both are supported."""
    if importlib.util.find_spec("cuda") is None:
        pytest.skip("cuda-python not installed")
    try:
        memory = trt_cuda.CudaPythonMemory()
    except ImportError:
        pytest.skip("cuda-python without a runtime module")
    name, cc = memory.identity()
    assert name and cc.count(".") == 1
