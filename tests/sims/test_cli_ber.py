"""`metacomm ber` / `metacomm plot`: bad input -> one line + exit 2; a tiny real run writes the three files."""

import json

import pytest

import metacomm.codecs.autoencoder as ae_mod
import metacomm.codecs.checkpoint as ckpt
from metacomm.cli.commands.ber import parse_ebno_range
from metacomm.cli.main import main

BASE = ["ber", "--codec", "bpsk", "--channel", "awgn", "--ebno-db", "0:2:1"]


def run_cli(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("argv,flag", [
    (["ber", "--codec", "turbo", "--channel", "awgn", "--ebno-db", "0:2:1"], "--codec"),
    (["ber", "--codec", "bpsk", "--channel", "fso", "--ebno-db", "0:2:1"], "--channel"),
    (["ber", "--codec", "bpsk", "--channel", "awgn", "--ebno-db", "0-2"], "--ebno-db"),
    (["ber", "--codec", "bpsk", "--channel", "awgn", "--ebno-db", "0:2"], "--ebno-db"),
    (["ber", "--codec", "bpsk", "--channel", "awgn", "--ebno-db", "0:2:0"], "--ebno-db"),
    (["ber", "--codec", "bpsk", "--channel", "awgn", "--ebno-db", "0:2:-1"], "--ebno-db"),
    (["ber", "--codec", "bpsk", "--channel", "awgn", "--ebno-db", "2:0:1"], "--ebno-db"),
    (["ber", "--codec", "bpsk", "--channel", "awgn", "--ebno-db", "nan"], "--ebno-db"),
    (["ber", "--codec", "bpsk", "--channel", "awgn", "--ebno-db", "0,inf"], "--ebno-db"),
    (BASE + ["--batch-size", "0"], "--batch-size"),
    (BASE + ["--batch-size=-4"], "--batch-size"),
    (BASE + ["--batch-size", "1.5"], "--batch-size"),
    (BASE + ["--max-blocks", "0"], "--max-blocks"),
    (BASE + ["--target-block-errors", "x"], "--target-block-errors"),
    (BASE + ["--seed=-1"], "--seed"),
    (BASE + ["--decoder", "viterbi"], "--decoder"),
    (BASE + ["--ci", "bayes"], "--ci"),
    (BASE + ["--csi", "blind"], "--csi"),
])
def test_bad_input_one_line_exit_2(argv, flag, capsys, tmp_path):
    rc, out, err = run_cli(argv + ["--out", str(tmp_path / "o")], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("metacomm ber: error: ") and flag in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cuda_without_cuda(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    rc, _, err = run_cli(BASE + ["--device", "cuda", "--out", str(tmp_path)], capsys)
    assert rc == 2 and "--device" in err and len(err.strip().splitlines()) == 1


def test_parse_ebno_range():
    assert parse_ebno_range("0:10:2") == [0, 2, 4, 6, 8, 10]
    assert parse_ebno_range("0:9:2") == [0, 2, 4, 6, 8]
    assert parse_ebno_range("0:1:0.1") == pytest.approx([i / 10 for i in range(11)])
    assert len(parse_ebno_range("0:1:0.1")) == 11
    assert parse_ebno_range("-2:1:1.5") == [-2.0, -0.5, 1.0]
    assert parse_ebno_range("1, 4,7.5") == [1.0, 4.0, 7.5]
    assert parse_ebno_range("3") == [3.0]


def test_block_length_rejected_by_codec(capsys, tmp_path):
    rc, _, err = run_cli(["ber", "--codec", "qpsk", "--channel", "awgn", "--ebno-db", "0", "--block-length", "7",
                          "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "--block-length" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(["ber", "--codec", "hamming74", "--decoder", "app", "--channel", "awgn", "--ebno-db", "0",
                          "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "--decoder" in err
    rc, _, err = run_cli(["ber", "--codec", "ae", "--channel", "awgn", "--ebno-db", "0",
                          "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "--checkpoint" in err


def test_tiny_real_run_and_plot(capsys, tmp_path):
    out = tmp_path / "run"
    argv = ["ber", "--codec", "qpsk", "--channel", "awgn", "--ebno-db", "0:4:2", "--block-length", "64",
            "--batch-size", "100", "--max-blocks", "400", "--target-block-errors", "50", "--seed", "3", "--quiet",
            "--out", str(out)]
    rc, stdout, err = run_cli(argv, capsys)
    assert rc == 0, err
    for f in ("results.json", "results.csv", "ber.png"):
        assert (out / f).stat().st_size > 0
    d = json.loads((out / "results.json").read_text())
    assert [p["ebno_db"] for p in d["points"]] == [0.0, 2.0, 4.0]
    assert d["config"]["codec"] == "qpsk" and d["config"]["block_length_bits"] == 64
    assert all(p["bits"] == 64 * p["blocks"] for p in d["points"])
    # same seed -> identical counts; --compare overlays the first run
    out2 = tmp_path / "run2"
    rc, _, err = run_cli(argv[:-1] + [str(out2), "--compare", str(out / "results.json")], capsys)
    assert rc == 0, err
    d2 = json.loads((out2 / "results.json").read_text())
    strip = ("runtime_s",)
    assert [{k: v for k, v in p.items() if k not in strip} for p in d2["points"]] == \
        [{k: v for k, v in p.items() if k not in strip} for p in d["points"]]
    rc, stdout, err = run_cli(["plot", str(out / "results.json"), str(out2), "--out", str(tmp_path / "f.png"),
                               "--labels", "a", "b"], capsys)
    assert rc == 0, err
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a foreign results.json in --out is never overwritten
    bad = tmp_path / "foreign"
    bad.mkdir()
    (bad / "results.json").write_text("precious")
    rc, _, err = run_cli(argv[:-1] + [str(bad)], capsys)
    assert rc == 2 and "refusing to overwrite" in err and (bad / "results.json").read_text() == "precious"


def test_plot_bad_input(capsys, tmp_path):
    rc, _, err = run_cli(["plot", str(tmp_path / "nope.json"), "--out", str(tmp_path / "f.png")], capsys)
    assert rc == 2 and "no such results file" in err and len(err.strip().splitlines()) == 1


def test_learned_codec_checkpoint(capsys, tmp_path):
    path = tmp_path / "ae.pt"
    ckpt.save_codec(path, ae_mod.Autoencoder(4, 7), {"channel": "awgn"})
    out = tmp_path / "ae_run"
    rc, _, err = run_cli(["ber", "--codec", "ae", "--checkpoint", str(path), "--channel", "awgn", "--ebno-db", "0,5",
                          "--batch-size", "200", "--max-blocks", "400", "--quiet", "--out", str(out)], capsys)
    assert rc == 0, err
    d = json.loads((out / "results.json").read_text())
    assert d["config"]["block_length_bits"] == 4 and all(p["bits"] == 4 * p["blocks"] for p in d["points"])
    # the checkpoint must hold the codec kind that --codec names
    rc, _, err = run_cli(["ber", "--codec", "neural-rx", "--checkpoint", str(path), "--channel", "awgn",
                          "--ebno-db", "0", "--out", str(tmp_path / "x")], capsys)
    assert rc == 2 and "--checkpoint" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(["ber", "--codec", "ae", "--checkpoint", str(tmp_path / "missing.pt"), "--channel", "awgn",
                          "--ebno-db", "0", "--out", str(tmp_path / "x")], capsys)
    assert rc == 2 and "--checkpoint" in err


def test_foreign_png_not_overwritten(capsys, tmp_path):
    (tmp_path / "ber.png").write_bytes(b"my figure")
    rc, _, err = run_cli(BASE + ["--out", str(tmp_path)], capsys)
    assert rc == 2 and "refusing to overwrite" in err
    assert (tmp_path / "ber.png").read_bytes() == b"my figure"


def test_a_tiny_ebno_step_is_refused_not_overflowed():
    from metacomm import ConfigError
    with pytest.raises(ConfigError, match="at most 10000"):
        parse_ebno_range("0:1:1e-320")


def test_a_sweep_killed_midway_and_resumed_equals_an_uninterrupted_one(tmp_path, capsys, monkeypatch):
    """Points are written as they finish; a sweep killed inside point 3 keeps points 1-2 on disk, `--resume`
    computes only the rest, and every count equals the uninterrupted sweep's. Another sweep's file is refused."""
    import json

    from metacomm.cli.main import main
    from metacomm.sims import engine
    base = ["ber", "--codec", "bpsk", "--channel", "rayleigh", "--csi", "ls", "--num-pilots", "4", "--ebno-db",
            "0:8:2", "--max-blocks", "3000", "--target-block-errors", "50", "--seed", "4", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "full")]) == 0
    orig, ran = engine._run_point, []

    def crash_on_third(*a, **kw):
        ran.append(a[2].ebno_db)
        if len(ran) == 3:
            raise KeyboardInterrupt
        return orig(*a, **kw)

    monkeypatch.setattr(engine, "_run_point", crash_on_third)
    assert main([*base, "--out", str(tmp_path / "cut")]) == 130
    partial = json.loads((tmp_path / "cut" / "results.json").read_text())["points"]
    assert [p["ebno_db"] for p in partial] == [0.0, 2.0]
    ran.clear()
    monkeypatch.setattr(engine, "_run_point", lambda *a, **kw: (ran.append(a[2].ebno_db), orig(*a, **kw))[1])
    capsys.readouterr()
    assert main([*base[:-1], "--seed", "5", "--quiet", "--resume", "--out", str(tmp_path / "cut")]) == 2
    assert "seed" in capsys.readouterr().err
    assert main([*base, "--resume", "--out", str(tmp_path / "cut")]) == 0
    assert ran == [4.0, 6.0, 8.0]  # the finished points were not recomputed

    def counts(d):
        return [(p["ebno_db"], p["bit_errors"], p["bits"], p["block_errors"], p["blocks"])
                for p in json.loads((tmp_path / d / "results.json").read_text())["points"]]

    assert counts("cut") == counts("full")
