"""Users' own YOLOv5, as the official repository and the `yolov5` PyPI package produce it.

Architectures come from the official v6.0-v7.0 yaml texts (test/data/yolov5_yaml, spelled as the
official files: `yaml.safe_load` hands 'None', 'nc', 'anchors', 'nn.Upsample' over as strings).
Checkpoints are pickled as train.py saves best.pt (a DetectionModel / SegmentationModel object in
half precision, its `yaml` the safe_load dict) under both module layouts (models.* and
yolov5.models.*), loaded by the allow-list loader, exported to ONNX and run through the runtime
pipeline on real frames. The reference is a PyTorch forward of the same (half) weights through the
official letterbox, non_max_suppression, scale_boxes and process_mask_native (yolov5_reference).
"""
from __future__ import annotations

import ast
import copy
import sys
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
yaml = pytest.importorskip("yaml")

import yolov5_reference as ref  # noqa: E402
from perception_edge.backends import create_backend  # noqa: E402
from perception_edge.core.errors import ConfigError, ModelError  # noqa: E402
from perception_edge.core.preprocess import Preprocessor  # noqa: E402
from perception_edge.core.transform import rect_shape, rect_transform  # noqa: E402
from perception_edge.models import yolov5 as y5  # noqa: E402
from perception_edge.cli.export import main as main_export  # noqa: E402
from perception_edge.models.export import export_onnx, load_official_checkpoint  # noqa: E402
from perception_edge.models.yolov5 import YOLOv5, recalibrate_batchnorm  # noqa: E402
from perception_edge.pipeline import Detector  # noqa: E402

YAML_DIR = Path(__file__).parent / "data" / "yolov5_yaml"
# "params (M)" of the official README tables (detection P5/P6 at 640/1280, segmentation v7.0)
README_PARAMS_M = {"n": 1.9, "s": 7.2, "m": 21.2, "l": 46.5, "x": 86.7,
                   "n6": 3.2, "s6": 12.6, "m6": 35.7, "l6": 76.8, "x6": 140.7,
                   "n-seg": 2.0, "s-seg": 7.6, "m-seg": 22.0, "l-seg": 47.9, "x-seg": 88.8}


def official_cfg(name: str, **overrides) -> dict:
    cfg = yaml.safe_load((YAML_DIR / f"yolov5{name}.yaml").read_text(encoding="utf-8"))
    cfg.update(overrides)  # as train.py's Model(cfg, nc=..., anchors=...) overrides nc / anchors
    return cfg


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- architectures from the official yaml texts ----------------------------------------------------

def test_yaml_texts_arrive_with_strings():
    cfg = official_cfg("n")
    assert cfg["head"][1] == [-1, 1, "nn.Upsample", ["None", 2, "nearest"]]
    assert cfg["head"][-1][3] == ["nc", "anchors"] and cfg["head"][3][3] == [512, False]
    assert official_cfg("n-seg")["head"][-1][2:] == ["Segment", ["nc", "anchors", 32, 256]]


@pytest.mark.parametrize("name", sorted(README_PARAMS_M))
def test_every_official_architecture_builds(name):
    with torch.device("meta"):  # shapes only
        model = YOLOv5(cfg=official_cfg(name))
    n = sum(p.numel() for p in model.parameters())
    bn = sum(m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert abs((n - bn) / 1e6 - README_PARAMS_M[name]) <= 0.075, (name, n - bn)  # fused count, README rounding
    p6 = name.endswith("6")
    assert model.stride.tolist() == ([8.0, 16.0, 32.0, 64.0] if p6 else [8.0, 16.0, 32.0])
    assert model.detect.nl == (4 if p6 else 3) and model.segmentation == name.endswith("-seg")
    ups = [m for m in model.modules() if isinstance(m, torch.nn.Upsample)]
    assert ups and all(u.size is None and u.scale_factor == 2.0 for u in ups)


def test_yolov5s_official_counts_unchanged():
    model = YOLOv5(cfg=official_cfg("s"))
    assert sum(p.numel() for p in model.parameters()) == 7235389  # "YOLOv5s summary: ... 7235389 parameters"
    assert list(model.state_dict()) == list(YOLOv5(nc=80, variant="s").state_dict())


def test_class_count_anchors_and_multiples_overrides():
    anchors = [[12, 16, 19, 36, 40, 28], [36, 75, 76, 55, 72, 146], [142, 110, 192, 243, 459, 401]]
    model = YOLOv5(cfg=official_cfg("n", nc=7, anchors=anchors))
    np.testing.assert_allclose(model.detect.anchors[2].numpy().ravel() * 32, anchors[2])
    assert model.detect.m[0].out_channels == 3 * 12
    counted = YOLOv5(cfg=official_cfg("n6", nc=2, anchors=2))  # an anchor count: values come from a checkpoint
    assert tuple(counted.detect.anchors.shape) == (4, 2, 2) and counted.detect.m[3].out_channels == 2 * 7
    custom = YOLOv5(cfg=official_cfg("s", depth_multiple=0.5, width_multiple=0.4))
    assert len(custom.model[2].m) == 2 and len(custom.model[6].m) == 4  # round(3 * .5), round(9 * .5)
    assert custom.model[0].conv.out_channels == 32 and custom.model[9].cv2.conv.out_channels == 416
    text = "channel_multiple: 16\n"
    custom = YOLOv5(cfg=dict(official_cfg("n"), **yaml.safe_load(text)))
    assert custom.model[0].conv.out_channels == 16 and custom.model[1].conv.out_channels == 32


def test_resolve_arg_table_never_evaluates():
    assert y5.resolve_arg("None", 3, "A") is None and y5.resolve_arg("False", 3, "A") is False
    assert y5.resolve_arg("nc", 3, "A") == 3 and y5.resolve_arg("anchors", 3, "A") == "A"
    assert y5.resolve_arg("2", 3, "A") == 2 and y5.resolve_arg("0.5", 3, "A") == 0.5
    assert y5.resolve_arg("nn.SiLU", 3, "A") is torch.nn.SiLU
    for text in ("nearest", "__import__('os').system('true')", "nn.functional", "3 * nc"):
        assert y5.resolve_arg(text, 3, "A") == text  # left as text, as eval's NameError leaves 'nearest'


@pytest.mark.parametrize("module", ["C3TR", "BottleneckCSP", "Focus", "nn.ConvTranspose2d"])
def test_unimplemented_layer_is_one_line_naming_it(module):
    cfg = official_cfg("n")
    cfg["backbone"][2] = [-1, 1, module, [128]]
    with pytest.raises(ModelError) as e:
        YOLOv5(cfg=cfg)
    assert repr(module) in str(e.value) and "layer 2" in str(e.value) and "\n" not in str(e.value)


# --- checkpoints as train.py saves them ------------------------------------------------------------

COMMON = ["Conv", "C3", "Bottleneck", "SPPF", "Concat", "Proto"]
YOLO = ["Detect", "Segment", "DetectionModel", "SegmentationModel"]


def fake_package(prefix: str):
    """Modules named like the official code's (models.common, models.yolo; with prefix 'yolov5.'
    the PyPI package's) holding thin subclasses of ours, so that torch.save pickles references to
    e.g. yolov5.models.yolo.DetectionModel exactly as such a checkpoint does."""
    names = [prefix + m for m in ("models", "models.common", "models.yolo")]
    if prefix:
        names.insert(0, prefix.rstrip("."))
    mods = {n: types.ModuleType(n) for n in names}
    sys.modules.update(mods)
    ours = {"Conv": y5.Conv, "C3": y5.C3, "Bottleneck": y5.Bottleneck, "SPPF": y5.SPPF, "Concat": y5.Concat,
            "Proto": y5.Proto, "Detect": y5.Detect, "Segment": y5.Segment, "DetectionModel": YOLOv5,
            "SegmentationModel": YOLOv5}
    mapping = {}
    for mod, classes in ((prefix + "models.common", COMMON), (prefix + "models.yolo", YOLO)):
        for name in classes:
            cls = type(name, (ours[name],), {"__module__": mod})
            setattr(mods[mod], name, cls)
            mapping[name] = cls
    return names, mapping


def save_like_train_py(path: Path, model: YOLOv5, prefix: str = "", names_as_dict: bool = True,
                       ema: YOLOv5 | None = None, extra=None) -> None:
    """ckpt = {'epoch', 'best_fitness', 'model': deepcopy(model).half(), 'ema': ..., 'opt': vars(opt), ...}"""
    mod_names, mapping = fake_package(prefix)
    try:
        def official(m: YOLOv5) -> torch.nn.Module:
            m = copy.deepcopy(m)
            for sub in m.modules():
                key = type(sub).__name__
                if type(sub) is YOLOv5:
                    key = "SegmentationModel" if m.segmentation else "DetectionModel"
                if key in mapping:
                    sub.__class__ = mapping[key]
            m.names = {i: n for i, n in enumerate(m.names)} if names_as_dict else list(m.names)
            m.hyp = {"lr0": 0.01, "anchor_t": 4.0}
            return m.half()

        saved = official(model)
        for k, v in (extra or {}).items():  # set after the deepcopy (copying an exploit would run it)
            setattr(saved, k, v)
        ckpt = {"epoch": -1, "best_fitness": np.float64(0.5), "model": saved,
                "ema": official(ema) if ema is not None else None, "updates": None, "optimizer": None,
                "opt": {"imgsz": 640, "weights": "yolov5n.pt", "save_dir": Path("runs/train/exp")},
                "git": {"remote": "https://github.com/ultralytics/yolov5"}, "date": "2024-01-01T00:00:00"}
        torch.save(ckpt, str(path))
    finally:  # the loader must not rely on them
        for n in mod_names:
            sys.modules.pop(n, None)


def trained_like(model: YOLOv5, frames, hw) -> YOLOv5:
    """Random weights with batch norm recalibrated on real frames (outputs depend on the input),
    then rounded to half precision as a checkpoint stores them."""
    recalibrate_batchnorm(model, frames, hw, batch_size=2)
    return model.half().float().eval()


@pytest.fixture(scope="module")
def frames():
    from test_yolov5_model import rgb_frames

    return rgb_frames(4)


def _conf_for(pred, candidates=60, nm=0):
    mi = pred.shape[2] - nm
    conf = np.sort((pred[0, :, 4:5] * pred[0, :, 5:mi]).max(1))[::-1]
    window = conf[candidates // 2: candidates * 2]
    i = int(np.argmax(window[:-1] - window[1:]))
    return float(window[i] + window[i + 1]) / 2


def reference_detect(model: YOLOv5, rgb: np.ndarray, size, auto=False, stride=32, conf=None, nm=0):
    """The official detect.py / segment/predict.py path with the PyTorch model."""
    im = ref.letterbox(rgb, size, auto=auto, stride=stride)
    x = torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1), dtype=np.float32)[None] / 255)
    with torch.no_grad():
        out = model(x)
    pred, protos = (out[0].numpy(), out[1][0].numpy()) if nm else (out.numpy(), None)
    conf = _conf_for(pred, nm=nm) if conf is None else conf
    det = ref.non_max_suppression(pred, conf, 0.45, nm=nm)[0]
    det[:, :4] = ref.scale_boxes(im.shape[:2], det[:, :4], rgb.shape)
    h, w = rgb.shape[:2]  # boxes wholly in the padding (collapsed onto an edge) are dropped by the runtime
    x1, y1, x2, y2 = det[:, :4].T
    det = det[~(((x1 == x2) & ((x1 == 0) | (x1 == w))) | ((y1 == y2) & ((y1 == 0) | (y1 == h))))]
    return det, conf, im.shape[:2], protos


def assert_same_detections(dets, theirs, scale):
    assert len(dets) == len(theirs) >= 3
    np.testing.assert_array_equal(dets.class_ids, theirs[:, 5])
    np.testing.assert_allclose(dets.scores, theirs[:, 4], rtol=0, atol=2e-4)
    np.testing.assert_allclose(dets.boxes, theirs[:, :4], rtol=0, atol=1e-3 * scale)


@pytest.mark.parametrize("name,size,prefix", [("n", 640, ""), ("n", 640, "yolov5."), ("n6", 1280, "yolov5.")])
def test_official_checkpoint_exports_and_detects_like_the_official_pipeline(name, size, prefix, frames, tmp_path):
    torch.manual_seed(3)
    model = trained_like(YOLOv5(cfg=official_cfg(name, nc=3), names=["car", "person", "sign"]), frames,
                         (size // 2, size))
    ckpt = tmp_path / "best.pt"
    save_like_train_py(ckpt, model, prefix, names_as_dict=prefix == "")
    assert not any(m in ("models", "yolov5") or m.startswith(("models.", "yolov5.")) for m in sys.modules)
    onnx_path = tmp_path / "best.onnx"
    assert main_export(["--weights", str(ckpt), "--img-size", str(size), "--output", str(onnx_path)]) == 0
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert meta["stride"] == ("64" if name.endswith("6") else "32")
    assert ast.literal_eval(meta["names"]) == {0: "car", 1: "person", 2: "sign"}
    rgb = frames[0]
    theirs, conf, _, _ = reference_detect(model, rgb, (size, size))
    detector = Detector(create_backend(str(onnx_path), "onnxruntime"), conf_threshold=conf, iou_threshold=0.45)
    (dets,) = detector([(rgb, "rgb")])
    assert_same_detections(dets, theirs, max(rgb.shape[:2]))
    assert dets.names() == [["car", "person", "sign"][int(c)] for c in theirs[:, 5]]


def test_checkpoint_prefers_ema_and_reads_names_list(tmp_path):
    torch.manual_seed(4)
    model, ema = YOLOv5(cfg=official_cfg("n", nc=2), names=["a", "b"]), YOLOv5(cfg=official_cfg("n", nc=2),
                                                                               names=["a", "b"])
    save_like_train_py(tmp_path / "last.pt", model, "yolov5.", names_as_dict=False, ema=ema)
    loaded = load_official_checkpoint(str(tmp_path / "last.pt"))
    assert loaded.names == ["a", "b"] and isinstance(loaded.model[11], torch.nn.Upsample)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), ema.half().float().eval()(x).numpy(), rtol=0, atol=1e-3)


def test_pypi_layout_still_refuses_code(tmp_path):
    import os

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'pwned'}",)

    model = YOLOv5(cfg=official_cfg("n", nc=1))
    save_like_train_py(tmp_path / "evil.pt", model, "yolov5.", extra={"callback": Exploit()})
    with pytest.raises(ModelError, match="system, which is not allowed"):
        load_official_checkpoint(str(tmp_path / "evil.pt"))
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_with_an_unknown_layer_names_it(tmp_path):
    model = YOLOv5(cfg=official_cfg("n", nc=1))
    model.yaml["backbone"][0] = [-1, 1, "Focus", [64, 3]]  # a v5.0 checkpoint
    save_like_train_py(tmp_path / "old.pt", model)
    with pytest.raises(ModelError, match=r"old.pt: model config layer 0: module 'Focus' is not implemented"):
        load_official_checkpoint(str(tmp_path / "old.pt"))


# --- instance segmentation -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seg_model(frames):
    torch.manual_seed(5)
    return trained_like(YOLOv5(cfg=official_cfg("n-seg", nc=3), names=["car", "person", "sign"]), frames,
                        (384, 640))


@pytest.fixture(scope="module")
def seg_onnx(seg_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seg")
    save_like_train_py(tmp / "best.pt", seg_model, "")
    loaded = load_official_checkpoint(str(tmp / "best.pt"))
    assert loaded.segmentation
    return export_onnx(loaded, str(tmp / "seg.onnx"), img_size=640, dynamic=True)


def test_seg_export_has_the_official_outputs(seg_onnx):
    backend = create_backend(seg_onnx, "onnxruntime")
    assert [o.name for o in backend.outputs] == ["output0", "output1"]
    assert backend.outputs[0].shape == ("batch", "anchors", 5 + 3 + 32)
    assert backend.outputs[1].shape == ("batch", 32, "mask_height", "mask_width")
    x = np.random.default_rng(0).random((1, 3, 384, 640), dtype=np.float32)
    out0, out1 = backend.run(x)
    assert out0.shape == (1, 3 * (48 * 80 + 24 * 40 + 12 * 20), 40) and out1.shape == (1, 32, 96, 160)


@pytest.mark.parametrize("rect", [False, True])
def test_instance_masks_match_the_official_decoding(seg_model, seg_onnx, frames, rect):
    rgb = frames[1]
    theirs, conf, shape, protos = reference_detect(seg_model, rgb, (640, 640), auto=rect, nm=32)
    detector = Detector(create_backend(seg_onnx, "onnxruntime"), conf_threshold=conf, rect=rect)
    assert detector.segmentation
    (dets,) = detector([(rgb, "rgb")])
    assert detector.preprocess._blob_hw == shape
    assert_same_detections(dets, theirs, max(rgb.shape[:2]))
    masks = ref.process_mask_native(protos, theirs[:, 6:], theirs[:, :4], rgb.shape[:2])
    expected = np.zeros(rgb.shape[:2], np.uint16)
    for i, m in enumerate(masks):  # first (highest score) detection keeps overlapping pixels
        expected[m & (expected == 0)] = i + 1
    ours = dets.instance_mask
    assert ours.dtype == np.uint16 and ours.shape == rgb.shape[:2]
    assert ours.max() == len(dets) or len(np.unique(ours)) > 3
    inside = masks.any(0) | (ours > 0)
    assert inside.sum() > 1000, "the random model should produce some mask area"
    disagree = int((ours != expected).sum())
    # ONNX Runtime vs PyTorch float differences move a few pixels across the 0.5 level or a box edge
    assert disagree <= 3e-3 * inside.sum(), (disagree, int(inside.sum()))
    for i, box in enumerate(dets.boxes):  # cropped to the box
        ys, xs = np.nonzero(ours == i + 1)
        if len(xs):
            assert xs.min() >= box[0] - 1 and xs.max() < box[2] + 1 and ys.min() >= box[1] - 1 and ys.max() < box[3] + 1


@pytest.mark.parametrize("src,dst", [((720, 1280), (640, 640)), ((720, 1280), (384, 640)), ((480, 640), (640, 640)),
                                     ((1080, 1920), (384, 640))])
def test_instance_mask_decoding_equals_process_mask_native(src, dst):
    """The same prototypes, coefficients and boxes through both decodings. (Where the letterbox
    padding is a whole number of prototype pixels -- 16:9 and 4:3 frames at 640 -- the official
    crop is exact; elsewhere it rounds the crop to whole prototype pixels, which this package does
    not copy: it samples the exact letterbox geometry.)"""
    import cv2

    from perception_edge.core.instance_masks import instance_mask
    from perception_edge.core.transform import letterbox_transform

    rng = np.random.default_rng(sum(src) + sum(dst))
    t = letterbox_transform(src, dst)
    protos = np.stack([cv2.GaussianBlur(p, (0, 0), 3) * 5 for p in
                       rng.normal(0, 1, (32, dst[0] // 4, dst[1] // 4)).astype(np.float32)])
    n = 20
    coef = rng.normal(0, 1, (n, 32)).astype(np.float32)
    x1, y1 = rng.uniform(0, src[1] * 0.8, n), rng.uniform(0, src[0] * 0.8, n)
    boxes = np.stack([x1, y1, np.minimum(x1 + rng.uniform(5, 400, n), src[1]),
                      np.minimum(y1 + rng.uniform(5, 300, n), src[0])], 1).astype(np.float32)
    ours = instance_mask(protos, coef, boxes, t)
    expected = np.zeros(src, np.uint16)
    for i, m in enumerate(ref.process_mask_native(protos, coef, boxes, src)):
        expected[m & (expected == 0)] = i + 1
    assert (expected > 0).sum() > 0.05 * expected.size
    assert (ours != expected).sum() <= 2e-4 * (expected > 0).sum()
    assert instance_mask(protos, coef[:0], boxes[:0], t).shape == src


def test_cli_detect_writes_instance_masks(seg_onnx, frames, tmp_path):
    import json

    import cv2

    from perception_edge.cli import main

    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), cv2.cvtColor(frames[1], cv2.COLOR_RGB2BGR))
    detector = Detector(create_backend(seg_onnx, "onnxruntime"), conf_threshold=0.01)
    (dets,) = detector([(frames[1], "rgb")])
    conf = float(np.sort(dets.scores)[::-1][min(5, len(dets) - 1)]) - 1e-6 if len(dets) else 0.01
    assert main(["detect", "--model", seg_onnx, "--output", str(tmp_path / "out"), "--conf-thres", str(conf),
                 str(path)]) == 0
    record = json.loads((tmp_path / "out" / "frame.json").read_text())
    mask = cv2.imread(str(tmp_path / "out" / "frame_instances.png"), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint16 and mask.shape == frames[1].shape[:2]
    assert [d["instance_id"] for d in record["detections"]] == list(range(1, len(record["detections"]) + 1))
    assert [d["mask_pixels"] for d in record["detections"]] == [int((mask == i + 1).sum())
                                                                for i in range(len(record["detections"]))]
    assert sum(d["mask_pixels"] for d in record["detections"]) > 0


# --- rectangular inference -------------------------------------------------------------------------

@pytest.mark.parametrize("src,size,stride,expected", [((720, 1280), 640, 32, (384, 640)),
                                                      ((720, 1280), 1280, 64, (768, 1280)),
                                                      ((1280, 720), 640, 32, (640, 384)),
                                                      ((480, 640), 640, 32, (480, 640)),
                                                      ((500, 333), 320, 32, (320, 224))])
def test_rect_shape_is_the_official_auto_letterbox(src, size, stride, expected):
    assert rect_shape(src, (size, size), stride) == expected
    img = np.zeros(src + (3,), np.uint8)
    assert ref.letterbox(img, (size, size), auto=True, stride=stride).shape[:2] == expected
    t = rect_transform(src, (size, size), stride)
    boxes = np.array([[10.0, 20.0, 200.0, 300.0]])
    np.testing.assert_allclose(t.boxes_to_source(t.boxes_to_model(boxes), clip=False), boxes, atol=1e-4)


def test_rect_preprocessing_equals_the_official_letterbox(frames):
    pre = Preprocessor((640, 640), rect_stride=32)
    blob, (t,) = pre([(frames[0], "rgb")])
    expected = ref.letterbox(frames[0], (640, 640), auto=True)
    assert blob.shape == (1, 3) + expected.shape[:2] and (t.dst_h, t.dst_w) == (384, 640) and t.pad_y == 12
    np.testing.assert_array_equal(blob[0], expected.transpose(2, 0, 1) / np.float32(255))
    portrait = np.ascontiguousarray(np.rot90(frames[0]))
    blob, ts = pre([(frames[0], "rgb"), (portrait, "rgb")])  # mixed aspects: one shape holding both
    assert blob.shape == (2, 3, 640, 640) and [(t.new_w, t.new_h) for t in ts] == [(640, 360), (360, 640)]


def test_rect_detector_equals_official_rect_inference(frames, tmp_path):
    torch.manual_seed(6)
    model = trained_like(YOLOv5(cfg=official_cfg("n", nc=4)), frames, (384, 640))
    path = export_onnx(model, str(tmp_path / "dyn.onnx"), img_size=640, dynamic=True)
    theirs, conf, shape, _ = reference_detect(model, frames[2], (640, 640), auto=True)
    assert shape == (384, 640)
    detector = Detector(create_backend(path, "onnxruntime"), conf_threshold=conf, rect=True)
    (dets,) = detector([(frames[2], "rgb")])
    assert detector.rect_stride == 32
    assert_same_detections(dets, theirs, 1280)
    square = Detector(create_backend(path, "onnxruntime"), conf_threshold=conf)
    square([(frames[2], "rgb")])
    assert square.rect_stride == 0 and square.preprocess._blob_hw == (640, 640)


def test_fixed_rectangular_export_and_its_engine_profile(frames, tmp_path, capsys):
    from perception_edge.backends.tensorrt.cache import make_settings
    from perception_edge.backends.tensorrt.onnx_io import read_onnx_io

    out = tmp_path / "rect.onnx"
    assert main_export(["--variant", "n", "--nc", "2", "--img-size", "640x384", "--dynamic-batch",
                        "--output", str(out)]) == 0
    assert "['batch', 3, 384, 640]" in capsys.readouterr().out
    backend = create_backend(str(out), "onnxruntime")
    detector = Detector(backend, rect=True)  # a fixed model keeps its own shape
    assert detector.input_hw == (384, 640) and detector.rect_stride == 0
    settings = make_settings(read_onnx_io(str(out)), max_batch=2)
    assert settings.profile_shapes()["images"] == ((1, 3, 384, 640), (2, 3, 384, 640), (2, 3, 384, 640))
    with pytest.raises(ConfigError, match="multiple of the maximum stride"):
        main_export(["--variant", "n", "--img-size", "640x360", "--output", str(tmp_path / "bad.onnx")])
