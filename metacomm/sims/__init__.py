"""Monte-Carlo simulation: the BER/BLER engine, results files, closed-form references, plots and the CLI.

Public API (imported lazily, so that ``import metacomm.sims`` and the CLI start fast):

* :func:`simulate` (:mod:`metacomm.sims.engine`) -- sweep any Link or Sionna ``mc_fun`` over Eb/N0;
* :class:`SweepResult`, :class:`PointResult`, :func:`save_results`, :func:`load_results`
  (:mod:`metacomm.sims.results`);
* :func:`plot_results` (:mod:`metacomm.sims.plots`);
* :mod:`metacomm.sims.stats` (Clopper-Pearson / Wilson intervals) and :mod:`metacomm.sims.theory` (closed forms);
* :func:`build_link` (:mod:`metacomm.sims.links`) -- CLI choices to a Link;
* drift runs: :func:`run_drift`, :class:`DriftRun`, :class:`DriftRunConfig` (:mod:`metacomm.sims.drift_run`),
  :class:`DriftResult` (:mod:`metacomm.sims.drift_result`), :class:`DriftScheme`, :func:`register_scheme`
  (:mod:`metacomm.sims.drift_schemes`).
"""

from __future__ import annotations

import importlib

__all__ = ["simulate", "SweepResult", "PointResult", "save_results", "load_results", "plot_results",
           "build_link", "run_drift", "DriftRun", "DriftRunConfig", "DriftResult", "DriftScheme", "register_scheme",
           "stats", "theory"]

_LAZY = {
    "simulate": "metacomm.sims.engine",
    "SweepResult": "metacomm.sims.results",
    "PointResult": "metacomm.sims.results",
    "save_results": "metacomm.sims.results",
    "load_results": "metacomm.sims.results",
    "plot_results": "metacomm.sims.plots",
    "build_link": "metacomm.sims.links",
    "run_drift": "metacomm.sims.drift_run",
    "DriftRun": "metacomm.sims.drift_run",
    "DriftRunConfig": "metacomm.sims.drift_run",
    "DriftResult": "metacomm.sims.drift_result",
    "DriftScheme": "metacomm.sims.drift_schemes",
    "register_scheme": "metacomm.sims.drift_schemes",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in ("stats", "theory"):
        return importlib.import_module(f"metacomm.sims.{name}")
    raise AttributeError(f"module 'metacomm.sims' has no attribute {name!r}")
