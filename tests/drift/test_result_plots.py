"""Drift figures that show who wins: structure of drift.png / seeds.png / the headline on small synthetic results
(distinct colour+marker per scheme, ranked rows, best adaptive and classical highlighted, BLER ~1 rows out of the
way, legends outside the data, no line joining independent seeds) and the verdict wording."""

import math

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from metacomm import ConfigError  # noqa: E402
from metacomm.drift.pooled import plot_seeds, pool_seeds, pooled_table, seeds_panel  # noqa: E402
from metacomm.drift.result import (  # noqa: E402
    OFF_SCALE_BLER,
    DriftResult,
    compare_best,
    headline_panel,
    plot_drift,
    plot_headline,
    scheme_styles,
    verdict,
)

# the demo's rows (static and wide-ls were both blue before)
DEMO = {"static": "adaptive", "retrain": "adaptive", "meta": "adaptive", "warm": "adaptive",
        "online-meta": "adaptive", "track": "adaptive", "pilot-ls": "classical", "wide-ls": "classical",
        "wl-ls": "classical", "pilot-lmmse": "classical", "kalman": "classical", "genie": "reference",
        "genie-1dB": "reference"}
# true BLER per row (static / retrain at ~1: off the scale); track best adaptive, pilot-ls best classical
TRUE = {"static": 0.95, "retrain": 0.99, "meta": 0.030, "warm": 0.040, "online-meta": 0.035, "track": 0.012,
        "pilot-ls": 0.020, "wide-ls": 0.032, "wl-ls": 0.028, "pilot-lmmse": 0.0245, "kalman": 0.026,
        "genie": 0.010, "genie-1dB": 0.025}


def _result(frames=40, blocks=512, seed=0, true=TRUE) -> DriftResult:
    rng = np.random.default_rng(seed)
    recs = []
    for t in range(frames):
        sch = {}
        for s, p in true.items():
            be = int(rng.binomial(blocks, p))
            bi = int(rng.binomial(blocks * 8, p / 2))
            sch[s] = {"block_errors": be, "blocks": blocks, "bit_errors": bi, "bits": blocks * 8,
                      "bler": be / blocks, "ber": bi / (blocks * 8), "latency_ms": None if s.startswith("genie")
                      else 0.5}
        recs.append({"frame": t, "segment": 0, "drift": 0.5, "ebno_db": 10.0,
                     "gain_db": {"mean": 0.0, "p10": -3.0, "p90": 2.0}, "schemes": sch})
    res = DriftResult(config={"scenario": "synthetic", "pilots": 16, "steps": 1, "links": 8,
                              "payload_blocks_per_link": 64, "scheme_kinds": {s: DEMO.get(s, "adaptive")
                                                                               for s in true}})
    for r in recs:
        res.add_frame(r)
    return res


@pytest.fixture
def captured(monkeypatch):
    """The figures the plotting functions save, kept open for inspection (and still written)."""
    import metacomm.artefacts as art
    figs = []
    real = art.save_figure

    def keep(fig, path, **kw):
        figs.append(fig)
        import matplotlib.pyplot as plt
        fig.savefig(path)
        plt.close(fig)
        return path

    monkeypatch.setattr(art, "save_figure", keep)
    yield figs
    monkeypatch.setattr(art, "save_figure", real)


def _pairs(lines):
    return [(matplotlib.colors.to_hex(ln.get_color()), ln.get_marker()) for ln in lines]


def test_styles_are_distinct_colour_and_marker_pairs():
    st = scheme_styles(list(DEMO), DEMO)
    pairs = [(s["color"], s["marker"]) for s in st.values()]
    assert len(set(pairs)) == len(pairs)
    colors = [st[s]["color"] for s in DEMO if not s.startswith("genie")]
    assert len(set(colors)) == len(colors)  # the demo's 11 non-reference rows: 11 colours
    assert st["static"]["color"] != st["wide-ls"]["color"]
    assert st["genie"] == {"color": "k", "marker": "D", "ls": "--"} and st["genie-1dB"]["ls"] == ":"
    assert st["kalman"]["ls"] == "-." and st["track"]["ls"] == "-"
    assert st["kalman"]["marker"] in ("s", "D", "P", "X", "d", "*", "H")
    many = [f"s{i}" for i in range(40)]
    st = scheme_styles(many, {s: ("classical" if i % 3 else "adaptive") for i, s in enumerate(many)})
    pairs = [(s["color"], s["marker"]) for s in st.values()]
    assert len(set(pairs)) == 40
    assert scheme_styles(list(DEMO), DEMO) == scheme_styles(list(DEMO), DEMO)


def test_verdict_never_calls_overlapping_intervals_a_win():
    a = {"bler": 0.0142, "bler_ci": [0.0134, 0.0151]}
    b = {"bler": 0.0148, "bler_ci": [0.0139, 0.0156]}
    assert verdict(a, b) == "not distinguishable from" == verdict(b, a)
    c = {"bler": 0.024, "bler_ci": [0.023, 0.025]}
    assert verdict(a, c) == "better than" and verdict(c, a) == "worse than"
    res = _result()
    line = res.summary_table().splitlines()[-1]
    assert line.startswith("best adaptive: track") and "best classical: pilot-ls" in line
    assert "track is better than pilot-ls (95 % intervals apart)" in line  # 0.012 vs 0.020 on 20480 blocks
    close = _result(true={**TRUE, "track": 0.0200, "pilot-ls": 0.0201})
    line = close.comparison_line()
    assert "not distinguishable from" in line and "overlap" in line and "better" not in line


def test_headline_ranks_rows_highlights_the_best_and_moves_failures_out(captured, tmp_path):
    res = _result()
    summ = res.summary()
    plot_headline(res, tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000
    ax = captured[0].axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    ticks = list(ax.get_yticks())
    order = [lab.split()[0] for _, lab in sorted(zip(ticks, labels, strict=True), reverse=True)]  # top first
    assert order == sorted((s for s in summ if summ[s]["bler"] < OFF_SCALE_BLER), key=lambda s: summ[s]["bler"])
    assert "static" not in order and "retrain" not in order
    notes = " ".join(t.get_text() for t in ax.texts)
    assert "off the scale" in notes and "static" in notes and "retrain" in notes
    bold = {t.get_text().split()[0] for t in ax.get_yticklabels() if t.get_fontweight() == "bold"}
    assert bold == {"track", "pilot-ls"}
    assert "track is better than pilot-ls" in ax.get_title()
    # when every row fails, none is hidden
    fig, ax2 = matplotlib.pyplot.subplots()
    out = headline_panel(ax2, {"a": {"bler": 0.9, "bler_ci": [0.8, 0.95], "kind": "adaptive"},
                               "b": {"bler": 0.95, "bler_ci": [0.9, 0.97], "kind": "classical"}})
    assert out["off_scale"] == [] and out["rows"] == ["a", "b"]
    with pytest.raises(ConfigError, match="^results: "):
        headline_panel(ax2, {})


def test_drift_png_structure(captured, tmp_path):
    res = _result()
    plot_drift(res, tmp_path / "drift.png")
    fig = captured[0]
    time_axes = [a for a in fig.axes if a.get_xlabel() == "frame"]
    assert len(time_axes) == 1
    bler_ax = fig.axes[1]
    drawn = [ln for ln in bler_ax.get_lines() if not ln.get_label().startswith("_")]
    names = [ln.get_label().split(" (best")[0] for ln in drawn]
    assert set(names) == {s for s in TRUE if TRUE[s] < OFF_SCALE_BLER}  # static / retrain not in the time panels
    pairs = _pairs(drawn)
    assert len(set(pairs)) == len(pairs)  # colour AND marker tell every curve apart
    best = {ln.get_label().split(" (best")[0]: ln.get_linewidth() for ln in drawn}
    assert best["track"] > best["meta"] and best["pilot-ls"] > best["kalman"]
    leg = fig.axes[2].get_legend()
    assert leg is not None and len(leg.get_texts()) == len(drawn)
    # the legend sits below the data, not on it
    fig.canvas.draw()
    lb, ab = leg.get_window_extent(), fig.axes[2].get_window_extent()
    assert lb.y1 <= ab.y0 + 1
    assert "not drawn (BLER ~1): static, retrain" in fig.axes[0].get_title()
    head = fig.axes[-1]
    assert head.get_xscale() == "log" and "who wins" in head.get_title()
    # schemes= draws exactly those, failures included
    plot_drift(res, tmp_path / "d2.png", schemes=["static", "track", "genie"])
    lines = [ln.get_label() for ln in captured[1].axes[1].get_lines() if not ln.get_label().startswith("_")]
    assert [s.split(" (best")[0] for s in lines] == ["static", "track", "genie"]
    with pytest.raises(ConfigError, match="^schemes: "):
        plot_drift(res, tmp_path / "d3.png", schemes=["nope"])


def _pooled(n_seeds=3):
    per = {s: {k: {kk: r[kk] for kk in ("block_errors", "blocks", "bit_errors", "bits", "bler", "ber",
                                            "frames_above_target", "latency_ms_mean", "kind")}
                   for k, r in _result(frames=10, seed=s).summary().items()} for s in range(n_seeds)}
    summ = pool_seeds(per, list(range(n_seeds)), 10)
    return {"config": {"scenario": "synthetic", "frames": 10, "links": 8}, "seeds": {str(s): v for s, v in per.items()},
            "summary": summ}


def test_seeds_png_points_with_intervals_no_lines_joining_seeds(captured, tmp_path):
    doc = _pooled()
    plot_seeds(doc, tmp_path / "seeds.png")
    fig = captured[0]
    head, ax = fig.axes[0], fig.axes[1]
    assert "who wins" in head.get_title()
    for ln in ax.get_lines():  # error-bar data lines carry markers only; no line joins two seeds
        if len(set(np.asarray(ln.get_xdata(), float).round(9))) > 1:  # (the "pooled" separator is vertical)
            assert ln.get_linestyle() in ("None", "none", " ", ""), ln.get_label()
    labelled = [c for c in ax.containers if not c.get_label().startswith("_")]
    on_scale = [s for s, r in doc["summary"].items() if r["bler"] < OFF_SCALE_BLER]
    assert [c.get_label() for c in labelled] == on_scale
    for c in labelled:  # one point per seed, each with its interval, inside that seed's slot
        x = c.lines[0].get_xdata()
        assert len(x) == 3 and all(abs(xi - i) < 0.5 for i, xi in enumerate(x))
        assert c.has_yerr
    pairs = [(matplotlib.colors.to_hex(c.lines[0].get_color()), c.lines[0].get_marker()) for c in labelled]
    assert len(set(pairs)) == len(pairs)
    assert ax.get_xticklabels()[-1].get_text() == "pooled"
    leg = ax.get_legend()
    assert leg is not None and len(leg.get_texts()) == len(on_scale)
    fig.canvas.draw()
    assert leg.get_window_extent().x0 >= ax.get_window_extent().x1 - 1  # outside, at the right
    fig2, ax2 = matplotlib.pyplot.subplots()
    out = seeds_panel(ax2, [(doc, "a"), (doc, "b")], schemes=["track", "kalman"])
    assert out["rows"] == [("a", "track"), ("a", "kalman"), ("b", "track"), ("b", "kalman")]


def test_pooled_table_and_comparison_wording():
    doc = _pooled()
    line = pooled_table(doc).splitlines()[-1]
    c = compare_best(doc["summary"])
    assert c["verdict"] in line and "pooled 95 % intervals" in line
    assert not ("better than" in line and "overlap" in line)
    assert math.isfinite(c["ratio"])
