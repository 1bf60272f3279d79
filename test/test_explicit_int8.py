"""Explicit INT8 for TensorRT: `quantize --format tensorrt` writes TensorRT's Q/DQ layout (checked
node by node, and ONNX Runtime's outputs stay close to FP32 on real frames), and `build-engine`
recognises a Q/DQ model and builds it without a calibrator (INT8 + FP16, or strongly typed on
TensorRT 10) while the calibrator path stays for TensorRT 8.5.

TensorRT cannot run here: FakeTensorRT10 / FakeTensorRT85 are test doubles of the few builder API
calls build_serialized makes; they record the network flags, builder flags and calibrator it sets.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from onnx_graphs import segmentation_graph  # noqa: E402
from qdq_checks import assert_trt_qdq  # noqa: E402
from perception_edge import cli  # noqa: E402
from perception_edge.backends.tensorrt import builder as tbuilder  # noqa: E402
from perception_edge.backends.tensorrt.commands import build_command, trtexec_command  # noqa: E402
from perception_edge.backends.tensorrt.onnx_io import read_onnx_io  # noqa: E402
from perception_edge.cli import build_engine as be  # noqa: E402
from perception_edge.core.calibration import CalibrationBatches  # noqa: E402
from perception_edge.core.errors import ConfigError  # noqa: E402
from perception_edge.data.frame_sources import iter_frames  # noqa: E402
from perception_edge.engine_request import resolve  # noqa: E402
from perception_edge.models.quantize import quantize_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LANE = REPO / "models" / "lane_unet.onnx"


def _batches(frame_paths, hw, n=4):
    return CalibrationBatches(iter_frames(str(frame_paths[0].parent), limit=n), hw, 2, last="repeat")


@pytest.fixture(scope="module")
def lane_trt(tmp_path_factory, frame_paths):
    out = tmp_path_factory.mktemp("qdq") / "lane_trt.onnx"
    quantize_model(str(LANE), str(out), _batches(frame_paths, (384, 640)), fmt="tensorrt", log=lambda s: None)
    return out


def test_tensorrt_format_structure_and_agreement_on_the_lane_model(lane_trt, frame_paths):
    import json

    from perception_edge.evaluation import load_model

    n_q = assert_trt_qdq(lane_trt)
    q = onnx.load(str(lane_trt))
    convs = [n for n in q.graph.node if n.op_type == "Conv"]
    producer = {o: n for n in q.graph.node for o in n.output}
    # every Conv takes a dequantized activation and dequantized int8 weights; its bias stays float
    for c in convs:
        assert producer[c.input[0]].op_type == "DequantizeLinear" and producer[c.input[1]].op_type == "DequantizeLinear"
        assert len(c.input) < 3 or c.input[2] not in producer
    assert n_q == len(convs)  # one activation quantizer per Conv input (each Conv reads its own Q/DQ pair)
    assert not {"QLinearConv", "ConvInteger"} & {n.op_type for n in q.graph.node}
    meta = {p.key: p.value for p in q.metadata_props}
    fp32_meta = {p.key: p.value for p in onnx.load(str(LANE)).metadata_props}
    assert json.loads(meta.pop("quantization"))["format"] == "QDQ (TensorRT explicit)" and meta == fp32_meta
    assert read_onnx_io(str(lane_trt)).quantized and not read_onnx_io(str(LANE)).quantized

    ref, int8 = load_model(str(LANE)), load_model(str(lane_trt))
    from perception_edge.core.image_conversion import to_rgb

    images = [to_rgb(px, order) for px, order, _, _ in iter_frames(str(frame_paths[0].parent), limit=4)]
    for im in images:
        a, b = ref([(im, "rgb")])[0], int8([(im, "rgb")])[0]
        inter, union = np.logical_and(a == 1, b == 1).sum(), np.logical_or(a == 1, b == 1).sum()
        assert union == 0 or inter / union > 0.85, inter / union


def test_tensorrt_format_on_yolov5_keeps_the_decode_float(tmp_path, yolov5n_onnx, frame_paths):
    out = tmp_path / "yolo_trt.onnx"
    quantize_model(str(yolov5n_onnx), str(out), _batches(frame_paths, (640, 640)), fmt="tensorrt", log=lambda s: None)
    assert_trt_qdq(out)
    import onnxruntime as ort

    blob = next(iter(_batches(frame_paths, (640, 640), 2))).copy()
    a = ort.InferenceSession(str(yolov5n_onnx), providers=["CPUExecutionProvider"]).run(None, {"images": blob})[0]
    b = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"images": blob})[0]
    assert np.all((b[..., 4:] >= 0) & (b[..., 4:] <= 1))
    assert np.abs(a[..., 4] - b[..., 4]).mean() < 0.05
    assert np.median(np.abs(a[..., :4] - b[..., :4])) < 4.0  # box pixels of a 640 input


def test_tensorrt_format_refuses_uint8_and_per_tensor(tmp_path):
    fp32 = segmentation_graph(tmp_path / "s.onnx")
    with pytest.raises(ConfigError, match="symmetric int8"):
        quantize_model(str(fp32), str(tmp_path / "o.onnx"), [], activations="uint8", fmt="tensorrt")
    with pytest.raises(ConfigError, match="per output channel"):
        quantize_model(str(fp32), str(tmp_path / "o.onnx"), [], per_channel=False, fmt="tensorrt")
    with pytest.raises(ConfigError, match="unknown format"):
        quantize_model(str(fp32), str(tmp_path / "o.onnx"), [], fmt="tflite")


def test_quantize_cli_tensorrt_format(tmp_path, frame_paths):
    fp32 = segmentation_graph(tmp_path / "seg.onnx", size=(96, 128), classes=3, stride=4)
    out = tmp_path / "seg_trt.onnx"
    assert cli.main(["quantize", str(fp32), "--output", str(out), "--calibration", str(frame_paths[0].parent),
                     "--calibration-frames", "4", "--format", "tensorrt"]) == 0
    assert assert_trt_qdq(out) == 1


# -- build-engine decisions ---------------------------------------------------------------------

def _args(model, *extra):
    return be.parser().parse_args([str(model), *extra])


def test_build_engine_plans_a_qdq_model_as_explicit_int8(lane_trt, tmp_path, capsys):
    req = resolve(_args(lane_trt, "--output", str(tmp_path / "e.engine")))
    s = req.settings
    assert s.precision == "int8" and s.explicit_int8 and not s.strongly_typed and req.calibration is None
    assert s.build_flags == ["FP16", "INT8"] and any("explicitly quantized" in n for n in req.notes)
    cmd = trtexec_command(req.onnx_path, "e.engine", s, req.onnx)
    assert "--int8" in cmd and "--fp16" in cmd and "--calib" not in cmd
    typed = resolve(_args(lane_trt, "--precision", "int8", "--strongly-typed", "--output", str(tmp_path / "e.engine")))
    assert typed.settings.strongly_typed and typed.settings.build_flags == []
    cmd = trtexec_command(typed.onnx_path, "e.engine", typed.settings, typed.onnx)
    assert "--stronglyTyped" in cmd and "--int8" not in cmd and "--fp16" not in cmd
    assert "--strongly-typed" in build_command(typed.onnx_path, typed.settings)
    # the cache key of earlier (non-Q/DQ) builds is unchanged: the new fields are absent when off
    plain = resolve(_args(LANE, "--precision", "fp16", "--output", str(tmp_path / "p.engine"))).settings
    assert "explicit_int8" not in plain.to_json() and "strongly_typed" not in plain.to_json()
    assert be.main([str(lane_trt), "--print-trtexec", "--output", str(tmp_path / "e.engine")]) == 0
    out = capsys.readouterr()
    assert "--int8" in out.out and "calibration cache" not in out.err


@pytest.mark.parametrize("extra, error", [
    (["--precision", "fp16"], "explicitly quantized"),
    (["--calibration", "frames/"], "takes no calibration"),
    (["--calibration-cache", "x.calib"], "takes no calibration"),
])
def test_build_engine_rejects_calibrating_or_floating_a_qdq_model(lane_trt, extra, error):
    with pytest.raises(ConfigError, match=error):
        resolve(_args(lane_trt, *extra))


def test_strongly_typed_needs_a_qdq_model(tmp_path):
    fp32 = segmentation_graph(tmp_path / "s.onnx")
    with pytest.raises(ConfigError, match="Q/DQ"):
        resolve(_args(fp32, "--precision", "fp16", "--strongly-typed"))


class _Flag:
    def __init__(self, names):
        for i, n in enumerate(names):
            setattr(self, n, i)


class FakeTensorRT10:
    """Test double of the TensorRT 10 builder API that build_serialized calls; records what it is told."""
    __version__ = "10.3.0"
    NetworkDefinitionCreationFlag = _Flag(["EXPLICIT_BATCH", "STRONGLY_TYPED"])
    BuilderFlag = _Flag(["FP16", "INT8", "GPU_FALLBACK"])
    MemoryPoolType = _Flag(["WORKSPACE"])

    class Logger:
        WARNING, INFO = 2, 3

        def __init__(self, severity):
            self.min_severity = severity

    def __init__(self):
        self.record = {"flags": [], "calibrator": None, "network_flags": None}
        fake = self

        class Network:
            num_inputs = 1

            def get_input(self, i):
                class Inp:
                    name, shape = "images", (-1, 3, 384, 640)
                return Inp()

        class Config:
            def set_memory_pool_limit(self, pool, size):
                pass

            def set_flag(self, flag):
                fake.record["flags"].append(flag)

            def add_optimization_profile(self, p):
                pass

            def __setattr__(self, name, value):
                if name == "int8_calibrator":
                    fake.record["calibrator"] = value
                object.__setattr__(self, name, value)

        class Profile:
            def set_shape(self, *a):
                pass

        class Builder:
            platform_has_fast_fp16 = True

            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.record["network_flags"] = flags
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return b"engine"

        class OnnxParser:
            def __init__(self, network, logger):
                pass

            def parse(self, data, path=None):
                return True

        self.Builder, self.OnnxParser = Builder, OnnxParser

    def init_libnvinfer_plugins(self, logger, ns):
        pass


class FakeTensorRT85(FakeTensorRT10):
    """Test double of TensorRT 8.5 (Xavier's JetPack 5): no strongly typed networks."""
    __version__ = "8.5.2"
    NetworkDefinitionCreationFlag = _Flag(["EXPLICIT_BATCH"])


def _build(trt, req):
    return tbuilder.build_serialized(trt, b"onnx", req.onnx_path, req.settings, cuda=None,
                                     calibration=req.calibration, log=lambda s: None)


def test_builder_sets_int8_and_fp16_without_a_calibrator(lane_trt, tmp_path):
    req = resolve(_args(lane_trt, "--output", str(tmp_path / "e.engine")))
    for trt in (FakeTensorRT10(), FakeTensorRT85()):
        assert _build(trt, req) == b"engine"
        assert trt.record["flags"] == [trt.BuilderFlag.FP16, trt.BuilderFlag.INT8]
        assert trt.record["calibrator"] is None
    typed = resolve(_args(lane_trt, "--strongly-typed", "--output", str(tmp_path / "e.engine")))
    trt = FakeTensorRT10()
    _build(trt, typed)
    assert trt.record["network_flags"] == 1 << trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED
    assert trt.record["flags"] == []
    with pytest.raises(ConfigError, match="TensorRT 10"):
        _build(FakeTensorRT85(), typed)


def test_calibrated_int8_still_needs_its_plan_on_tensorrt_85(tmp_path, frame_paths):
    fp32 = segmentation_graph(tmp_path / "s.onnx")
    req = resolve(_args(fp32, "--precision", "int8", "--calibration", str(frame_paths[0].parent),
                        "--output", str(tmp_path / "e.engine")))
    assert not req.settings.explicit_int8 and req.calibration is not None and req.settings.calibrator == "entropy"
    from perception_edge.engine_request import with_calibration_cache

    trt = FakeTensorRT85()
    with pytest.raises(ConfigError, match="needs its frames"):  # the implicit (calibrator) path
        tbuilder.build_serialized(trt, b"onnx", req.onnx_path, req.settings, cuda=None,
                                  calibration=with_calibration_cache(req, str(tmp_path / "e.engine")),
                                  log=lambda s: None)
    assert trt.record["network_flags"] == 1 << trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH
