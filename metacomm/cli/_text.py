"""Help pages as plain text: the parsers reuse the modules' reST docstrings, so their markup is removed here."""

from __future__ import annotations

import argparse
import re

__all__ = ["plain", "PlainFormatter", "RANGE_HELP"]

_ROLE = re.compile(r":(?:mod|func|class|data|meth|attr|obj|exc|ref|doc|math|py:\w+):`(~?)([^`<]+?)(?:\s*<[^>]*>)?`")
_LITERAL = re.compile(r"``(.+?)``", re.S)
_INTERPRETED = re.compile(r"(?<![\w`])`([^`\n]+?)`(?![\w`])")

#: what every range flag's help says (one meaning everywhere: the stop is included, the step is required)
RANGE_HELP = ("a range START:STOP:STEP includes STOP when it is on the grid (0:10:2 = 0, 2, 4, 6, 8, 10; STEP > 0 "
              "is required, so a two-number A:B is refused)")


def plain(text: str) -> str:
    """``text`` without reST markup: ``:func:`~a.b.c``` -> ``c``, ````code```` -> ``code``, ```x``` -> ``'x'``,
    a trailing ``\\`` line continuation of a shell example joined."""
    if not text:
        return text
    text = _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), text)
    text = _LITERAL.sub(lambda m: m.group(1), text)
    text = _INTERPRETED.sub(lambda m: f"'{m.group(1)}'", text)
    return text.replace(" \\\n", " ")


class PlainFormatter(argparse.HelpFormatter):
    """argparse's formatter with every description, epilog and flag help passed through :func:`plain`."""

    def _format_text(self, text):
        return super()._format_text(plain(text))

    def _expand_help(self, action):
        return plain(super()._expand_help(action))
