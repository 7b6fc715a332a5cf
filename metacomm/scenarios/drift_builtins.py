"""Which built-in drift scenario a scenario *is*, by content: what the shipped learned parts (meta-learned trackers,
dd-mwnet weightings) are chosen by -- never a file name or a ``name`` key (a user file ``sub/doppler-fast.toml``
with other settings, or one that says ``name = "doppler-slow"``, gets none)."""

from __future__ import annotations

import hashlib
from importlib import resources

__all__ = ["builtin_scenario_text", "scenario_text", "builtin_match", "builtin_of", "text_sha256"]


def text_sha256(text: str) -> str:
    """Hex SHA-256 of a scenario's TOML text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def builtin_scenario_text(name: str) -> str | None:
    """The TOML text of built-in drift scenario ``name``, or None."""
    name = str(name)
    if "/" in name or "\\" in name or name.endswith(".toml"):
        return None
    f = resources.files("metacomm.scenarios").joinpath("data", f"{name}.toml")
    return f.read_text(encoding="utf-8") if f.is_file() else None


def scenario_text(scenario) -> str | None:
    """The TOML text a scenario argument (a built-in name or a file path) stands for, or None when unreadable."""
    text = builtin_scenario_text(scenario)
    if text is not None:
        return text
    try:
        with open(str(scenario), encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def builtin_match(scenario) -> str | None:
    """The built-in drift scenario whose TOML text ``scenario`` (a name or a file) has, byte for byte, or None."""
    if builtin_scenario_text(scenario) is not None:
        return str(scenario)
    text = scenario_text(scenario)
    if text is None:
        return None
    from metacomm.scenarios.drift_scenarios import list_scenarios
    return next((b for b in list_scenarios() if builtin_scenario_text(b) == text), None)


def builtin_of(scenario) -> str | None:
    """:func:`builtin_match` of a loaded :class:`~metacomm.scenarios.drift_scenarios.DriftScenario` (by its source:
    ``<builtin>/NAME.toml`` or the file it was read from; None for a scenario parsed from a string)."""
    src = str(getattr(scenario, "source", ""))
    if src.startswith("<builtin>/") and src.endswith(".toml"):
        return src[len("<builtin>/"):-len(".toml")]
    return builtin_match(src) if src and not src.startswith("<") else None
