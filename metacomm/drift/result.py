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
from metacomm.sims.stats import clopper_pearson

__all__ = ["FORMAT", "KINDS", "DriftResult", "plot_drift", "scheme_kind", "strict_json_value", "best_of_kind",
           "compare_best"]

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
            "ratio": ratio, "intervals_apart": apart}


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
        """``best adaptive: warm 0.0284 vs best classical: kalman 0.0240 -> 1.18 x (95 % intervals overlap)``, or
        ``""`` without both kinds."""
        c = self.comparison(summary)
        if c is None:
            return ""
        r = "n/a" if math.isnan(c["ratio"]) else f"{c['ratio']:.3g} x"
        apart = "apart" if c["intervals_apart"] else "overlap"
        return (f"best adaptive: {c['adaptive']} {c['adaptive_bler']:.4g} vs best classical: {c['classical']} "
                f"{c['classical_bler']:.4g} -> {r} (95 % intervals {apart})")

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


def _rolling(errors: list[float], counts: list[float], window: int):
    import numpy as np
    e = np.convolve(np.asarray(errors, float), np.ones(window), mode="valid")
    c = np.convolve(np.asarray(counts, float), np.ones(window), mode="valid")
    lo, hi = zip(*(clopper_pearson(int(a), int(b)) for a, b in zip(e, c, strict=True)), strict=True)
    return e / c, np.asarray(lo), np.asarray(hi)


def plot_drift(result: DriftResult, out: str | os.PathLike, *, window: int | None = None,
               schemes: Sequence[str] | None = None) -> Path:
    """Three panels sharing the frame axis: a thin top panel with what drifts -- the channel power gain [dB]
    (mean over links, with the 10-90 % spread across links as a light band; plus the scenario's own drift
    quantity when it is not a gain, e.g. Eb/N0 or the segment, on a right-hand axis) -- then BLER and BER:
    rolling means over ``window`` frames (default ``max(10, T/15)``) with Clopper-Pearson 95 % bands of the pooled
    window counts. Reference curves are distinct: genie black dashed, genie at a dB offset grey dotted, pilot-LS
    brown dash-dot, the other classical schemes dash-dot in the colour cycle."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from metacomm.artefacts import save_figure

    T = len(result.frames)
    if T == 0:
        raise ConfigError("results", "no frames to plot")
    window = max(1, min(T, window or max(10, T // 15)))
    schemes = list(schemes or result.schemes)
    kinds = result.kinds
    t = np.arange(T)[window - 1:] - (window - 1) / 2  # centre of each window
    fig, axes = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True, gridspec_kw={"height_ratios": [1, 2.6, 2.6]})
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:pink", "tab:olive", "tab:cyan"]
    styles = {"genie": ("k", "--", 1.6), "pilot-ls": ("tab:brown", "-.", 1.6)}  # brown/grey: references only
    # --- drift panel
    ax0 = axes[0]
    frames_x = np.arange(T)
    g = [f.get("gain_db") for f in result.frames]
    if all(isinstance(v, dict) for v in g):
        ax0.fill_between(frames_x, [v["p10"] for v in g], [v["p90"] for v in g], color="tab:blue", alpha=0.12, lw=0,
                         label="10-90 % of links")
        ax0.plot(frames_x, [v["mean"] for v in g], color="tab:blue", lw=1.0, label="mean over links")
        ax0.set_ylabel("channel\ngain [dB]", fontsize=9)
        ax0.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    name = result.config.get("drift_name", "drift")
    drift = np.asarray([f["drift"] for f in result.frames], float)
    if name != "gain_db" and np.isfinite(drift).any() and np.nanmax(drift) > np.nanmin(drift):
        ax0r = ax0.twinx()
        ax0r.plot(frames_x, drift, color="tab:orange", lw=1.0, drawstyle="steps-post")
        ax0r.set_ylabel(name, color="tab:orange", fontsize=9)
        ax0r.tick_params(axis="y", colors="tab:orange", labelsize=8)
    ax0.grid(True, alpha=0.3)
    ax0.tick_params(labelsize=8)
    # --- error-rate panels
    for ax, (what, ek, ck) in zip(axes[1:], (("BLER", "block_errors", "blocks"), ("BER", "bit_errors", "bits")),
                                  strict=True):
        ci = 0
        for s in schemes:
            if s.startswith("genie") and s != "genie":
                color, ls, lw = "0.45", ":", 1.6
            elif s in styles:
                color, ls, lw = styles[s]
            else:  # classical baselines dash-dot, adaptive schemes solid
                color, ls, lw = colors[ci % len(colors)], "-." if kinds.get(s) == "classical" else "-", 1.4
                ci += 1
            m, lo, hi = _rolling(result.series(s, ek), result.series(s, ck), window)
            floor = 0.5 / sum(result.series(s, ck))
            ax.plot(t, np.maximum(m, floor), color=color, ls=ls, lw=lw, label=s)
            ax.fill_between(t, np.maximum(lo, floor), np.maximum(hi, floor), color=color, alpha=0.12, lw=0)
        ax.set_yscale("log")
        ax.set_ylabel(f"{what}\n(rolling mean, {window} frames)", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    c = result.config
    axes[0].set_title(f"{c.get('scenario')}: {c.get('pilots')} pilots, {c.get('steps')} step(s), "
                      f"{c.get('links')} links x {c.get('payload_blocks_per_link')} blocks/frame; 95% CI bands",
                      fontsize=10)
    axes[2].set_xlabel("frame")
    axes[2].set_xlim(0, T - 1)
    fig.tight_layout()
    p = Path(out)
    save_figure(fig, p, dpi=110, field="out")
    return p
