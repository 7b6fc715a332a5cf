"""`metacomm pack compression`: the results file's shape and contents on a tiny run, reproducibility, the dB-loss
interpolation against a closed form, and bad input -> one line naming the flag, exit 2."""

from __future__ import annotations

import json
import math

import pytest
import torch

from metacomm.cli.main import main
from metacomm.experiments.compression import _crossing

TINY = ["--bits", "8,2", "--sparsity", "0,0.5", "--method", "ptq,maml-ste,metaquant", "--steps", "0,1",
        "--ebno-db", "10,20", "--plot-ebno-db", "20", "--meta-steps", "2", "--meta-batch", "2", "--test-blocks",
        "24", "--test-channels", "2", "--genie-steps", "2", "--adc-bits", "1", "--heldout-at-bits", "2",
        "--heldout-channel", "2-tap", "--quiet"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("base")
    ck = d / "fading.pt"
    assert main(["meta-train", "--scenario", "fading-ae", "--meta-steps", "3", "--joint-steps", "0", "--val-every",
                 "1", "--val-tasks", "2", "--quiet", "--set", "num_train_channels=4", "--out", str(ck)]) == 0
    return ck


def test_tiny_run_writes_the_fewshot_shaped_results(base, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pack", "compression", "--base", str(base), *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "method" in printed and "float32" in printed and "results ->" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["format"] == "metacomm-compression/1" and set(res) >= {"config", "results", "meta_training"}
    assert res["config"]["meta_training_where"].startswith("inside this pack run")
    assert res["meta_training"]["ptq"]["meta_steps"] == 0 and res["meta_training"]["metaquant"]["meta_steps"] == 2
    rows = res["results"]
    for r in rows:
        assert {"method", "bits", "sparsity", "steps", "ebno_db", "bler", "bler_ci", "block_errors", "blocks",
                "model_bytes", "heldout_bits", "heldout_adc", "heldout_channel"} <= set(r)
        if r["blocks"]:
            assert r["bler"] == r["block_errors"] / r["blocks"] and r["bler_ci"][0] <= r["bler"] <= r["bler_ci"][1]
    main_rows = [r for r in rows if r["method"] in ("ptq", "maml-ste", "metaquant") and not r["heldout_adc"]
                 and not r["heldout_channel"]]
    # method x bits x sparsity x steps x Eb/N0, 2 test channels x 24 blocks each
    assert len(main_rows) == 3 * 2 * 2 * 2 * 2 and all(r["blocks"] == 48 for r in main_rows)
    f32 = [r for r in rows if r["method"] == "float32" and r["channel"] == "fading-ae"]
    assert f32 and all(r["bits"] == 32 and r["sparsity"] == 0 for r in f32)
    # held-out flags: 2 bits is not a training bit-width (8, 6, 4); the ADC and the 2-tap family are separate rows
    assert all(r["heldout_bits"] == (r["bits"] == 2) for r in main_rows)
    adc = [r for r in rows if r["heldout_adc"]]
    assert adc and all(r["adc_bits"] == 1 and r["bits"] == 2 and r["sparsity"] == 0 for r in adc)
    ch = [r for r in rows if r["heldout_channel"]]
    assert {r["method"] for r in ch} >= {"float32", "ptq", "pilot-ls-ml"}
    assert {r["method"] for r in rows} >= {"pilot-ls-ml", "genie"}
    # model bytes: 8-bit < float, pruning shrinks the values but adds a bitmask
    mb = {(r["bits"], r["sparsity"]): r["model_bytes"] for r in main_rows}
    assert mb[(8, 0.0)] < f32[0]["model_bytes"] and mb[(2, 0.0)] < mb[(8, 0.0)]
    # float32 against itself: zero dB loss wherever its curve crosses the target
    for r in f32:
        for k in ("db_loss_at_1e-2", "db_loss_at_1e-3"):
            assert r[k] in (None, 0.0)
    assert (out / "bler_vs_bits.png").exists() and (out / "db_loss_vs_bytes.png").exists()
    assert (out / "codecs.pt").exists()
    # same seed, same numbers (common random numbers, explicit generators)
    out2 = tmp_path / "run2"
    assert main(["pack", "compression", "--base", str(base), *TINY, "--out", str(out2)]) == 0
    rows2 = json.loads((out2 / "results.json").read_text())["results"]
    assert [(r["method"], r["block_errors"]) for r in rows] == [(r["method"], r["block_errors"]) for r in rows2]


def test_db_loss_interpolation_matches_a_closed_form():
    # BLER = 10^(-x/10): log-linear in dB, so the crossing of 1e-2 is exactly 20 dB and of 1e-3 exactly 30 dB
    curve = [(x, 10 ** (-x / 10)) for x in (5.0, 12.0, 26.0, 33.0)]
    assert math.isclose(_crossing(curve, 1e-2), 20.0, abs_tol=1e-9)
    assert math.isclose(_crossing(curve, 1e-3), 30.0, abs_tol=1e-9)
    assert _crossing(curve, 1e-5) is None  # not reached inside the grid
    assert _crossing([(20.0, 1e-4), (25.0, 1e-5)], 1e-2) is None  # not bracketed


@pytest.mark.parametrize("flag,value,needle", [
    ("--bits", "8,17", "1-16"), ("--bits", "0", "1-16"), ("--sparsity", "0,1.0", "[0.0, 1.0)"),
    ("--method", "ptq,gptq", "allowed: ptq, qat, maml-ste, metaquant"), ("--train-bits", "9,40", "1-16"),
    ("--heldout-channel", "mars", "allowed: exp-pdp-6db"),
])
def test_bad_values_exit_2_naming_the_flag(base, tmp_path, capsys, flag, value, needle):
    rc = main(["pack", "compression", "--base", str(base), flag, value, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"metacomm pack compression: error: {flag}: "), err
    assert needle in err[0]
    assert not (tmp_path / "o").exists()


def test_a_base_of_another_codec_exits_2(tmp_path, capsys):
    rtn = tmp_path / "rtn.pt"
    assert main(["meta-train", "--scenario", "fading-ae", "--rtn", "--meta-steps", "1", "--joint-steps", "0",
                 "--val-every", "0", "--quiet", "--set", "num_train_channels=4", "--out", str(rtn)]) == 0
    ae = tmp_path / "ae.pt"
    assert main(["train", "--codec", "ae", "--n", "4", "--k", "4", "--steps", "2", "--train-ebno-db", "3", "--out",
                 str(ae)]) == 0
    capsys.readouterr()
    for ck, needle in ((rtn, "RTN receiver"), (ae, ""), (tmp_path / "missing.pt", "")):
        rc = main(["pack", "compression", "--base", str(ck), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("metacomm pack compression: error: --base: "), err
        assert needle in err[0]
