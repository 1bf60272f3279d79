"""Quantization-aware training (train-seg / train-det --qat, TensorRT Model Optimizer): from an FP32
model (checkpoint or ONNX), BatchNorm folded, fake-quantized, fine-tuned, exported as a Q/DQ ONNX
model with the FP32 export's inputs, outputs and metadata, that ONNX Runtime runs close to FP32."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("modelopt.torch.quantization")

from qdq_checks import assert_trt_qdq  # noqa: E402
from perception_edge.training import detection, qat, segmentation  # noqa: E402


def _io(path):
    m = onnx.load(str(path))
    shapes = lambda vs: [(v.name, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]) for v in vs]  # noqa: E731
    return shapes(m.graph.input), shapes(m.graph.output), {p.key: p.value for p in m.metadata_props}


def _ort(path, x):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"images": x})[0]


def test_fold_batchnorm_keeps_the_outputs():
    from perception_edge.models.unet import UNet

    torch.manual_seed(0)
    m = UNet(1, base=4, depth=2).eval()
    for mod in m.modules():  # non-trivial statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    x = torch.rand(2, 3, 64, 96)
    ref = m(x)
    n = qat.fold_batchnorm(m, x)
    assert n > 0 and not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.modules())
    assert torch.allclose(m(x), ref, atol=1e-4)


def _frames(frame_paths, hw):
    from perception_edge.core.calibration import CalibrationBatches
    from perception_edge.data.frame_sources import iter_frames

    return next(iter(CalibrationBatches(iter_frames(str(frame_paths[0].parent), limit=2), hw, 2))).copy()


def test_train_seg_qat_from_an_onnx_model(tmp_path, frame_paths):
    base = dict(arch="unet", classes=2, synthetic=16, batch=4, img_size=(128, 64), unet_base=4, unet_depth=2,
                val=4, augment=False, threads=1, quiet=True)
    fp32 = segmentation.train(segmentation.SegConfig(epochs=3, lr=0.01, out=str(tmp_path / "fp32"), **base))
    res = segmentation.train(segmentation.SegConfig(epochs=1, lr=1e-4, out=str(tmp_path / "qat"), init=fp32["onnx"],
                                                    qat=True, qat_float_layers=1, qat_calib_batches=2, **base))
    report = res["qat"]
    assert report["layers"] > 5 and len(report["float_layers"]) == 1
    assert report["float_layers"][0] == report["sensitivity"][0][0]  # the most sensitive one
    i32, o32, meta32 = _io(fp32["onnx"])
    iq, oq, metaq = _io(res["onnx"])
    assert (iq, oq) == (i32, o32)
    record = json.loads(metaq.pop("quantization"))
    assert metaq == meta32 and record["float_layers"] == report["float_layers"]
    n_q = assert_trt_qdq(res["onnx"])
    assert n_q >= report["layers"] - 1
    x = _frames(frame_paths, (64, 128))
    a, b = _ort(fp32["onnx"], x), _ort(res["onnx"], x)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95


def test_train_det_qat_from_a_checkpoint(tmp_path, frame_paths):
    base = dict(synthetic=8, batch=4, img_size=(128, 96), val=4, augment=False, threads=1, quiet=True,
                width_multiple=0.125)
    fp32 = detection.train(detection.DetConfig(epochs=1, max_steps=2, out=str(tmp_path / "fp32"), **base))
    res = detection.train(detection.DetConfig(epochs=1, max_steps=1, lr=1e-4, out=str(tmp_path / "qat"),
                                              init=fp32["best"], qat=True, qat_calib_batches=1, **base))
    i32, o32, meta32 = _io(fp32["onnx"])
    iq, oq, metaq = _io(res["onnx"])
    assert (iq, oq) == (i32, o32) and json.loads(metaq.pop("quantization"))["weights"].startswith("int8")
    assert metaq == meta32
    assert_trt_qdq(res["onnx"])
    x = _frames(frame_paths, (96, 128))
    y = _ort(res["onnx"], x)
    assert y.shape[-1] == 5 + 4 and np.all((y[..., 4:] >= 0) & (y[..., 4:] <= 1))


def test_qat_needs_an_init(tmp_path):
    from perception_edge.core.errors import ConfigError

    cfg = segmentation.SegConfig(arch="unet", synthetic=8, batch=4, img_size=(64, 64), unet_base=4, unet_depth=2,
                                 out=str(tmp_path / "x"), qat=True, quiet=True)
    with pytest.raises(ConfigError, match="--init"):
        segmentation.train(cfg)
