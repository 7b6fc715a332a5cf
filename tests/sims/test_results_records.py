"""SweepResult ergonomics: a short repr, to_records / to_dataframe (one row per Eb/N0 point, NaN where a point was
not simulated), pandas optional."""

import math
import sys

import pytest

from metacomm import ConfigError
from metacomm.sims.results import PointResult, SweepResult
from metacomm.sims.stats import clopper_pearson


def _sweep(n=3):
    pts = [PointResult(ebno_db=float(2 * i), bit_errors=100 // (i + 1), bits=10000, block_errors=50 // (i + 1),
                       blocks=1000, bits_per_block=10, simulated=True, stop_reason="max_blocks", runtime_s=0.5)
           for i in range(n)]
    pts.append(PointResult(ebno_db=float(2 * n)))  # not simulated (early stop)
    return SweepResult(points=pts, config={"codec": "qpsk", "channel": "awgn", "finished": True})


def test_repr_short():
    r = repr(_sweep())
    assert r == ("SweepResult(codec='qpsk', channel='awgn', points=4 at Eb/N0 0..6 dB (3 simulated), BER 0.01..0.0033, "
                 "BLER 0.05..0.016)")
    big = SweepResult(points=[PointResult(ebno_db=float(i), extra={"x": list(range(100))}) for i in range(500)])
    assert len(repr(big)) < 200


def test_records_and_dataframe():
    res = _sweep()
    rows = res.to_records()
    assert [r["ebno_db"] for r in rows] == [0.0, 2.0, 4.0, 6.0]
    assert rows[1]["bler"] == 25 / 1000 and rows[1]["blocks"] == 1000 and rows[1]["simulated"]
    lo, hi = clopper_pearson(25, 1000)
    assert rows[1]["bler_ci_lo"] == pytest.approx(lo) and rows[1]["bler_ci_hi"] == pytest.approx(hi)
    assert math.isnan(rows[3]["ber"]) and math.isnan(rows[3]["bler_ci_hi"]) and not rows[3]["simulated"]
    pd = pytest.importorskip("pandas")
    df = res.to_dataframe()
    assert isinstance(df, pd.DataFrame) and list(df["ebno_db"]) == [0.0, 2.0, 4.0, 6.0]
    assert df["ber"].isna().tolist() == [False, False, False, True]


def test_dataframe_without_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ConfigError, match="^pandas: "):
        _sweep().to_dataframe()
