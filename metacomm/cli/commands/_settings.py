"""``--set KEY=VALUE`` parsing shared by the commands that take scenario settings."""

from __future__ import annotations

import json

from metacomm._validation import ConfigError

__all__ = ["parse_settings"]


def parse_settings(items, field: str = "--set") -> dict:
    """``["k=4", "hidden=[10,30]", "activation=tanh"]`` -> ``{"k": 4, "hidden": [10, 30], "activation": "tanh"}``.

    Values are JSON where they parse as JSON (numbers, ``true``/``false``, lists), else strings."""
    out = {}
    for item in items or ():
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(field, f"expected KEY=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        out[key] = value
    return out
