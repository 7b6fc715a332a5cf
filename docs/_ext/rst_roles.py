"""Griffe extension for the docs build: turn the reST of metacomm's docstrings into Markdown.

The docstrings are written for reading in the source and in ``help()``: Sphinx roles (``:class:`~a.b.C```),
double-backtick literals and ``::`` literal blocks. mkdocstrings renders docstrings as Markdown, so this extension
rewrites, in every docstring it loads: a role with a ``~`` target to its last component in code (``C``), a role to
its target in code, a role ``text <target>`` to ``text``, and a trailing ``::`` to ``:`` (the indented block after
it is then a Markdown code block). Nothing else changes.
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


def rst_to_markdown(text: str) -> str:
    """The docstring ``text`` with its reST roles and ``::`` markers rewritten as Markdown (str -> str)."""
    text = _ROLE.sub(_role, text)
    return re.sub(r"(?m)(\S)::[ \t]*$", r"\1:", re.sub(r"(?m)^([ \t]*)::[ \t]*$", r"\1", text))


class RstRoles(griffe.Extension):
    """Rewrites every loaded object's docstring with :func:`rst_to_markdown`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
