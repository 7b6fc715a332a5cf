"""Input validation shared by the whole package.

Every user-facing check raises :class:`ConfigError` (a :class:`ValueError`) whose message is one line that
names the offending field (a CLI flag, a config key or an argument name) and states what is allowed. The CLI
turns a ``ConfigError`` into that line on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = [
    "ConfigError",
    "check_choice",
    "check_finite",
    "check_positive_int",
    "check_nonneg_int",
    "check_positive",
    "check_nonneg",
    "check_probability",
]


class ConfigError(ValueError):
    """A bad user input. ``field`` is the flag/key/argument name; ``str(err)`` is the full one-line message."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def check_choice(field: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = list(choices)
    if value not in choices:
        allowed = ", ".join(str(c) for c in choices)
        raise ConfigError(field, f"unknown value {value!r}; allowed: {allowed}")
    return value


def _as_float(field: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(field, f"expected a number, got {value!r}") from None
    return v


def check_finite(field: str, value: Any) -> float:
    v = _as_float(field, value)
    if not math.isfinite(v):
        raise ConfigError(field, f"must be a finite number, got {value!r}")
    return v


def check_positive(field: str, value: Any) -> float:
    v = check_finite(field, value)
    if v <= 0:
        raise ConfigError(field, f"must be > 0, got {value!r}")
    return v


def check_nonneg(field: str, value: Any) -> float:
    v = check_finite(field, value)
    if v < 0:
        raise ConfigError(field, f"must be >= 0, got {value!r}")
    return v


def check_probability(field: str, value: Any) -> float:
    v = check_finite(field, value)
    if not 0.0 <= v <= 1.0:
        raise ConfigError(field, f"must lie in [0, 1], got {value!r}")
    return v


def _as_int(field: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(field, f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise ConfigError(field, f"expected an integer, got {value!r}")


def check_positive_int(field: str, value: Any) -> int:
    v = _as_int(field, value)
    if v <= 0:
        raise ConfigError(field, f"must be a positive integer, got {value!r}")
    return v


def check_nonneg_int(field: str, value: Any) -> int:
    v = _as_int(field, value)
    if v < 0:
        raise ConfigError(field, f"must be a non-negative integer, got {value!r}")
    return v
