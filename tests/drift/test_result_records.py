"""DriftResult ergonomics: a short repr (the frames are not printed), to_records / to_dataframe in long format
(one row per frame x scheme, counts equal to the frames'), pandas optional with a clear error."""

import sys

import pytest

from metacomm import ConfigError
from metacomm.drift.result import DriftResult


def _result(frames=150, schemes=("meta", "track", "pilot-ls", "kalman", "genie")):
    res = DriftResult(config={"scenario": "doppler-fast", "scheme_kinds": {
        "meta": "adaptive", "track": "adaptive", "pilot-ls": "classical", "kalman": "classical", "genie": "reference"}})
    for t in range(frames):
        sch = {s: {"block_errors": (t + i) % 7, "blocks": 512, "bit_errors": (t * 3 + i) % 11, "bits": 4096,
                   "bler": ((t + i) % 7) / 512, "ber": ((t * 3 + i) % 11) / 4096,
                   "latency_ms": None if s == "genie" else 0.25 * i}
               for i, s in enumerate(schemes)}
        res.add_frame({"frame": t, "segment": t // 100, "drift": 0.5, "ebno_db": 10.0,
                       "gain_db": {"mean": -0.1 * t, "p10": -3.0, "p90": 2.0}, "schemes": sch})
    return res


def test_repr_is_one_short_line():
    res = _result()
    r = repr(res)
    assert len(r) < 300 and "\n" not in r, r
    assert r.startswith("DriftResult(scenario='doppler-fast', frames=150, schemes=5")
    best_a = min(("meta", "track"), key=lambda s: res.summary()[s]["bler"])
    assert f"best adaptive: {best_a}" in r and "best classical:" in r
    assert len(repr(_result(schemes=tuple(f"s{i}" for i in range(30))))) < 300
    assert repr(DriftResult(config={})) == "DriftResult(scenario=None, frames=0, schemes=0)"


def test_to_records_long_format_matches_the_frames():
    res = _result(frames=12)
    rows = res.to_records()
    assert len(rows) == 12 * 5
    assert [(r["frame"], r["scheme"]) for r in rows[:6]] == [(0, s) for s in res.schemes] + [(1, "meta")]
    for r in rows:
        f = res.frames[r["frame"]]["schemes"][r["scheme"]]
        assert r["block_errors"] == f["block_errors"] and r["blocks"] == 512 and r["bits"] == 4096
        assert r["bler"] == f["block_errors"] / 512
    assert rows[7]["kind"] == "classical" and rows[9]["kind"] == "reference" and rows[9]["latency_ms"] is None
    assert rows[5]["gain_db"] == pytest.approx(-0.1)
    # the pooled counts of the rows are the summary's
    s = res.summary()
    for name in res.schemes:
        assert sum(r["block_errors"] for r in rows if r["scheme"] == name) == s[name]["block_errors"]


def test_to_dataframe_with_pandas():
    pd = pytest.importorskip("pandas")
    df = _result(frames=20).to_dataframe()
    assert isinstance(df, pd.DataFrame) and df.shape[0] == 100
    assert {"frame", "scheme", "kind", "bler", "block_errors", "blocks", "ebno_db", "gain_db"} <= set(df.columns)
    per = df.groupby("scheme")["block_errors"].sum() / df.groupby("scheme")["blocks"].sum()
    res = _result(frames=20)
    for s, r in res.summary().items():
        assert per[s] == pytest.approx(r["bler"], rel=1e-12)


def test_to_dataframe_without_pandas_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    with pytest.raises(ConfigError, match=r"^pandas: .*pip install pandas"):
        _result(frames=2).to_dataframe()


def test_seed_records_of_a_pooled_document():
    from metacomm.drift.pooled import pool_seeds, seed_records, seed_summary, seeds_dataframe
    per = {s: seed_summary(_result(frames=5 + s)) for s in (3, 7)}
    doc = {"seeds": {str(s): v for s, v in per.items()}, "summary": pool_seeds(per, [3, 7], 5)}
    rows = seed_records(doc)
    assert [(r["seed"], r["scheme"]) for r in rows[:6]] == [(3, s) for s in per[3]] + [(7, "meta")]
    assert all(r["blocks"] == 512 * (5 + r["seed"]) for r in rows)
    for name, pooled in doc["summary"].items():
        assert sum(r["block_errors"] for r in rows if r["scheme"] == name) == pooled["block_errors"]
    pd = pytest.importorskip("pandas")
    df = seeds_dataframe(doc)
    assert isinstance(df, pd.DataFrame) and len(df) == 10 and set(df["seed"]) == {3, 7}
