"""fewshot's figures: 0 steps on the axis (symmetric log, not a log axis hiding 0), intervals on every point,
zero-error rates as labelled upper bounds, legends outside the data and never empty; BER plots: the zero-error
marker has a legend entry."""

import matplotlib
import pytest

matplotlib.use("Agg")

from metacomm.experiments.fewshot import _plots  # noqa: E402
from metacomm.sims.plots import plot_results  # noqa: E402
from metacomm.sims.results import PointResult, SweepResult  # noqa: E402


@pytest.fixture
def figs(monkeypatch):
    import metacomm.artefacts as art
    kept = []

    def keep(fig, path, **kw):
        kept.append(fig)
        fig.savefig(path)
        return path

    monkeypatch.setattr(art, "save_figure", keep)
    import metacomm.sims.plots as sp
    monkeypatch.setattr(sp, "save_figure", keep)
    return kept


def _rec(scheme, pilots, steps, errors, blocks=1000):
    b = errors / blocks
    return {"scheme": scheme, "pilots": pilots, "steps": steps, "bler": b, "block_errors": errors,
            "blocks": blocks, "bler_ci": [max(0.0, b - 0.01), b + 0.01] if errors else [0.0, 0.0037]}


def test_fewshot_steps_axis_shows_zero_and_zero_errors_are_labelled(figs, tmp_path):
    rows = [_rec(s, p, k, e) for s in ("meta", "joint", "random") for p in (4, 16)
            for k, e in ((0, 800), (1, 100), (10, 20))]
    rows[4] = _rec("meta", 16, 1, 0)  # one learned point without an error (in both figures)
    rows += [_rec("genie", None, 2000, 0), _rec("pilot-ls-ml", 4, None, 13), _rec("pilot-ls-ml", 16, None, 12)]
    _plots(rows, [4, 16], [0, 1, 10], str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bler_vs_pilots.png", "bler_vs_steps.png"]
    steps_ax, pilots_ax = figs[0].axes[0], figs[1].axes[0]
    assert steps_ax.get_xscale() == "symlog"
    assert [t.get_text() for t in steps_ax.get_xticklabels()] == ["0", "1", "10"]
    labels = [t.get_text() for t in steps_ax.get_legend().get_texts()]
    assert "genie: no errors, at its 95% upper bound" in labels and "meta" in labels
    assert "no errors: 95% upper bound" in labels and all(labels)
    genie_line = [ln for ln in steps_ax.get_lines() if ln.get_label().startswith("genie")][0]
    assert genie_line.get_ydata()[0] == pytest.approx(0.0037)  # at the bound, not at an arbitrary floor
    assert all(len(c) > 0 for c in steps_ax.containers)  # error bars
    plabels = [t.get_text() for t in pilots_ax.get_legend().get_texts()]
    assert "no errors: 95% upper bound" in plabels and all(plabels)
    assert [t.get_text() for t in pilots_ax.get_xticklabels()] == ["4", "16"]
    for fig in figs:
        fig.canvas.draw()
        ax = fig.axes[0]
        assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1 - 1


def test_ber_plot_zero_error_marker_in_the_legend(figs, tmp_path):
    pts = [PointResult(ebno_db=0.0, bit_errors=50, bits=1000, block_errors=40, blocks=100, bits_per_block=10,
                       simulated=True),
           PointResult(ebno_db=5.0, bit_errors=0, bits=1000, block_errors=0, blocks=100, bits_per_block=10,
                       simulated=True)]
    plot_results(SweepResult(points=pts, config={"label": "x"}), tmp_path / "f.png", theory=False)
    for ax in figs[0].axes:
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert sorted(labels) == ["no errors: 95% upper bound", "x"]
    plot_results(SweepResult(points=pts[:1], config={"label": "y"}), tmp_path / "g.png", theory=False)
    assert [t.get_text() for t in figs[1].axes[0].get_legend().get_texts()] == ["y"]


def test_compression_db_loss_figure_without_losses_says_so_instead_of_an_empty_legend(figs, tmp_path):
    from types import SimpleNamespace

    from metacomm.experiments.compression import _plots as cmp_plots
    cfg = SimpleNamespace(steps=[0, 1], ebno_db=[15.0], plot_ebno_db=15.0, method=["ptq"], sparsity=[0.0], pilots=16)
    rows = [{"method": "ptq", "bits": b, "sparsity": 0.0, "steps": 1, "ebno_db": 15.0, "adc_bits": 0,
             "channel": "fading-ae", "bler": 0.1, "model_bytes": 100 * b, "db_loss_at_1e-2": None} for b in (8, 4)]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "No artists with labels found to put in legend" was a warning
        cmp_plots(rows, cfg, str(tmp_path))
    ax = figs[1].axes[0]
    assert ax.get_legend() is None and "no codec reached BLER 1e-2" in " ".join(t.get_text() for t in ax.texts)
    assert [t.get_text() for t in figs[0].axes[0].get_legend().get_texts()] == ["ptq"]


def test_plot_overlay_records_zero_steps_on_the_axis_and_zero_errors_as_bounds(figs, tmp_path):
    from metacomm.experiments.overlay import Run, plot_overlay
    recs = [_rec("meta", 16, k, e) for k, e in ((0, 500), (1, 50), (10, 5))] + [_rec("genie", None, 2000, 0)]
    run = Run("metacomm-fewshot", {"config": {"pilots": [16], "steps": [0, 1, 10]}, "results": recs},
              str(tmp_path / "results.json"), "fs")
    plot_overlay([run], tmp_path / "o.png")
    ax = figs[0].axes[0]
    assert ax.get_xscale() == "symlog"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "10", "2000"]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "no errors: 95% upper bound" in labels
    tri = [ln for ln in ax.get_lines() if ln.get_marker() == "v" and len(ln.get_xdata())]
    assert len(tri) == 1 and tri[0].get_ydata()[0] == pytest.approx(0.0037)


def test_pack_figures_share_the_rate_axis_with_intervals_and_legends_outside(figs, tmp_path):
    from types import SimpleNamespace

    from metacomm.experiments.adversarial import _plots as adv_plots
    from metacomm.experiments.label_noise import _plot as ln_plot
    recs = [{"attack": a, "defence": d, "psr_db": p, "ebno_db": 10.0, **_rec("x", 0, 0, e)}
            for a, es in (("pgd-l2", (300, 100)), ("jam-gauss", (3, 0))) for d in ("none", "hamming-ml")
            for p, e in zip((-10.0, -6.0), es, strict=True)]
    adv_plots(recs, SimpleNamespace(ebno_db=[10.0], attack=["pgd-l2", "jam-gauss"], defence=["none", "hamming-ml"],
                                    out=str(tmp_path)))
    fig = figs[0]
    a0, a1 = fig.axes[:2]
    assert a0.get_shared_y_axes().joined(a0, a1)  # jamming reads against the attack on one scale
    assert all(c.has_yerr for c in a0.containers)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert sorted(labels) == ["hamming-ml", "no errors: 95% upper bound", "none"]
    ln = [{"noise": n, "method": m, "rate": r, **_rec("x", 0, 0, e)} for n in ("symmetric", "pair")
          for m, e in (("naive", 200), ("oracle", 20)) for r in (0.0, 0.4)]
    ln_plot(ln, SimpleNamespace(noise=["symmetric", "pair"], train_rate_max=0.5, out=str(tmp_path)))
    fig = figs[1]
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["naive", "oracle"]
    oracle = [c for c in fig.axes[0].containers if c.get_label() == "oracle"][0]
    assert oracle.lines[0].get_color() == "k"


def test_label_noise_figure_draws_the_classical_reference_from_its_results(figs, tmp_path):
    from types import SimpleNamespace

    from metacomm.experiments.label_noise import _plot as ln_plot
    from metacomm.experiments.packs import bler_record, write_pack_results
    ln = [{"noise": "symmetric", "method": m, "rate": r, **_rec("x", 0, 0, e)} for m, e in (("naive", 200),)
          for r in (0.0, 0.4)]
    write_pack_results(str(tmp_path), "label-noise", {"noise": ["symmetric"]}, ln,
                       reference=bler_record(45, 1000, method="pilot-ls-ml", pilots=4))
    ln_plot(ln, SimpleNamespace(noise=["symmetric"], train_rate_max=0.5, pilots=4, out=str(tmp_path)))
    ax = figs[0].axes[0]
    ref = [ln for ln in ax.get_lines() if ln.get_label().startswith("pilot-LS + ML")]
    assert len(ref) == 1 and ref[0].get_ydata()[0] == pytest.approx(0.045)
    assert any(t.get_text().startswith("pilot-LS + ML, 4 clean pilots") for t in figs[0].legends[0].get_texts())
