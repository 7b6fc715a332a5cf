"""Monte-Carlo simulation: the BER/BLER engine, results files, closed-form references, statistics and plots.

Public API (imported lazily, so that ``import metacomm.sims`` and the CLI start fast):

* :func:`simulate` (:mod:`metacomm.sims.engine`) -- sweep any Link or Sionna ``mc_fun`` over Eb/N0;
* :class:`SweepResult`, :class:`PointResult`, :func:`save_results`, :func:`load_results`
  (:mod:`metacomm.sims.results`);
* :func:`plot_results` (:mod:`metacomm.sims.plots`);
* :mod:`metacomm.sims.stats` (Clopper-Pearson / Wilson intervals) and :mod:`metacomm.sims.theory` (closed forms);
* :func:`build_link` (:mod:`metacomm.sims.links`) -- CLI choices to a Link.

Drift runs moved to their own wing, :mod:`metacomm.drift`, and the command line to :mod:`metacomm.cli`;
``metacomm.sims.run_drift`` and the other drift names still resolve there for one release, with a
DeprecationWarning.
"""

from __future__ import annotations

import importlib

__all__ = ["simulate", "SweepResult", "PointResult", "save_results", "load_results", "plot_results",
           "build_link", "stats", "theory"]

_LAZY = {
    "simulate": "metacomm.sims.engine",
    "SweepResult": "metacomm.sims.results",
    "PointResult": "metacomm.sims.results",
    "save_results": "metacomm.sims.results",
    "load_results": "metacomm.sims.results",
    "plot_results": "metacomm.sims.plots",
    "build_link": "metacomm.sims.links",
}
#: deprecated aliases (one release): the drift names now live in metacomm.drift
_DEPRECATED = {"run_drift": "metacomm.drift.run", "DriftRun": "metacomm.drift.run",
               "DriftRunConfig": "metacomm.drift.run", "DriftResult": "metacomm.drift.result",
               "DriftScheme": "metacomm.drift.protocol", "register_scheme": "metacomm.drift.registry"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _DEPRECATED:
        import warnings
        warnings.warn(f"metacomm.sims.{name} is deprecated: use metacomm.drift.{name}", DeprecationWarning,
                      stacklevel=2)
        return getattr(importlib.import_module(_DEPRECATED[name]), name)
    if name in ("stats", "theory"):
        return importlib.import_module(f"metacomm.sims.{name}")
    raise AttributeError(f"module 'metacomm.sims' has no attribute {name!r}")
