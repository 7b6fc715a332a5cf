"""results.json / results.csv: exact schema, round trip, validation, refusal to clobber foreign files."""

import csv
import json

import pytest
import torch

from metacomm import ConfigError
from metacomm.sims.engine import simulate
from metacomm.sims.results import CSV_COLUMNS, PointResult, SweepResult, load_results, save_results

SCHEMA_KEYS = {"ebno_db", "ber", "bler", "bit_errors", "bits", "block_errors", "blocks", "ber_ci", "bler_ci"}


def _result():
    def link(batch_size, ebno_db, generator):
        bits = torch.randint(0, 2, (batch_size, 20), generator=generator).float()
        flips = (torch.rand(batch_size, 20, generator=generator) < 0.3 * 10 ** (-ebno_db / 5)).float()
        return bits, (bits + flips) % 2

    return simulate(link, [0, 10, 30, 40], batch_size=50, max_blocks=400, target_block_errors=30, seed=4,
                    quiet=True, config={"codec": "synthetic", "channel": "none"})


def test_schema_and_round_trip(tmp_path):
    res = _result()
    jp = save_results(res, tmp_path)
    d = json.loads(jp.read_text())
    assert set(d) == {"format", "config", "points"}
    assert d["format"] == "metacomm-results/1" and d["config"]["format"] == "metacomm-results/1"
    assert d["config"]["codec"] == "synthetic" and d["config"]["batch_size"] == 50
    assert len(d["points"]) == 4
    for p in d["points"]:
        assert SCHEMA_KEYS <= set(p)
        if p["simulated"]:
            assert p["ber"] == p["bit_errors"] / p["bits"] and p["bler"] == p["block_errors"] / p["blocks"]
            assert len(p["ber_ci"]) == 2 and p["ber_ci"][0] <= p["ber"] <= p["ber_ci"][1]
            assert p["bler_ci"][0] <= p["bler"] <= p["bler_ci"][1]
        else:
            assert p["ber"] is None and p["ber_ci"] is None and p["blocks"] == 0
    assert not d["points"][-1]["simulated"]  # the 40 dB point is skipped after the error-free 30 dB point
    back = load_results(jp)
    assert [p.to_dict() for p in back.points] == [p.to_dict() for p in res.points]
    assert load_results(tmp_path).config == d["config"]  # a directory works too
    # strict JSON (no NaN/Infinity tokens)
    json.loads(jp.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_csv(tmp_path):
    res = _result()
    save_results(res, tmp_path)
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 4
    for r, pt in zip(rows, res.points, strict=True):
        assert int(r["bit_errors"]) == pt.bit_errors and int(r["blocks"]) == pt.blocks
        if pt.simulated:
            assert float(r["ber"]) == pt.ber and float(r["bler_ci_hi"]) == pt.bler_ci[1]
        else:
            assert r["ber"] == "" and r["simulated"] == "0"


def test_overwrite_rules(tmp_path):
    res = _result()
    save_results(res, tmp_path)
    save_results(res, tmp_path)  # replacing our own files is fine
    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / "results.json").write_text('{"my": "thesis data"}')
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        save_results(res, foreign)
    assert (foreign / "results.json").read_text() == '{"my": "thesis data"}'
    assert not (foreign / "results.csv").exists()  # nothing written at all
    foreign2 = tmp_path / "other2"
    foreign2.mkdir()
    (foreign2 / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="^out: "):
        save_results(res, foreign2)
    assert not (foreign2 / "results.json").exists()
    # no temporary files are left behind
    assert sorted(x.name for x in tmp_path.iterdir() if x.is_file()) == ["results.csv", "results.json"]


@pytest.mark.parametrize("content,msg", [
    ("not json", "not valid JSON"),
    ('{"points": []}', "not a metacomm results file"),
    ('{"config": {}, "points": [{"ebno_db": 1}]}', "missing key"),
    ('{"config": {}, "points": [{"ebno_db": 1, "ber": 0.5, "bler": 1, "bit_errors": 1, "bits": 3, '
     '"block_errors": 1, "blocks": 1, "ber_ci": [0, 1], "bler_ci": [0, 1]}]}', "ber does not equal"),
    ('{"config": {}, "points": [{"ebno_db": 1, "ber": 1, "bler": 1, "bit_errors": 5, "bits": 3, '
     '"block_errors": 1, "blocks": 1, "ber_ci": [0, 1], "bler_ci": [0, 1]}]}', "inconsistent counts"),
])
def test_load_validation(tmp_path, content, msg):
    f = tmp_path / "r.json"
    f.write_text(content)
    with pytest.raises(ConfigError, match=msg):
        load_results(f)
    with pytest.raises(ConfigError, match="no such results file"):
        load_results(tmp_path / "missing.json")


def test_minimal_foreign_schema_is_accepted(tmp_path):
    # a file with only the schema keys (e.g. written by another tool) loads
    d = {"config": {}, "points": [{"ebno_db": 2.0, "ber": 0.25, "bler": 0.5, "bit_errors": 1, "bits": 4,
                                   "block_errors": 1, "blocks": 2, "ber_ci": [0.0, 1.0], "bler_ci": [0.0, 1.0]}]}
    f = tmp_path / "results.json"
    f.write_text(json.dumps(d))
    r = load_results(f)
    assert r.points[0].ber == 0.25 and r.points[0].bits_per_block == 2
    assert isinstance(r, SweepResult) and isinstance(r.points[0], PointResult)


def test_load_is_strict_and_checks_the_kind(tmp_path):
    res = _result()
    jp = save_results(res, tmp_path)
    d = json.loads(jp.read_text())
    # a file of the format before the top-level tag (only config.format) loads
    del d["format"]
    (tmp_path / "old.json").write_text(json.dumps(d))
    assert [p.to_dict() for p in load_results(tmp_path / "old.json").points] == [p.to_dict() for p in res.points]
    # NaN tokens are not JSON
    (tmp_path / "nan.json").write_text(jp.read_text().replace('"runtime_s": ', '"runtime_s": NaN, "x": ', 1))
    with pytest.raises(ConfigError, match="not valid JSON.*NaN") as e:
        load_results(tmp_path / "nan.json", field_name="--compare")
    assert e.value.field == "--compare"
    # another metacomm results kind is named
    (tmp_path / "fs.json").write_text('{"format": "metacomm-fewshot/1", "config": {}, "results": []}')
    with pytest.raises(ConfigError, match=r"is a metacomm few-shot results file \(metacomm-fewshot/1\), not a "
                                          r"metacomm BER results file"):
        load_results(tmp_path / "fs.json")
    (tmp_path / "new.json").write_text('{"format": "metacomm-results/2", "config": {}, "points": []}')
    with pytest.raises(ConfigError, match="written by a newer metacomm"):
        load_results(tmp_path / "new.json")
