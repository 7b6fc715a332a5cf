"""BER/BLER-vs-Eb/N0 figures (matplotlib, Agg backend -- no display needed).

:func:`plot_results` draws one or several :class:`~metacomm.sims.results.SweepResult` on two side-by-side axes
(BER and BLER, log y, Eb/N0 in dB on x) with confidence intervals as error bars and,
where a closed form exists for the link (``config["codec"]``, ``config["channel"]``, see
:func:`metacomm.sims.theory.theory_curves`), the theory curve dashed underneath. Points with zero errors are
drawn as an open downward triangle at the interval's upper bound (an upper limit, since log axes cannot show 0),
with one legend entry saying so; points that were not simulated are omitted; an axis with nothing labelled has no
legend.

BER error bars use the block-level interval (``ber_ci_block``, the block as the independent unit, see
:mod:`metacomm.sims.stats`), which is the bit-level Clopper-Pearson interval when bit errors are independent and
wider when they are not (coded links, QAM symbols, block fading); BLER error bars are the block intervals.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from metacomm._validation import ConfigError  # noqa: E402
from metacomm.artefacts import FIGURE_FORMATS, save_figure  # noqa: E402
from metacomm.sims.results import SweepResult  # noqa: E402
from metacomm.sims.theory import theory_curves  # noqa: E402

__all__ = ["plot_results", "default_label", "rate_curve", "zero_error_entry"]


def default_label(result: SweepResult) -> str:
    """``codec/decoder over channel`` from the result's config, or its ``label`` entry."""
    c = result.config
    if c.get("label"):
        return str(c["label"])
    parts = [str(c.get("codec", "link"))]
    if c.get("decoder"):
        parts[0] += f" ({c['decoder']})"
    if c.get("channel"):
        parts.append(f"over {c['channel']}")
        if c["channel"] != "awgn" and c.get("csi"):
            parts.append(f"({'perfect CSI' if c['csi'] == 'perfect' else str(c['csi']).upper() + ' CSI'})")
    return " ".join(parts)


def _draw(ax, result: SweepResult, which: str, label: str, color) -> bool:
    xs, ys, lo, hi, ul_x, ul_y = [], [], [], [], [], []
    for p in result.points:
        if not p.simulated:
            continue
        rate = p.ber if which == "ber" else p.bler
        ci = (p.ber_ci_block or p.ber_ci) if which == "ber" else p.bler_ci
        if rate is None:
            continue
        if rate > 0:
            xs.append(p.ebno_db)
            ys.append(rate)
            lo.append(rate - ci[0])
            hi.append(ci[1] - rate)
        elif ci is not None:
            ul_x.append(p.ebno_db)
            ul_y.append(ci[1])
    if xs:
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", ms=4, capsize=3, lw=1.2, color=color, label=label)
    if ul_x:  # its legend entry is the shared "no errors" one (plot_results), or this curve's when it has no point
        ax.plot(ul_x, ul_y, "v", color=color, ms=6, mfc="none", label="_nolegend_" if xs else label)
    return bool(ul_x)


def plot_results(results: SweepResult | Sequence[SweepResult], out: str | os.PathLike, *,
                 labels: Sequence[str] | None = None, title: str | None = None, theory: bool = True,
                 dpi: int = 130) -> Path:
    """Draw BER and BLER vs Eb/N0 [dB] for one or several results into the PNG/PDF/SVG file ``out``.

    ``labels`` (one per result) default to :func:`default_label`. Theory curves are drawn once per distinct
    (codec, decoder, channel, block length). Written atomically (temporary file, then rename).
    """
    if isinstance(results, SweepResult):
        results = [results]
    results = list(results)
    if not results:
        raise ConfigError("results", "nothing to plot: give at least one results.json")
    if labels is not None and len(labels) != len(results):
        raise ConfigError("labels", f"need one label per result ({len(results)}), got {len(labels)}")
    labels = list(labels) if labels is not None else [default_label(r) for r in results]
    out = Path(out)
    ext = out.suffix.lower().lstrip(".")
    if ext not in FIGURE_FORMATS:
        raise ConfigError("out", f"figure file must end in .png, .pdf or .svg, got {str(out)!r}")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    seen_theory = set()
    pending = []  # theory curves, drawn after the data so they can be clipped to its range
    all_x = np.concatenate([r.ebno_db for r in results])
    grid = np.linspace(all_x.min(), all_x.max(), 200) if all_x.size else np.zeros(0)
    floors = [np.inf, np.inf]
    zero = [False, False]  # whether an axis has a zero-error point (drawn as an upper limit)
    for i, (r, lab) in enumerate(zip(results, labels, strict=True)):
        color = colors[i % len(colors)]
        for j, (ax, which) in enumerate(zip(axes, ("ber", "bler"), strict=True)):
            zero[j] |= _draw(ax, r, which, lab, color)
            for p in r.points:
                ci = (p.ber_ci_block or p.ber_ci) if which == "ber" else p.bler_ci
                if ci is not None:
                    floors[j] = min(floors[j], *(v for v in ci if v > 0), np.inf)
        c = r.config
        k = c.get("block_length_bits") or next((p.bits_per_block for p in r.points if p.bits_per_block), None)
        csi = c.get("csi", "perfect")
        key = (c.get("codec"), c.get("decoder"), c.get("channel"), k, csi)
        if theory and c.get("codec") and c.get("channel") and key not in seen_theory and grid.size > 1:
            seen_theory.add(key)
            th = theory_curves(str(c["codec"]), str(c["channel"]), decoder=c.get("decoder"), block_length=k,
                               csi=csi)
            pending.append((th, color))
    for th, color in pending:
        for j, (ax, which) in enumerate(zip(axes, ("ber", "bler"), strict=True)):
            f = th.get(which)
            if f is not None:
                y = np.asarray(f(grid), dtype=float)
                floor = floors[j] / 10.0 if np.isfinite(floors[j]) else 1e-7
                ax.plot(grid, np.where(y >= floor, y, np.nan), "--", color=color, lw=1.0, alpha=0.7,
                        label=th["label"])
    for ax, name, z in zip(axes, ("BER", "BLER"), zero, strict=True):
        ax.set_yscale("log")
        ax.set_xlabel(r"$E_b/N_0$ [dB]")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
        if z:  # one legend entry says what the open triangles are
            ax.plot([], [], "v", color="0.35", ms=6, mfc="none", ls="none",
                    label=f"no errors: {100 * float(results[0].config.get('confidence', 0.95)):g}% upper bound")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    conf = results[0].config.get("confidence", 0.95)
    fig.suptitle(title or f"Monte-Carlo error rates (error bars: {100 * float(conf):g}% confidence intervals)",
                 fontsize=10)
    return save_figure(fig, out, dpi=dpi)  # atomic; creates the directory; closes the figure


def rate_curve(ax, x, rate, ci, *, color, marker="o", ls="-", label=None, ms=4.5) -> bool:
    """One error-rate curve on a log-y axis: points ``(x[i], rate[i])`` with their intervals ``ci[i] = (lo, hi)``
    as error bars (``ci[i]`` may be ``None``: no bar), joined by ``ls``; a rate of 0 (no error) is drawn as an open
    downward triangle at its interval's upper bound -- an upper limit, as a log axis cannot show 0 -- and carries
    the legend entry only when the curve has no other point. Returns whether any point had no error (then add
    :func:`zero_error_entry` once per axis)."""
    pts = sorted(zip(x, rate, ci, strict=True), key=lambda p: p[0])
    pos = [(a, r, c) for a, r, c in pts if r is not None and r > 0]
    zero = [(a, c[1]) for a, r, c in pts if r is not None and r <= 0 and c is not None and c[1] > 0]
    if pos:
        err = [[r - (c[0] if c else r) for _, r, c in pos], [(c[1] if c else r) - r for _, r, c in pos]]
        ax.errorbar([a for a, _, _ in pos], [r for _, r, _ in pos], yerr=err, color=color, marker=marker, ms=ms,
                    ls=ls, lw=1.2, capsize=2, label=label)
    if zero:
        ax.plot([a for a, _ in zero], [u for _, u in zero], "v", mfc="none", ms=ms + 2, color=color, ls="none",
                label="_nolegend_" if pos or label is None else f"{label} (no errors)")
    return bool(zero)


def zero_error_entry(ax, confidence: float = 0.95) -> None:
    """The one legend entry that says what the open triangles of :func:`rate_curve` are."""
    ax.plot([], [], "v", mfc="none", ms=6, color="0.35", ls="none",
            label=f"no errors: {100 * confidence:g}% upper bound")
