"""Scenario packs.

**Few-shot scenarios** (:class:`~metacomm.scenarios.base.FewShotScenario`, the contract every pack declares):
a task distribution, a codec architecture, a meta-objective, task samplers, a test protocol and its classical
and genie references. Built in: ``fading-ae`` (:mod:`metacomm.scenarios.fewshot_fading`, Park, Simeone & Kang
2020) and ``iq-demod`` (:mod:`metacomm.scenarios.fewshot_iq`, Park, Jang, Simeone & Kang 2021). A pack
registers with :func:`register_scenario`; :func:`make_scenario` builds one by name, :func:`scenario_names`
lists them (:data:`SCENARIOS` is the tuple of the built-in names).

**Drift scenarios** (channel timelines for drift runs) live in :mod:`metacomm.scenarios.drift_scenarios`:
:func:`load_scenario` takes a built-in name (:func:`list_scenarios`) or a TOML file and returns a
:class:`DriftScenario`; the online-drift codec (``metacomm demo`` / ``metacomm drift``) is in
:mod:`metacomm.scenarios.online_drift`.
"""

from __future__ import annotations

from metacomm.scenarios.base import FewShotScenario
from metacomm.scenarios.drift_scenarios import (
    BUILTIN_SCENARIOS,
    DriftScenario,
    list_scenarios,
    load_scenario,
    parse_scenario,
)
from metacomm.scenarios.registry import make_scenario, register_scenario, scenario_class, scenario_names

__all__ = ["BUILTIN_SCENARIOS", "SCENARIOS", "DriftScenario", "FewShotScenario", "Scenario", "list_scenarios",
           "load_scenario", "make_scenario", "parse_scenario", "register_scenario", "scenario_class",
           "scenario_names"]

#: the built-in few-shot scenarios (every registered one: :func:`scenario_names`)
SCENARIOS = ("fading-ae", "iq-demod", "drift")


def __getattr__(name: str):
    if name == "Scenario":  # the drift timeline's class before it was renamed DriftScenario
        import warnings
        warnings.warn("metacomm.scenarios.Scenario is deprecated; use DriftScenario", DeprecationWarning,
                      stacklevel=2)
        return DriftScenario
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
