"""Metrics callbacks (training and meta-training): every step reaches the callback with the numbers the history
records, the JSON-lines writer round-trips them, and --tensorboard without the tensorboard package is one line."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from metacomm._validation import ConfigError
from metacomm.experiments.metrics import jsonl_metrics, tensorboard_metrics

torch.set_num_threads(1)
HAVE_TB = importlib.util.find_spec("tensorboard") is not None


def test_training_reports_every_step_to_the_callback(tmp_path):
    from metacomm.channels import make_channel
    from metacomm.codecs.autoencoder import Autoencoder
    from metacomm.codecs.training import train
    seen = []
    codec = Autoencoder(2, 2, hidden=4)
    hist = train(codec, make_channel("awgn"), train_ebno_db=5.0, steps=6, batch_size=64, progress=False,
                 restarts=2, val_batch_size=256, on_metrics=lambda s, m: seen.append((s, m)))
    assert [s for s, _ in seen] == list(range(1, 13))  # steps counted over both restarts
    assert {m["restart"] for _, m in seen} == {0, 1}
    best = [m["loss"] for _, m in seen if m["restart"] == hist.best_restart]
    assert best == hist.loss and all(0.0 <= m["bler"] <= 1.0 for _, m in seen)


def test_meta_training_reports_every_meta_step():
    from metacomm.adaptation import MetaConfig, MetaTrainer
    from metacomm.scenarios import make_scenario
    sc = make_scenario("fading-ae")
    tr = MetaTrainer(sc.build_model(0), sc.objective, sc.sample_tasks, MetaConfig(meta_batch=2, outer_lr=0.01),
                     seed=0)
    seen = []
    hist = tr.train(3, progress=False, on_metrics=lambda s, m: seen.append((s, m)))
    assert [s for s, _ in seen] == [1, 2, 3]
    assert [m["loss"] for _, m in seen] == [h["loss"] for h in hist] and all(math.isfinite(m["loss"]) for _, m in seen)


def test_jsonl_writer_round_trips_and_drops_non_finite(tmp_path):
    w = jsonl_metrics(str(tmp_path / "m.jsonl"))
    w(1, {"loss": 0.5, "bler": 0.1, "bad": float("nan"), "flag": True})
    w.with_prefix("restart1/")(2, {"loss": 0.25})
    w.close()
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "loss": 0.5, "bler": 0.1}, {"step": 2, "restart1/loss": 0.25}]


@pytest.mark.skipif(HAVE_TB, reason="tensorboard is installed: the missing-package message cannot be shown")
def test_tensorboard_without_the_package_is_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError) as e:
        tensorboard_metrics(str(tmp_path / "tb"))
    assert e.value.field == "tensorboard" and "pip install tensorboard" in str(e.value)
    from metacomm.cli.main import main
    rc = main(["train", "--codec", "ae", "--n", "4", "--k", "2", "--steps", "2", "--train-ebno-db", "5",
               "--tensorboard", str(tmp_path / "tb"),
               "--out", str(tmp_path / "ae.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and "--tensorboard" in err and "Traceback" not in err


@pytest.mark.skipif(not HAVE_TB, reason="needs the tensorboard package")
def test_tensorboard_writes_an_event_file(tmp_path):
    w = tensorboard_metrics(str(tmp_path / "tb"))
    w(1, {"loss": 0.5})
    w.close()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
