"""plots: files are written for mixed results (zero-error and skipped points), bad input is rejected."""

import pytest
import torch

from metacomm import ConfigError
from metacomm.sims.engine import simulate
from metacomm.sims.plots import default_label, plot_results


def _res(p0, **cfg):
    def link(batch_size, ebno_db, generator):
        bits = torch.randint(0, 2, (batch_size, 8), generator=generator).float()
        flips = (torch.rand(batch_size, 8, generator=generator) < p0 * 10 ** (-ebno_db / 3)).float()
        return bits, (bits + flips) % 2

    return simulate(link, [0, 5, 20, 30], batch_size=100, max_blocks=300, target_block_errors=20, quiet=True,
                    config=cfg)


@pytest.mark.parametrize("ext", ["png", "svg", "pdf"])
def test_plot_formats_and_overlay(tmp_path, ext):
    a = _res(0.1, codec="bpsk", channel="awgn")
    b = _res(0.05, codec="qpsk", channel="rayleigh", csi="ls")
    assert not a.points[-1].simulated and a.points[2].bit_errors == 0  # zero-error + skipped points
    out = plot_results([a, b], tmp_path / f"fig.{ext}")
    assert out.exists() and out.stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir()] == [f"fig.{ext}"]  # no temporary file left


def test_labels_and_errors(tmp_path):
    r = _res(0.1, codec="qam16", decoder="maxlog", channel="rayleigh", csi="perfect")
    assert default_label(r) == "qam16 (maxlog) over rayleigh (perfect CSI)"
    with pytest.raises(ConfigError, match="^out: "):
        plot_results(r, tmp_path / "fig.jpg")
    with pytest.raises(ConfigError, match="labels"):
        plot_results([r, r], tmp_path / "fig.png", labels=["one"])
    with pytest.raises(ConfigError, match="results"):
        plot_results([], tmp_path / "fig.png")
