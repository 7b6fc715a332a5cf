"""Names a package exports without importing their modules up front (they pull in Sionna's heavier blocks)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

__all__ = ["lazy_getattr"]


def lazy_getattr(namespace: dict, table: Mapping[str, tuple[str, str]], name: str):
    """The module ``__getattr__`` body: ``table[name] = (module, attribute)`` is imported on first use and cached in
    ``namespace`` (the package's ``globals()``); AttributeError for any other name."""
    if name not in table:
        raise AttributeError(f"module {namespace.get('__name__')!r} has no attribute {name!r}")
    module, attr = table[name]
    value = getattr(importlib.import_module(module), attr)
    namespace[name] = value
    return value
