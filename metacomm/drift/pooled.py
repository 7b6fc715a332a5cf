r"""Drift runs over many seeds, pooled: the per-seed summaries, the pooled summary, its table and its figure.

A multi-seed drift run (``metacomm drift --seeds``, :mod:`metacomm.experiments.drift`) writes one ordinary
drift run per seed (``seed-<s>/results.json``, format ``metacomm-drift/1``) and ``results.json`` of format
:data:`FORMAT` (``metacomm-drift-seeds/1``, a distinct kind: never read as a single run)::

    {"format": "metacomm-drift-seeds/1", "config": {... the settings, "seeds": [...], "seed_dirs": {...}},
     "finished": bool, "progress": {"key", "done", "total", "seeds_done"},
     "seeds": {"<s>": {scheme: {"block_errors", "blocks", "bit_errors", "bits", "bler", "ber",
                                "frames_above_target", "latency_ms_mean", "kind"}}},
     "summary": {scheme: {"kind", "bler", "bler_ci", "ber", "ber_ci", "block_errors", "blocks", "bit_errors",
                          "bits", "seeds", "seed_bler", "seed_bler_mean", "seed_bler_sd", "seed_bler_min",
                          "seed_bler_max", "seed_bler_ci", "frames_above_target", "frames", "latency_ms_mean"}}}

Pooled over seeds x frames x links x blocks: ``bler = sum(block errors) / sum(blocks)`` with the Clopper-Pearson
95 % interval of those pooled counts (:func:`metacomm.sims.stats.clopper_pearson`), likewise ``ber``. That
interval treats every block as independent; blocks of one link and frame share a channel draw and frames of
one seed a channel trajectory, so it is too narrow for the seed-to-seed variation -- the per-seed mean BLERs
(``seed_bler``, in seed order), their standard deviation (``seed_bler_sd``, ``n - 1`` in the denominator), range
and the Student-t 95 % interval of their mean (``seed_bler_ci``; ``None`` for one seed) show that spread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from metacomm._validation import ConfigError
from metacomm.drift.result import compare_best
from metacomm.sims.stats import clopper_pearson

__all__ = ["FORMAT", "KIND", "seed_summary", "pool_seeds", "pooled_table", "comparison", "plot_seeds",
           "seeds_panel", "seed_records", "seeds_dataframe"]

KIND = "metacomm-drift-seeds"
FORMAT = f"{KIND}/1"
_COUNTS = ("block_errors", "blocks", "bit_errors", "bits")


def seed_summary(result) -> dict:
    """What the pooled file keeps of one seed's :class:`~metacomm.drift.result.DriftResult`: per scheme
    the counts, mean BLER/BER, frames above the BLER target, mean latency and kind."""
    keys = (*_COUNTS, "bler", "ber", "frames_above_target", "latency_ms_mean", "kind")
    return {s: {k: r[k] for k in keys} for s, r in result.summary().items()}


def _t_interval(values: Sequence[float]) -> list[float] | None:
    n = len(values)
    if n < 2:
        return None
    from scipy import stats
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    h = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return [m - h, m + h]


def pool_seeds(per_seed: Mapping[int, Mapping[str, dict]], seeds: Sequence[int], frames: int) -> dict:
    """The pooled summary (module docstring) of the per-seed summaries ``per_seed`` (:func:`seed_summary`,
    keyed by seed) over ``seeds`` (in this order; seeds missing from ``per_seed`` are left out); ``frames``: frames
    per seed. Every seed must have the same schemes."""
    done = [s for s in seeds if s in per_seed]
    if not done:
        return {}
    schemes = list(per_seed[done[0]])
    for s in done:
        if list(per_seed[s]) != schemes:
            raise ConfigError("seeds", f"seed {s} has schemes {list(per_seed[s])}, seed {done[0]} {schemes}")
    out = {}
    for name in schemes:
        rows = [per_seed[s][name] for s in done]
        tot = {k: sum(int(r[k]) for r in rows) for k in _COUNTS}
        blers = [float(r["bler"]) for r in rows]
        m = sum(blers) / len(blers)
        sd = math.sqrt(sum((b - m) ** 2 for b in blers) / (len(blers) - 1)) if len(blers) > 1 else None
        lat = [r["latency_ms_mean"] for r in rows if r.get("latency_ms_mean") is not None]
        out[name] = {"kind": rows[0]["kind"],
                     "bler": tot["block_errors"] / tot["blocks"],
                     "bler_ci": list(clopper_pearson(tot["block_errors"], tot["blocks"])),
                     "ber": tot["bit_errors"] / tot["bits"],
                     "ber_ci": list(clopper_pearson(tot["bit_errors"], tot["bits"])),
                     **tot, "seeds": list(done), "seed_bler": blers, "seed_bler_mean": m, "seed_bler_sd": sd,
                     "seed_bler_min": min(blers), "seed_bler_max": max(blers), "seed_bler_ci": _t_interval(blers),
                     "frames_above_target": sum(int(r["frames_above_target"]) for r in rows),
                     "frames": frames * len(done),
                     "latency_ms_mean": sum(lat) / len(lat) if lat else None}
    return out


def seed_records(doc: Mapping) -> list[dict]:
    """Long format of a pooled document: one dict per finished seed x scheme (seeds in run order, schemes in the
    summary's order) with ``seed``, ``scheme``, ``kind`` and that seed's ``block_errors``, ``blocks``, ``bler``,
    ``bit_errors``, ``bits``, ``ber``, ``frames_above_target``, ``latency_ms_mean`` [ms]."""
    rows = []
    for seed, per in (doc.get("seeds") or {}).items():
        for name, r in per.items():
            rows.append({"seed": int(seed), "scheme": name, "kind": r.get("kind"),
                         **{k: r.get(k) for k in (*_COUNTS[:2], "bler", *_COUNTS[2:], "ber", "frames_above_target",
                                                  "latency_ms_mean")}})
    return rows


def seeds_dataframe(doc: Mapping):
    """:func:`seed_records` as a ``pandas.DataFrame`` (pandas optional: a ConfigError naming ``pandas``)."""
    from metacomm.sims.results import records_dataframe
    return records_dataframe(seed_records(doc))


def comparison(doc: Mapping) -> dict | None:
    """Best adaptive vs best classical scheme by pooled BLER (:func:`metacomm.drift.result.compare_best`) plus
    ``"seeds_adaptive_better"``, ``"seeds_adaptive_worse"``, ``"seeds"`` (in how many seeds the adaptive scheme's
    BLER was below / above the classical one's), or ``None`` without both kinds."""
    summ = doc.get("summary") or {}
    cmp = compare_best(summ)
    if cmp is None:
        return None
    pairs = list(zip(summ[cmp["adaptive"]]["seed_bler"], summ[cmp["classical"]]["seed_bler"], strict=True))
    return {**cmp, "seeds_adaptive_better": sum(x < y for x, y in pairs),
            "seeds_adaptive_worse": sum(x > y for x, y in pairs), "seeds": len(pairs)}


def pooled_table(doc: Mapping) -> str:
    """The pooled summary as a text table (one row per scheme: pooled BLER with its Clopper-Pearson 95 % interval,
    per-seed mean BLER +- standard deviation and range, kind; ``*best`` marks the best adaptive and classical
    scheme), then the best-adaptive-vs-best-classical line."""
    summ = doc.get("summary") or {}
    c = comparison(doc)
    best = {} if c is None else {"adaptive": c["adaptive"], "classical": c["classical"]}
    n = len(next(iter(summ.values()))["seed_bler"]) if summ else 0
    lines = [f"{'scheme':16s} {'pooled BLER':>11s} {'95% CI (pooled blocks)':>23s} "
             f"{'per-seed BLER mean +- sd':>25s} {'min .. max':>21s}  kind   ({n} seeds)"]
    for s, r in summ.items():
        lo, hi = r["bler_ci"]
        sd = "-" if r["seed_bler_sd"] is None else f"{r['seed_bler_sd']:.3g}"
        mark = " *best" if best.get(r["kind"]) == s else ""
        lines.append(f"{s:16s} {r['bler']:11.4g} [{lo:9.3g}, {hi:9.3g}] {r['seed_bler_mean']:14.4g} +- {sd:<7s} "
                     f"{r['seed_bler_min']:9.3g} .. {r['seed_bler_max']:<9.3g}  {r['kind']}{mark}")
    if c is not None:
        ratio = "n/a" if math.isnan(c["ratio"]) else f"{c['ratio']:.3g} x"
        lines.append(f"best adaptive: {c['adaptive']} {c['adaptive_bler']:.4g} vs best classical: {c['classical']} "
                     f"{c['classical_bler']:.4g} -> {ratio}: {c['adaptive']} is {c['verdict']} {c['classical']} "
                     "(pooled 95 % intervals "
                     f"{'apart' if c['intervals_apart'] else 'overlap'}; per seed adaptive lower in "
                     f"{c['seeds_adaptive_better']}, higher in {c['seeds_adaptive_worse']} of {c['seeds']})")
    return "\n".join(lines)


def seeds_panel(ax, docs: Sequence[tuple[Mapping, str]], schemes: Sequence[str] | None = None) -> dict:
    """Per-seed mean BLER of every scheme as points with their Clopper-Pearson 95 % intervals (from that seed's
    counts; the seeds are independent runs, so nothing joins them), side by side within each seed's slot, and at
    the right under "pooled" the pooled BLER with its Clopper-Pearson 95 % interval. ``docs``: ``(pooled doc,
    label)`` pairs (one colour and marker per scheme, :func:`metacomm.drift.result.scheme_styles`; with several
    docs, filled markers for the first, open ones for the second, then half-filled). Rows at BLER ~1
    (:data:`~metacomm.drift.result.OFF_SCALE_BLER`) are left out unless named in ``schemes`` and listed under the
    axes. Returns ``{"rows": [(label, scheme)], "off_scale": [(label, scheme)]}``."""
    from metacomm.drift.result import OFF_SCALE_BLER, scheme_styles
    fills = ["full", "none", "left", "bottom"]
    seeds_all: list[int] = []
    names_all: list[str] = []
    kinds: dict[str, str] = {}
    for doc, label in docs:
        summ = doc.get("summary") or {}
        if not summ:
            raise ConfigError("results", f"{label}: no finished seed to plot")
        for name, r in summ.items():
            seeds_all += [s for s in r["seeds"] if s not in seeds_all]
            if name not in names_all:
                names_all.append(name)
                kinds[name] = r.get("kind", "adaptive")
    styles = scheme_styles(names_all, kinds)
    pos = {s: i for i, s in enumerate(seeds_all)}
    picked: list[tuple[int, str]] = []
    off: list[tuple[str, str, float]] = []
    for di, (doc, label) in enumerate(docs):
        summ = doc["summary"]
        names = [s for s in summ if schemes is None or s in schemes]
        if schemes is not None and not names:
            raise ConfigError("schemes", f"{label}: none of {', '.join(schemes)} in its schemes ({', '.join(summ)})")
        if schemes is None:
            far = [s for s in names if summ[s]["bler"] >= OFF_SCALE_BLER]
            if len(names) - len(far) >= 2:
                off += [(label, s, summ[s]["bler"]) for s in far]
                names = [s for s in names if s not in far]
        picked += [(di, s) for s in names]
    n_rows = max(len(picked), 1)
    width = 0.8
    for row, (di, name) in enumerate(picked):
        doc, label = docs[di]
        r = doc["summary"][name]
        st = styles[name]
        fill = fills[di % len(fills)] if len(docs) > 1 else "full"
        dx = -width / 2 + width * (row + 0.5) / n_rows
        x, y, lo, hi, zero_x, zero_y = [], [], [], [], [], []
        for s in r["seeds"]:
            c = doc["seeds"][str(s)][name]
            be, bl = int(c["block_errors"]), int(c["blocks"])
            clo, chi = clopper_pearson(be, bl)
            if be == 0:  # an upper limit: log axes cannot show 0
                zero_x.append(pos[s] + dx)
                zero_y.append(chi)
                continue
            x.append(pos[s] + dx)
            y.append(be / bl)
            lo.append(be / bl - clo)
            hi.append(chi - be / bl)
        lab = f"{label}: {name}" if len(docs) > 1 else name
        kw = {"color": st["color"], "marker": st["marker"], "ms": 4.5, "ls": "none", "fillstyle": fill}
        if x:
            ax.errorbar(x, y, yerr=[lo, hi], capsize=1.5, lw=0.9, label=lab, **kw)
        if zero_x:
            ax.plot(zero_x, zero_y, **{**kw, "marker": "v", "fillstyle": "none"},
                    label=None if x else f"{lab} (no errors: upper bound)")
        floor = 0.5 / r["blocks"]
        m, clo, chi = max(r["bler"], floor), max(r["bler_ci"][0], floor), max(r["bler_ci"][1], floor)
        ax.errorbar([len(seeds_all) + dx], [m], yerr=[[m - clo], [chi - m]], capsize=2, lw=1.4,
                    **{**kw, "ms": 5.5})
    for i in range(len(seeds_all)):
        ax.axvspan(i - 0.5, i + 0.5, color="0.5" if i % 2 else "1.0", alpha=0.06, lw=0)
    ax.set_xticks(range(len(seeds_all) + 1))
    ax.set_xticklabels([str(s) for s in seeds_all] + ["pooled"], fontsize=8)
    ax.axvline(len(seeds_all) - 0.5, color="0.6", lw=0.8)
    ax.set_xlim(-0.5, len(seeds_all) + 0.5)
    ax.set_yscale("log")
    from metacomm.drift.result import _log_ticks
    _log_ticks(ax.yaxis, ax.get_ylim())
    ax.set_xlabel("seed (independent runs; points: per-seed BLER with its 95 % CI)")
    ax.set_ylabel("mean BLER (per seed; pooled with 95% CI)")
    ax.grid(True, which="both", axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if off:
        ax.text(0.0, -0.2, "off the scale (BLER ~1): " + ", ".join(
            (f"{lab}: " if len(docs) > 1 else "") + f"{s} {bler:.3g}" for lab, s, bler in off),
            transform=ax.transAxes, fontsize=7, color="0.3", va="top")
    return {"rows": [(docs[di][1], s) for di, s in picked], "off_scale": [(lab, s) for lab, s, _ in off]}


def plot_seeds(doc: Mapping, out, *, title: str | None = None) -> Path:
    """``seeds.png`` of a pooled run: at the left the headline of the pooled summary
    (:func:`metacomm.drift.result.headline_panel`: pooled BLER per scheme, ranked, best adaptive and best classical
    highlighted), at the right :func:`seeds_panel` (per-seed points with intervals, and the pooled column)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metacomm.artefacts import save_figure
    from metacomm.drift.result import headline_panel
    c = doc.get("config", {})
    summ = doc.get("summary") or {}
    if not summ:
        raise ConfigError("results", "no finished seed to plot")
    fig = plt.figure(figsize=(16, max(5.0, 1.6 + 0.3 * len(summ))), layout="constrained")
    gs = fig.add_gridspec(1, 2, width_ratios=[1.0, 1.55])
    axh, ax = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1])
    n = len(next(iter(summ.values()))["seeds"])
    headline_panel(axh, summ, title=f"who wins, pooled over {n} seed(s): mean BLER, best at the top")
    seeds_panel(ax, [(doc, str(c.get("scenario", "")))])
    ax.set_title(title or f"{c.get('scenario')}: mean BLER per seed ({c.get('frames')} frames x {c.get('links')} "
                          "links each); right: pooled over the seeds, Clopper-Pearson 95 % of the pooled blocks",
                 fontsize=9)
    p = Path(out)
    save_figure(fig, p, dpi=110, field="out")
    return p
