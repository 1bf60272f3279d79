"""Small ONNX graphs built with onnx.helper for tests that need a model but not a trained one."""
from __future__ import annotations

import numpy as np

# a bias no average of 8-bit pixel sums can hit exactly, so float rounding never decides a class
TIE_BREAK = 0.2937


def save(graph_nodes, inputs, outputs, initializers, path, opset=13, metadata=None):
    import onnx
    from onnx import helper

    graph = helper.make_graph(graph_nodes, "g", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def segmentation_graph(path, size=(96, 128), classes=3, stride=4, batch="batch"):
    """logits[c] = W[c] . rgb + b[c], average-pooled by `stride`: class 1 where red dominates, class 2
    where blue dominates (for classes=3); a 1-channel variant gives R - G for binary models."""
    from onnx import TensorProto, helper, numpy_helper

    if classes == 1:
        w = np.array([[8.0, -8.0, 0.0]], np.float32)
        b = np.array([TIE_BREAK], np.float32)
    else:
        w = np.zeros((classes, 3), np.float32)
        b = np.zeros(classes, np.float32)
        b[0] = TIE_BREAK
        w[1] = [8, -4, -4]
        if classes > 2:
            w[2] = [-4, -4, 8]
    nodes = [helper.make_node("Conv", ["images", "w", "b"], ["conv"], kernel_shape=[1, 1])]
    out = "conv"
    if stride > 1:
        nodes.append(helper.make_node("AveragePool", ["conv"], ["logits"], kernel_shape=[stride, stride],
                                      strides=[stride, stride]))
        out = "logits"
    else:
        nodes[0].output[0] = "logits"
        out = "logits"
    h, w_ = size  # names (str) for a dynamic height/width

    def out_dim(d):
        return d // stride if isinstance(d, int) else f"{d}_out"

    return save(nodes,
                [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, h, w_])],
                [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, classes, out_dim(h), out_dim(w_)])],
                [numpy_helper.from_array(w.reshape(classes, 3, 1, 1), "w"), numpy_helper.from_array(b, "b")], path)


def identity_head_graph(path, out_shape, in_shape=(1, 3, 64, 64)):
    """A graph whose output has an arbitrary shape (for layout-rejection tests)."""
    from onnx import TensorProto, helper, numpy_helper

    n = int(np.prod(out_shape))
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
             helper.make_node("Expand", ["m", "shape"], ["out"])]
    return save(nodes, [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(in_shape))],
                [helper.make_tensor_value_info("out", TensorProto.FLOAT, list(out_shape))],
                [numpy_helper.from_array(np.array(out_shape, np.int64), "shape")], path) if n else None
