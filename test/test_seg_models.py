"""Segmentation models (DDRNet-23-slim, U-Net) and their ONNX export (perception_edge.models.seg_export)."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from perception_edge.core.errors import ConfigError, ModelError  # noqa: E402
from perception_edge.models.ddrnet import POOL_KERNEL_MAX, ddrnet23_slim  # noqa: E402
from perception_edge.models.seg_export import export_segmentation_onnx  # noqa: E402
from perception_edge.models.unet import UNet  # noqa: E402

TRT_MAX_KERNEL_DIMS_PRODUCT = 100000  # TensorRT's bound on a pooling/conv window's volume


def _params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def _with_stats(model, hw, seed=0):
    """Random but non-trivial BatchNorm statistics, so that export mismatches would show."""
    torch.manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(2, 3, *hw))
    return model.eval()


def test_ddrnet23_slim_parameter_count():
    n = _params(ddrnet23_slim(19))
    assert abs(n - 5.7e6) < 0.05e6, n  # 5,695,987 (the paper's 5.7 M)
    assert _params(ddrnet23_slim(19, aux_head=True)) > n  # the auxiliary head is extra, training only


@pytest.mark.parametrize("hw", [(192, 320), (100, 130)])
def test_ddrnet_output_at_input_resolution(hw):
    m = ddrnet23_slim(3).eval()
    with torch.no_grad():
        assert m(torch.rand(1, 3, *hw)).shape == (1, 3, *hw)
    aux = ddrnet23_slim(2, aux_head=True).train()
    outs = aux(torch.rand(2, 3, 128, 160))
    assert isinstance(outs, list) and [tuple(o.shape) for o in outs] == [(2, 2, 128, 160)] * 2
    aux.eval()
    with torch.no_grad():
        assert aux(torch.rand(1, 3, 128, 160)).shape == (1, 2, 128, 160)


def test_unet_shapes():
    for kwargs, hw in (({"base": 8, "depth": 4}, (192, 320)), ({"base": 4, "depth": 3}, (37, 50)),
                       ({"base": 8, "depth": 4, "stem_stride": 2}, (181, 323))):
        m = UNet(3, **kwargs).eval()
        with torch.no_grad():
            assert m(torch.rand(2, 3, *hw)).shape == (2, 3, *hw)
    assert _params(UNet(1, 8, 4)) < _params(UNet(1, 16, 4)) < _params(UNet(1, 16, 5))
    with pytest.raises(ValueError):
        UNet(0)


def _onnx_matches_torch(model, path, hw, batch, **kw):
    export_segmentation_onnx(model, str(path), hw, **kw)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["images"]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    x = torch.rand(batch, 3, *hw)
    with torch.no_grad():
        ref = model(x).numpy()
    got = sess.run(None, {"images": x.numpy()})[0]
    assert got.shape == ref.shape == (batch, ref.shape[1], *hw)
    np.testing.assert_allclose(got, ref, atol=1e-3 * max(1.0, float(np.abs(ref).max())))
    return sess


def test_ddrnet_onnx_matches_torch_and_is_tensorrt_friendly(tmp_path):
    hw = (128, 192)
    model = _with_stats(ddrnet23_slim(2), hw)
    path = tmp_path / "ddrnet.onnx"
    sess = _onnx_matches_torch(model, path, hw, 2, dynamic_batch=True, class_names=["bg", "lane"],
                               resize_mode="stretch")
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["names"]) == ["bg", "lane"] and meta["resize_mode"] == "stretch"
    assert meta["producer"].startswith("perception_edge") and json.loads(meta["imgsz"]) == list(hw)
    g = onnx.load(str(path))
    ops = [n.op_type for n in g.graph.node]
    assert "ReduceMean" in ops  # the DAPPM global pool
    assert not {"GlobalAveragePool", "AdaptiveAvgPool2d"} & set(ops)
    pools = [n for n in g.graph.node if "Pool" in n.op_type]
    assert len(pools) == 3
    for n in pools:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        k = attrs["kernel_shape"]
        assert max(k) <= POOL_KERNEL_MAX and int(np.prod(k)) < TRT_MAX_KERNEL_DIMS_PRODUCT
        assert attrs.get("ceil_mode", 0) == 0 and attrs.get("count_include_pad", 0) == 1
        assert all(p < kk for p, kk in zip(attrs["pads"], k + k))  # TensorRT: padding below the window
    assert sorted(tuple(onnx.helper.get_attribute_value(a) for a in n.attribute if a.name == "kernel_shape")[0]
                  for n in pools) == [[5, 5], [9, 9], [17, 17]]


def test_ddrnet_high_resolution_head(tmp_path):
    """ddrnet23-slim-hr: the same backbone (a 1/8-head checkpoint loads into it but for the head),
    logits computed at 1/2 resolution, exported like the standard one."""
    hw = (128, 192)
    hr = ddrnet23_slim(1, refine=True)
    std = ddrnet23_slim(1)
    missing, unexpected = hr.load_state_dict(std.state_dict(), strict=False)
    assert all(k.startswith("hr_head.") for k in missing) and all(k.startswith("final_layer.") for k in unexpected)
    assert _params(hr) < _params(std)  # the 1/2-resolution head is lighter than the 1/8 one
    model = _with_stats(hr, hw)
    _onnx_matches_torch(model, tmp_path / "hr.onnx", hw, 2, dynamic_batch=True)
    with torch.no_grad():
        model.hr_head.classifier.weight.zero_()
        model.hr_head.classifier.bias.zero_()
        assert model(torch.rand(1, 3, *hw)).abs().max() == 0  # the logits come from the classifier at 1/2


def test_unet_onnx_matches_torch(tmp_path):
    hw = (96, 160)
    model = _with_stats(UNet(1, 4, 3, stem_stride=2), hw)
    sess = _onnx_matches_torch(model, tmp_path / "unet.onnx", hw, 1)
    assert json.loads(sess.get_modelmeta().custom_metadata_map["names"]) == ["background", "lane_marking"]


def test_export_runs_in_the_runtime_segmenter(tmp_path, frames_bgr):
    from perception_edge.backends import create_backend
    from perception_edge.pipeline import Segmenter

    hw = (96, 160)
    path = tmp_path / "seg.onnx"
    export_segmentation_onnx(_with_stats(UNet(3, 4, 3), hw), str(path), hw, dynamic_batch=True)
    seg = Segmenter(create_backend(str(path)), resize_mode="letterbox")
    masks = seg([(f, "bgr") for f in frames_bgr[:2]])
    assert [m.shape for m in masks] == [f.shape[:2] for f in frames_bgr[:2]]
    assert all(m.dtype == np.uint8 and m.max() < 3 for m in masks)


def test_export_errors(tmp_path):
    with pytest.raises(ConfigError):
        export_segmentation_onnx(UNet(1, 4, 2), str(tmp_path / "a.onnx"), (16, 16))
    with pytest.raises(ConfigError):
        export_segmentation_onnx(UNet(1, 4, 2), str(tmp_path / "a.onnx"), (64, 64), resize_mode="crop")
    with pytest.raises(ConfigError):
        export_segmentation_onnx(UNet(3, 4, 2), str(tmp_path / "a.onnx"), (64, 64), class_names=["a", "b"])

    class Half(torch.nn.Module):
        def forward(self, x):
            return x[:, :1, ::2, ::2]

    with pytest.raises(ModelError):
        export_segmentation_onnx(Half(), str(tmp_path / "b.onnx"), (64, 64))
