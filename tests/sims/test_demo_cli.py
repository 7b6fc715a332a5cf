"""metacomm drift / demo command line: bad scenario files -> one line naming file and key, exit 2; tiny runs."""

import os

import pytest

from metacomm.cli.main import main

GOOD = """ebno_db = 10.0
[codec]
k = 8
n = 8
[[segment]]
frames = 10
channel = "multipath"
channel_args = { num_taps = 3 }
drift = { process = "gauss-markov", rho = 0.5 }
"""


@pytest.mark.parametrize("text,key", [
    (GOOD.replace("frames = 10", "frames = -3"), "segment[0].frames"),
    (GOOD.replace("rho = 0.5", "rho = 1.5"), "segment[0].drift.rho"),
    (GOOD.replace("ebno_db = 10.0", "ebno_db = 10.0\ncolour = 1"), "colour"),
])
def test_bad_scenario_file_exit_2(tmp_path, capsys, text, key):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    rc = main(["drift", "--scenario", str(p), "--frames", "2", "--quiet", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1
    assert "bad.toml" in err and key in err


def test_missing_scenario_and_checkpoint(tmp_path, capsys):
    rc = main(["drift", "--scenario", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "nope.toml" in capsys.readouterr().err
    rc = main(["drift", "--scenario", "doppler-fast", "--checkpoint", str(tmp_path / "x.pt"),
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "--checkpoint" in capsys.readouterr().err
    rc = main(["drift", "--scenario", "doppler-fast", "--schemes", "meta,psychic", "--out", str(tmp_path / "o")])
    assert rc == 2 and "psychic" in capsys.readouterr().err


def test_demo_tiny_run(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--frames", "3", "--quiet", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert os.path.exists(out / "drift.png") and os.path.exists(out / "results.json")
    assert "plot ->" in text and str(out / "drift.png") in text
    assert "mean BLER" in text


def test_drift_good_file_runs(tmp_path, capsys):
    p = tmp_path / "good.toml"
    p.write_text(GOOD)
    rc = main(["drift", "--scenario", str(p), "--frames", "2", "--links", "2", "--payload", "8",
               "--schemes", "meta,genie", "--quiet", "--out", str(tmp_path / "o")])
    assert rc == 0
    assert (tmp_path / "o" / "results.csv").exists()


def test_a_mistyped_demo_checkpoint_fails_instead_of_training(tmp_path, capsys):
    from metacomm.cli.main import main
    missing = tmp_path / "typo" / "codec.pt"
    rc = main(["demo", "--checkpoint", str(missing), "--frames", "2", "--quiet", "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--checkpoint" in err[0] and not missing.exists()
