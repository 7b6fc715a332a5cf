"""MkDocs hook: the API reference pages, generated at build time from the package tree.

One page per public package (``api/<package>.md``): the package docstring, then every public submodule (names
not starting with ``_``, recursively; deprecated aliases left out) rendered by mkdocstrings. Generated, so a new
module appears in the reference without editing a page.
"""

from __future__ import annotations

import pkgutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "channels": "Channels", "codecs": "Codecs", "adaptation": "Adaptation (the meta-engine)",
    "scenarios": "Scenarios", "sims": "Simulation (the BER engine)", "drift": "Drift runs",
    "experiments": "Experiments (one call per command)",
}
DEPRECATED_MODULES = {"metacomm.sims.cli"}  # alias of metacomm.cli.main, kept for one release


def public_modules(package: str) -> list[str]:
    """Dotted names of the public submodules of ``metacomm.<package>`` (recursive, sorted by path)."""
    found: list[str] = []

    def walk(path: Path, prefix: str) -> None:
        for m in sorted(pkgutil.iter_modules([str(path)]), key=lambda m: m.name):
            name = prefix + m.name
            if m.name.startswith("_") or name in DEPRECATED_MODULES:
                continue
            found.append(name)
            if m.ispkg:
                walk(path / m.name, name + ".")

    walk(ROOT / "metacomm" / package, f"metacomm.{package}.")
    return found


def api_page(package: str) -> str:
    """The Markdown of ``api/<package>.md``."""
    lines = [f"# {PACKAGES[package]}: `metacomm.{package}`", "", f"::: metacomm.{package}", "    options:",
             "      members: false", ""]
    for name in public_modules(package):
        lines += [f"## `{name}`", "", f"::: {name}", ""]
    return "\n".join(lines)


def on_files(files, config):
    from mkdocs.structure.files import File

    for package in PACKAGES:
        files.append(File.generated(config, f"api/{package}.md", content=api_page(package)))
    return files
