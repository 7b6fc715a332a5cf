"""metacomm: an adaptive communications simulator.

Differentiable channel models (:mod:`metacomm.channels`) feed learned and classical encoder/decoder pairs
(:mod:`metacomm.codecs`); a MAML-family meta-engine (:mod:`metacomm.adaptation`) adapts codecs to new and
drifting channels; :mod:`metacomm.sims` runs Monte-Carlo BER/BLER sweeps and drift runs.

Dependencies point one way: ``sims``/``scenarios`` -> ``adaptation`` -> ``codecs`` -> ``channels``.
"""

from importlib import metadata as _metadata
from pathlib import Path as _Path

from metacomm._validation import ConfigError


def _read_version() -> str:
    """The package version: the installed distribution's metadata (``importlib.metadata.version("metacomm")``),
    or, when running from a source tree that was never installed, the ``version`` in the ``pyproject.toml``
    next to the package; ``"0+unknown"`` when neither is there. Written into results files and checkpoints."""
    try:
        return _metadata.version("metacomm")
    except _metadata.PackageNotFoundError:
        pass
    try:
        import tomllib

        with open(_Path(__file__).resolve().parent.parent / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "0+unknown"


__version__ = _read_version()

__all__ = ["ConfigError", "__version__"]
