"""`perception-edge evaluate --table` (perception_edge.compression): the variants of a model, each
measured in its own process, and the markdown table written between its markers."""
from __future__ import annotations

import json

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from qdq_checks import assert_trt_qdq  # noqa: E402
from onnx_graphs import segmentation_graph  # noqa: E402
from perception_edge import cli, compression  # noqa: E402
from perception_edge.core.errors import ConfigError  # noqa: E402
from perception_edge.core.metrics import CocoDetectionMeter  # noqa: E402


def test_table_of_a_small_segmentation_model(tmp_path):
    fp32 = segmentation_graph(tmp_path / "seg.onnx", size=(96, 128), classes=1, stride=1)
    readme = tmp_path / "README.md"
    readme.write_text(f"# models\n\n{compression.TABLE_BEGIN}\nold\n{compression.TABLE_END}\n\nafter\n")
    paths = compression.make_variants(str(fp32), tmp_path / "work", calib_count=8, log=lambda s: None)
    assert set(paths) == set(compression.VARIANTS) - {"qat"}
    assert_trt_qdq(paths["ptq_trt"])
    kinds = {v: {n.op_type for n in onnx.load(p).graph.node} for v, p in paths.items()}
    assert "QuantizeLinear" in kinds["ptq_ort"] and "DynamicQuantizeLinear" in kinds["ptq_dynamic"]
    assert "QuantizeLinear" not in kinds["fp32"] | kinds["fp16"]
    out = tmp_path / "rows.json"
    assert cli.main(["evaluate", "--table", str(fp32), "--qat-models", paths["ptq_trt"], "--count", "3",
                     "--runs", "2", "--threads", "1", "--work", str(tmp_path / "work"), "--readme", str(readme),
                     "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["variant"] for r in rows] == list(compression.VARIANTS)
    for r in rows:
        assert 0 <= r["iou"] <= 1 and r["b1_ms"] > 0 and r["b3_ms"] > 0 and r["peak_mb"] > r["base_mb"] > 0
    assert rows[-1]["model"] == paths["ptq_trt"]  # the QAT row measures the model given for it
    text = readme.read_text()
    assert "old" not in text and text.endswith("after\n") and text.count("| seg |") == 1
    assert "PTQ static, TensorRT Q/DQ" in text and "VNNI" in text


def test_table_arguments():
    with pytest.raises(ConfigError, match="one per model"):
        compression.run_table(["a.onnx", "b.onnx"], ["q.onnx"], "w")
    with pytest.raises(ConfigError, match="fp32"):
        compression.run_table(["a.onnx"], [], "w", variants=("qat",))


def test_coco_map_over_iou_thresholds():
    import numpy as np

    m = CocoDetectionMeter(1)
    gt = np.array([[0, 0, 100, 100]], float)
    # IoU 0.81 with the ground truth: a hit at 0.50..0.80, a miss at 0.85..0.95
    m.add(np.array([[0, 0, 100, 81]], float), np.array([0.9]), np.array([0]), gt, np.array([0]))
    res = m.result()
    assert res.ap[:7, 0].tolist() == [1.0] * 7 and res.ap[7:, 0].tolist() == [0.0] * 3
    assert res.map50 == 1.0 and res.map50_95 == pytest.approx(0.7)
