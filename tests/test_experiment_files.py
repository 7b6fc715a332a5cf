"""Experiment files (`metacomm run FILE.toml`): every example in examples/ validates and runs (shrunk by
overrides), the resolved settings and versions are recorded, and malformed files give one clear line, exit 2."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from metacomm import ConfigError
from metacomm.cli.main import main
from metacomm.experiments.files import COMMANDS, load_experiment

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
FILES = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".toml"))

#: overrides that shrink each example to a few seconds (the file's own values are validated as written)
SMALL = {
    "ber": ["ebno_db=\"0,4\"", "max_blocks=2000", "target_block_errors=20"],
    "train": ["steps=20", "batch_size=100"],
    "meta-train": ["meta_steps=6", "joint_steps=3", "val_every=3", "val_tasks=4"],
    "fewshot": ["test_blocks=64", "genie_steps=3", "test_channels=3"],
    "drift": ["frames=3", "links=2", "payload=8"],
    "demo": ["frames=3"],
    "pack adversarial": ["psr_db=\"-6\"", "ebno_db=\"10\"", "attack=\"pgd-l2,uap,uap-shifted,jam-gauss\"",
                         "test_blocks=200", "train_steps=2", "meta_steps=1", "uar_steps=1",
                         "uar_psr_db=\"-6\"", "substitute_steps=2", "uap_samples=5", "pgd_steps=2"],
    "pack compression": ["bits=[4]", "sparsity=[0.0]", "method=[\"ptq\", \"metaquant\"]", "steps=[0, 1]",
                         "ebno_db=[15.0]", "meta_steps=2", "meta_batch=2", "test_blocks=16", "test_channels=2",
                         "genie_steps=0", "adc_bits=[2]", "heldout_at_bits=[4]", "quiet=true"],
    "pack label-noise": ["base=\"scratch\"", "base_steps=2", "meta_steps=1", "meta_batch=2", "test_channels=2",
                         "test_blocks=32", "rate=\"0,0.6\"", "steps=1"],
}

#: inputs an example reads that no other example writes: (command, argv that makes them in the run directory)
PREPARE: dict = {}  # every input an example reads is written by another example (meta_train_fading_ae.toml)


def test_there_is_one_example_per_experiment_command():
    commands = {load_experiment(os.path.join(EXAMPLES, f))[0] for f in FILES}
    assert commands == set(COMMANDS)


@pytest.mark.parametrize("name", FILES)
def test_example_validates_as_written(name):
    command, cfg = load_experiment(os.path.join(EXAMPLES, name))
    assert command in COMMANDS and cfg.out


def test_examples_run_end_to_end_and_record_their_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    order = sorted(FILES, key=lambda f: ["meta_train" in f, "fewshot" in f, f.startswith("pack_")].index(True) if (
        "meta_train" in f or "fewshot" in f or f.startswith("pack_")) else -1)  # writers before their readers
    for name in order:
        command, cfg = load_experiment(os.path.join(EXAMPLES, name))
        if command in PREPARE:
            assert main(PREPARE[command]) == 0, name
        argv = ["run", os.path.join(EXAMPLES, name)]
        for item in SMALL[command]:
            argv += ["--set", item]
        if hasattr(cfg, "seed"):
            argv += ["--seed", "1"]
        assert main(argv) == 0, name
        out = cfg.out
        record = os.path.join(out, "experiment.json") if os.path.isdir(out) else \
            f"{os.path.splitext(out)[0]}.experiment.json"
        rec = json.loads(open(record).read(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        assert rec["format"] == "metacomm-experiment/1" and rec["command"] == command
        assert rec["seed"] == (1 if hasattr(cfg, "seed") else None)
        assert rec["source"].endswith(name) and rec["versions"]["torch"] == torch.__version__
        assert rec["versions"]["metacomm"]
        import platform

        import numpy
        assert rec["versions"]["numpy"] == numpy.__version__ and rec["versions"]["python"] == platform.python_version()
        assert rec["wall_s"] > 0 and rec["started_utc"].endswith("+00:00") and rec["host"]
        if os.path.exists(os.path.join(os.path.dirname(EXAMPLES), ".git")):  # a checkout: the commit is recorded
            assert len(rec["git"]["commit"]) == 40
    assert os.path.exists("runs/qpsk-awgn/results.json") and os.path.exists("runs/iq4-fewshot/results.json")
    capsys.readouterr()


def test_a_file_run_equals_the_same_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", os.path.join(EXAMPLES, "ber_qpsk_awgn.toml"), "--set", "ebno_db=\"0,3\"", "--set",
                 "max_blocks=3000", "--out", "a"]) == 0
    assert main(["ber", "--codec", "qpsk", "--channel", "awgn", "--ebno-db", "0,3", "--max-blocks", "3000",
                 "--target-block-errors", "200", "--seed", "0", "--quiet", "--out", "b"]) == 0
    pa = json.loads(open("a/results.json").read())["points"]
    pb = json.loads(open("b/results.json").read())["points"]
    assert [(p["bit_errors"], p["bits"]) for p in pa] == [(p["bit_errors"], p["bits"]) for p in pb]


BAD = [
    ("unknown key", 'command = "ber"\ncodec = "qpsk"\nchannel = "awgn"\nebno_db = "0:2:1"\nout = "o"\nfoo = 1\n',
     ["foo", "allowed:"]),
    ("wrong type", 'command = "ber"\ncodec = "qpsk"\nchannel = "awgn"\nebno_db = "0:2:1"\nout = "o"\n'
                   'max_blocks = "many"\n', ["max_blocks"]),
    ("several at once", 'command = "ber"\ncodec = "qpsk"\nchannel = "awgn"\nebno_db = "0:2:1"\nout = "o"\n'
                        'batch_size = -3\nmax_blocks = 0\nbogus = true\n',
     ["max_blocks", "batch_size", "bogus", "3 problem"]),
    ("bad choice", 'command = "ber"\ncodec = "qpk"\nchannel = "awgn"\nebno_db = "0:2:1"\nout = "o"\n',
     ["codec", "allowed: bpsk, qpsk"]),
    ("bad value", 'command = "drift"\nscenario = "doppler-fast"\nframes = 0\nout = "o"\n', ["frames"]),
    ("missing command", 'codec = "qpsk"\n', ["command"]),
    ("unknown command", 'command = "simulate"\n', ["command", "allowed: ber"]),
    ("missing required", 'command = "ber"\ncodec = "qpsk"\n', ["channel", "required"]),
    ("invalid toml", 'command = "ber"\ncodec = \n', ["invalid TOML"]),
    ("nan", 'command = "ber"\ncodec = "qpsk"\nchannel = "awgn"\nebno_db = [nan]\nout = "o"\n', ["ebno_db"]),
    ("deep", 'command = "meta-train"\nscenario = "iq-demod"\nout = "m.pt"\nscenario_config = ' + "[" * 40 + "1"
     + "]" * 40 + "\n", ["nesting"]),
    ("scenario typo", 'command = "meta-train"\nscenario = "iq-demod"\nout = "m.pt"\n[scenario_config]\nsnr = 3\n',
     ["snr", "scenario 'iq-demod' has no setting 'snr'"]),
]


@pytest.mark.parametrize("what,text,needles", BAD, ids=[b[0] for b in BAD])
def test_malformed_files_exit_2_with_one_line_naming_the_key(what, text, needles, tmp_path, capsys):
    f = tmp_path / "exp.toml"
    f.write_text(text)
    rc = main(["run", str(f)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "Traceback" not in err[0], err
    for n in needles:
        assert n in err[0], (n, err[0])
    assert not (tmp_path / "o").exists()


def test_unreadable_inputs_exit_2(tmp_path, capsys):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('command = "ber"\ntitle = "caf\xe9"\n'.encode("latin-1"))
    for path in (bad, tmp_path / "missing.toml", tmp_path):
        rc = main(["run", str(path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "EXPERIMENT.toml" in err[0], err


def test_overrides_replace_file_values_and_are_type_checked(tmp_path):
    f = os.path.join(EXAMPLES, "drift_doppler_slow.toml")
    _, cfg = load_experiment(f, {"frames": 7, "pilots": 4})
    assert (cfg.frames, cfg.pilots) == (7, 4)
    with pytest.raises(ConfigError, match="^frames: expected int"):
        load_experiment(f, {"frames": "seven"})
    shutil.rmtree(tmp_path, ignore_errors=True)
