"""Griffe extension for the docs build: turn the reST of metacomm's docstrings into Markdown.

The docstrings are written for reading in the source and in ``help()``: Sphinx roles (``:class:`~a.b.C```),
double-backtick literals and ``::`` literal blocks. mkdocstrings renders docstrings as Markdown, so this extension
rewrites, in every docstring it loads: a role with a ``~`` target to its last component in code (``C``), a role to
its target in code, a role ``text <target>`` to ``text``, ``:math:`x``` to inline maths ``\\(x\\)`` (rendered by
MathJax through ``pymdownx.arithmatex``), the field lists ``:param x:`` / ``:returns:`` / ``:raises E:`` to
Markdown list items, and a trailing ``::`` to ``:`` (the indented block after it is then a Markdown code block).
Nothing else changes.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|obj|exc|const|term|ref):`([^`]+)`")


def _role(match: re.Match[str]) -> str:
    target = match.group(1).strip()
    titled = re.fullmatch(r"(.+?)\s*<([^>]+)>", target)
    if titled:
        return f"`{titled.group(1)}`"
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target.lstrip('!')}`"


_MATH = re.compile(r":math:`([^`]+)`")
_FIELD = re.compile(r"(?m)^([ \t]*):(param|parameter|arg|key|keyword|returns?|raises?|yields?|rtype|type)"
                    r"(?:[ \t]+([^:\n]+))?:[ \t]*")


def _field(match: re.Match[str]) -> str:
    indent, kind, name = match.group(1), match.group(2), match.group(3)
    label = {"return": "returns", "raise": "raises", "yield": "yields"}.get(kind, kind)
    if kind in ("param", "parameter", "arg", "key", "keyword", "type"):
        return f"{indent}- `{name.strip()}`: " if name else f"{indent}- "
    return f"{indent}- *{label}*{' `' + name.strip() + '`' if name else ''}: "


def rst_to_markdown(text: str) -> str:
    """The docstring ``text`` with its reST roles, maths, field lists and ``::`` markers rewritten as Markdown."""
    text = _MATH.sub(lambda m: "\\(" + m.group(1) + "\\)", text)
    text = _ROLE.sub(_role, text)
    text = _FIELD.sub(_field, text)
    text = re.sub(r"(?m)^(?![ \t]|- )(\S.*)\n(- )", r"\1\n\n\2", text)  # Markdown lists follow a blank line
    return re.sub(r"(?m)(\S)::[ \t]*$", r"\1:", re.sub(r"(?m)^([ \t]*)::[ \t]*$", r"\1", text))


class RstRoles(griffe.Extension):
    """Rewrites every loaded object's docstring with :func:`rst_to_markdown`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
