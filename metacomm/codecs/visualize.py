"""Plots of learned codecs: training curves, constellations with bit labels, AE encoder-output scatter.

All functions write a figure (PNG, or PDF/SVG by the file name's suffix; matplotlib's Agg backend, no display
needed) through :func:`metacomm.artefacts.save_figure` (atomic) and return the path.
"""

from __future__ import annotations

from pathlib import Path

import torch

from metacomm.artefacts import save_figure

__all__ = ["plot_training_curve", "plot_constellation", "plot_encoder_scatter", "plot_codec"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_training_curve(history, path, *, title: str | None = None) -> Path:
    """Loss (left axis) and running BLER (right axis, log scale) per step -> PNG at ``path``."""
    plt = _plt()
    steps = range(1, len(history.loss) + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, history.loss, color="tab:blue", lw=1, label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel(f"loss ({history.config.get('loss', '')}, nats per block)", color="tab:blue")
    ax2 = ax.twinx()
    rb = [max(v, 1e-6) for v in history.running_bler]
    ax2.semilogy(steps, rb, color="tab:red", lw=1, label="running BLER")
    ax2.set_ylabel("running BLER (training batches)", color="tab:red")
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "training curve")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_constellation(points: torch.Tensor, path, *, bits_per_symbol: int | None = None,
                       title: str = "constellation") -> Path:
    """Complex points ``[M]`` with their bit labels (index in binary, MSB first) -> PNG."""
    plt = _plt()
    p = points.detach().cpu().to(torch.complex64)
    m = bits_per_symbol if bits_per_symbol is not None else max(1, (p.numel() - 1).bit_length())
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.scatter(p.real, p.imag, s=30, color="tab:blue")
    if p.numel() <= 256:
        for i, c in enumerate(p.tolist()):
            ax.annotate(format(i, f"0{m}b"), (c.real, c.imag), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=7)
    lim = 1.25 * float(p.abs().max()) if p.numel() else 1.0
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("in-phase")
    ax.set_ylabel("quadrature")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


@torch.no_grad()
def plot_encoder_scatter(codec, path, *, title: str | None = None) -> Path:
    """Autoencoder codebook: every complex channel use of all 2^k codewords in the I/Q plane -> PNG.

    Points are coloured by channel-use index (for n_c = 1, e.g. AE(2,2), this is the learned constellation).
    """
    plt = _plt()
    book = codec.encoder.codebook().cpu()  # [M, n_samples]
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for j in range(book.shape[1]):
        ax.scatter(book[:, j].real, book[:, j].imag, s=14, label=f"use {j}")
    if book.shape[1] == 1 and book.shape[0] <= 64:
        k = codec.num_info_bits
        for i, c in enumerate(book[:, 0].tolist()):
            ax.annotate(format(i, f"0{k}b"), (c.real, c.imag), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=7)
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("in-phase")
    ax.set_ylabel("quadrature")
    if book.shape[1] <= 8:
        ax.legend(fontsize=7, loc="upper right")
    ax.set_title(title or f"encoder outputs, {book.shape[0]} codewords x {book.shape[1]} channel uses")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_codec(codec, path) -> Path | None:
    """The natural picture of a learned codec: constellation (TrainableConstellation, NeuralReceiver data
    modulation) or encoder scatter (Autoencoder). Returns the path, or None when there is nothing to draw."""
    name = type(codec).__name__
    if name == "Autoencoder":
        return plot_encoder_scatter(codec, path)
    if name == "TrainableConstellation":
        return plot_constellation(codec.points(), path, bits_per_symbol=codec.bits_per_symbol,
                                  title="learned constellation (bit labels)")
    if name == "NeuralReceiver":
        return plot_constellation(codec.encoder.mapper.points, path, bits_per_symbol=codec.encoder.m,
                                  title="data constellation (Gray, fixed)")
    return None
