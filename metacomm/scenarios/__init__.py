"""Scenario packs: a scenario bundles a channel distribution, a codec architecture, a meta-objective, task
samplers and an evaluation protocol (see :mod:`metacomm.scenarios.fewshot_fading` -- ``fading-ae``, Park,
Simeone & Kang 2020 -- and :mod:`metacomm.scenarios.fewshot_iq` -- ``iq-demod``, Park, Jang, Simeone & Kang
2021).

:func:`make_scenario` builds one by name; :data:`SCENARIOS` lists the names.

Drift scenarios (channel timelines for drift runs) live in :mod:`metacomm.scenarios.drift_scenarios`:
:func:`load_scenario` takes a built-in name (:func:`list_scenarios`) or a TOML file; the online-drift codec
(``metacomm demo`` / ``metacomm drift``) in :mod:`metacomm.scenarios.online_drift`.
"""

from __future__ import annotations

from metacomm._validation import ConfigError, check_choice
from metacomm.scenarios.drift_scenarios import (
    BUILTIN_SCENARIOS,
    Scenario,
    list_scenarios,
    load_scenario,
    parse_scenario,
)

__all__ = ["BUILTIN_SCENARIOS", "SCENARIOS", "Scenario", "list_scenarios", "load_scenario", "make_scenario",
           "parse_scenario"]

SCENARIOS = ("fading-ae", "iq-demod")


def make_scenario(name: str, *, device="cpu", **overrides):
    """Scenario ``name`` on ``device`` with config ``overrides`` (keyword = config field).

    Raises ConfigError for an unknown name (listing the allowed ones) or an unknown/bad config field.
    """
    check_choice("--scenario", name, SCENARIOS)
    if name == "fading-ae":
        from metacomm.scenarios.fewshot_fading import FadingAEConfig, FadingAEScenario
        fields = FadingAEConfig.__dataclass_fields__
        bad = [k for k in overrides if k not in fields]
        if bad:
            raise ConfigError(bad[0], f"not a {name} setting; allowed: {', '.join(fields)}")
        return FadingAEScenario(FadingAEConfig(**overrides), device=device)
    if name == "iq-demod":
        from metacomm.scenarios.fewshot_iq import IQDemodConfig, IQDemodScenario
        fields = IQDemodConfig.__dataclass_fields__
        bad = [k for k in overrides if k not in fields]
        if bad:
            raise ConfigError(bad[0], f"not a {name} setting; allowed: {', '.join(fields)}")
        return IQDemodScenario(IQDemodConfig(**overrides), device=device)
    raise ConfigError("--scenario", f"{name!r} is not implemented")  # pragma: no cover
