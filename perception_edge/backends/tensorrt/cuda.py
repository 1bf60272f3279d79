"""GPU memory, streams and copies for TensorRT through pycuda or cuda-python, whichever is installed.

Both are imported when a memory object is made, never at import time.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
from typing import Any, Iterator

import numpy as np

from perception_edge.core.errors import ModelError, first_line


class PyCudaMemory:
    """pycuda with the device's primary context, pushed around every call. pycuda.autoinit is not used:
    it makes a separate context current on the importing thread only, while the node runs inference
    on its worker thread and builds engines on another, and TensorRT works in the primary context."""

    kind = "pycuda"

    def __init__(self, device: int = 0):
        import pycuda.driver as drv

        drv.init()
        self.drv = drv
        self.device = drv.Device(device)
        self.ctx = self.device.retain_primary_context()

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        self.ctx.push()
        try:
            yield
        finally:
            self.drv.Context.pop()

    def identity(self) -> tuple[str, str]:
        major, minor = self.device.compute_capability()
        return str(self.device.name()), f"{major}.{minor}"

    def stream(self):
        return self.drv.Stream()

    def stream_handle(self, stream) -> int:
        return int(stream.handle)

    def destroy_stream(self, stream) -> None:
        pass  # freed with the Python object

    def malloc(self, nbytes: int) -> tuple[Any, int]:
        alloc = self.drv.mem_alloc(max(1, int(nbytes)))
        return alloc, int(alloc)

    def free(self, handle) -> None:
        handle.free()

    def pinned(self, count: int, dtype) -> tuple[np.ndarray, Any]:
        arr = self.drv.pagelocked_empty(max(1, int(count)), np.dtype(dtype))
        return arr, arr

    def free_pinned(self, handle) -> None:
        base = getattr(handle, "base", None)
        if base is not None and hasattr(base, "free"):
            base.free()

    def h2d_async(self, dev_ptr: int, host: np.ndarray, stream) -> None:
        self.drv.memcpy_htod_async(dev_ptr, host, stream)

    def d2h_async(self, host: np.ndarray, dev_ptr: int, stream) -> None:
        self.drv.memcpy_dtoh_async(host, dev_ptr, stream)

    def h2d(self, dev_ptr: int, host: np.ndarray) -> None:
        self.drv.memcpy_htod(dev_ptr, np.ascontiguousarray(host))

    def synchronize(self, stream) -> None:
        stream.synchronize()


class CudaPythonMemory:
    """cuda-python's runtime API (cuda.bindings.runtime; cuda.cudart before cuda-python 12.6). The
    runtime API uses the device's primary context on every thread, as TensorRT does."""

    kind = "cuda-python"

    def __init__(self, device: int = 0):
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            from cuda import cudart as rt
        self.rt = rt
        self.device = device
        self._call(rt.cudaSetDevice(device), "cudaSetDevice")

    def _call(self, result, what: str):
        err, rest = result[0], result[1:]
        if err != self.rt.cudaError_t.cudaSuccess:
            raise ModelError(f"CUDA error in {what}: {getattr(err, 'name', err)}")
        return rest[0] if len(rest) == 1 else (rest or None)

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        self._call(self.rt.cudaSetDevice(self.device), "cudaSetDevice")  # per thread
        yield

    def identity(self) -> tuple[str, str]:
        props = self._call(self.rt.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
        name = props.name
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
        return str(name).strip(), f"{props.major}.{props.minor}"

    def stream(self):
        return self._call(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_handle(self, stream) -> int:
        try:
            return int(stream)
        except TypeError:
            return int(stream.getPtr())

    def destroy_stream(self, stream) -> None:
        self._call(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def malloc(self, nbytes: int) -> tuple[Any, int]:
        ptr = self._call(self.rt.cudaMalloc(max(1, int(nbytes))), "cudaMalloc")
        return ptr, int(ptr)

    def free(self, handle) -> None:
        self._call(self.rt.cudaFree(handle), "cudaFree")

    def pinned(self, count: int, dtype) -> tuple[np.ndarray, Any]:
        dtype = np.dtype(dtype)
        nbytes = max(1, int(count)) * dtype.itemsize
        ptr = int(self._call(self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        raw = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint8)), (nbytes,))
        return raw.view(dtype), ptr

    def free_pinned(self, handle) -> None:
        self._call(self.rt.cudaFreeHost(handle), "cudaFreeHost")

    def h2d_async(self, dev_ptr: int, host: np.ndarray, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync(dev_ptr, host.ctypes.data, host.nbytes, kind, stream), "cudaMemcpyAsync")

    def d2h_async(self, host: np.ndarray, dev_ptr: int, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync(host.ctypes.data, dev_ptr, host.nbytes, kind, stream), "cudaMemcpyAsync")

    def h2d(self, dev_ptr: int, host: np.ndarray) -> None:
        host = np.ascontiguousarray(host)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpy(dev_ptr, host.ctypes.data, host.nbytes, kind), "cudaMemcpy")

    def synchronize(self, stream) -> None:
        self._call(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")


def cuda_memory(prefer: str | None = None):
    """pycuda if importable, else cuda-python; PERCEPTION_EDGE_CUDA=pycuda|cuda-python forces one."""
    prefer = prefer or os.environ.get("PERCEPTION_EDGE_CUDA", "")
    order = {"pycuda": [PyCudaMemory], "cuda-python": [CudaPythonMemory]}.get(prefer, [PyCudaMemory, CudaPythonMemory])
    missing, failures = [], []
    for cls in order:
        try:
            return cls()
        except ImportError:
            missing.append(cls.kind)
        except Exception as e:  # a driver error: no GPU, or a CUDA/driver mismatch
            failures.append(f"{cls.kind}: {first_line(e)}")
    if failures:
        raise ModelError("cannot use the GPU (" + "; ".join(failures) + ")")
    raise ModelError("TensorRT needs pycuda or cuda-python for GPU memory, neither is installed: pip install "
                     "pycuda (on Jetson it compiles against JetPack's CUDA; put /usr/local/cuda/bin on PATH first) "
                     "or cuda-python matching the CUDA version ('cuda-python<12' on JetPack 5, '<13' on JetPack 6)")


__all__ = ["PyCudaMemory", "CudaPythonMemory", "cuda_memory"]
