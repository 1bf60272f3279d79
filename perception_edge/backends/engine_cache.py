"""Deprecated alias: the engine cache moved to perception_edge.backends.tensorrt.cache (the ONNX reader
to perception_edge.backends.tensorrt.onnx_io, file hashing to perception_edge.core.files). Importing
this module warns; it re-exports the names it used to define."""
from __future__ import annotations

import warnings

from perception_edge.backends.tensorrt.cache import (
    CALIBRATORS, PRECISIONS, BatchProfile, BuildSettings, EngineCheck, RuntimeIdentity, cache_key, check_engine,
    choose_profile, engine_file_name, engine_path_for, make_settings, make_sidecar, onnx_staleness, read_sidecar,
    rebuild_command, short_version, sidecar_batch_profiles, sidecar_identity, sidecar_path, split_batch,
    write_sidecar)
from perception_edge.backends.tensorrt.onnx_io import OnnxIO, OnnxTensor, read_onnx_io
from perception_edge.core.files import atomic_write, digest_path, sha256_bytes, sha256_file

warnings.warn("perception_edge.backends.engine_cache is deprecated: import from perception_edge.backends.tensorrt.cache "
              "(and .onnx_io, perception_edge.core.files)", DeprecationWarning, stacklevel=2)

__all__ = [
    "PRECISIONS", "CALIBRATORS", "BatchProfile", "BuildSettings", "RuntimeIdentity", "OnnxIO", "OnnxTensor",
    "EngineCheck", "read_onnx_io", "make_settings", "cache_key", "engine_file_name", "engine_path_for",
    "sidecar_path", "make_sidecar", "write_sidecar", "read_sidecar", "check_engine", "onnx_staleness",
    "choose_profile", "split_batch", "rebuild_command", "sha256_file", "sha256_bytes", "digest_path",
    "atomic_write", "short_version", "sidecar_identity", "sidecar_batch_profiles",
]
