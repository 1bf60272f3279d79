"""Deprecated: the command line moved to perception_edge.cli (one module per command) and the library
code that lived here to its layer (perception_edge.evaluation, .replay, .model_cache, .engine_request,
.models.quantize, .data.frame_sources, .training, .backends.tensorrt). The old module paths
(perception_edge.tools.cli, .evaluate, .replay, ...) still work: importing one warns
(DeprecationWarning) and its names resolve in their new homes."""
from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable, Mapping


def deprecated_module(old: str, homes: tuple[str, ...], renamed: Mapping[str, str] | None = None
                      ) -> Callable[[str], Any]:
    """Warn that `old` is deprecated (at the importer) and return the module __getattr__ (PEP 562) that
    finds each name in the first of `homes` that has it; renamed: old name -> "module:new name"."""
    warnings.warn(f"{old} is deprecated: import from {' or '.join(homes)}", DeprecationWarning, stacklevel=3)
    renamed = dict(renamed or {})

    def __getattr__(name: str) -> Any:
        if name in renamed:
            module, _, new_name = renamed[name].partition(":")
            return getattr(importlib.import_module(module), new_name or name)
        for home in homes:
            module = importlib.import_module(home)
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return __getattr__


__all__ = ["deprecated_module"]
