"""INT8 post-training quantization with ONNX Runtime (perception-edge quantize) and the side-by-side
evaluation that compares it with the FP32 model (perception-edge evaluate), on real frames."""
from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from onnx_graphs import segmentation_graph  # noqa: E402
from perception_edge.core.errors import ConfigError  # noqa: E402
from perception_edge.core.image_conversion import to_rgb  # noqa: E402
from perception_edge import cli  # noqa: E402
from perception_edge.core.calibration import CalibrationBatches  # noqa: E402
from perception_edge.evaluation import load_model, reference_truth, score  # noqa: E402
from perception_edge.data.frame_sources import iter_frames  # noqa: E402
from perception_edge.models.quantize import float_tail, quantize_model  # noqa: E402


def _ops(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def _frames_rgb(frame_paths):
    return [to_rgb(px, order) for px, order, _, _ in iter_frames(str(frame_paths[0].parent))]


def test_cli_quantizes_per_channel_keeps_metadata_and_agrees_with_fp32(tmp_path, frame_paths):
    fp32 = segmentation_graph(tmp_path / "seg.onnx", size=(96, 128), classes=3, stride=4)
    m = onnx.load(str(fp32))
    m.metadata_props.add(key="names", value=json.dumps(["background", "red", "blue"]))
    onnx.save(m, str(fp32))
    int8 = tmp_path / "seg_int8.onnx"
    assert cli.main(["quantize", str(fp32), "--output", str(int8), "--calibration", str(frame_paths[0].parent),
                     "--calibration-frames", "6"]) == 0
    q = onnx.load(str(int8))
    meta = {p.key: p.value for p in q.metadata_props}
    assert json.loads(meta["names"]) == ["background", "red", "blue"]
    record = json.loads(meta["quantization"])
    assert record["format"] == "QDQ" and record["weights"] == "int8 per-channel" and record["calibration"] == "minmax"
    weights = {i.name: i for i in q.graph.initializer}
    dq_w = [n for n in q.graph.node if n.op_type == "DequantizeLinear" and weights.get(n.input[0]) is not None
            and weights[n.input[0]].data_type == onnx.TensorProto.INT8 and len(weights[n.input[0]].dims) == 4]
    assert len(dq_w) == 1, "the Conv weight is stored as int8"
    scale = onnx.numpy_helper.to_array(weights[dq_w[0].input[1]])
    assert scale.shape == (3,), "one scale per output channel"

    images = _frames_rgb(frame_paths)
    ref = load_model(str(fp32))
    s = score(load_model(str(int8)), images, reference_truth(ref, images, 0.25), against_reference=True)
    assert s.metric.endswith("vs reference") and set(s.per_class) == {"red", "blue"}
    assert min(s.per_class.values()) > 0.9, s.per_class


def test_opset_12_and_float16_weights_are_quantized(tmp_path, frame_paths):
    from perception_edge.training.detection import store_weights_fp16

    fp32 = segmentation_graph(tmp_path / "seg.onnx", classes=3, stride=1)
    m = onnx.load(str(fp32))
    m.opset_import[0].version = 12
    onnx.save(m, str(fp32))
    half = store_weights_fp16(str(fp32), str(tmp_path / "seg_fp16w.onnx"), min_elements=1)
    assert "Cast" in _ops(half)
    batches = CalibrationBatches(iter_frames(str(frame_paths[0].parent), limit=4), (96, 128), 2)
    out = tmp_path / "q.onnx"
    quantize_model(half, str(out), batches, log=lambda s: None)
    q = onnx.load(str(out))
    assert "Cast" not in _ops(out)  # the float16 weights became float32 constants, then int8
    assert any(i.data_type == onnx.TensorProto.INT8 for i in q.graph.initializer)
    assert max(o.version for o in q.opset_import if o.domain in ("", "ai.onnx")) >= 13  # per-channel axis
    load_model(str(out)).backend.run(np.zeros((1, 3, 96, 128), np.float32))


def test_yolov5_decode_tail_stays_float(tmp_path, yolov5n_onnx, frame_paths):
    tail = float_tail(onnx.load(str(yolov5n_onnx)))
    model = onnx.load(str(yolov5n_onnx))
    kinds = {n.name: n.op_type for n in model.graph.node}
    assert tail and "Conv" not in {kinds[t] for t in tail}
    assert {"Sigmoid", "Concat"} <= {kinds[t] for t in tail}

    int8 = tmp_path / "yolo_int8.onnx"
    batches = CalibrationBatches(iter_frames(str(frame_paths[0].parent), limit=4), (640, 640), 2)
    quantize_model(str(yolov5n_onnx), str(int8), batches, log=lambda s: None)
    q = onnx.load(str(int8))
    producer = {o: n.op_type for n in q.graph.node for o in n.output}
    assert producer[q.graph.output[0].name] != "DequantizeLinear"
    images = _frames_rgb(frame_paths)[:2]
    ref, det = load_model(str(yolov5n_onnx)), load_model(str(int8))
    blob, _ = ref.preprocess([(images[0], "rgb")])
    a, b = ref.backend.run(blob.copy())[0][0], det.backend.run(blob.copy())[0][0]
    assert np.all((b[:, 4:] >= 0) & (b[:, 4:] <= 1)), "probabilities are sigmoid outputs, not int8 steps"
    assert np.abs(a[:, 4] - b[:, 4]).mean() < 0.05
    # an int8 scale spanning box pixels (0..640) would leave probabilities a step of 2.5 wide: two or
    # three distinct values; int8 logits through a float sigmoid give one per level and logit step
    assert len(np.unique(b[:, 4])) > 100


def test_bad_arguments(tmp_path, frame_paths):
    fp32 = segmentation_graph(tmp_path / "seg.onnx")
    with pytest.raises(ConfigError, match="unknown calibration method"):
        quantize_model(str(fp32), str(tmp_path / "o.onnx"), [], method="kl")
    with pytest.raises(ConfigError, match="must differ"):
        cli.main(["--traceback", "quantize", str(fp32), "--output", str(fp32), "--calibration", str(frame_paths[0])])
    assert cli.main(["evaluate", str(fp32), "--frames", str(frame_paths[0].parent)]) == 1  # needs --reference


def test_evaluate_cli_against_reference_on_real_frames(tmp_path, frame_paths, capsys):
    fp32 = segmentation_graph(tmp_path / "seg.onnx", classes=3)
    out = tmp_path / "r.json"
    assert cli.main(["evaluate", str(fp32), "--frames", str(frame_paths[0].parent), "--reference", str(fp32),
                     "--count", "3", "--runs", "2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert rows[0]["frames"] == 3 and rows[0]["value"] == 1.0 and "vs reference" in rows[0]["metric"]
    assert "inference ms" in capsys.readouterr().out
