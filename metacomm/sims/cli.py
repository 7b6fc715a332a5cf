"""Deprecated alias of :mod:`metacomm.cli.main` (the command line moved to the ``metacomm.cli`` package); kept for
one release, warns on import."""

import warnings

from metacomm.cli.main import build_parser, flag_of, main  # noqa: F401  (deprecated alias: the one upward import)

warnings.warn("metacomm.sims.cli is deprecated: use metacomm.cli.main", DeprecationWarning, stacklevel=2)
