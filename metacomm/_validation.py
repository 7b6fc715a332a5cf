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
    "check_memory",
    "memory_budget",
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


#: environment variable that overrides the memory budget of :func:`check_memory` (GiB)
MEMORY_ENV = "METACOMM_MEMORY_LIMIT_GB"


def memory_budget() -> float:
    """Bytes a run may plan to hold at once: ``METACOMM_MEMORY_LIMIT_GB`` if set, else 80 % of the machine's
    physical memory (16 GiB when it cannot be read)."""
    import os
    env = os.environ.get(MEMORY_ENV)
    if env:
        try:
            gb = float(env)
        except ValueError:
            raise ConfigError(MEMORY_ENV, f"must be a number of GiB, got {env!r}") from None
        if not (gb > 0 and math.isfinite(gb)):
            raise ConfigError(MEMORY_ENV, f"must be a positive number of GiB, got {env!r}")
        return gb * 2**30
    try:
        return 0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16.0 * 2**30


def check_memory(fields: str | tuple[str, ...], nbytes: float, what: str) -> None:
    """Refuse up front a run whose largest working set (``nbytes``, an estimate of the tensors it holds at once)
    exceeds :func:`memory_budget`: a ConfigError naming the first of ``fields`` and listing all of them (the sizes
    to reduce), instead of an allocator traceback minutes later."""
    fields = (fields,) if isinstance(fields, str) else tuple(fields)
    budget = memory_budget()
    if not nbytes <= budget:  # also catches nan / inf estimates
        err = ConfigError(fields[0], f"{what}: about {float(nbytes) / 2**30:.3g} GiB at once, more than the "
                                     f"{budget / 2**30:.3g} GiB this machine allows ({MEMORY_ENV} overrides); "
                                     f"reduce {', '.join(fields)}")
        err.fields = fields  # the CLI names them by their flags
        raise err
