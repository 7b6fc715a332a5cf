"""metacomm: an adaptive communications simulator.

Differentiable channel models (:mod:`metacomm.channels`) feed learned and classical encoder/decoder pairs
(:mod:`metacomm.codecs`); a MAML-family meta-engine (:mod:`metacomm.adaptation`) adapts codecs to new and
drifting channels; :mod:`metacomm.sims` runs Monte-Carlo BER/BLER sweeps and drift runs.

Dependencies point one way: ``sims``/``scenarios`` -> ``adaptation`` -> ``codecs`` -> ``channels``.
"""

from metacomm._validation import ConfigError

__version__ = "0.1.0"

__all__ = ["ConfigError", "__version__"]
