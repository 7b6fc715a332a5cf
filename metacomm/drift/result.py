r"""The results of a drift run: :class:`DriftResult` (per-frame counts, summary, strict-JSON/CSV writer,
built up frame by frame) and :func:`plot_drift` (BER/BLER over time with the drift quantity).

``results.json`` (format tag :data:`FORMAT`): ``{"format": "metacomm-drift/1", "config": {...}, "frames":
[...], "summary": {...}}``; every ``summary`` entry carries ``"kind"``: ``"adaptive"``, ``"classical"`` or
``"reference"`` (:attr:`metacomm.drift.protocol.DriftScheme.kind`, recorded per row in
``config["scheme_kinds"]``), so scripts can pick the best scheme of each kind (:meth:`DriftResult.best`) -- strict JSON: NaN and +-inf (e.g. the drift value of a channel without fading
taps, a -inf gain) are written as ``null`` (:func:`strict_json_value`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from metacomm._validation import ConfigError
from metacomm.drift.protocol import SCHEME_KINDS as KINDS
from metacomm.sims.results import records_dataframe
from metacomm.sims.stats import clopper_pearson

__all__ = ["FORMAT", "KINDS", "DriftResult", "plot_drift", "scheme_kind", "strict_json_value", "best_of_kind",
           "compare_best", "verdict", "comparison_text", "scheme_styles", "headline_panel", "plot_headline", "OFF_SCALE_BLER"]

FORMAT = "metacomm-drift/1"
# Frame-record floats that may be NaN/inf in memory (written as null, read back as NaN).
_FLOAT_KEYS = ("drift", "ebno_db")


def strict_json_value(obj):
    """``obj`` with every non-finite float (NaN, +-inf) replaced by ``None`` (JSON ``null``), recursively
    through dicts, lists and tuples (tuples become lists). The only JSON cleaning of the drift writer."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json_value(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json_value(v) for v in obj]
    return obj


def scheme_kind(name: str, recorded: dict | None = None) -> str:
    """The kind of result row ``name``: ``recorded[name]`` (a run's ``config["scheme_kinds"]``) if given, else
    ``"reference"`` for the genie and its ``genie{d}dB`` rows, else the registered scheme's
    :attr:`~metacomm.drift.protocol.DriftScheme.kind`, else ``"adaptive"`` (an unregistered row of an older
    file)."""
    if recorded and recorded.get(name) in KINDS:
        return recorded[name]
    if name.startswith("genie"):
        return "reference"
    from metacomm.drift.registry import scheme_entry, scheme_names
    if name in scheme_names():
        kind = getattr(scheme_entry(name).cls, "kind", "adaptive")
        return kind if kind in KINDS else "adaptive"
    return "adaptive"


def best_of_kind(summary: dict, kind: str) -> tuple[str, dict] | None:
    """The row of ``kind`` with the lowest mean BLER in a summary ``{name: {"bler", "kind", ...}}`` (the first on
    ties) and its entry, or ``None`` when there is no row of that kind."""
    if kind not in KINDS:
        raise ConfigError("kind", f"unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
    rows = [(s, r) for s, r in summary.items() if r.get("kind") == kind]
    return min(rows, key=lambda sr: sr[1]["bler"]) if rows else None


def compare_best(summary: dict) -> dict | None:
    """Best adaptive vs best classical row of a summary (one run's or pooled over seeds): ``{"adaptive",
    "adaptive_bler", "classical", "classical_bler", "ratio"}`` (``ratio`` = adaptive BLER / classical BLER, NaN
    when the classical one made no error; ``"intervals_apart"``: whether their 95 % CIs are disjoint), or ``None``
    without both kinds."""
    a, c = best_of_kind(summary, "adaptive"), best_of_kind(summary, "classical")
    if a is None or c is None:
        return None
    ra, rc = a[1], c[1]
    ratio = ra["bler"] / rc["bler"] if rc["bler"] > 0 else float("nan")
    apart = ra["bler_ci"][1] < rc["bler_ci"][0] or rc["bler_ci"][1] < ra["bler_ci"][0]
    return {"adaptive": a[0], "adaptive_bler": ra["bler"], "classical": c[0], "classical_bler": rc["bler"],
            "ratio": ratio, "intervals_apart": apart, "verdict": verdict(ra, rc)}


def verdict(a: dict, b: dict) -> str:
    """How row ``a`` compares with row ``b`` (summary entries with ``bler`` and ``bler_ci``, 95 % intervals):
    ``"better than"`` / ``"worse than"`` when the intervals are disjoint, else ``"not distinguishable from"`` --
    overlapping intervals never read as a win."""
    (alo, ahi), (blo, bhi) = a["bler_ci"], b["bler_ci"]
    if ahi < blo:
        return "better than"
    if bhi < alo:
        return "worse than"
    return "not distinguishable from"


def comparison_text(c: dict | None) -> str:
    """The line of :meth:`DriftResult.comparison_line` for a :func:`compare_best` dict (``""`` for ``None``)."""
    if c is None:
        return ""
    r = "n/a" if math.isnan(c["ratio"]) else f"{c['ratio']:.3g} x"
    apart = "apart" if c["intervals_apart"] else "overlap"
    return (f"best adaptive: {c['adaptive']} {c['adaptive_bler']:.4g} vs best classical: {c['classical']} "
            f"{c['classical_bler']:.4g} -> {r}: {c['adaptive']} is {c['verdict']} {c['classical']} "
            f"(95 % intervals {apart})")


def _nan_if_none(v):
    return float("nan") if v is None else v


@dataclass
class DriftResult:
    """Per-frame counts of a drift run. ``frames[t] = {"frame", "segment", "drift", "ebno_db", "gain_db",
    "schemes": {name: {"block_errors", "blocks", "bit_errors", "bits", "bler", "ber", "latency_ms"}}}`` with
    ``gain_db = {"mean", "p10", "p90"}``: the channel's power gain [dB] (noise-free received over transmitted
    payload energy) -- of the mean over links, and the 10th/90th percentiles across links."""

    config: dict
    frames: list[dict] = field(default_factory=list)
    bler_target: float = 0.1

    @property
    def schemes(self) -> list[str]:
        return list(self.frames[0]["schemes"]) if self.frames else []

    def series(self, scheme: str, key: str = "bler") -> list[float]:
        return [f["schemes"][scheme][key] for f in self.frames]

    @property
    def kinds(self) -> dict[str, str]:
        """``{row name: kind}`` (:func:`scheme_kind` with the run's recorded ``scheme_kinds``)."""
        rec = self.config.get("scheme_kinds") if isinstance(self.config.get("scheme_kinds"), dict) else None
        return {s: scheme_kind(s, rec) for s in self.schemes}

    def best(self, kind: str, summary: dict | None = None) -> tuple[str, dict] | None:
        """The row of ``kind`` with the lowest mean BLER (the first on ties) and its summary entry, or ``None``
        when the run has no row of that kind (:func:`best_of_kind`)."""
        return best_of_kind(self.summary() if summary is None else summary, kind)

    def summary(self) -> dict:
        """Per row: ``bler``, ``bler_ci`` (Clopper-Pearson 95 %), ``ber``, ``ber_ci``, the counts,
        ``frames_above_target``, ``latency_ms_mean`` and ``kind``."""
        kinds = self.kinds
        out = {}
        for s in self.schemes:
            be = sum(self.series(s, "block_errors"))
            bl = sum(self.series(s, "blocks"))
            bi = sum(self.series(s, "bit_errors"))
            nb = sum(self.series(s, "bits"))
            lat = [v for v in self.series(s, "latency_ms") if v is not None]
            out[s] = {"bler": be / bl, "bler_ci": list(clopper_pearson(be, bl)), "ber": bi / nb,
                      "ber_ci": list(clopper_pearson(bi, nb)), "block_errors": be, "blocks": bl,
                      "bit_errors": bi, "bits": nb,
                      "frames_above_target": int(sum(b > self.bler_target for b in self.series(s))),
                      "latency_ms_mean": (sum(lat) / len(lat)) if lat else None, "kind": kinds[s]}
        return out

    def summary_table(self) -> str:
        """The summary as a text table (one row per scheme, with its kind; ``*`` marks the best adaptive and the
        best classical scheme), then the adaptive-vs-best-classical line (:meth:`comparison_line`)."""
        summ = self.summary()
        n = len(self.frames)
        best = {k: b[0] for k in ("adaptive", "classical") if (b := self.best(k, summ)) is not None}
        lines = [f"{'scheme':16s} {'mean BLER':>10s} {'95% CI':>21s} {'mean BER':>10s} "
                 f"{'frames BLER>' + format(self.bler_target, 'g'):>16s} {'adapt ms/frame':>15s}  kind"]
        for s, r in summ.items():
            lo, hi = r["bler_ci"]
            lat = "-" if r["latency_ms_mean"] is None else f"{r['latency_ms_mean']:.2f}"
            mark = " *best" if best.get(r["kind"]) == s else ""
            lines.append(f"{s:16s} {r['bler']:10.4g} [{lo:9.3g}, {hi:9.3g}] {r['ber']:10.4g} "
                         f"{r['frames_above_target']:>9d}/{n:<6d} {lat:>15s}  {r['kind']}{mark}")
        cmp = self.comparison_line(summ)
        if cmp:
            lines.append(cmp)
        return "\n".join(lines)

    def comparison(self, summary: dict | None = None) -> dict | None:
        """Best adaptive vs best classical scheme (:func:`compare_best` of the summary)."""
        return compare_best(self.summary() if summary is None else summary)

    def comparison_line(self, summary: dict | None = None) -> str:
        """``best adaptive: warm 0.0284 vs best classical: kalman 0.0240 -> 1.18 x: warm is worse than kalman (95 %
        intervals apart)`` -- or ``... is not distinguishable from ... (95 % intervals overlap)`` (:func:`verdict`),
        or ``""`` without both kinds."""
        return comparison_text(self.comparison(summary))

    def __repr__(self) -> str:
        """One line: the scenario, frames, schemes and the best adaptive / classical rows (not the frames)."""
        c = self.config
        head = f"DriftResult(scenario={c.get('scenario')!r}, frames={len(self.frames)}, " \
               f"schemes={len(self.schemes)}"
        if not self.frames:
            return head + ")"
        names = self.schemes
        shown = ", ".join(names[:8]) + (f", ... (+{len(names) - 8})" if len(names) > 8 else "")
        best = []
        summ = self.summary()
        for kind in ("adaptive", "classical"):
            b = self.best(kind, summ)
            if b is not None:
                best.append(f"best {kind}: {b[0]} {b[1]['bler']:.4g}")
        return f"{head} [{shown}]" + (f"; {'; '.join(best)}" if best else "") + ")"

    def to_records(self) -> list[dict]:
        """Long format, one dict per frame x scheme (frame-major, schemes in run order): ``frame``, ``segment``,
        ``drift``, ``ebno_db`` [dB], ``gain_db`` (mean channel power gain over links [dB], NaN when not recorded),
        ``scheme``, ``kind``, ``block_errors``, ``blocks``, ``bler``, ``bit_errors``, ``bits``, ``ber`` and
        ``latency_ms`` (adaptation time per frame [ms], ``None`` for rows without one)."""
        kinds = self.kinds
        rows = []
        for f in self.frames:
            g = f.get("gain_db")
            gain = _nan_if_none(g.get("mean")) if isinstance(g, dict) else float("nan")
            for s, r in f["schemes"].items():
                rows.append({"frame": f["frame"], "segment": f.get("segment"), "drift": f.get("drift"),
                             "ebno_db": f.get("ebno_db"), "gain_db": gain, "scheme": s, "kind": kinds[s],
                             **{k: r[k] for k in ("block_errors", "blocks", "bler", "bit_errors", "bits", "ber")},
                             "latency_ms": r.get("latency_ms")})
        return rows

    def to_dataframe(self):
        """:meth:`to_records` as a ``pandas.DataFrame`` (one row per frame x scheme; pandas is optional: a
        ConfigError naming ``pandas`` when it is not installed)."""
        return records_dataframe(self.to_records())

    def add_frame(self, record: dict) -> None:
        """Append one frame's record (``{"frame", "segment", "drift", "ebno_db", "gain_db", "schemes"}``, as
        :func:`metacomm.drift.run.run_frame` returns it); frames must come in order and with the same
        schemes."""
        if not isinstance(record, dict) or "schemes" not in record or "frame" not in record:
            raise ConfigError("record", "expected a frame record with 'frame' and 'schemes'")
        if self.frames:
            if record["frame"] != self.frames[-1]["frame"] + 1:
                raise ConfigError("record", f"frame {record['frame']} does not follow frame "
                                            f"{self.frames[-1]['frame']}")
            if list(record["schemes"]) != self.schemes:
                raise ConfigError("record", f"schemes {list(record['schemes'])} differ from {self.schemes}")
        self.frames.append(record)

    def to_dict(self) -> dict:
        """The ``results.json`` content (strict JSON: no NaN/inf; see :func:`strict_json_value`)."""
        return strict_json_value({"format": FORMAT, "config": self.config, "frames": self.frames,
                                  "summary": self.summary()})

    @classmethod
    def from_dict(cls, d: dict) -> DriftResult:
        """Rebuild from :meth:`to_dict` / a ``results.json`` (``null`` drift values and gains become NaN); the
        summary is recomputed. Raises ConfigError for a foreign format."""
        if not isinstance(d, dict) or d.get("format", FORMAT) != FORMAT or "frames" not in d:
            raise ConfigError("results", f"not a drift results file (expected format {FORMAT!r})")
        frames = []
        for f in d["frames"]:
            f = dict(f)
            for k in _FLOAT_KEYS:
                f[k] = _nan_if_none(f.get(k))
            if isinstance(f.get("gain_db"), dict):
                f["gain_db"] = {k: _nan_if_none(v) for k, v in f["gain_db"].items()}
            frames.append(f)
        config = dict(d.get("config", {}))
        return cls(config=config, frames=frames, bler_target=config.get("bler_target", 0.1))

    def save(self, out_dir) -> tuple[Path, Path]:
        """Write ``results.json`` (:meth:`to_dict`, strict JSON with the format tag) and ``results.csv`` (one row
        per frame and scheme) into ``out_dir``; returns both paths."""
        from metacomm.artefacts import write_json, write_text
        d = Path(out_dir)
        pj, pc = d / "results.json", d / "results.csv"
        write_json(pj, self.to_dict(), kind="metacomm-drift", field="out", indent=1)
        rows = ["frame,segment,drift,ebno_db,scheme,block_errors,blocks,bler,bit_errors,bits,ber,latency_ms"]
        for f in self.frames:
            for s, r in f["schemes"].items():
                lat = "" if r["latency_ms"] is None else f"{r['latency_ms']:.4f}"
                rows.append(f"{f['frame']},{f['segment']},{f['drift']:.6g},{f['ebno_db']:.4f},{s},"
                            f"{r['block_errors']},{r['blocks']},{r['bler']:.6g},{r['bit_errors']},{r['bits']},"
                            f"{r['ber']:.6g},{lat}")
        write_text(pc, "\n".join(rows) + "\n", field="out")
        return pj, pc


#: a row whose mean BLER is at least this is drawn "off the scale" (listed, not plotted) when the headline and the
#: time panels can leave it out (a codec that fails, e.g. ``static`` and ``retrain`` on a fast-fading channel)
OFF_SCALE_BLER = 0.5

# tab10 without its grey (kept for the genie at a dB offset), then three of Dark2 (teal, slate, mustard); markers
# by kind, so that colour AND marker tell the schemes apart
_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
            "tab:cyan", "#1b9e77", "#7570b3", "#e6ab02")
_MARKERS = {"adaptive": ("o", "^", "v", "<", ">", "p", "h", "8"), "classical": ("s", "D", "P", "X", "d", "*", "H")}


def scheme_styles(names: Sequence[str], kinds: dict[str, str] | None = None) -> dict[str, dict]:
    """One drawing style per row name: ``{name: {"color", "marker", "ls"}}`` (matplotlib colour, marker and line
    style). ``genie`` is black dashed with a diamond, ``genie<d>dB`` grey dotted; every other row gets the next
    of 12 colours (tab10 without grey, then three of Dark2) and a marker of its kind (adaptive: circle, triangles, ...; classical: square,
    diamond, ...; adaptive solid, classical dash-dot), and no two rows share a (colour, marker) pair. ``kinds``:
    ``{name: kind}`` (:attr:`DriftResult.kinds`; default :func:`scheme_kind`). Deterministic in ``names``' order,
    so the same list gives the same styles in every figure."""
    kinds = dict(kinds or {})
    out: dict[str, dict] = {}
    used: set[tuple[str, str]] = set()
    i = 0
    for name in names:
        if name in out:
            continue
        if name == "genie":
            out[name] = {"color": "k", "marker": "D", "ls": "--"}
            continue
        if name.startswith("genie"):
            out[name] = {"color": "0.45", "marker": "d", "ls": ":"}
            continue
        kind = kinds.get(name) or scheme_kind(name)
        markers = _MARKERS["classical" if kind == "classical" else "adaptive"]
        color = _PALETTE[i % len(_PALETTE)]
        j = (i // len(_PALETTE)) % len(markers)
        for _ in range(len(markers)):
            if (color, markers[j]) not in used:
                break
            j = (j + 1) % len(markers)
        else:  # every marker of this kind already taken with this colour: try the other kind's markers
            markers = _MARKERS["adaptive" if kind == "classical" else "classical"]
            j = next((m for m in range(len(markers)) if (color, markers[m]) not in used), 0)
        used.add((color, markers[j]))
        out[name] = {"color": color, "marker": markers[j], "ls": "-." if kind == "classical" else "-"}
        i += 1
    return out


def _log_ticks(axis, lim) -> None:
    """Readable ticks on a log axis spanning ``lim``: the densest of 1 / 1-2-5 / 1-1.5-2-3-5-7 / finer mantissas per
    decade that gives at most 7 ticks, as plain numbers."""
    from matplotlib import ticker
    lo, hi = lim
    ticks: list[float] = []
    for mant in ((1.0,), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0),
                 (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)):
        cand = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                for m in mant]
        cand = [v for v in cand if lo <= v <= hi]
        if len(cand) > 7 and ticks:
            break
        ticks = cand
        if len(ticks) >= 4:
            break
    axis.set_major_locator(ticker.FixedLocator(ticks))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def _off_scale(summary: dict, names: Sequence[str]) -> list[str]:
    """The rows at BLER >= :data:`OFF_SCALE_BLER`, unless that would leave fewer than two rows on the scale."""
    off = [s for s in names if summary[s]["bler"] >= OFF_SCALE_BLER]
    return off if len(names) - len(off) >= 2 else []


def headline_panel(ax, summary: dict, *, title: str | None = None, styles: dict | None = None) -> dict:
    """Who wins, on ``ax``: a ranked dot plot of mean BLER (log x) with 95 % intervals, best at the top; the best
    adaptive and the best classical row highlighted (a shaded band, a larger marker, the label in bold), the genie
    as a black dashed line and the genie at a dB offset grey dotted across the plot, each row's BLER and its ratio
    to the genie written at the right; rows at BLER ~1 (>= :data:`OFF_SCALE_BLER`) are left off the scale and
    listed under it. ``summary``: ``{name: {"bler", "bler_ci", "kind", "blocks"?}}`` (one run's
    :meth:`DriftResult.summary` or a pooled one). A zero BLER is drawn at ``0.5 / blocks`` as an open triangle
    (upper limit). Returns ``{"rows", "off_scale", "best"}`` (the drawn names top to bottom, the left-off ones, the
    best row per kind)."""
    if not summary:
        raise ConfigError("results", "no schemes to plot")
    names = list(summary)
    kinds = {s: summary[s].get("kind") or scheme_kind(s) for s in names}
    styles = styles or scheme_styles(names, kinds)
    off = _off_scale(summary, names)
    rows = sorted((s for s in names if s not in off), key=lambda s: (summary[s]["bler"], names.index(s)))
    best = {k: b[0] for k in ("adaptive", "classical") if (b := best_of_kind(summary, k)) is not None}
    genie = summary.get("genie", {}).get("bler")
    y = {s: len(rows) - 1 - i for i, s in enumerate(rows)}  # best at the top
    lows = []
    for s in rows:
        r = summary[s]
        floor = 0.5 / r["blocks"] if r.get("blocks") else 1e-6
        m, (lo, hi) = r["bler"], r["bler_ci"]
        st = styles[s]
        big = s in best.values()
        if big:
            ax.axhspan(y[s] - 0.45, y[s] + 0.45, color=st["color"], alpha=0.13, lw=0)
        if m > 0:
            ax.errorbar([m], [y[s]], xerr=[[m - max(lo, floor * 0.5)], [hi - m]], color=st["color"],
                        marker=st["marker"], ms=9 if big else 6, mec="k" if big else st["color"], capsize=3,
                        lw=2.0 if big else 1.2, ls="none")
            lows.append(max(lo, floor * 0.5))
        else:  # no error in the run: an upper limit at the interval's top
            ax.plot([hi], [y[s]], marker="<", ms=8, mfc="none", color=st["color"], ls="none")
            lows.append(floor)
        lows.append(hi)
    for s, lw in (("genie", 1.3),):
        if s in summary and s in rows:
            ax.axvline(max(summary[s]["bler"], min(lows)), color="k", ls="--", lw=lw, alpha=0.6, zorder=0)
    for s in rows:
        if s.startswith("genie") and s != "genie":
            ax.axvline(summary[s]["bler"], color="0.45", ls=":", lw=1.3, zorder=0)
    ax.set_xscale("log")
    lo_x, hi_x = min(lows), max(lows)
    span = max(hi_x / lo_x, 1.5)
    ax.set_xlim(lo_x / span ** 0.08, hi_x * span ** 0.55)  # room at the right for the numbers
    ax.set_ylim(-0.6, len(rows) - 0.4)
    _log_ticks(ax.xaxis, ax.get_xlim())
    ax.set_yticks([y[s] for s in rows])
    labels = []
    for s in rows:
        tag = {"adaptive": "best adaptive", "classical": "best classical"}.get(kinds[s]) if best.get(kinds[s]) == s \
            else None
        labels.append(f"{s}  [{tag}]" if tag else f"{s}  ({kinds[s]})")
    ax.set_yticklabels(labels, fontsize=8)
    for tick, s in zip(ax.get_yticklabels(), rows, strict=True):
        if s in best.values():
            tick.set_fontweight("bold")
    for s in rows:
        r = summary[s]
        txt = f"{r['bler']:.3g}" + (f"  {r['bler'] / genie:.2f}x genie" if genie and s != "genie" else "")
        ax.annotate(txt, xy=(1.0, y[s]), xycoords=("axes fraction", "data"), xytext=(-4, 0),
                    textcoords="offset points", ha="right", va="center", fontsize=7, color="0.2")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.set_xlabel("mean BLER (95 % CI); dashed: genie, dotted: genie at a dB offset", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    if off:
        ax.text(0.0, -0.16 if len(rows) > 6 else -0.22, "off the scale (BLER ~1): " + ", ".join(
            f"{s} {summary[s]['bler']:.3g}" for s in off), transform=ax.transAxes, fontsize=7, color="0.3",
            va="top")
    cmp = compare_best(summary)
    head = title or "who wins: mean BLER, best at the top"
    if cmp is not None:
        ratio = "" if math.isnan(cmp["ratio"]) else f" ({cmp['ratio']:.3g} x)"
        head += f"\n{cmp['adaptive']} is {cmp['verdict']} {cmp['classical']}{ratio}"
    ax.set_title(head, fontsize=9)
    return {"rows": rows, "off_scale": off, "best": best}


def plot_headline(result_or_summary, out: str | os.PathLike, *, title: str | None = None) -> Path:
    """The headline figure alone (:func:`headline_panel`) of a :class:`DriftResult` or a summary dict, written to
    ``out`` (PNG/PDF/SVG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metacomm.artefacts import save_figure
    summ = result_or_summary.summary() if isinstance(result_or_summary, DriftResult) else result_or_summary
    fig, ax = plt.subplots(figsize=(7, 1.4 + 0.32 * len(summ)), constrained_layout=True)
    headline_panel(ax, summ, title=title)
    p = Path(out)
    save_figure(fig, p, dpi=110, field="out")
    return p


def _rolling(errors: list[float], counts: list[float], window: int):
    import numpy as np
    e = np.convolve(np.asarray(errors, float), np.ones(window), mode="valid")
    c = np.convolve(np.asarray(counts, float), np.ones(window), mode="valid")
    lo, hi = zip(*(clopper_pearson(int(a), int(b)) for a, b in zip(e, c, strict=True)), strict=True)
    return e / c, np.asarray(lo), np.asarray(hi)


def plot_drift(result: DriftResult, out: str | os.PathLike, *, window: int | None = None,
               schemes: Sequence[str] | None = None) -> Path:
    """``drift.png``: at the left, three panels sharing the frame axis -- a thin top panel with what drifts (the
    channel power gain [dB], mean over links with the 10-90 % spread across links as a light band; plus the
    scenario's own drift quantity when it is not a gain, e.g. Eb/N0 or the segment, on a right-hand axis) -- then
    BLER and BER: rolling means over ``window`` frames (default ``max(10, T/15)``) with Clopper-Pearson 95 % bands
    of the pooled window counts; at the right the headline (:func:`headline_panel`: mean BLER per scheme, ranked,
    best adaptive and best classical highlighted). Every scheme has its own colour and marker
    (:func:`scheme_styles`: genie black dashed, genie at a dB offset grey dotted, classical dash-dot, adaptive
    solid); the best adaptive and best classical curves are drawn thicker; rows at BLER ~1 are left out of the time
    panels unless named in ``schemes`` (they are listed in the headline); the legend sits below the panels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from metacomm.artefacts import save_figure

    T = len(result.frames)
    if T == 0:
        raise ConfigError("results", "no frames to plot")
    window = max(1, min(T, window or max(10, T // 15)))
    summ = result.summary()
    kinds = result.kinds
    styles = scheme_styles(result.schemes, kinds)
    if schemes is None:
        off = set(_off_scale(summ, result.schemes))
        schemes = [s for s in result.schemes if s not in off]
    else:
        schemes = list(schemes)
        unknown = [s for s in schemes if s not in summ]
        if unknown:
            raise ConfigError("schemes", f"not in this run: {', '.join(unknown)} (its schemes: "
                                         f"{', '.join(result.schemes)})")
    best = {b[0] for k in ("adaptive", "classical") if (b := result.best(k, summ)) is not None}
    t = np.arange(T)[window - 1:] - (window - 1) / 2  # centre of each window
    fig = plt.figure(figsize=(15, 8.2), layout="constrained")
    gs = fig.add_gridspec(3, 2, width_ratios=[2.25, 1.0], height_ratios=[1, 2.6, 2.6])
    axes = [fig.add_subplot(gs[0, 0])]
    axes += [fig.add_subplot(gs[i, 0], sharex=axes[0]) for i in (1, 2)]
    axh = fig.add_subplot(gs[:, 1])
    # --- drift panel
    ax0 = axes[0]
    frames_x = np.arange(T)
    g = [f.get("gain_db") for f in result.frames]
    if all(isinstance(v, dict) for v in g):
        ax0.fill_between(frames_x, [v["p10"] for v in g], [v["p90"] for v in g], color="tab:blue", alpha=0.12, lw=0,
                         label="gain: 10-90 % of links")
        ax0.plot(frames_x, [v["mean"] for v in g], color="tab:blue", lw=1.0, label="gain: mean over links")
        ax0.set_ylabel("channel\ngain [dB]", fontsize=9)
    name = result.config.get("drift_name", "drift")
    drift = np.asarray([f["drift"] for f in result.frames], float)
    if name != "gain_db" and np.isfinite(drift).any() and np.nanmax(drift) > np.nanmin(drift):
        ax0r = ax0.twinx()
        ax0r.plot(frames_x, drift, color="tab:orange", lw=1.0, drawstyle="steps-post", label=name)
        ax0r.set_ylabel(name, color="tab:orange", fontsize=9)
        ax0r.tick_params(axis="y", colors="tab:orange", labelsize=8)
    ax0.grid(True, alpha=0.3)
    ax0.tick_params(labelsize=8)
    if ax0.get_legend_handles_labels()[0]:
        ax0.legend(loc="lower left", fontsize=7, frameon=True, framealpha=0.7, ncol=2)
    # --- error-rate panels
    every = max(1, len(t) // 10)
    for ax, (what, ek, ck) in zip(axes[1:], (("BLER", "block_errors", "blocks"), ("BER", "bit_errors", "bits")),
                                  strict=True):
        for n_s, s in enumerate(schemes):
            st = styles[s]
            lw = 2.2 if s in best else (1.5 if s.startswith("genie") else 1.0)
            m, lo, hi = _rolling(result.series(s, ek), result.series(s, ck), window)
            floor = 0.5 / sum(result.series(s, ck))
            ax.plot(t, np.maximum(m, floor), color=st["color"], ls=st["ls"], lw=lw, marker=st["marker"], ms=4,
                    markevery=(n_s % every, every), label=s + (" (best " + kinds[s] + ")" if s in best else ""),
                    alpha=1.0 if s in best or s.startswith("genie") else 0.85, zorder=3 if s in best else 2)
            if s in best or s.startswith("genie"):
                ax.fill_between(t, np.maximum(lo, floor), np.maximum(hi, floor), color=st["color"], alpha=0.12,
                                lw=0)
        ax.set_yscale("log")
        ax.set_ylabel(f"{what}\n(rolling mean, {window} frames)", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    axes[2].legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(6, len(labels)),
                   fontsize=8, frameon=False)
    left_out = [s for s in result.schemes if s not in schemes]
    c = result.config
    ofdm = c.get("link") == "ofdm"
    what_runs = (f"OFDM link {c.get('ofdm_link', {}).get('link')}, {c.get('links')} links x "
                 f"{c.get('payload_blocks_per_link')} codeword(s)/slot" if ofdm else
                 f"{c.get('pilots')} pilots, {c.get('steps')} step(s), {c.get('links')} links x "
                 f"{c.get('payload_blocks_per_link')} blocks/frame")
    axes[0].set_title(f"{c.get('scenario')}: {what_runs}; bands: 95% CI of "
                      "the best adaptive, best classical and genie" +
                      (f"; not drawn (BLER ~1): {', '.join(left_out)}" if left_out else ""), fontsize=9)
    axes[2].set_xlabel("slot" if ofdm else "frame")
    axes[2].set_xlim(0, T - 1)
    for ax in axes[:2]:
        ax.tick_params(labelbottom=False)
    headline_panel(axh, summ, styles=styles,
                   title=f"who wins over all {T} frames: mean BLER, best at the top")
    p = Path(out)
    save_figure(fig, p, dpi=110, field="out")
    return p


def plot_belief(result: DriftResult, out: str | os.PathLike) -> Path | None:
    """``belief.png``: what the adaptive schemes have learned, against the truth, slot by slot -- for every scheme
    whose rows carry ``doppler_hz_est`` (the OFDM ``adaptive`` receiver's posterior-mean maximum Doppler [Hz]) the
    estimate against the slot's true :math:`f_D = v f_c / c` (``doppler_hz`` of the frame), and, where recorded, its
    delay-spread estimate [ns] against the segment's true RMS delay spread. ``None`` (nothing written) when no scheme
    reports an estimate."""
    est = [s for s in result.schemes
           if any(f["schemes"].get(s, {}).get("doppler_hz_est") is not None for f in result.frames)]
    if not est or not any("doppler_hz" in f for f in result.frames):
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metacomm.artefacts import save_figure

    t = [f["frame"] for f in result.frames]
    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    axes[0].plot(t, [f.get("doppler_hz") for f in result.frames], color="black", lw=2, label="true f_D = v f_c / c")
    styles = scheme_styles(result.schemes, result.kinds)
    for s in est:
        st = styles.get(s, {})
        axes[0].plot(t, [f["schemes"][s].get("doppler_hz_est") for f in result.frames], color=st.get("color"),
                     marker=st.get("marker"), markevery=max(1, len(t) // 20), lw=1.2,
                     label=f"{s}: posterior-mean Doppler")
    axes[0].set_ylabel("max. Doppler [Hz]")
    axes[0].legend(fontsize=8, loc="best", framealpha=0.8)
    axes[0].grid(True, alpha=0.3)
    has_ds = any("delay_spread_s" in f for f in result.frames)
    if has_ds:
        axes[1].plot(t, [1e9 * f["delay_spread_s"] for f in result.frames], color="black", lw=2,
                     label="true RMS delay spread")
    for s in est:
        vals = [f["schemes"][s].get("delay_spread_s_est") for f in result.frames]
        if any(v is not None for v in vals):
            st = styles.get(s, {})
            axes[1].plot(t, [None if v is None else 1e9 * v for v in vals], color=st.get("color"),
                         marker=st.get("marker"), markevery=max(1, len(t) // 20), lw=1.2,
                         label=f"{s}: posterior-mean delay spread")
    axes[1].set_ylabel("RMS delay spread [ns]")
    axes[1].set_xlabel("slot" if result.config.get("link") == "ofdm" else "frame")
    axes[1].legend(fontsize=8, loc="best", framealpha=0.8)
    axes[1].grid(True, alpha=0.3)
    axes[0].set_title(f"{result.config.get('scenario')}: what the adaptive receiver believes vs the truth "
                      "(mean over links)", fontsize=9)
    p = Path(out)
    save_figure(fig, p, dpi=110, field="out")
    return p
