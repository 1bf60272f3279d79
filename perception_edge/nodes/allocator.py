"""Keep multi-megabyte frame buffers in the heap instead of mapping fresh pages for every message.

glibc serves allocations above its mmap threshold with a fresh mmap and returns them with munmap
on free, so every received 1280x720 rgb8 frame (2.7 MB, allocated twice: the rmw's C message and
the Python array) page-faults ~1,300 pages on arrival. glibc raises the threshold by itself after
the first such free, but then trims the heap top back whenever two frames are free at once, so
whether a process keeps faulting depends on its allocation pattern. Measured with bench-style
round trips (stamp -> callback, standalone camera_fusion node, 1280x720 rgb8 over the shipped SHM
profile): 15.1 ms before, 6.8 ms with fixed thresholds (mmap threshold 32 MiB, the glibc maximum,
so frames up to 4K bgra8 come from the heap; trim threshold 128 MiB, so a few frames of free heap
are kept for the next ones).

Applied by the node executables (run_main) and by this package's own publishers (replay, bench-ros).
Not applied when the environment already tunes malloc (GLIBC_TUNABLES glibc.malloc.*, or
MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_), when PERCEPTION_EDGE_MALLOC_TUNING=0, or on a C
library without mallopt (musl, macOS).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's upper bound for M_MMAP_THRESHOLD on 64-bit
TRIM_THRESHOLD = 128 * 1024 * 1024
ENV_SWITCH = "PERCEPTION_EDGE_MALLOC_TUNING"

_applied: bool | None = None


def user_tuned(environ=os.environ) -> bool:
    return ("glibc.malloc." in environ.get("GLIBC_TUNABLES", "") or "MALLOC_MMAP_THRESHOLD_" in environ
            or "MALLOC_TRIM_THRESHOLD_" in environ)


def keep_frame_buffers(environ=os.environ) -> bool:
    """Set glibc's mmap and trim thresholds for frame-sized buffers (once per process). Returns
    whether they are set by this call or an earlier one."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off") or user_tuned(environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; setting either value also stops glibc's own threshold tuning
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
