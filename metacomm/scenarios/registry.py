"""The scenario registry: :func:`register_scenario` (a class decorator that checks the contract of
:class:`~metacomm.scenarios.base.FewShotScenario` when a pack is imported) and :func:`make_scenario` (build
one by name with config overrides). The built-in packs are imported lazily by :func:`scenario_names`.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

from metacomm._validation import ConfigError
from metacomm.scenarios.base import METRICS, SNR_KINDS, FewShotScenario

__all__ = ["register_scenario", "make_scenario", "scenario_class", "scenario_names", "BUILTIN_PACKS"]

_REGISTRY: dict[str, type[FewShotScenario]] = {}

#: modules whose import registers the built-in scenarios
BUILTIN_PACKS = ("metacomm.scenarios.fewshot_fading", "metacomm.scenarios.fewshot_iq", "metacomm.scenarios.drift_track",
                 "metacomm.scenarios.adversarial",
                 "metacomm.scenarios.fewshot_compression", "metacomm.scenarios.label_noise")


def _fail(cls, what: str):
    raise TypeError(f"scenario class {cls.__module__}.{cls.__qualname__}: {what}")


def _check_contract(cls) -> None:
    if not (isinstance(cls, type) and issubclass(cls, FewShotScenario)):
        _fail(cls, "must subclass metacomm.scenarios.base.FewShotScenario")
    if inspect.isabstract(cls):
        _fail(cls, f"does not implement {', '.join(sorted(cls.__abstractmethods__))}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name != name.strip() or " " in name:
        _fail(cls, f"name must be a non-empty string without spaces, got {name!r}")
    cfg = getattr(cls, "config_class", None)
    if not (isinstance(cfg, type) and dataclasses.is_dataclass(cfg) and callable(getattr(cfg, "validate", None))):
        _fail(cls, "config_class must be a dataclass with a validate() method")
    fields = {f.name for f in dataclasses.fields(cfg)}
    if cls.metric not in METRICS:
        _fail(cls, f"metric must be one of {METRICS}, got {cls.metric!r}")
    for key in ("meta_batch", "outer_lr", "meta_steps"):
        if key not in cls.meta_defaults:
            _fail(cls, f"meta_defaults lacks {key!r}")
    for attr in ("support_field", "snr_field"):
        val = getattr(cls, attr, None)
        if val not in fields:
            _fail(cls, f"{attr} = {val!r} is not a field of {cfg.__name__}")
    if cls.snr_kind not in SNR_KINDS:
        _fail(cls, f"snr_kind must be one of {SNR_KINDS}, got {cls.snr_kind!r}")
    for scheme, method in cls.classical_schemes.items():
        if not callable(getattr(cls, method, None)):
            _fail(cls, f"classical scheme {scheme!r} names no method {method!r}")
    if not isinstance(cls.common_random_numbers, bool):
        _fail(cls, "common_random_numbers must be a bool")


def register_scenario(cls):
    """Class decorator: check ``cls`` against the scenario contract and register it under ``cls.name``.

    Raises :class:`TypeError` for a broken declaration and for a name registered by another class."""
    _check_contract(cls)
    other = _REGISTRY.get(cls.name)
    if other is not None and other.__qualname__ != cls.__qualname__:
        _fail(cls, f"name {cls.name!r} is already registered by {other.__module__}.{other.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for mod in BUILTIN_PACKS:
        importlib.import_module(mod)


def scenario_names() -> tuple[str, ...]:
    """Names of every registered scenario (built-in packs first)."""
    _load_builtins()
    return tuple(_REGISTRY)


def scenario_class(name: str, *, field: str = "scenario") -> type[FewShotScenario]:
    """The registered class of ``name``; ConfigError naming ``field`` and the allowed names otherwise."""
    names = scenario_names()
    if name not in _REGISTRY:
        raise ConfigError(field, f"unknown scenario {name!r}; allowed: {', '.join(names)}")
    return _REGISTRY[name]


def make_scenario(name: str, *, device="cpu", **config) -> FewShotScenario:
    """Scenario ``name`` on ``device`` with config overrides (keyword = config field).

    Raises ConfigError for an unknown name (listing the registered ones) or an unknown/bad config field
    (naming the field and listing the allowed ones)."""
    cls = scenario_class(name)
    fields = [f.name for f in dataclasses.fields(cls.config_class)]
    bad = [k for k in config if k not in fields]
    if bad:
        takers = [n for n, c in _REGISTRY.items() if bad[0] in {f.name for f in dataclasses.fields(c.config_class)}]
        where = f" (a setting of scenario {', '.join(takers)})" if takers else ""
        raise ConfigError(bad[0], f"scenario {name!r} has no setting {bad[0]!r}{where}; its settings: "
                                  f"{', '.join(fields)}")
    return cls(cls.config_class(**config), device=device)
