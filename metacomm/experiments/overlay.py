r"""``metacomm plot`` for any kind of results: overlay several runs in one figure.

:func:`load_run` reads a ``results.json`` (or a directory holding one) of any registered results kind and returns
a :class:`Run` (its kind, the parsed dict and a label). :func:`plot_overlay` then draws all runs of one family:

* BER sweeps (``metacomm-results``): BER and BLER vs Eb/N0 [dB] (:func:`metacomm.sims.plots.plot_results`);
* drift runs (``metacomm-drift``): BLER over frames, a rolling mean over ``window`` frames per scheme (colour per
  scheme, line style per run) with Clopper-Pearson 95 % bands of the pooled window counts;
* pooled multi-seed drift runs (``metacomm-drift-seeds``, ``drift --seeds``): every scheme's mean BLER per seed,
  with the pooled BLER and its Clopper-Pearson band (:func:`metacomm.drift.pooled.seeds_panel`); to overlay
  the frames of single seeds, give their ``seed-<s>`` directories instead;
* record tables (``metacomm-fewshot`` and the packs' kinds: ``{"config", "results": [flat records]}``): ``y``
  (default ``bler``, with its ``<y>_ci`` interval as error bars) against a swept field ``x`` (fewshot: ``steps``;
  compression: ``bits``; label-noise: ``rate``; adversarial: ``psr_db``), one curve per run and combination of the
  other swept fields. The swept fields of a record are its text-valued keys and the keys its run's ``config``
  also holds (the sweep lists); ``where`` filters records (``{"steps": "1"}`` keeps the records whose ``steps``
  prints as ``1``).

Runs of different families cannot share a figure (a ConfigError naming ``results``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metacomm._validation import ConfigError, reraise
from metacomm.experiments.packs import PACKS

__all__ = ["Run", "load_run", "plot_overlay", "parse_where", "DEFAULT_X", "swept_fields", "check_shape"]

#: results kind -> the swept field drawn on the x axis by default
DEFAULT_X: dict[str, str] = {"metacomm-fewshot": "steps",
                              **{spec.kind: spec.default_x for spec in PACKS.values()}}

#: record keys that are measurements, never swept settings
MEASURED = {"bler", "ber", "ser", "block_errors", "blocks", "bit_errors", "bits_total", "symbol_errors", "symbols",
            "weight_auroc", "runtime_s", "model_bytes", "onnx_bytes", "gap", "ratio"}


@dataclass
class Run:
    """One results file: ``kind`` (e.g. ``"metacomm-drift"``), ``data`` (the parsed dict), ``path``, ``label``."""

    kind: str
    data: dict
    path: str
    label: str


def _known_kinds() -> list[str]:
    import metacomm.experiments.packs  # noqa: F401  (registers the packs' kinds)
    from metacomm.artefacts import KINDS
    return [k for k in KINDS if k in ("metacomm-results", "metacomm-drift", "metacomm-drift-seeds")
            or k in DEFAULT_X]


def load_run(path: str | os.PathLike, *, field: str = "results", label: str | None = None) -> Run:
    """Read ``path`` (a results.json, or a directory holding one) of any plottable kind."""
    from metacomm.artefacts import check_kind, read_json
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.exists():
        raise ConfigError(field, f"no such results file: {str(p)!r}")
    kinds = _known_kinds()
    data = read_json(p, kind=kinds, field=field, allow_untagged=True)
    tag = check_kind(data, kinds, field=field, source=repr(str(p)), allow_untagged=True)
    kind = tag[0] if tag else "metacomm-results"  # untagged: a BER results file from before the tags
    check_shape(kind, data, str(p), field=field)
    return Run(kind, data, str(p), label if label is not None else _default_label(kind, data, p, field))


def _default_label(kind: str, data: dict, p: Path, field: str = "results") -> str:
    if kind == "metacomm-results":
        from metacomm.sims.plots import default_label
        return default_label(_sweep(data, str(p), field))
    return p.parent.name or str(p)


def _sweep(data: dict, path: str, field: str):
    """The :class:`~metacomm.sims.results.SweepResult` of a BER results dict; its ConfigError names ``field``."""
    from metacomm.sims.results import SweepResult
    try:
        return SweepResult.from_dict(data, where=path)
    except ConfigError as e:
        raise reraise(field, e) from None


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _count(v: Any) -> bool:
    return _number(v) and v >= 0 and float(v).is_integer()


def check_shape(kind: str, data: Mapping[str, Any], path: str, *, field: str = "results") -> None:
    """Raise ``ConfigError(field, ...)`` (one line naming the file and the entry) unless ``data`` has the shape the
    plots of ``kind`` index (beyond the kind's schema, which :func:`~metacomm.artefacts.read_json` checked): BER
    sweeps their points; drift runs the same schemes in every frame with counts ``0 <= errors <= blocks``,
    ``blocks >= 1``; pooled runs summary rows whose seeds are in ``seeds``; record tables a list of records."""
    def bad(what: str):
        raise ConfigError(field, f"{path}: {what}")

    family = _family(kind)
    if family == "ber":
        _sweep(dict(data), path, field)
        return
    if not isinstance(data.get("config", {}), Mapping):
        bad("'config' must be a dict")
    if family == "records":
        records = data.get("results")
        if not isinstance(records, list):
            bad(f"'results' must be a list of records, got {type(records).__name__}")
        for i, r in enumerate(records):
            if not isinstance(r, Mapping):
                bad(f"'results[{i}]' must be a record (a dict), got {type(r).__name__}")
        return
    if family == "drift":
        frames = data.get("frames")
        if not isinstance(frames, list):
            bad(f"'frames' must be a list, got {type(frames).__name__}")
        names = None
        for i, f in enumerate(frames):
            rows = f.get("schemes") if isinstance(f, Mapping) else None
            if not isinstance(rows, Mapping) or not rows:
                bad(f"'frames[{i}]' must be a frame record with its schemes")
            if names is None:
                names = list(rows)
            elif list(rows) != names:
                bad(f"'frames[{i}]' has schemes {', '.join(map(str, rows))}, frame 0 {', '.join(names)}")
            for s, r in rows.items():
                if not isinstance(r, Mapping):
                    bad(f"'frames[{i}]/schemes/{s}' must be a dict")
                for e, n in (("block_errors", "blocks"), ("bit_errors", "bits")):
                    if not (_count(r.get(e)) and _count(r.get(n)) and r[n] >= 1 and r[e] <= r[n]):
                        bad(f"'frames[{i}]/schemes/{s}': {e} and {n} must be counts with 0 <= {e} <= {n} and "
                            f"{n} >= 1, got {r.get(e)!r} and {r.get(n)!r}")
        return
    if family == "drift-seeds":
        seeds, summary = data.get("seeds"), data.get("summary")
        if not isinstance(seeds, Mapping):
            bad(f"'seeds' must be a dict of the seeds' summaries, got {type(seeds).__name__}")
        if not isinstance(summary, Mapping):
            bad(f"'summary' must be a dict of the schemes' pooled rows, got {type(summary).__name__}")
        order = None
        for name, r in summary.items():
            at = f"'summary/{name}'"
            if not isinstance(r, Mapping):
                bad(f"{at} must be a dict")
            rs, sb, ci = r.get("seeds"), r.get("seed_bler"), r.get("bler_ci")
            if not isinstance(rs, list) or not rs or not all(isinstance(x, int) and not isinstance(x, bool)
                                                             for x in rs):
                bad(f"{at}/seeds must be a non-empty list of seeds")
            if order is None:
                order = rs
            elif rs != order:
                bad(f"{at}/seeds differ from the first scheme's ({order})")
            if not isinstance(sb, list) or len(sb) != len(rs) or not all(x is None or _number(x) for x in sb):
                bad(f"{at}/seed_bler must hold one number per seed ({len(rs)})")
            if not (isinstance(ci, list) and len(ci) == 2 and all(_number(x) for x in ci)):
                bad(f"{at}/bler_ci must be [lo, hi]")
            if not (_number(r.get("bler")) and _count(r.get("blocks")) and r["blocks"] >= 1):
                bad(f"{at} must hold a number bler and blocks >= 1")
            if not isinstance(r.get("kind"), str):
                bad(f"{at}/kind must be a string")
            for x in rs:
                row = seeds.get(str(x))
                row = row.get(name) if isinstance(row, Mapping) else None
                if not isinstance(row, Mapping) or not (_count(row.get("blocks")) and row["blocks"] >= 1):
                    bad(f"'seeds/{x}/{name}' (a seed of {at}) must hold the seed's blocks (>= 1)")


def _family(kind: str) -> str:
    return {"metacomm-results": "ber", "metacomm-drift": "drift", "metacomm-drift-seeds": "drift-seeds"}.get(
        kind, "records")


def swept_fields(records: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> list[str]:
    """The swept settings of ``records``: text-valued keys and keys ``config`` also holds, minus measurements and
    interval keys, in the order of the first record."""
    keys: list[str] = []
    for r in records:
        for k, v in r.items():
            if k in keys or k in MEASURED or k.endswith("_ci") or isinstance(v, (list, dict)):
                continue
            if isinstance(v, str) or isinstance(v, bool) or k in config:
                keys.append(k)
    return keys


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _records_panel(ax, runs: Sequence[Run], x: str, y: str, where: Mapping[str, str]) -> None:
    import numpy as np
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "v", "D", "P", "X", "*"]
    n_curves = 0
    xs_all: list[float] = []
    log_y = y in ("bler", "ber", "ser")
    any_zero = False
    for ri, run in enumerate(runs):
        records = [r for r in run.data.get("results", []) if isinstance(r, dict)]
        if not records:
            raise ConfigError("results", f"{run.path}: no records to plot")
        for key in where:
            if not any(key in r for r in records):
                raise ConfigError("where", f"{run.path}: records have no field {key!r}; fields: "
                                           f"{', '.join(sorted(records[0]))}")
        records = [r for r in records if all(_fmt(r.get(k)) == v for k, v in where.items())]
        if not any(x in r for r in records):
            allowed = [k for k in swept_fields(run.data.get("results", []), run.data.get("config", {}))]
            raise ConfigError("x", f"{run.path}: no records with field {x!r} (after --where); swept fields: "
                                   f"{', '.join(allowed) or 'none'}")
        if not any(y in r for r in records):
            raise ConfigError("y", f"{run.path}: records have no {y!r}")
        groups: dict[tuple, list[dict]] = {}
        others = [k for k in swept_fields(records, run.data.get("config", {})) if k != x and k not in where]
        for r in records:
            if x in r and _number(r.get(y)) and _number(r.get(x)):
                groups.setdefault(tuple((k, _fmt(r.get(k))) for k in others if k in r), []).append(r)
        for gi, (key, rs) in enumerate(sorted(groups.items(), key=lambda kv: kv[0])):
            rs = sorted(rs, key=lambda r: r[x])
            xv = np.asarray([float(r[x]) for r in rs])
            yv = np.asarray([float(r[y]) for r in rs])
            ci = [r.get(f"{y}_ci") for r in rs]  # error bars only where every interval is two numbers
            lab = ", ".join(f"{k}={v}" for k, v in key)
            lab = f"{run.label}: {lab}" if len(runs) > 1 else (lab or run.label)
            color = f"C{n_curves % 10}"
            has_ci = all(isinstance(c, (list, tuple)) and len(c) == 2 and all(_number(v) for v in c) for c in ci)
            zero = (yv <= 0) if log_y else np.zeros(len(yv), bool)  # a log axis cannot show 0: an upper limit
            pos = ~zero
            if pos.any() and has_ci:
                lo = np.asarray([c[0] for c in ci], float)[pos]
                hi = np.asarray([c[1] for c in ci], float)[pos]
                err = np.vstack([np.clip(yv[pos] - lo, 0, None), np.clip(hi - yv[pos], 0, None)])
                ax.errorbar(xv[pos], yv[pos], yerr=err, color=color, ls=styles[ri % len(styles)],
                            marker=markers[gi % len(markers)], ms=4, capsize=2, lw=1.2, label=lab)
            elif pos.any():
                ax.plot(xv[pos], yv[pos], color=color, ls=styles[ri % len(styles)],
                        marker=markers[gi % len(markers)], ms=4, lw=1.2, label=lab)
            if zero.any():
                top = [float(c[1]) if has_ci and c[1] > 0 else np.nan for c in ci]
                zx = xv[zero]
                zy = np.asarray(top, float)[zero]
                if np.isfinite(zy).any():
                    ax.plot(zx, zy, "v", mfc="none", ms=7, color=color, ls="none",
                            label="_nolegend_" if pos.any() else f"{lab} (no errors)")
                    any_zero = True
            xs_all += list(xv)
            n_curves += 1
    if n_curves == 0:
        raise ConfigError("where", "no records left to plot")
    xs = np.asarray(xs_all)
    if xs.size and xs.min() >= 0 and xs.max() >= 100 * max(xs[xs > 0].min(initial=1.0), 1e-12):
        from matplotlib import ticker
        ax.set_xscale("symlog", linthresh=1.0, linscale=0.6)
        ticks = sorted(set(xs.tolist()))
        if len(ticks) <= 12:  # the swept values themselves, as plain numbers (0 included)
            ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
            ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    if any_zero:
        ax.plot([], [], "v", mfc="none", ms=7, color="0.35", ls="none", label="no errors: 95% upper bound")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y.upper() if y in ("bler", "ber", "ser") else y)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _drift_panel(ax, runs: Sequence[Run], window: int | None, schemes: Sequence[str] | None) -> None:
    import numpy as np

    from metacomm.drift.result import OFF_SCALE_BLER, DriftResult, _rolling, scheme_styles
    run_ls = ["-", "--", ":", "-."]
    results = []
    for run in runs:
        res = DriftResult.from_dict(run.data)
        if not res.frames:
            raise ConfigError("results", f"{run.path}: no frames to plot")
        results.append(res)
    names_all: list[str] = []
    kinds: dict[str, str] = {}
    for res in results:
        for s, k in res.kinds.items():
            if s not in names_all:
                names_all.append(s)
                kinds[s] = k
    styles = scheme_styles(names_all, kinds)
    off: list[str] = []
    for ri, (run, res) in enumerate(zip(runs, results, strict=True)):
        T = len(res.frames)
        w = max(1, min(T, window or max(10, T // 15)))
        t = np.arange(T)[w - 1:] - (w - 1) / 2
        names = [s for s in res.schemes if schemes is None or s in schemes]
        if schemes is not None and not names:
            raise ConfigError("schemes", f"{run.path}: none of {', '.join(schemes)} in its schemes "
                                         f"({', '.join(res.schemes)})")
        if schemes is None:  # rows at BLER ~1 out of the way (named with schemes= they are drawn)
            summ = res.summary()
            far = [s for s in names if summ[s]["bler"] >= OFF_SCALE_BLER]
            if len(names) - len(far) >= 2:
                off += [f"{run.label}: {s}" if len(runs) > 1 else s for s in far]
                names = [s for s in names if s not in far]
        every = max(1, len(t) // 10)
        for n_s, s in enumerate(names):
            st = styles[s]
            m, lo, hi = _rolling(res.series(s, "block_errors"), res.series(s, "blocks"), w)
            floor = 0.5 / max(sum(res.series(s, "blocks")), 1)
            lab = f"{run.label}: {s}" if len(runs) > 1 else s
            ls = run_ls[ri % len(run_ls)] if len(runs) > 1 else st["ls"]
            ax.plot(t, np.maximum(m, floor), color=st["color"], ls=ls, lw=1.3, marker=st["marker"], ms=4,
                    markevery=(n_s % every, every), label=lab)
            ax.fill_between(t, np.maximum(lo, floor), np.maximum(hi, floor), color=st["color"], alpha=0.1, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("frame" + (f"  (not drawn, BLER ~1: {', '.join(off)})" if off else ""))
    ax.set_ylabel("BLER (rolling mean)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def plot_overlay(runs: Sequence[Run], out: str | os.PathLike, *, title: str | None = None, theory: bool = True,
                 x: str | None = None, y: str = "bler", where: Mapping[str, str] | None = None,
                 window: int | None = None, schemes: Sequence[str] | None = None) -> Path:
    """Draw ``runs`` (one family, see the module docstring) into the figure file ``out`` (.png/.pdf/.svg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metacomm.artefacts import FIGURE_FORMATS, save_figure
    runs = list(runs)
    if not runs:
        raise ConfigError("results", "nothing to plot: give at least one results.json")
    out = Path(out)
    if out.is_dir():
        raise ConfigError("out", f"{str(out)!r} is a directory; give a figure file such as fig.png")
    if out.suffix.lower().lstrip(".") not in FIGURE_FORMATS:
        raise ConfigError("out", f"figure file must end in .png, .pdf or .svg, got {str(out)!r}")
    families = {_family(r.kind) for r in runs}
    if len(families) > 1:
        hint = ""
        pooled = [r for r in runs if r.kind == "metacomm-drift-seeds"]
        if pooled and "drift" in families:
            dirs = (pooled[0].data.get("config", {}).get("seed_dirs") or {})
            dirs = [str(d) for d in dirs.values()] if isinstance(dirs, Mapping) else []
            hint = (f"; {pooled[0].path} pools several seeds -- to overlay single runs give its per-seed directories "
                    f"({', '.join(os.path.join(os.path.dirname(pooled[0].path), d) for d in list(dirs)[:3])}"
                    f"{', ...' if len(dirs) > 3 else ''})")
        raise ConfigError("results", "cannot overlay different kinds of results in one figure: "
                          + ", ".join(f"{r.path} ({r.kind})" for r in runs) + hint)
    family = families.pop()
    for r in runs:  # runs built by hand (not by load_run) are checked too
        check_shape(r.kind, r.data, r.path)
    if family == "ber":
        from metacomm.sims.plots import plot_results
        res = [_sweep(r.data, r.path, "results") for r in runs]
        return plot_results(res, out, labels=[r.label for r in runs], title=title, theory=theory)
    if window is not None and (isinstance(window, bool) or int(window) < 1):
        raise ConfigError("window", f"must be an integer >= 1, got {window!r}")
    if family == "drift-seeds":
        from metacomm.drift.pooled import seeds_panel
        fig, ax = plt.subplots(figsize=(11, 4.8), constrained_layout=True)
        seeds_panel(ax, [(r.data, r.label) for r in runs], schemes)
        ax.set_title(title or "mean BLER per seed (points with 95% CI; right: pooled, Clopper-Pearson 95% of the "
                              "pooled blocks)", fontsize=10)
        save_figure(fig, out, dpi=120, field="out")
        return out
    if family == "drift":
        fig, ax = plt.subplots(figsize=(10, 4.5), constrained_layout=True)
        _drift_panel(ax, runs, window, schemes)
        ax.set_title(title or "BLER over frames (95% CI bands)", fontsize=10)
    else:
        kinds = {r.kind for r in runs}
        xs = {DEFAULT_X.get(k) for k in kinds}
        if x is None:
            if len(xs) != 1 or None in xs:
                raise ConfigError("x", f"give the x field for {', '.join(sorted(kinds))}")
            x = xs.pop()
        fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
        _records_panel(ax, runs, x, y, dict(where or {}))
        ax.set_title(title or f"{y.upper() if y in ('bler', 'ber', 'ser') else y} vs {x} "
                              f"({', '.join(sorted(kinds))}; error bars: 95% intervals)", fontsize=9)
    save_figure(fig, out, dpi=120, field="out")
    return out


def parse_where(items: Sequence[str] | None) -> dict[str, str]:
    """``["steps=1", "method=ptq"]`` -> ``{"steps": "1", "method": "ptq"}`` (ConfigError naming ``where``)."""
    out: dict[str, str] = {}
    for it in items or ():
        key, sep, val = it.partition("=")
        if not sep or not key.strip():
            raise ConfigError("where", f"expected KEY=VALUE, got {it!r}")
        try:  # numbers compare as printed with %g, as _fmt prints record values
            f = float(val)
            if math.isfinite(f) and ("." in val or "e" in val.lower()):
                val = f"{f:g}"
        except ValueError:
            pass
        out[key.strip()] = val.strip()
    return out
