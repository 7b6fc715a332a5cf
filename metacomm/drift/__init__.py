"""The drift wing: frame-by-frame runs of a drifting channel with every receiver on the same draws.

Reading bottom-up: :mod:`~metacomm.drift.protocol` (what a scheme sees and returns: :class:`DriftScheme`,
:class:`DriftContext`, :class:`FrameSignals`, :class:`Decision`; :class:`DriftLink`, the kind of link) <-
:mod:`~metacomm.drift.registry` (the one scheme table: :func:`register_scheme`, :func:`default_schemes`) <-
:mod:`~metacomm.drift.schemes` (the receivers) and :mod:`~metacomm.drift.links` (the block-codec link),
:mod:`~metacomm.drift.result` <- :mod:`~metacomm.drift.run` (:class:`DriftRun`, :func:`run_drift`);
:mod:`~metacomm.drift.pooled` pools the results of many seeds.

Public API (imported lazily): :func:`run_drift`, :class:`DriftRun`, :class:`DriftRunConfig`, :class:`DriftResult`,
:func:`plot_drift`, :class:`DriftScheme`, :class:`DriftContext`, :class:`FrameSignals`, :class:`Decision`,
:class:`DriftLink`, :class:`BlockCodecLink`, :func:`register_scheme`, :func:`scheme_names`,
:func:`default_schemes`, :func:`make_scheme`.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "run_drift": "metacomm.drift.run", "DriftRun": "metacomm.drift.run", "DriftRunConfig": "metacomm.drift.run",
    "DriftResult": "metacomm.drift.result", "plot_drift": "metacomm.drift.result",
    "DriftScheme": "metacomm.drift.protocol", "DriftContext": "metacomm.drift.protocol",
    "FrameSignals": "metacomm.drift.protocol", "Decision": "metacomm.drift.protocol",
    "DriftLink": "metacomm.drift.protocol", "BlockCodecLink": "metacomm.drift.links",
    "register_scheme": "metacomm.drift.registry", "scheme_names": "metacomm.drift.registry",
    "default_schemes": "metacomm.drift.registry", "make_scheme": "metacomm.drift.registry",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'metacomm.drift' has no attribute {name!r}")
