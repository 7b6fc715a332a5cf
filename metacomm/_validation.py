"""Input validation shared by the whole package.

Every user-facing check raises :class:`ConfigError` (a :class:`ValueError`) whose message is one line that
names the offending field (a CLI flag, a config key or an argument name) and states what is allowed. The CLI
turns a ``ConfigError`` into that line on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from typing import Any

__all__ = [
    "ConfigError",
    "MAX_DB",
    "MAX_WORK",
    "check_choice",
    "check_db",
    "check_finite",
    "check_int",
    "check_positive_int",
    "check_nonneg_int",
    "check_positive",
    "check_nonneg",
    "check_probability",
    "check_memory",
    "check_model_memory",
    "mlp_params",
    "memory_budget",
    "error_message",
    "reraise",
]

#: largest magnitude of a value in dB that :func:`check_db` accepts: 300 dB is a power ratio of 10^30, far beyond
#: any physical SNR, PSR, gain or back-off, and ``10 ** (x / 10)`` stays a finite float (1e308 dB would overflow)
MAX_DB = 300.0

#: documented bound on a work size (blocks per point, steps, frames, samples): a count above it would run for
#: hours or days, so it is refused up front (``check_positive_int(field, n, maximum=MAX_WORK)``)
MAX_WORK = 10**9


class ConfigError(ValueError):
    """A bad user input. ``field`` is the flag/key/argument name; ``str(err)`` is the full one-line message."""

    fields: tuple[str, ...]  # set by check_memory only: every key to reduce (the CLI names them by their flags)

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def error_message(err: BaseException) -> str:
    """The message of ``err`` without its ``"<field>: "`` prefix (the whole text for other exceptions)."""
    text = str(err)
    field = getattr(err, "field", None)
    if isinstance(field, str) and text.startswith(f"{field}: "):
        return text[len(field) + 2:]
    return text


def reraise(field: str, err: ConfigError, *, inner: bool = True, prefix: str = "") -> ConfigError:
    """A :class:`ConfigError` naming ``field`` (the flag/key the user gave, e.g. ``checkpoint``) for ``err``, raised
    by a check inside what ``field`` points to (a file's config, a scenario): ``raise reraise("base", e) from None``.

    The message is ``prefix`` + the inner field + the inner message (``"base: lr: must be > 0"``), so the user
    sees both what they typed and which inner key is wrong, never the inner field in place of the outer one.
    ``inner=False`` drops the inner field where it only repeats what ``field`` already says (e.g. the
    ``scenario`` of "unknown scenario ..." re-raised under ``drift``); an inner field equal to ``field`` is always
    dropped (no doubled prefix)."""
    msg = error_message(err)
    inner_field = getattr(err, "field", None)
    if inner and isinstance(inner_field, str) and inner_field and inner_field != field:
        msg = f"{inner_field}: {msg}"
    return ConfigError(field, f"{prefix}{msg}")


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


def check_db(field: str, value: Any, *, minimum: float = -MAX_DB, maximum: float = MAX_DB) -> float:
    """A value in dB (SNR, PSR, gain, back-off, ...): a finite number in ``[minimum, maximum]``, by default the
    physical range ``|x| <= MAX_DB`` (300 dB), so that converting it to linear never overflows."""
    v = check_finite(field, value)
    if not minimum <= v <= maximum:
        raise ConfigError(field, f"must lie in [{minimum:g}, {maximum:g}] dB, got {value!r}")
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
    """An integer from an ``int`` (or anything with ``__index__``: numpy / 0-d torch integers), a float with an
    integer value, or a string of digits. Refused: booleans (``True`` is no count), non-integer and non-finite
    floats, anything else."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # Python and numpy booleans
        raise ConfigError(field, f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise ConfigError(field, f"expected an integer, got {value!r}")
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    elif hasattr(value, "__index__") and not getattr(value, "is_floating_point", lambda: False)():
        try:
            return operator.index(value)
        except (TypeError, ValueError, RuntimeError):
            pass
    raise ConfigError(field, f"expected an integer, got {value!r}")


def _check_max(field: str, v: int, value: Any, maximum: int | None) -> int:
    if maximum is not None and v > maximum:
        raise ConfigError(field, f"must be <= {maximum} (larger sizes are refused up front), got {value!r}")
    return v


def check_int(field: str, value: Any) -> int:
    """Any integer (e.g. a seed); booleans and non-integer floats refused."""
    return _as_int(field, value)


def check_positive_int(field: str, value: Any, *, maximum: int | None = None) -> int:
    """An integer >= 1 (and <= ``maximum`` when given, e.g. :data:`MAX_WORK` for a work size)."""
    v = _as_int(field, value)
    if v <= 0:
        raise ConfigError(field, f"must be a positive integer, got {value!r}")
    return _check_max(field, v, value, maximum)


def check_nonneg_int(field: str, value: Any, *, maximum: int | None = None) -> int:
    """An integer >= 0 (and <= ``maximum`` when given)."""
    v = _as_int(field, value)
    if v < 0:
        raise ConfigError(field, f"must be a non-negative integer, got {value!r}")
    return _check_max(field, v, value, maximum)


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


def mlp_params(*widths: float) -> float:
    """Parameters of a chain of dense layers ``widths[0] -> widths[1] -> ...`` (weights and biases), as a float
    (an estimate for :func:`check_model_memory`; huge widths do not build a huge int)."""
    w = [float(x) for x in widths]
    return sum(a * b + b for a, b in zip(w[:-1], w[1:], strict=True))


def check_model_memory(fields: str | tuple[str, ...], num_params: float, what: str, *,
                       extra_bytes: float = 0.0) -> None:
    """:func:`check_memory` for a model of ``num_params`` float32 parameters before it is built: 16 bytes each
    (weights, gradients and two Adam moments; a lower bound, meta-batches hold more), plus ``extra_bytes`` of
    data the config stores (e.g. the drawn training channels)."""
    check_memory(fields, 16.0 * float(num_params) + float(extra_bytes), f"{what} ({float(num_params):.3g} parameters)")
