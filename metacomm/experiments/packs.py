r"""What the scenario packs' experiments share: records, results files, progress and summary tables.

A *pack experiment* (``metacomm pack compression|label-noise|adversarial``) sweeps a grid of settings (method x
bit-width x sparsity, method x noise model x rate, attack x defence x PSR x Eb/N0) and writes one
``results.json`` with the shape of ``fewshot``'s::

    {"format": "metacomm-<pack>/1", "config": {...resolved settings...},
     "results": [ {<swept fields>, "bler", "bler_ci": [lo, hi], "block_errors", "blocks", <extras>}, ... ]}

one flat record per evaluated combination. :func:`bler_record` builds the counting part of a record
(Clopper-Pearson 95 % interval of the block error rate from ``block_errors`` errors in ``blocks`` blocks: the
blocks are the independent trials), :func:`write_pack_results` writes the file atomically through
:mod:`metacomm.artefacts` (strict JSON, format tag), :func:`summary_table` renders the records as an aligned text
table for the terminal, and :func:`progress` is the one progress bar (tqdm on stderr, silenced by ``quiet``).

Each pack is declared once here, in :data:`PACKS` (its results kind and the swept field ``metacomm plot`` draws on
the x axis); the results kinds (:data:`PACK_KINDS`), ``metacomm plot``'s default x
(:data:`metacomm.experiments.overlay.DEFAULT_X`) and the ``metacomm pack`` subcommands (module
``metacomm.cli.commands.pack_<name>``, dashes as underscores) are read from it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from metacomm.artefacts import register_kind, write_json

__all__ = ["PACKS", "PackSpec", "PACK_KINDS", "pack_kind", "bler_record", "write_pack_results", "summary_table", "progress",
           "results_path"]

@dataclass(frozen=True)
class PackSpec:
    """A scenario pack's experiment: ``kind`` -- the kind of its results.json; ``default_x`` -- the swept record
    field ``metacomm plot`` puts on the x axis."""

    kind: str
    default_x: str


#: pack name (the ``metacomm pack`` subcommand) -> its declaration: the one table of the packs' experiments
PACKS: dict[str, PackSpec] = {
    "compression": PackSpec("metacomm-compression", "bits"),
    "label-noise": PackSpec("metacomm-label-noise", "rate"),
    "adversarial": PackSpec("metacomm-adversarial", "psr_db"),
}
#: pack name -> results kind name (read from :data:`PACKS`)
PACK_KINDS: dict[str, str] = {name: spec.kind for name, spec in PACKS.items()}
#: what every pack results.json holds (checked by read_json after the tag)
PACK_RESULTS_SCHEMA = {"config": dict, "results": [dict], "progress?": (dict, None)}
for _pack, _kind in PACK_KINDS.items():
    register_kind(_kind, 1, f"metacomm {_pack} pack results file", f"`metacomm pack {_pack}`",
                  schema=PACK_RESULTS_SCHEMA)


def pack_kind(pack: str) -> str:
    """The results kind of ``pack`` (e.g. ``"metacomm-compression"``)."""
    return PACK_KINDS[pack]


def results_path(out: str) -> str:
    """``out/results.json``."""
    return os.path.join(os.fspath(out), "results.json")


def bler_record(block_errors, blocks, *, alpha: float = 0.05, **fields: Any) -> dict:
    """One flat record: ``fields`` (the swept settings and any extras, in that order) followed by ``bler``
    (= block_errors / blocks; ``nan`` -> ``null`` in the file when ``blocks`` is 0), ``bler_ci`` (Clopper-Pearson
    ``1 - alpha`` interval, ``[lo, hi]``), ``block_errors`` and ``blocks`` (ints)."""
    from metacomm.sims.stats import clopper_pearson
    e, n = int(block_errors), int(blocks)
    lo, hi = clopper_pearson(e, n, alpha)
    rec = dict(fields)
    rec.update(bler=(e / n) if n else math.nan, bler_ci=[lo, hi], block_errors=e, blocks=n)
    return rec


def write_pack_results(out: str, pack: str, config: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                       **extra: Any) -> str:
    """Write ``{"config": config, "results": records, **extra}`` to ``out/results.json`` (atomic, strict JSON,
    tagged with the pack's kind). Returns the path."""
    payload = {"config": dict(config), "results": [dict(r) for r in records]}
    payload.update(extra)
    return str(write_json(results_path(out), payload, kind=pack_kind(pack), field="out", indent=1))


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def summary_table(records: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """An aligned text table of ``records`` with the given ``columns`` (missing values print as ``-``)."""
    rows = [[_fmt(r.get(c, "-")) for c in columns] for r in records]
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def progress(total: int, desc: str, *, quiet: bool = False):
    """The pack experiments' progress bar (tqdm on stderr; ``quiet`` disables it). Use as a context manager and
    call ``.update(n)``."""
    from tqdm.auto import tqdm
    return tqdm(total=int(total), desc=desc, disable=quiet, leave=False, dynamic_ncols=True)
