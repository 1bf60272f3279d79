"""Old names of moved code keep working for a while: a module-level __getattr__ (PEP 562) that warns
(DeprecationWarning, pointing at the caller) and returns the object from its new home."""
from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable, Mapping


def moved_names(old_module: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """names: old name -> "new.module" (same name there) or "new.module:NewName"."""

    def __getattr__(name: str) -> Any:
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        module, _, new_name = target.partition(":")
        new_name = new_name or name
        warnings.warn(f"{old_module}.{name} moved to {module}.{new_name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), new_name)

    return __getattr__


__all__ = ["moved_names"]
