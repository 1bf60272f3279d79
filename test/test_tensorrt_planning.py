"""TensorRT planning logic that runs without TensorRT: the I/O binding plan for both API generations
(computed from test doubles of the engine description), the background-build state, INT8
calibration batching and its cache file, trtexec command rendering, and build-engine's argument
validation and "TensorRT is not installed" error.

Nothing here runs TensorRT: FakeEngine82/85/10 are test doubles of an engine's I/O description; the
engine itself is exercised by test/gpu/test_tensorrt_gpu.py on a GPU machine.
"""
from __future__ import annotations

import importlib.util
import threading

import cv2
import numpy as np
import pytest

from perception_edge.backends.base import Backend, TensorSpec
from perception_edge.backends.tensorrt import cache as ec
from perception_edge.backends.tensorrt import runtime as tb
from perception_edge.backends.tensorrt.cache import BatchProfile
from perception_edge.backends.tensorrt.calibrators import CalibrationCache
from perception_edge.backends.tensorrt.commands import build_command, trtexec_command
from perception_edge.backends.tensorrt.loader import EngineBuildInProgress
from perception_edge.backends.tensorrt.onnx_io import read_onnx_io
from perception_edge.core.calibration import CalibrationBatches
from perception_edge.core.errors import ConfigError, ModelError
from perception_edge.core.preprocess import Preprocessor
from perception_edge.cli import build_engine as be

from onnx_graphs import segmentation_graph

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


# -- test doubles of an engine's I/O description ----------------------------------------------------

class FakeEnum:
    """Stands in for a pybind11 enum member of TensorRT (DataType.HALF, TensorIOMode.INPUT)."""

    def __init__(self, kind: str, name: str):
        self.kind, self.name = kind, name

    def __str__(self):
        return f"{self.kind}.{self.name}"


def dt(name):
    return FakeEnum("DataType", name)


class _FakeEngine:
    """Test double for planning logic only: holds the I/O tensors and profiles an ICudaEngine would
    report. It never counts as running TensorRT."""

    def __init__(self, tensors, profiles):
        self._tensors = tensors  # [(name, is_input, shape with -1, DataType name)]
        self._profiles = profiles  # [{input name: (min, opt, max)}]
        self.num_optimization_profiles = len(profiles)

    def _by_name(self, name):
        return next(t for t in self._tensors if t[0] == name)

    def _profile_shapes(self, name, p):
        if p >= len(self._profiles):
            raise IndexError("profile index out of range")
        return [list(s) for s in self._profiles[p][name]]


class FakeEngine10(_FakeEngine):
    """Test double of a TensorRT 10.x engine's named-tensor description (no binding API). Planning
    logic only; never counts as running TensorRT."""

    @property
    def num_io_tensors(self):
        return len(self._tensors)

    def get_tensor_name(self, i):
        return self._tensors[i][0]

    def get_tensor_mode(self, name):
        return FakeEnum("TensorIOMode", "INPUT" if self._by_name(name)[1] else "OUTPUT")

    def get_tensor_shape(self, name):
        return list(self._by_name(name)[2])

    def get_tensor_dtype(self, name):
        return dt(self._by_name(name)[3])

    def get_tensor_profile_shape(self, name, profile):
        return self._profile_shapes(name, profile)


class FakeEngine82(_FakeEngine):
    """Test double of a TensorRT 8.x engine's binding-index description (no named tensors, as before
    8.5): binding i of profile p is i + p * bindings_per_profile, named '<name> [profile p]'. Planning
    logic only; never counts as running TensorRT."""

    @property
    def num_bindings(self):
        return len(self._tensors) * len(self._profiles)

    def _binding(self, i):
        per = len(self._tensors)
        p, j = divmod(i, per)
        name, is_input, shape, dtype = self._tensors[j]
        return (name if p == 0 else f"{name} [profile {p}]"), is_input, shape, dtype, p

    def get_binding_name(self, i):
        return self._binding(i)[0]

    def binding_is_input(self, i):
        return self._binding(i)[1]

    def get_binding_shape(self, i):
        return list(self._binding(i)[2])

    def get_binding_dtype(self, i):
        return dt(self._binding(i)[3])

    def get_profile_shape(self, profile, binding):
        name, is_input, _, _, p = self._binding(binding)
        assert is_input and p == profile, "binding index must belong to the profile"
        return self._profile_shapes(self._tensors[binding % len(self._tensors)][0], profile)


class FakeEngine85(FakeEngine10, FakeEngine82):
    """Test double of a TensorRT 8.5 engine: both the binding API and the named-tensor API. Planning
    logic only; never counts as running TensorRT."""


class FakeContext:
    """Test double of an execution context, only for API detection."""

    def __init__(self, v3: bool):
        self.execute_async_v2 = lambda *a: True
        if v3:
            self.execute_async_v3 = lambda *a: True
            self.set_tensor_address = lambda *a: True


NMS_TENSORS = [("images", True, (-1, 3, 640, 640), "FLOAT"), ("num_dets", False, (-1, 1), "INT32"),
               ("det_boxes", False, (-1, 100, 4), "FLOAT"), ("det_scores", False, (-1, 100), "FLOAT"),
               ("det_classes", False, (-1, 100), "INT32")]


def nms_profiles(*batches):
    return [{"images": tuple((b, 3, 640, 640) for b in bs)} for bs in batches]


# -- engine description and I/O plan ---------------------------------------------------------------

def test_api_generation_is_detected():
    e10 = FakeEngine10(NMS_TENSORS, nms_profiles((1, 4, 4)))
    e85 = FakeEngine85(NMS_TENSORS, nms_profiles((1, 4, 4)))
    e82 = FakeEngine82(NMS_TENSORS, nms_profiles((1, 4, 4)))
    assert tb.detect_api(e10) == tb.API_TENSORS
    assert tb.detect_api(e85, FakeContext(v3=True)) == tb.API_TENSORS  # 8.5 has execute_async_v3
    assert tb.detect_api(e85, FakeContext(v3=False)) == tb.API_BINDINGS
    assert tb.detect_api(e82) == tb.API_BINDINGS
    with pytest.raises(ModelError, match="neither"):
        tb.detect_api(object())


def test_named_tensor_plan_for_an_efficient_nms_engine():
    plan = tb.plan_io(tb.describe_engine(FakeEngine10(NMS_TENSORS, nms_profiles((1, 4, 4)))))
    assert plan.api == tb.API_TENSORS
    assert [t.name for t in plan.inputs] == ["images"]
    assert [t.name for t in plan.outputs] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    sizes = {t.name: (t.max_shape, t.dtype, t.nbytes) for t in plan.tensors}
    assert sizes["images"] == ((4, 3, 640, 640), np.float32, 4 * 3 * 640 * 640 * 4)
    assert sizes["num_dets"] == ((4, 1), np.int32, 16)
    assert sizes["det_boxes"] == ((4, 100, 4), np.float32, 6400)
    assert sizes["det_classes"] == ((4, 100), np.int32, 1600)
    assert plan.total_bytes == sum(s[2] for s in sizes.values())
    assert plan.batch_profiles == (BatchProfile(1, 4, 4),)
    assert plan.fixed_batch is None and plan.max_batch == 4
    specs = [t.spec(plan.fixed_batch) for t in plan.tensors]
    assert specs[0] == TensorSpec("images", (None, 3, 640, 640), np.dtype(np.float32))
    assert specs[1] == TensorSpec("num_dets", (None, 1), np.dtype(np.int32))
    assert plan.batch_sizes(6) == [4, 2] and plan.choose_profile(5) is None
    assert "det_boxes" in plan.describe()


def test_binding_plan_with_two_profiles():
    engine = FakeEngine85(NMS_TENSORS, nms_profiles((1, 1, 1), (2, 4, 8)))
    named = tb.plan_io(tb.describe_engine(engine, tb.API_TENSORS))
    plan = tb.plan_io(tb.describe_engine(engine, tb.API_BINDINGS))
    assert plan.api == tb.API_BINDINGS and plan.bindings_per_profile == 5 and plan.num_profiles == 2
    # both generations describe the same tensors
    assert [(t.name, t.max_shape, t.dtype) for t in plan.tensors] == \
        [(t.name, t.max_shape, t.dtype) for t in named.tensors]
    assert plan.tensor("images").max_shape == (8, 3, 640, 640)
    assert plan.binding_index("det_boxes", 0) == 2 and plan.binding_index("det_boxes", 1) == 7
    addresses = {name: 1000 * (i + 1) for i, (name, *_) in enumerate(NMS_TENSORS)}
    assert plan.bindings(0, addresses) == [1000, 2000, 3000, 4000, 5000, 0, 0, 0, 0, 0]
    assert plan.bindings(1, addresses) == [0, 0, 0, 0, 0, 1000, 2000, 3000, 4000, 5000]
    assert plan.choose_profile(1) == 0 and plan.choose_profile(3) == 1
    assert plan.batch_sizes(9) == [8, 1]
    only_bindings = tb.plan_io(tb.describe_engine(FakeEngine82(NMS_TENSORS, nms_profiles((1, 1, 1), (2, 4, 8)))))
    assert only_bindings == plan


def test_fp16_io_and_fixed_batch_engines():
    tensors = [("images", True, (1, 3, 384, 640), "HALF"), ("logits", False, (1, 3, 96, 160), "HALF")]
    plan = tb.plan_io(tb.describe_engine(FakeEngine10(tensors, [{"images": ((1, 3, 384, 640),) * 3}])))
    assert plan.fixed_batch == 1
    assert plan.tensor("images").nbytes == 3 * 384 * 640 * 2
    assert plan.inputs[0].spec(plan.fixed_batch) == TensorSpec("images", (1, 3, 384, 640), np.dtype(np.float16))
    assert plan.batch_sizes(3) == [1, 1, 1]


def test_output_sizes_from_the_context_and_data_dependent_outputs():
    tensors = [("images", True, (-1, 3, 64, 64), "FLOAT"), ("boxes", False, (-1, -1, 4), "FLOAT")]
    desc = tb.describe_engine(FakeEngine10(tensors, [{"images": ((1, 3, 64, 64), (2, 3, 64, 64), (2, 3, 64, 64))}]))
    with pytest.raises(ModelError, match="data-dependent"):
        tb.plan_io(desc)
    plan = tb.plan_io(desc, {"boxes": (2, 50, 4)})  # what the context reports at the largest input
    assert plan.tensor("boxes").max_shape == (2, 50, 4) and plan.tensor("boxes").nbytes == 1600


def test_tensorrt_types_map_to_numpy_without_tensorrt():
    assert tb.numpy_dtype(dt("HALF")) == np.float16
    assert tb.numpy_dtype("DataType.INT32") == np.int32
    assert tb.numpy_dtype(np.float32) == np.float32
    assert tb.numpy_dtype(np.dtype(np.uint8)) == np.uint8
    with pytest.raises(ModelError, match="BF16"):
        tb.numpy_dtype(dt("BF16"))


# -- background build ------------------------------------------------------------------------------

class FakeLoadedBackend(Backend):
    """Test double of the backend loaded after a build: returns its input's mean."""

    name = "tensorrt"

    def __init__(self):
        self.inputs = [TensorSpec("images", (None, 3, 96, 128), np.dtype(np.float32))]
        self.outputs = [TensorSpec("logits", (None, 3, 24, 32), np.dtype(np.float32))]
        self.closed = False

    def run(self, tensor):
        return [np.full((tensor.shape[0], 3, 24, 32), tensor.mean(), np.float32)]

    def close(self):
        self.closed = True


@pytest.fixture()
def seg_onnx(tmp_path):
    pytest.importorskip("onnx")
    return segmentation_graph(tmp_path / "lane.onnx", size=(96, 128), classes=3)


def build_in_progress(seg_onnx, build, load):
    onnx_io = read_onnx_io(str(seg_onnx))
    settings = ec.make_settings(onnx_io)
    return EngineBuildInProgress(str(seg_onnx), onnx_io, settings, "/tmp/x.engine", build, load)


def test_build_in_progress_reports_building_then_ready(seg_onnx):
    release = threading.Event()
    loaded = FakeLoadedBackend()
    proxy = build_in_progress(seg_onnx, lambda cancel: release.wait(10), lambda: loaded)
    try:
        assert proxy.status == "building engine" and proxy.building and not proxy.ready
        assert proxy.inputs[0] == TensorSpec("images", (None, 3, 96, 128), np.dtype(np.float32))
        assert proxy.outputs[0].name == "logits" and proxy.max_batch == 4
        assert proxy.batch_sizes(6) == [4, 2]
        with pytest.raises(ModelError, match="still being built"):
            proxy.run(np.zeros((1, 3, 96, 128), np.float32))
        release.set()
        assert proxy.wait(10)
        assert proxy.status == "ready" and not proxy.building
        assert proxy.run(np.ones((2, 3, 96, 128), np.float32))[0].shape == (2, 3, 24, 32)
        assert proxy.inputs is loaded.inputs
    finally:
        release.set()
        proxy.close()
    assert loaded.closed


def test_build_failure_is_reported(seg_onnx):
    def build(cancel):
        raise ModelError("TensorRT could not build an engine from lane.onnx\nmore detail")

    proxy = build_in_progress(seg_onnx, build, FakeLoadedBackend)
    assert not proxy.wait(10)
    assert proxy.status == "failed: TensorRT could not build an engine from lane.onnx"
    with pytest.raises(ModelError, match="failed: TensorRT could not build"):
        proxy.run(np.zeros((1, 3, 96, 128), np.float32))


def test_closing_cancels_a_build(seg_onnx):
    started = threading.Event()

    def build(cancel):
        started.set()
        cancel.wait(10)

    proxy = build_in_progress(seg_onnx, build, FakeLoadedBackend)
    assert started.wait(10)
    proxy.close()
    assert not proxy.wait(10) and proxy.status == "failed: cancelled"


@pytest.mark.skipif(HAVE_TENSORRT, reason="tensorrt is installed here")
def test_tensorrt_backend_without_tensorrt(tmp_path):
    from perception_edge.backends import create_backend

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(tb.TensorRTNotInstalled, match="TensorRT is not installed"):
        create_backend(str(engine), "tensorrt")


# -- INT8 calibration batching and cache -----------------------------------------------------------

def synthetic_frames(n, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [(720, 1280), (480, 640), (240, 320)]
    return [(rng.integers(0, 255, sizes[i % 3] + (3,), dtype=np.uint8), "bgr" if i % 2 else "rgb", float(i), str(i))
            for i in range(n)]


def expected_batch(frames, hw, mode="letterbox"):
    blob, _ = Preprocessor(hw, np.float32, mode)([(f[0], f[1]) for f in frames], batch=len(frames))
    return blob.copy()


def test_calibration_batches_go_through_the_runtime_preprocessor():
    frames = synthetic_frames(10)
    batches = CalibrationBatches(frames, (96, 128), batch_size=4)
    got = [b.copy() for b in batches]
    assert len(got) == 2 and batches.batches == 2 and batches.dropped == 2 and batches.frames_used == 8
    assert all(b.shape == (4, 3, 96, 128) and b.dtype == np.float32 and b.flags.c_contiguous for b in got)
    assert np.array_equal(got[0], expected_batch(frames[0:4], (96, 128)))
    assert np.array_equal(got[1], expected_batch(frames[4:8], (96, 128)))
    assert batches.nbytes == 4 * 3 * 96 * 128 * 4
    stretched = [b.copy() for b in CalibrationBatches(frames[:4], (96, 128), 4, mode="stretch")]
    assert np.array_equal(stretched[0], expected_batch(frames[:4], (96, 128), "stretch"))


def test_last_partial_calibration_batch():
    frames = synthetic_frames(10)
    repeat = CalibrationBatches(frames, (64, 64), 4, last="repeat")
    got = [b.copy() for b in repeat]
    assert len(got) == 3 and repeat.repeated == 2 and repeat.frames_used == 10
    assert np.array_equal(got[2], expected_batch([frames[8], frames[9], frames[8], frames[9]], (64, 64)))
    # fewer frames than one batch: the only batch is filled, never dropped
    few = CalibrationBatches(frames[:3], (64, 64), 4)
    assert len([b.copy() for b in few]) == 1 and few.repeated == 1
    # max_frames caps what is read
    capped = CalibrationBatches(iter(frames), (64, 64), 2, max_frames=5)
    assert len(list(capped)) == 2 and capped.dropped == 1
    assert list(CalibrationBatches([], (64, 64), 2)) == []
    with pytest.raises(ConfigError):
        CalibrationBatches(frames, (64, 64), 0)


def test_calibration_batches_from_real_frames(frame_paths):
    from perception_edge.data.frame_sources import iter_frames

    folder = str(frame_paths[0].parent)
    batches = CalibrationBatches(iter_frames(folder), (640, 640), batch_size=4)
    got = [b.copy() for b in batches]
    assert len(got) == len(frame_paths) // 4
    first = got[0][0]
    assert 0.0 <= first.min() and first.max() <= 1.0
    # 1280x720 letterboxed into 640x640: rows above the content hold the pad value 114/255
    assert np.allclose(first[:, :100, :], 114 / 255, atol=1e-6) and first[:, 320, :].std() > 0.01
    bgr = cv2.imread(str(frame_paths[0]))
    assert np.array_equal(got[0][0], expected_batch([(bgr, "bgr")], (640, 640))[0])


def test_calibration_cache_round_trip(tmp_path):
    path = tmp_path / "det.calib"
    cache = CalibrationCache(str(path), expected_digest="a" * 64)
    assert cache.read() is None  # nothing yet: calibrate
    cache.write(memoryview(b"TRT-8502-EntropyCalibration2\nimages: 3c010a14\n"))
    assert cache.read() == b"TRT-8502-EntropyCalibration2\nimages: 3c010a14\n"
    assert CalibrationCache(str(path), "a" * 64).read() == path.read_bytes()
    other = CalibrationCache(str(path), expected_digest="b" * 64)
    assert other.read() is None and "recalibrating" in other.note  # made from other frames
    assert CalibrationCache(str(path), None).read() == path.read_bytes()  # cache given on its own
    (tmp_path / "det.calib.json").unlink()
    assert CalibrationCache(str(path), "a" * 64).read() is None


# -- command lines ---------------------------------------------------------------------------------

def test_trtexec_command_for_a_dynamic_fp16_model(seg_onnx):
    onnx_io = read_onnx_io(str(seg_onnx))
    s = ec.make_settings(onnx_io)
    assert trtexec_command("lane.onnx", "lane.engine", s, onnx_io) == (
        "trtexec --onnx=lane.onnx --saveEngine=lane.engine --fp16 --minShapes=images:1x3x96x128 "
        "--optShapes=images:4x3x96x128 --maxShapes=images:4x3x96x128 --memPoolSize=workspace:1024M")


def test_trtexec_command_for_int8_on_dla(seg_onnx):
    onnx_io = read_onnx_io(str(seg_onnx))
    s = ec.make_settings(onnx_io, "int8", 1, 1, 1, 2048, 0, "entropy", "a" * 64)
    assert trtexec_command("m dir/lane.onnx", "lane.engine", s, onnx_io, "lane.calib", "timing.cache") == (
        "trtexec '--onnx=m dir/lane.onnx' --saveEngine=lane.engine --fp16 --int8 --calib=lane.calib "
        "--minShapes=images:1x3x96x128 --optShapes=images:1x3x96x128 --maxShapes=images:1x3x96x128 "
        "--memPoolSize=workspace:2048M --useDLACore=0 --allowGPUFallback --timingCacheFile=timing.cache")


def test_trtexec_command_for_a_fixed_shape_fp32_model(tmp_path):
    pytest.importorskip("onnx")
    path = segmentation_graph(tmp_path / "s.onnx", batch=1)
    onnx_io = read_onnx_io(str(path))
    s = ec.make_settings(onnx_io, "fp32")
    assert trtexec_command("s.onnx", "s.engine", s, onnx_io) == \
        "trtexec --onnx=s.onnx --saveEngine=s.engine --memPoolSize=workspace:1024M"


def test_build_command_matches_the_settings(seg_onnx):
    s = ec.make_settings(read_onnx_io(str(seg_onnx)), dla_core=1, max_batch=2)
    assert build_command("lane.onnx", s, cache_dir="/var/engines") == (
        "perception-edge build-engine lane.onnx --precision fp16 --min-batch 1 --opt-batch 2 --max-batch 2 "
        "--workspace-mb 1024 --dla-core 1 --cache-dir /var/engines")


# -- build-engine arguments ------------------------------------------------------------------------

def resolve(argv):
    return be.resolve(be.parser().parse_args(argv))


@pytest.fixture()
def calib_folder(tmp_path):
    folder = tmp_path / "calib"
    folder.mkdir()
    for i, (pixels, *_rest) in enumerate(synthetic_frames(3)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), pixels)
    return folder


def test_build_engine_arguments_resolve(seg_onnx, calib_folder, tmp_path):
    req = resolve([str(seg_onnx)])
    assert req.settings.precision == "fp16" and req.settings.batch == BatchProfile(1, 4, 4)
    assert req.calibration is None and req.output == "" and req.cache_dir == ""
    req = resolve([str(seg_onnx), "--batch", "2", "--workspace-mb", "512", "--dla-core", "0",
                   "--output", str(tmp_path / "x.plan")])
    assert req.settings.batch == BatchProfile(2, 2, 2) and req.settings.workspace_mb == 512
    assert req.settings.dla_core == 0 and req.output.endswith("x.plan")
    req = resolve([str(seg_onnx), "--precision", "int8", "--calibration", str(calib_folder),
                   "--calibrator", "minmax", "--calibration-frames", "100", "--min-batch", "1", "--max-batch", "2"])
    cal = req.calibration
    assert (cal.source, cal.frames, cal.batch_size, cal.calibrator) == (str(calib_folder), 100, 8, "minmax")
    assert cal.input_hw == (96, 128) and cal.mode == "letterbox" and len(cal.digest) == 64
    assert req.settings.calibration_sha256 == cal.digest and req.settings.calibrator == "minmax"
    assert req.notes == ()
    req = resolve([str(seg_onnx), "--dla-core", "1"])  # a batch range on DLA: said, not refused
    assert req.settings.dla_core == 1 and any("DLA runs static shapes only" in n for n in req.notes)


def test_build_engine_takes_defaults_from_the_config_file(seg_onnx, tmp_path):
    yaml_path = tmp_path / "p.yaml"
    yaml_path.write_text("/**:\n  ros__parameters:\n    engine:\n      precision: fp32\n      max_batch: 2\n"
                         "      workspace_mb: 256\n      cache_dir: /var/engines\n"
                         f"    segmentation:\n      model: {seg_onnx}\n      resize_mode: stretch\n")
    req = resolve([str(seg_onnx), "--config", str(yaml_path)])
    assert req.settings.precision == "fp32" and req.settings.batch == BatchProfile(1, 2, 2)
    assert req.settings.workspace_mb == 256 and req.cache_dir == "/var/engines"
    req = resolve([str(seg_onnx), "--config", str(yaml_path), "--precision", "fp16", "--cache-dir", "e"])
    assert req.settings.precision == "fp16" and req.cache_dir == "e"


@pytest.mark.parametrize("extra, error", [
    (["--precision", "int8"], "needs calibration frames"),
    (["--batch", "2", "--min-batch", "1"], "either --batch or"),
    (["--min-batch", "3", "--max-batch", "2"], "min <= opt <= max"),
    (["--precision", "fp32", "--dla-core", "0"], "DLA runs FP16 or INT8"),
    (["--calibration-cache", "x.calib"], "applies to --precision int8 only"),
    (["--output", "model.onnx"], "use an .engine/.plan/.trt file name"),
    (["--input-size", "416"], "fixed at 96x128"),
    (["--precision", "int8", "--calibration", "/nonexistent/frames"], "frame source not found"),
])
def test_build_engine_rejects_bad_arguments(seg_onnx, extra, error):
    with pytest.raises(ConfigError, match=error):
        resolve([str(seg_onnx)] + extra)


def test_build_engine_rejects_other_inputs(tmp_path, seg_onnx, calib_folder):
    with pytest.raises(ConfigError, match="takes an .onnx model"):
        resolve([str(tmp_path / "model.engine")])
    with pytest.raises(ModelError, match="not found"):
        resolve([str(tmp_path / "missing.onnx")])
    with pytest.raises(ConfigError, match="applies to rosbags"):
        resolve([str(seg_onnx), "--precision", "int8", "--calibration", str(calib_folder),
                 "--calibration-topic", "/cam/image_raw"])
    static = segmentation_graph(tmp_path / "static.onnx", batch=1)
    with pytest.raises(ConfigError, match="batch is fixed at 1"):
        resolve([str(static), "--max-batch", "4"])
    with pytest.raises(SystemExit):
        resolve([str(seg_onnx), "--output", "a.engine", "--cache-dir", "d"])


def test_print_trtexec_works_without_tensorrt(seg_onnx, calib_folder, tmp_path, capsys):
    out = tmp_path / "lane.engine"
    assert be.main([str(seg_onnx), "--output", str(out), "--print-trtexec"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"trtexec --onnx={seg_onnx} --saveEngine={out} --fp16 --minShapes=images:1x3x96x128 "
        "--optShapes=images:4x3x96x128 --maxShapes=images:4x3x96x128 --memPoolSize=workspace:1024M")
    assert be.main([str(seg_onnx), "--output", str(out), "--precision", "int8", "--calibration", str(calib_folder),
                    "--batch", "1", "--dla-core", "0", "--timing-cache", "t.cache", "--print-trtexec"]) == 0
    printed = capsys.readouterr()
    assert f"--int8 --calib={tmp_path / 'lane.calib'}" in printed.out
    assert "--useDLACore=0 --allowGPUFallback --timingCacheFile=t.cache" in printed.out
    assert "cannot calibrate from frames" in printed.err


@pytest.mark.skipif(HAVE_TENSORRT, reason="tensorrt is installed here")
def test_build_engine_without_tensorrt_says_so_after_validating(seg_onnx, capsys):
    from perception_edge import cli

    with pytest.raises(tb.TensorRTNotInstalled):
        be.main([str(seg_onnx)])
    assert cli.main(["build-engine", str(seg_onnx), "--precision", "fp16"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("perception-edge build-engine: error: TensorRT is not installed")
    assert 'python3 -c "import tensorrt"' in err
    # arguments are checked first: a bad argument is reported as such, not as missing TensorRT
    assert cli.main(["build-engine", str(seg_onnx), "--precision", "int8"]) == 1
    assert "needs calibration frames" in capsys.readouterr().err
