"""``metacomm train``: outputs, bad input (exit 2, one line, nothing written), checkpoint usable by load_codec."""

import csv

import pytest

from metacomm.cli.main import main


def test_train_ae_writes_checkpoint_curve_and_plot(tmp_path, capsys):
    out = tmp_path / "ae.pt"
    rc = main(["train", "--codec", "ae", "--n", "4", "--k", "2", "--train-ebno-db", "4", "--steps", "30",
               "--batch-size", "64", "--lr", "0.01", "--seed", "1", "--quiet", "--out", str(out)])
    assert rc == 0
    for name in ("ae.pt", "ae_curve.csv", "ae_curve.png", "ae_codec.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = list(csv.reader(open(tmp_path / "ae_curve.csv")))
    assert rows[0] == ["step", "loss", "bler", "running_bler", "lr"] and len(rows) == 31
    from metacomm.codecs.checkpoint import load_codec

    codec, meta = load_codec(out, expect={"class": "Autoencoder", "k": 2, "n": 4})
    assert meta["channel"] == "awgn" and meta["train_ebno_db"] == 4.0
    assert meta["training"]["steps"] == 30 and meta["training"]["seed"] == 1


def test_train_constellation_reports_bmd(tmp_path, capsys):
    out = tmp_path / "c.pt"
    rc = main(["train", "--codec", "constellation", "--bits-per-symbol", "4", "--num-symbols", "8",
               "--train-ebno-db", "8", "--steps", "10", "--batch-size", "16", "--out", str(out)])
    assert rc == 0
    assert "BMD rate" in capsys.readouterr().out
    assert (tmp_path / "c_codec.png").exists()


@pytest.mark.parametrize("argv,field", [
    (["--codec", "ae", "--n", "0", "--k", "4"], "--n"),
    (["--codec", "ae", "--n", "7", "--k", "-1"], "--k"),
    (["--codec", "ae", "--n", "7", "--k", "17"], "--k"),
    (["--codec", "turbo"], "--codec"),
    (["--codec", "ae", "--steps", "0"], "--steps"),
    (["--codec", "ae", "--lr", "-1"], "--lr"),
    (["--codec", "neural-rx", "--channel", "awgn"], "--channel"),
    (["--codec", "ae", "--channel", "nope"], "--channel"),
    (["--codec", "constellation", "--bits-per-symbol", "3"], "--bits-per-symbol"),
])
def test_bad_input_exit_2_nothing_written(tmp_path, capsys, argv, field):
    out = tmp_path / "x.pt"
    rc = main(["train", *argv, "--train-ebno-db", "5", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"metacomm train: error: {field}"), err
    assert list(tmp_path.iterdir()) == []
    if field == "--k" and "17" in argv:
        assert "16" in err[0] and "2^k" in err[0]


def test_existing_checkpoint_not_overwritten_on_error(tmp_path, capsys):
    out = tmp_path / "keep.pt"
    out.write_bytes(b"precious")
    rc = main(["train", "--codec", "ae", "--k", "0", "--train-ebno-db", "5", "--out", str(out)])
    assert rc == 2 and out.read_bytes() == b"precious"


def test_train_neural_rx_checkpoint_runs_on_its_channel(tmp_path, capsys):
    """A neural receiver trained on non-default multipath settings is simulated on exactly those settings."""
    out = tmp_path / "rx.pt"
    rc = main(["train", "--codec", "neural-rx", "--channel", "multipath", "--num-taps", "2", "--channel-mode",
               "full", "--num-data", "4", "--num-pilots", "4", "--num-iterations", "1", "--hidden", "8",
               "--train-ebno-db", "5:15", "--steps", "3", "--batch-size", "8", "--quiet", "--out", str(out)])
    assert rc == 0
    from metacomm.channels import make_generator
    from metacomm.sims.links import build_link

    link = build_link({"codec": "neural-rx", "channel": "multipath", "checkpoint": str(out)})
    assert link.channel.num_taps == 2 and link.channel.mode == "full"
    assert link.codec.config()["num_iterations"] == 1
    bits, bits_hat = link(4, 10.0, make_generator(0))
    assert bits.shape == bits_hat.shape == (4, 8)
    rc = main(["train", "--codec", "neural-rx", "--channel", "multipath", "--num-iterations", "-1",
               "--train-ebno-db", "5", "--out", str(tmp_path / "y.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("metacomm train: error: --num-iterations"), err
    assert not (tmp_path / "y.pt").exists()


def test_train_keeps_an_existing_checkpoint_unless_overwrite(tmp_path, capsys):
    from metacomm.cli.main import main
    out = tmp_path / "ae.pt"
    argv = ["train", "--codec", "ae", "--n", "2", "--k", "2", "--train-ebno-db", "5", "--steps", "3",
            "--batch-size", "20", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "--overwrite" in err[0] and out.read_bytes() == before
    assert main([*argv, "--overwrite", "--seed", "3"]) == 0 and out.read_bytes() != before
