"""ONNX graph inputs, outputs and metadata read straight from the protobuf, without the onnx package.

build-engine --print-trtexec and the engine cache need the model's I/O names and shapes on machines
where neither onnx nor TensorRT is installed; these are a few fields of the protobuf, read here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception_edge.core.errors import ModelError

ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64,
               9: np.bool_, 10: np.float16, 11: np.float64}
QDQ_OPS = (b"QuantizeLinear", b"DequantizeLinear")  # an explicitly quantized (Q/DQ) model has them


@dataclass(frozen=True)
class OnnxTensor:
    name: str
    shape: tuple[Any, ...]  # int for fixed dims, a name (str) or None for dynamic ones
    elem_type: int

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(ONNX_DTYPES.get(self.elem_type, np.float32))


@dataclass(frozen=True)
class OnnxIO:
    inputs: tuple[OnnxTensor, ...]
    outputs: tuple[OnnxTensor, ...]
    metadata: dict[str, str]
    quantized: bool = False  # explicitly quantized: the graph has QuantizeLinear/DequantizeLinear nodes


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("bad varint")


def _fields(buf: memoryview):
    """(field number, wire type, value) of one protobuf message; value is an int or a memoryview."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise ValueError("truncated field")
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _value_info(buf: memoryview) -> OnnxTensor:
    name, elem, dims = "", 0, []
    for num, _, val in _fields(buf):
        if num == 1:
            name = bytes(val).decode()
        elif num == 2:  # TypeProto
            for tnum, _, tval in _fields(val):
                if tnum != 1:  # tensor_type only
                    continue
                for snum, _, sval in _fields(tval):
                    if snum == 1:
                        elem = sval
                    elif snum == 2:  # TensorShapeProto
                        for dnum, _, dval in _fields(sval):
                            if dnum != 1:
                                continue
                            dim: Any = None
                            for xnum, _, xval in _fields(dval):
                                if xnum == 1:
                                    dim = xval - (1 << 64) if xval >= 1 << 63 else xval
                                elif xnum == 2:
                                    dim = bytes(xval).decode() or None
                            if isinstance(dim, int) and dim <= 0:
                                dim = None
                            dims.append(dim)
    return OnnxTensor(name, tuple(dims), elem)


def read_onnx_io(source) -> OnnxIO:
    """Graph inputs (initializers excluded), outputs and metadata_props of an ONNX file or its bytes."""
    data = source if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()
    label = "ONNX data" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    try:
        buf = memoryview(data)
        graph = None
        metadata: dict[str, str] = {}
        for num, wire, val in _fields(buf):
            if num == 7 and wire == 2:
                graph = val
            elif num == 14 and wire == 2:
                entry = {k: bytes(v).decode() for k, _, v in _fields(val) if k in (1, 2)}
                metadata[entry.get(1, "")] = entry.get(2, "")
        if graph is None:
            raise ValueError("no graph")
        inputs, outputs, initializers = [], [], set()
        quantized = False
        for num, wire, val in _fields(graph):
            if wire != 2:
                continue
            if num == 1 and not quantized:  # NodeProto: op_type is field 4
                quantized = any(k == 4 and bytes(v) in QDQ_OPS for k, _, v in _fields(val))
            elif num == 11:
                inputs.append(_value_info(val))
            elif num == 12:
                outputs.append(_value_info(val))
            elif num == 5:
                for tnum, _, tval in _fields(val):
                    if tnum == 8:
                        initializers.add(bytes(tval).decode())
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        raise ModelError(f"{label} is not a valid ONNX model ({e})") from None
    inputs = [t for t in inputs if t.name not in initializers]  # old exporters list weights as inputs
    if not inputs or not outputs:
        raise ModelError(f"{label}: ONNX graph has no inputs or no outputs")
    return OnnxIO(tuple(inputs), tuple(outputs), metadata, quantized)


__all__ = ["ONNX_DTYPES", "OnnxTensor", "OnnxIO", "read_onnx_io"]
