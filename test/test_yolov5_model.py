"""YOLOv5 in PyTorch against the official model: parameter counts, state_dict names, output layout,
official-checkpoint loading (with a fake yolov5 package, and malicious pickles), ONNX export against
ONNX Runtime, and batch-norm recalibration of a random network."""
from __future__ import annotations

import ast
import copy
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from conftest import driving_jpegs  # noqa: E402
from perception_edge.core.errors import ModelError  # noqa: E402
from perception_edge.core.preprocess import Preprocessor  # noqa: E402
from perception_edge.models import yolov5 as y5  # noqa: E402
from perception_edge.cli.export import main as main_export  # noqa: E402
from perception_edge.models.export import export_onnx, load_official_checkpoint  # noqa: E402
from perception_edge.models.yolov5 import YOLOv5, recalibrate_batchnorm  # noqa: E402

# Official numbers (ultralytics/yolov5 training logs "YOLOv5s summary: 214 layers, 7235389 parameters";
# "Fusing layers... YOLOv5s summary: 213 layers, 7225885 parameters" when evaluating).
PARAMS = {"n": 1872157, "s": 7235389}
PARAMS_FUSED = {"n": 1867405, "s": 7225885, "m": 21172173, "l": 46533693, "x": 86705005}
# per-layer parameters of yolov5s.yaml at nc=80 (the parse_model table of the official training log)
YOLOV5S_LAYER_PARAMS = [3520, 18560, 18816, 73984, 115712, 295424, 625152, 1180672, 1182720, 656896, 131584, 0,
                        0, 361984, 33024, 0, 0, 90880, 147712, 0, 296448, 590336, 0, 1182720, 229245]
YOLOV5S_KEYS = 349  # "Transferred 349/349 items from yolov5s.pt"


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def expected_n(h: int, w: int) -> int:
    return 3 * sum((h // s) * (w // s) for s in (8, 16, 32))


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # see one_torch_thread
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"images": x})[0]


def assert_close_to_scale(actual, expected, rel=1e-4):
    """Equal up to float32 noise: atol is rel * the largest magnitude (box sizes reach ~1000 px)."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rel * max(1.0, float(np.abs(expected).max())))


def rgb_frames(limit: int = 8):
    """Real driving frames when present (1280x720), else synthetic scenes with shapes and gradients."""
    import cv2

    paths = driving_jpegs()[:limit]
    if paths:
        return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(limit):
        img = np.zeros((360, 640, 3), np.uint8)
        img[:] = np.linspace(40, 220, 360)[:, None, None].astype(np.uint8)
        for _ in range(12):
            x0, y0 = int(rng.integers(0, 600)), int(rng.integers(0, 330))
            w, h = int(rng.integers(10, 200)), int(rng.integers(10, 150))
            cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
        frames.append(img)
    return frames


def batch_of(frames, size: int) -> np.ndarray:
    blob, _ = Preprocessor((size, size))([(f, "rgb") for f in frames])
    return blob.copy()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a small shared machine, OpenMP threads spinning against other
    processes make these small forward passes ~10x slower than running them on one core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def frames():
    return rgb_frames()


@pytest.fixture(scope="module")
def calibrated_n(frames):
    """YOLOv5n (random weights, seed 0) with batch norm recalibrated at 256."""
    torch.manual_seed(0)
    return recalibrate_batchnorm(YOLOv5(nc=80, variant="n"), frames, 256)


# --- architecture ----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["n", "s"])
def test_parameter_counts_match_official(variant):
    model = YOLOv5(nc=80, variant=variant)
    assert n_params(model) == PARAMS[variant]
    assert n_params(copy.deepcopy(model).fuse()) == PARAMS_FUSED[variant]


@pytest.mark.parametrize("variant", ["m", "l", "x"])
def test_parameter_counts_large_variants(variant):
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        model = YOLOv5(nc=80, variant=variant)
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert n_params(model) - bn_channels == PARAMS_FUSED[variant]  # fusing trades BN (2c) for a bias (c)


def test_yolov5s_layers_and_state_dict_names():
    model = YOLOv5(nc=80, variant="s")
    assert [n_params(m) for m in model.model] == YOLOV5S_LAYER_PARAMS
    assert [m.f for m in model.model][-3:] == [[-1, 10], -1, [17, 20, 23]]
    sd = model.state_dict()
    keys = list(sd)
    assert len(keys) == YOLOV5S_KEYS
    assert keys[:6] == ["model.0.conv.weight", "model.0.bn.weight", "model.0.bn.bias", "model.0.bn.running_mean",
                        "model.0.bn.running_var", "model.0.bn.num_batches_tracked"]
    assert keys[-7:] == ["model.24.anchors", "model.24.m.0.weight", "model.24.m.0.bias", "model.24.m.1.weight",
                         "model.24.m.1.bias", "model.24.m.2.weight", "model.24.m.2.bias"]
    for k in ["model.2.cv1.conv.weight", "model.2.m.0.cv1.conv.weight", "model.4.m.1.cv2.bn.running_var",
              "model.6.m.2.cv2.conv.weight", "model.8.cv3.bn.bias", "model.9.cv1.conv.weight",
              "model.9.cv2.bn.running_mean", "model.13.m.0.cv2.conv.weight", "model.23.cv3.conv.weight"]:
        assert k in sd, k
    assert tuple(sd["model.0.conv.weight"].shape) == (32, 3, 6, 6)
    assert tuple(sd["model.24.m.0.weight"].shape) == (255, 128, 1, 1)
    assert tuple(sd["model.24.m.2.weight"].shape) == (255, 512, 1, 1)
    # anchors are stored in grid units (pixels / stride), as in official checkpoints
    np.testing.assert_allclose(sd["model.24.anchors"][0].numpy(), [[1.25, 1.625], [2.0, 3.75], [4.125, 2.875]])
    np.testing.assert_allclose(sd["model.24.anchors"][2].numpy() * 32, [[116, 90], [156, 198], [373, 326]])
    bn = model.model[0].bn
    assert (bn.eps, bn.momentum) == (1e-3, 0.03)
    assert model.stride.tolist() == [8.0, 16.0, 32.0]


def test_bias_priors():
    model = YOLOv5(nc=3, variant="n")
    for conv, s in zip(model.detect.m, (8, 16, 32)):
        b = conv.bias.detach().view(3, -1)
        bound = 1 / np.sqrt(conv.in_channels)  # default Conv2d bias init before the prior is added
        assert (b[:, 4] - np.log(8 / (640 / s) ** 2)).abs().max() <= bound
        assert (b[:, 5:] - np.log(0.6 / (3 - 0.999999))).abs().max() <= bound


@pytest.mark.parametrize("hw", [(128, 128), (96, 160), (192, 64)])
def test_output_layout_generic_sizes(hw):
    h, w = hw
    model = YOLOv5(nc=7, variant="n")
    x = torch.rand(2, 3, h, w)
    model.train()
    for m in model.modules():  # raw maps of the same (running-statistics) weights as eval mode
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        raw = model(x)
        y = model.eval()(x)
    assert tuple(y.shape) == (2, expected_n(h, w), 12) == (2, model.num_outputs(hw), 12)
    assert [tuple(r.shape) for r in raw] == [(2, 3, h // s, w // s, 12) for s in (8, 16, 32)]
    # decode by hand (official formula) from the raw maps
    p = raw[1].sigmoid()  # stride 16
    gy, gx, a = 1, 2, 2
    start = 3 * (h // 8) * (w // 8)
    row = y[:, start + (a * (h // 16) + gy) * (w // 16) + gx]
    anchor = torch.tensor([59.0, 119.0])
    torch.testing.assert_close(row[:, 0], (p[:, a, gy, gx, 0] * 2 - 0.5 + gx) * 16)
    torch.testing.assert_close(row[:, 1], (p[:, a, gy, gx, 1] * 2 - 0.5 + gy) * 16)
    torch.testing.assert_close(row[:, 2:4], (p[:, a, gy, gx, 2:4] * 2) ** 2 * anchor)
    torch.testing.assert_close(row[:, 4:], p[:, a, gy, gx, 4:])


def test_fuse_keeps_outputs(calibrated_n, frames):
    x = torch.from_numpy(batch_of(frames[:2], 256))
    with torch.no_grad():
        a = calibrated_n(x)
        b = copy.deepcopy(calibrated_n).fuse()(x)
    assert_close_to_scale(b.numpy(), a.numpy())


def test_invalid_arguments_are_model_errors():
    with pytest.raises(ModelError, match="variant"):
        YOLOv5(variant="q")
    with pytest.raises(ModelError, match="class names"):
        YOLOv5(nc=2, names=["a"])
    cfg = y5.model_config(nc=2)
    cfg["backbone"][0] = [-1, 1, "Focus", [64, 3]]  # YOLOv5 <= v5.0 stem
    with pytest.raises(ModelError, match="Focus"):
        YOLOv5(cfg=cfg)
    cfg = dict(y5.model_config(nc=2), activation="nn.LeakyReLU(0.1)")
    with pytest.raises(ModelError, match="activation"):
        YOLOv5(cfg=cfg)


# --- batch-norm recalibration ----------------------------------------------------------------------

def test_recalibration_makes_outputs_depend_on_the_input(calibrated_n, frames):
    x = torch.from_numpy(batch_of(frames[:3], 256))
    torch.manual_seed(0)
    fresh = YOLOv5(nc=80, variant="n").eval()
    with torch.no_grad():
        obj = calibrated_n(x)[..., 4].numpy()
        obj_fresh = fresh(x)[..., 4].numpy()
    # without recalibration the network is (nearly) blind: every image gives the same map
    assert np.abs(obj_fresh[0] - obj_fresh[1]).max() < 1e-4
    # recalibrated: different images give different objectness maps ...
    assert np.abs(obj[0] - obj[1]).max() > 1e-2 and np.abs(obj[1] - obj[2]).max() > 1e-2
    # ... with a realistic spread: maxima neither ~0 nor ~1, most cells low (the prior)
    maxima = obj.max(1)
    assert np.all(maxima > 5e-3) and np.all(maxima < 0.99), maxima
    assert float(np.median(obj)) < 0.05
    assert not calibrated_n.training
    assert all(m.momentum == 0.03 for m in calibrated_n.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_recalibration_errors():
    model = YOLOv5(nc=2, variant="n")
    with pytest.raises(ModelError, match="no images"):
        recalibrate_batchnorm(model, [], 256)
    with pytest.raises(ModelError, match="multiple of"):
        recalibrate_batchnorm(model, [np.zeros((64, 64, 3), np.uint8)], 100)


# --- ONNX export -----------------------------------------------------------------------------------

def test_onnx_dynamic_batch_matches_torch(calibrated_n, frames, tmp_path):
    path = export_onnx(calibrated_n, str(tmp_path / "n256.onnx"), img_size=256, batch=2, dynamic_batch=True)
    proto = onnx.load(path)
    dims = lambda vi: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    assert [i.name for i in proto.graph.input] == ["images"] and [o.name for o in proto.graph.output] == ["output0"]
    assert dims(proto.graph.input[0]) == ["batch", 3, 256, 256]
    assert dims(proto.graph.output[0]) == ["batch", expected_n(256, 256), 85]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["stride"] == "32" and meta["producer"] == "perception_edge"
    names = ast.literal_eval(meta["names"])
    assert names[0] == "person" and names[79] == "toothbrush" and len(names) == 80
    for n in (2, 3):  # the exported batch and another one
        x = batch_of(frames[:n], 256)
        with torch.no_grad():
            expected = calibrated_n(torch.from_numpy(x)).numpy()
        out = run_onnx(path, x)
        assert out.shape == (n, expected_n(256, 256), 85)
        assert_close_to_scale(out, expected)


def test_output_and_onnx_export_at_640(calibrated_n, frames, tmp_path):
    x = batch_of(frames[:1], 640)
    with torch.no_grad():
        expected = calibrated_n(torch.from_numpy(x)).numpy()
    assert expected.shape == (1, 25200, 85) and calibrated_n.num_outputs(640) == 25200
    assert expected[..., 4:].min() >= 0 and expected[..., 4:].max() <= 1
    path = export_onnx(calibrated_n, str(tmp_path / "n640.onnx"), img_size=(640, 640))
    out = run_onnx(path, x)
    assert out.shape == (1, 25200, 85)
    assert_close_to_scale(out, expected)


def test_onnx_half_keeps_float32_io(tmp_path):
    torch.manual_seed(0)
    model = YOLOv5(nc=3, variant="n").eval()
    path = export_onnx(model, str(tmp_path / "h.onnx"), img_size=(96, 128), half=True)
    proto = onnx.load(path)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = np.random.default_rng(0).random((1, 3, 96, 128), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_onnx(path, x), expected, rtol=0, atol=3e-3 * np.abs(expected).max())


def test_export_rejects_bad_sizes(tmp_path):
    from perception_edge.core.errors import ConfigError

    with pytest.raises(ConfigError, match="multiple"):
        export_onnx(YOLOv5(nc=1), str(tmp_path / "x.onnx"), img_size=(100, 128))


# --- official checkpoints --------------------------------------------------------------------------

OFFICIAL_CLASSES = {"models.common": ["Conv", "C3", "Bottleneck", "SPPF", "Concat"],
                    "models.yolo": ["Detect", "DetectionModel"]}


def _fake_yolov5_package():
    """Modules named like the yolov5 repository's (models.common, models.yolo) holding thin subclasses
    of ours, so that torch.save pickles references to models.common.Conv, models.yolo.DetectionModel,
    ... exactly as an official checkpoint does. Returns {our class: fake class}."""
    fake = {}
    for mod_name in ("models", "models.common", "models.yolo"):
        fake[mod_name] = sys.modules[mod_name] = types.ModuleType(mod_name)
    ours = {"Conv": y5.Conv, "C3": y5.C3, "Bottleneck": y5.Bottleneck, "SPPF": y5.SPPF, "Concat": y5.Concat,
            "Detect": y5.Detect, "DetectionModel": YOLOv5}
    mapping = {}
    for mod_name, names in OFFICIAL_CLASSES.items():
        for name in names:
            cls = type(name, (ours[name],), {"__module__": mod_name})
            setattr(fake[mod_name], name, cls)
            mapping[ours[name]] = cls
    return mapping


def _as_official(model: YOLOv5, mapping) -> torch.nn.Module:
    m = copy.deepcopy(model)
    for sub in m.modules():
        if type(sub) in mapping:
            sub.__class__ = mapping[type(sub)]
    m.names = {i: n for i, n in enumerate(model.names)}  # recent yolov5 stores a dict
    return m


def save_fake_checkpoint(path: Path, model: YOLOv5, ema: YOLOv5 = None, extra=None) -> None:
    try:
        mapping = _fake_yolov5_package()
        model = _as_official(model, mapping)
        for k, v in (extra or {}).items():
            setattr(model, k, v)
        ckpt = {"epoch": -1, "best_fitness": np.float64(0.42), "model": model.half(),
                "ema": _as_official(ema, mapping).half() if ema is not None else None, "updates": None,
                "optimizer": None, "opt": {"imgsz": 640, "weights": "yolov5n.pt"},
                "git": {"remote": "https://github.com/ultralytics/yolov5"}, "date": "2024-01-01T00:00:00"}
        torch.save(ckpt, str(path))
    finally:  # the loader must not rely on them
        for mod_name in ("models", "models.common", "models.yolo"):
            sys.modules.pop(mod_name, None)


def half_reference(model: YOLOv5, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return copy.deepcopy(model).half().float().eval()(x).numpy()


@pytest.fixture(scope="module")
def fake_checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    model = YOLOv5(nc=3, variant="n", names=["car", "person", "sign"])
    with torch.no_grad():  # non-trivial BN statistics, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.detect.anchors.mul_(1.1)  # autoanchor-evolved anchors come from the state_dict
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_fake_checkpoint(path, model)
    return path, model.eval()


def test_official_checkpoint_round_trip(fake_checkpoint):
    path, model = fake_checkpoint
    assert "models" not in sys.modules and "models.yolo" not in sys.modules
    loaded = load_official_checkpoint(str(path))
    assert isinstance(loaded, YOLOv5) and not loaded.training
    assert loaded.names == ["car", "person", "sign"] and loaded.nc == 3
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert "models.yolo" not in sys.modules  # nothing of the yolov5 repository was imported
    x = torch.rand(2, 3, 128, 160)
    with torch.no_grad():
        out = loaded(x).numpy()
    assert_close_to_scale(out, half_reference(model, x))


def test_official_checkpoint_prefers_ema(tmp_path):
    torch.manual_seed(2)
    model, ema = YOLOv5(nc=2, variant="n"), YOLOv5(nc=2, variant="n")
    save_fake_checkpoint(tmp_path / "last.pt", model, ema)
    loaded = load_official_checkpoint(str(tmp_path / "last.pt"))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = loaded(x).numpy()
    assert_close_to_scale(out, half_reference(ema.eval(), x))


class _Exploit:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("how", ["os.system", "builtins.eval", "in-model"])
def test_malicious_checkpoint_is_rejected_without_running(tmp_path, how):
    marker = tmp_path / "pwned"
    cmd = f"touch {marker}"
    if how == "os.system":
        payload = {"model": _Exploit(os.system, cmd)}
    elif how == "builtins.eval":
        payload = {"epoch": 0, "model": _Exploit(eval, f"__import__('os').system({cmd!r})")}
    path = tmp_path / "evil.pt"
    if how == "in-model":  # hidden in an attribute of an otherwise genuine-looking checkpoint
        save_fake_checkpoint(path, YOLOv5(nc=1, variant="n"), extra={"hook": _Exploit(os.system, cmd)})
    else:
        torch.save(payload, str(path))
    with pytest.raises(ModelError, match=r"(system|eval), which is not allowed"):
        load_official_checkpoint(str(path))
    assert not marker.exists()


def test_bad_checkpoints_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_official_checkpoint(str(tmp_path / "missing.pt"))
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 not really a zip" * 10)
    with pytest.raises(ModelError, match="not a readable"):
        load_official_checkpoint(str(tmp_path / "corrupt.pt"))
    torch.save({"model.0.conv.weight": torch.zeros(1)}, str(tmp_path / "state_dict.pt"))
    with pytest.raises(ModelError, match="no YOLOv5 model"):
        load_official_checkpoint(str(tmp_path / "state_dict.pt"))


# --- command line ----------------------------------------------------------------------------------

def test_main_export_from_checkpoint(fake_checkpoint, tmp_path, capsys):
    path, model = fake_checkpoint
    out = tmp_path / "best.onnx"
    assert main_export(["--weights", str(path), "--img-size", "128", "160", "--dynamic-batch",
                        "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "['batch', 3, 128, 160]" in printed and f"['batch', {expected_n(128, 160)}, 8]" in printed
    x = np.random.default_rng(0).random((2, 3, 128, 160), dtype=np.float32)
    assert_close_to_scale(run_onnx(out, x), half_reference(model, torch.from_numpy(x)))
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert ast.literal_eval(meta["names"]) == {0: "car", 1: "person", 2: "sign"}


def test_main_export_random_calibrated(frames, tmp_path, capsys):
    import cv2

    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    for i, f in enumerate(frames[:2]):
        cv2.imwrite(str(img_dir / f"{i}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out = tmp_path / "rand.onnx"
    assert main_export(["--variant", "n", "--nc", "4", "--img-size", "128", "--calibrate-on", str(img_dir),
                        "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "recalibrated on 2 image(s)" in printed and f"[1, {expected_n(128, 128)}, 9]" in printed
    assert run_onnx(out, batch_of(frames[:1], 128)).shape == (1, expected_n(128, 128), 9)
