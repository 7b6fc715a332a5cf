"""Names the parsers show, found without importing torch, Sionna or the layers that pull them in.

``metacomm --help``, every ``metacomm CMD --help`` and every usage error answer in well under a second because no
parser imports :mod:`metacomm.experiments`, the channels or the codecs (each command imports them inside its
``run``). The names a help text lists still come from their one registry, never from a second copy here:

* **data files**: the built-in drift scenarios are ``metacomm/scenarios/data/*.toml`` (what
  :func:`metacomm.scenarios.drift_scenarios.list_scenarios` lists), the OFDM link presets
  ``metacomm/codecs/ofdm_links/*.toml`` (:func:`metacomm.codecs.ofdm_config.preset_names`), the shipped trackers
  ``metacomm/checkpoints/drift_track_<scenario>_p<pilots>.pt``: :func:`data_names` lists the folder;
* **constants**: a registry's literal table (``CHANNELS = ("awgn", ...)``, ``RECEIVERS = tuple(RECEIVER_HELP)``,
  a config dataclass's fields) is read from the module's source with :mod:`ast` (:func:`constant`,
  :func:`dataclass_fields`), without executing it;
* **registries filled at import time** (drift schemes, few-shot scenarios): the flag takes the value ``list``
  (:class:`ListNames`), which imports the registry and prints it; any other value is checked at run time by the
  registry itself (one line naming the flag, exit 2).

Every read is recorded in :data:`READS`; ``tests/cli/test_names.py`` compares each with the value the real module
computes, so a table that stops being readable this way (or a folder that stops matching its registry) fails a
test instead of drifting.
"""

from __future__ import annotations

import argparse
import ast
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import metacomm

__all__ = ["PACKAGE_DIR", "data_names", "constant", "dataclass_fields", "StaticField", "ListNames", "READS",
           "drift_scenarios", "ofdm_link_presets", "shipped_trackers", "StaticReadError", "names", "listing"]

#: the installed ``metacomm`` package folder
PACKAGE_DIR = Path(metacomm.__file__).resolve().parent

#: every static read a parser made: ``("data", folder, suffix)``, ``("constant", module, name)`` or
#: ``("fields", module, class)``, in order (the test checks each against the real module)
READS: list[tuple[str, str, str]] = []


class StaticReadError(Exception):
    """A table that cannot be read from the source without running it (the help then says ``FLAG list``)."""


def _record(entry: tuple[str, str, str]) -> None:
    if entry not in READS:
        READS.append(entry)


def data_names(folder: str, suffix: str, prefix: str = "") -> list[str]:
    """Sorted stems of the files ``PACKAGE_DIR/folder/<prefix>*<suffix>`` (e.g. the ``.toml`` presets of a folder).

    ``folder`` is relative to the package, with ``/``; the stem has ``prefix`` and ``suffix`` removed."""
    _record(("data", folder, suffix))
    d = PACKAGE_DIR.joinpath(*folder.split("/"))
    try:
        entries = os.listdir(d)
    except OSError:
        return []
    return sorted(e[len(prefix):len(e) - len(suffix)] for e in entries
                  if e.startswith(prefix) and e.endswith(suffix) and (d / e).is_file())


def drift_scenarios() -> list[str]:
    """The built-in drift scenarios (``metacomm/scenarios/data/*.toml``)."""
    return data_names("scenarios/data", ".toml")


def ofdm_link_presets() -> list[str]:
    """The built-in OFDM link presets (``metacomm/codecs/ofdm_links/*.toml``)."""
    return data_names("codecs/ofdm_links", ".toml")


def shipped_trackers() -> dict[str, list[int]]:
    """Shipped meta-learned trackers: scenario -> pilot counts (``checkpoints/drift_track_<s>_p<P>.pt``)."""
    found: dict[str, list[int]] = {}
    for stem in data_names("checkpoints", ".pt", prefix="drift_track_"):
        scenario, sep, pilots = stem.rpartition("_p")
        if sep and pilots.isdigit():
            found.setdefault(scenario, []).append(int(pilots))
    return {s: sorted(p) for s, p in found.items()}


# ---------------------------------------------------------------------------------------------------------------
# constants read from a module's source
# ---------------------------------------------------------------------------------------------------------------

def _source_path(module: str) -> Path:
    parts = module.split(".")
    if parts[0] != "metacomm":
        raise StaticReadError(f"{module} is not a metacomm module")
    p = PACKAGE_DIR.joinpath(*parts[1:])
    return p / "__init__.py" if (p / "__init__.py").is_file() else p.with_suffix(".py")


@functools.cache
def _tree(module: str) -> ast.Module:
    try:
        return ast.parse(_source_path(module).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError) as e:
        raise StaticReadError(f"cannot read {module}: {e}") from None


def _binding(module: str, name: str):
    """``(module, node)``: the value node assigned to ``name`` at the top of ``module``, following
    ``from X import name``."""
    tree = _tree(module)
    found: tuple[str, ast.expr | str] | None = None
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
            found = (module, stmt.value)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == name \
                and stmt.value is not None:
            found = (module, stmt.value)
        elif isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and stmt.module:
            for alias in stmt.names:
                if (alias.asname or alias.name) == name:
                    found = (stmt.module, alias.name)
    if found is None:
        raise StaticReadError(f"{module}.{name} is not assigned at the top of the module")
    return found


def _value(module: str, name: str, depth: int = 0):
    if depth > 8:
        raise StaticReadError(f"{module}.{name}: too many indirections")
    where, node = _binding(module, name)
    if isinstance(node, str):  # imported from another module
        return _value(where, node, depth + 1)
    return _eval(where, node, depth)


def _eval(module: str, node, depth: int):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        items = [_eval(module, e, depth) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items if isinstance(node, ast.List) else set(items)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise StaticReadError(f"{module}: ** in a dict literal")
        return {_eval(module, k, depth): _eval_or_none(module, v, depth) for k, v in zip(node.keys, node.values,
                                                                                        strict=True)}
    if isinstance(node, ast.Name):
        return _value(module, node.id, depth + 1)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(module, node.operand, depth)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _eval(module, node.left, depth) + _eval(module, node.right, depth)
    if isinstance(node, ast.Call) and not node.keywords and len(node.args) == 1:
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("tuple", "list", "sorted", "set", "frozenset"):
            arg = _eval(module, node.args[0], depth)
            makers: dict[str, Callable[[Any], Any]] = {"tuple": tuple, "list": list, "sorted": sorted, "set": set,
                                                       "frozenset": frozenset}
            return makers[func.id](arg)
        if isinstance(func, ast.Attribute) and func.attr == "join" and isinstance(func.value, ast.Constant) \
                and isinstance(func.value.value, str):
            return func.value.value.join(_eval(module, node.args[0], depth))
    raise StaticReadError(f"{module}: {ast.unparse(node)!r} is not a literal table")


class _Opaque:
    """A dict value that is not a literal (e.g. ``PackSpec(...)``): only the keys of such a table are read."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _eval_or_none(module: str, node, depth: int):
    try:
        return _eval(module, node, depth)
    except StaticReadError:
        return _Opaque(ast.unparse(node))


def constant(module: str, name: str):
    """The value of the literal table ``module.name`` (a tuple, list, dict, string or number; a dict's values that
    are not literals read as opaque placeholders), read from the source without importing the module.

    Raises :class:`StaticReadError` when the value is computed by code this reader does not follow."""
    _record(("constant", module, name))
    return _value(module, name)


def names(module: str, name: str) -> list[str] | None:
    """:func:`constant` as a list of names (a dict's keys), or None when it cannot be read statically."""
    try:
        v = constant(module, name)
    except StaticReadError:
        return None
    return [str(x) for x in (v.keys() if isinstance(v, dict) else v)]


def listing(module: str, name: str) -> str:
    """The names of the table ``module.name`` as a comma list for a help text (or, when the table cannot be read
    statically, where to find them)."""
    got = names(module, name)
    return ", ".join(got) if got else f"the names of {module}.{name}"


class StaticField:
    """One field of a dataclass read from its source: ``name``, ``default`` (the value, or an
    :class:`_Opaque` whose repr is the source expression), ``has_default``."""

    __slots__ = ("name", "default", "has_default")

    def __init__(self, name, default, has_default):
        self.name, self.default, self.has_default = name, default, has_default


def dataclass_fields(module: str, cls: str) -> list[StaticField]:
    """The fields of dataclass ``module.cls`` in declaration order (no ``ClassVar``), read from the source.

    Only the class's own body is read (a dataclass that inherits fields raises :class:`StaticReadError`)."""
    _record(("fields", module, cls))
    tree = _tree(module)
    node = next((s for s in tree.body if isinstance(s, ast.ClassDef) and s.name == cls), None)
    if node is None:
        raise StaticReadError(f"{module}.{cls} is not a class at the top of the module")
    if node.bases:
        raise StaticReadError(f"{module}.{cls} has base classes")
    out = []
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        if "ClassVar" in ast.unparse(stmt.annotation):
            continue
        value = stmt.value
        if value is None:
            out.append(StaticField(stmt.target.id, None, False))
            continue
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "field":
            kw = {k.arg: k.value for k in value.keywords}
            if "default" in kw:
                value = kw["default"]
            else:
                out.append(StaticField(stmt.target.id, _Opaque(ast.unparse(value)), True))
                continue
        out.append(StaticField(stmt.target.id, _eval_or_none(module, value, 0), True))
    return out


# ---------------------------------------------------------------------------------------------------------------
# FLAG list: names of a registry that is filled at import time
# ---------------------------------------------------------------------------------------------------------------

class ListNames(argparse.Action):
    """A flag taking one value, where the value ``list`` prints ``lister()`` (which may import the registry, and
    so take seconds) and exits 0 -- before the checks for required flags, as ``--version`` does.

    ``add_argument("--schemes", action=ListNames, lister=fn, ...)``; any other value is stored unchanged and
    checked by the registry when the command runs."""

    def __init__(self, option_strings, dest, lister=None, **kwargs):
        if lister is None:
            raise ValueError("ListNames needs lister=")
        self.lister = lister
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if values == "list":
            print(str(self.lister()).rstrip("\n"))  # on stdout, as --help is
            parser.exit(0)
        setattr(namespace, self.dest, values)
