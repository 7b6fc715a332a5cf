"""`metacomm plot` overlays runs of any kind: the curves drawn are the stored counts (checked against the JSON,
not against the plotting code), runs of different kinds are refused, and bad flags give one line, exit 2."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from metacomm.artefacts import write_json  # noqa: E402
from metacomm.cli.main import main  # noqa: E402
from metacomm.experiments.overlay import _drift_panel, _records_panel, load_run, parse_where, swept_fields  # noqa: E402
from metacomm.experiments.packs import bler_record, write_pack_results  # noqa: E402


@pytest.fixture(scope="module")
def drift_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("drift")
    for name, seed in (("a", 0), ("b", 1)):
        assert main(["drift", "--scenario", "doppler-slow", "--pilots", "3", "--frames", "4", "--links", "2",
                     "--payload", "8", "--schemes", "pilot-ls,genie", "--seed", str(seed), "--quiet",
                     "--out", str(base / name)]) == 0
    return base / "a", base / "b"


def _compression_file(path):
    recs = []
    for method in ("ptq", "qat"):
        for bits, e in ((8, 10), (4, 30), (2, 90)):
            recs.append(bler_record(e + (5 if method == "qat" else 0), 1000, method=method, bits=bits,
                                    sparsity=0.0, steps=1, model_bytes=bits * 100))
    write_pack_results(path, "compression", {"bits": [8, 4, 2], "sparsity": [0.0], "method": ["ptq", "qat"],
                                             "steps": [1]}, recs)
    return path


def test_drift_overlay_draws_the_stored_counts(drift_runs):
    runs = [load_run(p) for p in drift_runs]
    assert all(r.kind == "metacomm-drift" for r in runs)
    fig, ax = plt.subplots()
    _drift_panel(ax, runs, window=1, schemes=None)
    lines = {ln.get_label(): ln.get_ydata() for ln in ax.get_lines()}
    assert set(lines) == {f"{r}: {s}" for r in "ab" for s in ("pilot-ls", "genie", "genie-1dB")}
    for p, r in zip(drift_runs, ("a", "b"), strict=True):
        d = json.loads((p / "results.json").read_text())
        for s in ("pilot-ls", "genie"):
            e = np.asarray([f["schemes"][s]["block_errors"] for f in d["frames"]], float)
            n = np.asarray([f["schemes"][s]["blocks"] for f in d["frames"]], float)
            floor = 0.5 / n.sum()
            np.testing.assert_allclose(lines[f"{r}: {s}"], np.maximum(e / n, floor))
    plt.close(fig)


def test_drift_overlay_cli(drift_runs, tmp_path):
    out = tmp_path / "d.png"
    assert main(["plot", *map(str, drift_runs), "--out", str(out), "--window", "2"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_records_overlay_groups_and_filters(tmp_path):
    path = _compression_file(tmp_path / "c")
    run = load_run(path)
    assert run.kind == "metacomm-compression"
    assert swept_fields(run.data["results"], run.data["config"]) == ["method", "bits", "sparsity", "steps"]
    fig, ax = plt.subplots()
    _records_panel(ax, [run], "bits", "bler", {})
    # one curve per method (sparsity and steps take one value each, but are still part of the label)
    got = {c.get_label(): c for c in ax.containers}
    assert len(got) == 2
    ptq = next(c for lab, c in got.items() if "method=ptq" in lab)
    xs, ys = ptq.lines[0].get_data()
    np.testing.assert_allclose(xs, [2, 4, 8])
    np.testing.assert_allclose(ys, [0.09, 0.03, 0.01])
    plt.close(fig)
    fig, ax = plt.subplots()
    _records_panel(ax, [run], "bits", "bler", parse_where(["method=qat"]))
    assert len(ax.containers) == 1
    np.testing.assert_allclose(ax.containers[0].lines[0].get_data()[1], [0.095, 0.035, 0.015])
    plt.close(fig)
    out = tmp_path / "c.svg"
    assert main(["plot", str(path), "--out", str(out), "--where", "sparsity=0.0"]) == 0
    assert out.read_text().lstrip().startswith("<?xml")


def test_fewshot_overlay_uses_steps(tmp_path):
    rows = [{"scheme": s, "pilots": 16, "steps": st, "bler": b, "bler_ci": [b / 2, b * 2], "block_errors": 1,
             "blocks": 10} for s, b0 in (("meta", 0.8), ("joint", 0.2)) for st, b in ((0, b0), (1, b0 / 10))]
    write_json(tmp_path / "f" / "results.json", {"config": {"pilots": [16], "steps": [0, 1]}, "results": rows},
               kind="metacomm-fewshot", field="out")
    assert main(["plot", str(tmp_path / "f"), "--out", str(tmp_path / "f.png")]) == 0


@pytest.mark.parametrize("argv, flag", [
    (["--out", "{tmp}"], "--out"),                     # a directory
    (["--out", "{tmp}/x.txt"], "--out"),               # not a figure format
    (["--out", "{tmp}/x.png", "--x", "nope"], "--x"),
    (["--out", "{tmp}/x.png", "--where", "bits"], "--where"),
    (["--out", "{tmp}/x.png", "--where", "colour=red"], "--where"),
    (["--out", "{tmp}/x.png", "--labels", "a", "b"], "--labels"),
])
def test_bad_flags_one_line_exit_2(tmp_path, capsys, argv, flag):
    path = _compression_file(tmp_path / "c")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["plot", str(path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"error: {flag}:" in err[0], err


def test_kinds_do_not_mix(drift_runs, tmp_path, capsys):
    path = _compression_file(tmp_path / "c")
    assert main(["plot", str(path), str(drift_runs[0]), "--out", str(tmp_path / "m.png")]) == 2
    assert "cannot overlay different kinds" in capsys.readouterr().err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "results.json").write_text("{\"format\": \"metacomm-codec/1\"}")
    assert main(["plot", str(tmp_path / "junk"), "--out", str(tmp_path / "j.png")]) == 2
