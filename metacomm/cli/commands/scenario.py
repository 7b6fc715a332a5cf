"""``metacomm scenario``: the built-in drift scenario files, and a starter file for your own.

    metacomm scenario list                              # the built-ins, one line each
    metacomm scenario show doppler-fast                 # its TOML file, every key annotated
    metacomm scenario new my-scenario --from pa-drift   # writes my-scenario.toml to edit
    metacomm drift --scenario my-scenario.toml --out runs/mine

The text is the built-in's own file (``metacomm/scenarios/data/<name>.toml``, what ``drift --scenario NAME``
loads); the annotations are the format's own schema (the docstring of :mod:`metacomm.scenarios.drift_scenarios`),
attached to the keys the file uses. ``new`` also appends the whole schema, commented out, for the keys the file
does not use yet. Nothing here imports torch: the command answers at once.
"""

from __future__ import annotations

import ast
import os
import re
import tomllib

from metacomm._validation import ConfigError
from metacomm.cli import _names

__all__ = ["add_parser", "annotated", "schema_block", "schema_comments", "starter", "SCHEMA_MODULE"]

#: the module whose docstring documents the scenario file format (its "Schema" section)
SCHEMA_MODULE = "metacomm.scenarios.drift_scenarios"

_TABLE = re.compile(r"^\[\[?\s*([\w.]+)\s*\]\]?\s*(?:#\s*(.*))?$")
_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*=\s*(.*?)(?:\s+#\s*(.*))?$")


def _builtin_text(name: str, field: str = "BUILTIN") -> str:
    builtins = _names.drift_scenarios()
    if name not in builtins:
        raise ConfigError(field, f"unknown built-in drift scenario {name!r}; allowed: {', '.join(builtins)}")
    return (_names.PACKAGE_DIR / "scenarios" / "data" / f"{name}.toml").read_text(encoding="utf-8")


def schema_block() -> list[str]:
    """The annotated example file of the format: the literal block of the ``Schema`` section of
    :data:`SCHEMA_MODULE`'s docstring (read from the source), dedented, one string per line."""
    doc = ast.get_docstring(_names._tree(SCHEMA_MODULE)) or ""
    lines = doc.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.rstrip().endswith("::")), None)
    if start is None:
        return []
    block = []
    for ln in lines[start + 1:]:
        if ln.strip() and not ln.startswith("    "):
            break
        block.append(ln[4:] if ln.startswith("    ") else "")
    while block and not block[0].strip():
        block.pop(0)
    while block and not block[-1].strip():
        block.pop()
    return block


def schema_comments() -> dict[tuple[str, str], str]:
    """``(table, key) -> what the key means``, from :func:`schema_block` (``table`` is ``""`` at the top level,
    ``"segment"``, ``"segment.drift"``, ...; a table's own comment is under ``(parent, name)``)."""
    out: dict[tuple[str, str], str] = {}
    table, last = "", None
    for raw in schema_block():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            inner = line.lstrip("#").strip()
            m = _KEY.match(inner)
            if m and m.group(3) is not None:  # a commented-out alternative key: "# doppler_hz = 240.0  # ..."
                last = (table, m.group(1))
                out[last] = m.group(3).lstrip("# ").strip()
            elif last is not None and inner:  # the continuation of the previous key's comment
                out[last] = f"{out[last]} {inner}".strip()
            continue
        m = _TABLE.match(line)
        if m:
            table = m.group(1)
            parent, _, leaf = table.rpartition(".")
            last = (parent, leaf)
            out[last] = (m.group(2) or "").strip()
            continue
        m = _KEY.match(line)
        if m:
            last = (table, m.group(1))
            out[last] = (m.group(3) or "").strip()
    return {k: re.sub(r",? or( instead)?$", "", v).rstrip(",; ") for k, v in out.items() if v}


def annotated(text: str) -> str:
    """``text`` (a scenario TOML file) with the schema's comment after every key and table header that has one
    and no comment of its own (the TOML stays the same file for the loader)."""
    comments = schema_comments()
    out, table = [], ""
    for line in text.splitlines():
        s = line.strip()
        note = None
        m = _TABLE.match(s)
        if m and not s.startswith("#"):
            table = m.group(1)
            parent, _, leaf = table.rpartition(".")
            note = comments.get((parent, leaf))
        elif not s.startswith("#"):
            m = _KEY.match(s)
            if m:
                note = comments.get((table, m.group(1)))
        if note and "#" not in line:
            line = f"{line}  # {note}"
        out.append(line)
    return "\n".join(out) + "\n"


def _header(lines: list[str]) -> str:
    return "".join(f"# {ln}\n" if ln else "#\n" for ln in lines)


def show_text(name: str) -> str:
    """What ``metacomm scenario show NAME`` prints."""
    return _header([f"metacomm scenario show {name}: the built-in drift scenario file, annotated (the comment after",
                    "a key says what it means; the whole format: metacomm scenario new NAME writes it into a file).",
                    f"Start your own from it: metacomm scenario new my-scenario --from {name}", ""]) \
        + annotated(_builtin_text(name))


def starter(name: str, template: str) -> str:
    """The text of a new scenario file called ``name``, started from built-in ``template``: the template's file
    with ``name`` and ``description`` replaced, annotated, and the format's schema appended as comments."""
    text = _builtin_text(template, field="--from")
    desc = f"my drift scenario, started from the built-in {template}"
    text, n = re.subn(r'(?m)^name\s*=\s*".*"\s*$', f"name = {_toml_string(name)}", text, count=1)
    if not n:
        text = f"name = {_toml_string(name)}\n" + text
    text = re.sub(r'(?m)^description\s*=\s*".*"\s*$', f"description = {_toml_string(desc)}", text, count=1)
    schema = schema_block()
    tail = ["", "# " + "-" * 108,
            "# Every key of the format (from the docstring of metacomm/scenarios/drift_scenarios.py), commented out:",
            "# copy a line above this one and remove its leading '# ' to use it. A [[segment]] table starts another",
            "# segment (a regime switch at its first frame); keys other than these are refused by the loader.",
            "#"]
    tail += [f"# {ln}" if ln else "#" for ln in schema]
    head = _header([f"{name}: a drift scenario file for metacomm drift --scenario {name}.toml, started from the",
                    f"built-in {template} (metacomm scenario new). Edit the values; the comment after a key says",
                    "what it means. Check it without running anything long:",
                    f"  metacomm drift --scenario {name}.toml --frames 5 --out runs/{name}-check", ""])
    return head + annotated(text) + "\n".join(tail) + "\n"


def _toml_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


#: the one-line help in metacomm --help (read without building this parser)
COMMAND_HELP = "drift scenario files: list and show the built-ins, start your own"


def add_parser(subparsers, name: str = "scenario"):
    p = subparsers.add_parser(name, help=COMMAND_HELP,
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="scenario_action", metavar="ACTION", parser_class=type(p))
    ls = sub.add_parser("list", help="the built-in drift scenarios with their descriptions",
                        description="The built-in drift scenarios (metacomm/scenarios/data/*.toml), one line each.")
    ls.set_defaults(run=_list)
    show = sub.add_parser("show", help="print a built-in drift scenario's TOML file, annotated",
                          description="Print a built-in drift scenario's TOML file with the meaning of every key "
                                      "(redirect it to start a file: metacomm scenario show NAME > my.toml).")
    show.add_argument("builtin", metavar="BUILTIN",
                      help=f"a built-in drift scenario: {', '.join(_names.drift_scenarios())}")
    show.add_argument("--raw", action="store_true",
                      help="print the file exactly as shipped (byte for byte, no annotations)")
    show.set_defaults(run=_show)
    new = sub.add_parser("new", help="write an annotated starter scenario file NAME.toml",
                         description="Write NAME.toml: a drift scenario file to edit, started from a built-in "
                                     "(--from), every key annotated, the whole format appended as comments. It "
                                     "loads as it is: metacomm drift --scenario NAME.toml --out DIR.")
    new.add_argument("name", metavar="NAME",
                     help="the scenario's name; the file is NAME.toml (NAME may be a path, e.g. scenarios/mine, "
                          "or end in .toml)")
    new.add_argument("--from", dest="template", default="doppler-fast", metavar="BUILTIN",
                     help=f"the built-in to start from: {', '.join(_names.drift_scenarios())} (default "
                          "doppler-fast, the demo's)")
    new.add_argument("--overwrite", action="store_true", help="replace an existing NAME.toml (refused otherwise)")
    new.set_defaults(run=_new)
    for sp, action in ((ls, "list"), (show, "show"), (new, "new")):
        sp.set_defaults(command_parser=sp, command_name=f"{name} {action}", torch_free=True)
    p.set_defaults(run=_no_action, command_parser=p, torch_free=True)
    return p


def _no_action(args) -> int:
    raise ConfigError("ACTION", "name an action: list, show BUILTIN or new NAME")


def _list(args) -> int:
    for n in _names.drift_scenarios():
        try:
            desc = tomllib.loads(_builtin_text(n)).get("description", "")
        except tomllib.TOMLDecodeError:
            desc = ""
        print(f"{n:<20} {desc}")
    return 0


def _show(args) -> int:
    print(_builtin_text(args.builtin) if args.raw else show_text(args.builtin), end="")
    return 0


def _new(args) -> int:
    path = args.name if args.name.endswith(".toml") else args.name + ".toml"
    stem = os.path.basename(path)[:-len(".toml")]
    if not stem:
        raise ConfigError("NAME", f"{args.name!r} has no name before .toml")
    if os.path.isdir(path):
        raise ConfigError("NAME", f"{path} is a directory")
    if os.path.exists(path) and not args.overwrite:
        raise ConfigError("NAME", f"{path} exists; choose another name or replace it with --overwrite")
    text = starter(stem, args.template)
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        raise ConfigError("NAME", f"{parent} is not a directory")
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise ConfigError("NAME", f"cannot write {path}: {e.strerror or e}") from None
    print(f"scenario: wrote {path} (from {args.template}); run it with metacomm drift --scenario {path} --out DIR")
    return 0
