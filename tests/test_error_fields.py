"""Library errors name config keys, never CLI flags.

``ConfigError(field, ...)`` raised by library code names a config key (``block_length``, ``out``, ...); only the
CLI (:mod:`metacomm.cli`, via ``flag_of``) turns a key into the flag the user typed. This test reads every module
under ``metacomm/`` except ``metacomm/cli/`` and fails on a string literal starting with ``--`` given as

* an argument of a ``ConfigError(...)``, ``check_*(...)`` or ``_check_*(...)`` call (also inside a tuple/list,
  e.g. the ``fields`` of ``check_memory``),
* a ``field=`` / ``*_field=`` keyword argument of any call (also ``fields``, ``field_name``, ``field_names``, and
  those with a prefix: ``k_field``, ``n_field``, ...),
* the default of a parameter called like that,
* the value assigned to a name called like that (e.g. a module constant ``FIELD = "--checkpoint"``).

Flags inside message text (advice such as "pass --allow-partial") are not fields and are not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import metacomm

PACKAGE = Path(metacomm.__file__).resolve().parent
EXCLUDED = PACKAGE / "cli"


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if EXCLUDED not in p.parents)


_FIELD_NAMES = ("field", "fields", "field_name", "field_names")


def _is_field_name(name: str | None) -> bool:
    n = (name or "").lower()
    return n in _FIELD_NAMES or n.endswith(tuple("_" + f for f in _FIELD_NAMES))


def _flags(node: ast.AST | None) -> list[ast.Constant]:
    """String literals starting with ``--`` in ``node`` itself or its tuple/list/set elements."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("--"):
        return [node]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [c for e in node.elts for c in _flags(e)]
    return []


def _call_name(func: ast.AST) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _target_name(target: ast.AST) -> str | None:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    return None


def flag_fields(tree: ast.AST) -> list[tuple[int, str, str]]:
    """``(line, what, literal)`` for every CLI flag used as an error field in ``tree``."""
    found: list[tuple[int, str, str]] = []

    def add(nodes, what):
        found.extend((c.lineno, what, c.value) for c in nodes)

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _call_name(node.func)
            if name == "ConfigError" or name.lstrip("_").startswith("check_"):
                for arg in node.args:
                    add(_flags(arg), f"argument of {name}()")
            for kw in node.keywords:
                if _is_field_name(kw.arg):
                    add(_flags(kw.value), f"{kw.arg}= argument of {name or 'a call'}()")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            positional = a.posonlyargs + a.args
            pairs = list(zip(positional[len(positional) - len(a.defaults):], a.defaults, strict=True))
            pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None]
            for arg, default in pairs:
                if _is_field_name(arg.arg):
                    add(_flags(default), f"default of parameter {arg.arg}")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if _is_field_name(_target_name(t)):
                    add(_flags(node.value), f"value assigned to {_target_name(t)}")
    return found


def test_scanner_finds_flag_fields():
    src = '''
FIELD = "--checkpoint"
def f(x, field="--out", *, k_field: str = "--block-length", field_name: str = "--results"):
    check_positive_int("--batch-size", x)
    check_memory(("--batch-size", "blocks"), 1.0, "w")
    save(x, field="--out")
    _check_targets(x, True, "--out")
    raise ConfigError("--codec", "needs --checkpoint PATH")
'''
    lits = [lit for _, _, lit in flag_fields(ast.parse(src))]
    assert sorted(lits) == sorted(["--checkpoint", "--out", "--block-length", "--results", "--batch-size",
                                   "--batch-size", "--out", "--out", "--codec"])
    ok = '''
FIELD = "checkpoint"
def f(x, field="out"):
    check_positive_int("batch_size", x)
    raise ConfigError("codec", f"--codec {x} needs --checkpoint PATH")
'''
    assert flag_fields(ast.parse(ok)) == []


def test_library_errors_name_config_keys_not_flags():
    modules = _modules()
    assert len(modules) > 20 and not any(EXCLUDED in p.parents for p in modules)
    bad = []
    for path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = path.relative_to(PACKAGE.parent)
        bad += [f"{rel}:{line}: {what}: {lit!r}" for line, what, lit in flag_fields(tree)]
    assert not bad, ("library code must name config keys (e.g. 'block_length'), not CLI flags; the CLI maps keys "
                     "to flags (metacomm.cli.main.flag_of / KEY_TO_FLAG):\n" + "\n".join(bad))
