"""``metacomm run FILE --overwrite`` replaces the outputs of a command with an overwrite setting (train), which
``examples/train_ae74.toml`` needs where the README's own commands already wrote runs/ae74.pt."""

import json
import os
import tomllib
from pathlib import Path

import pytest

from metacomm.cli.main import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_ae74.toml"
OUT = tomllib.loads(EXAMPLE.read_text())["out"]  # runs/ae74.pt: the file the README's train command writes
RECORD = f"{os.path.splitext(OUT)[0]}.experiment.json"
TINY = ["--set", "steps=2", "--set", "batch_size=16", "--set", "hidden=8"]


@pytest.fixture
def collided(tmp_path, monkeypatch):
    """The README's runs/ae74.pt already there (a foreign file: not a checkpoint of this run)."""
    monkeypatch.chdir(tmp_path)
    os.makedirs(os.path.dirname(OUT) or ".", exist_ok=True)
    Path(OUT).write_bytes(b"written by the README's train command")
    return tmp_path


def test_run_refuses_the_collision_without_overwrite(collided, capsys):
    assert main(["run", str(EXAMPLE), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "overwrite" in err, err
    assert Path(OUT).read_bytes() == b"written by the README's train command"


def test_run_with_overwrite_replaces_it_and_records_the_setting(collided, capsys):
    assert main(["run", str(EXAMPLE), "--overwrite", *TINY, "--quiet"]) == 0
    assert Path(OUT).read_bytes() != b"written by the README's train command"
    record = json.loads(Path(RECORD).read_text())
    assert f"run: settings and versions -> {RECORD}" in capsys.readouterr().out
    text = json.dumps(record)
    assert '"overwrite": true' in text and '"steps": 2' in text, text[:400]
