"""Training loop: reproducibility per seed, restarts, history, bad input."""

import math

import pytest
import torch

from metacomm import ConfigError
from metacomm.channels import AWGN
from metacomm.codecs.autoencoder import Autoencoder
from metacomm.codecs.training import TrainingHistory, train


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _run(seed, **kw):
    ae = Autoencoder(2, 2, hidden=4)
    kw = dict(train_ebno_db=4.0, steps=40, batch_size=64, lr=0.01, seed=seed, progress=False,
              val_batch_size=500) | kw
    h = train(ae, AWGN(), **kw)
    return ae, h


def test_reproducible_per_seed():
    a, ha = _run(5)
    b, hb = _run(5)
    c, hc = _run(6)
    assert ha.loss == hb.loss and ha.bler == hb.bler
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
    assert ha.loss != hc.loss


def test_history_and_schedule(tmp_path):
    _, h = _run(1, steps=30)
    assert isinstance(h, TrainingHistory) and h.steps == 30
    assert len(h.bler) == len(h.running_bler) == len(h.lr) == 30
    assert all(0.0 <= b <= 1.0 for b in h.bler)
    # cosine decay from lr to lr/100: lr_t = lr/100 + (lr - lr/100)(1 + cos(pi t/T))/2
    for t in (0, 10, 29):
        expect = 1e-4 + (0.01 - 1e-4) * (1 + math.cos(math.pi * t / 30)) / 2
        assert h.lr[t] == pytest.approx(expect, rel=1e-6)
    _, h2 = _run(1, steps=10, lr_schedule="none")
    assert h2.lr == [0.01] * 10
    h.to_csv(tmp_path / "c.csv")
    rows = (tmp_path / "c.csv").read_text().splitlines()
    assert rows[0] == "step,loss,bler,running_bler,lr" and len(rows) == 31


def test_loss_decreases():
    _, h = _run(2, steps=200, lr=0.02)
    assert sum(h.loss[-20:]) / 20 < 0.5 * sum(h.loss[:20]) / 20


def test_restarts_keep_best():
    ae, h = _run(3, restarts=3, steps=30)
    assert len(h.restart_scores) == 3
    assert h.restart_scores[h.best_restart] == min(h.restart_scores)


def test_bce_loss_path():
    _, h = _run(4, loss="bce", steps=20)
    assert h.config["loss"] == "bce"


@pytest.mark.parametrize("kw,field", [
    (dict(steps=0), "steps"), (dict(batch_size=-1), "batch_size"), (dict(lr=0), "lr"),
    (dict(lr_schedule="step"), "lr_schedule"), (dict(loss="mse"), "loss"), (dict(restarts=0), "restarts"),
    (dict(train_ebno_db=float("nan")), "train_ebno_db"), (dict(train_ebno_db=(5, 1)), "train_ebno_db"),
    (dict(restarts=2, reinit=False), "restarts"),
])
def test_bad_input(kw, field):
    with pytest.raises(ConfigError) as e:
        _run(0, **kw)
    assert e.value.field == field


def test_ebno_range_is_accepted():
    _, h = _run(0, train_ebno_db=(0.0, 8.0), steps=10)
    assert h.config["train_ebno_db"] == [0.0, 8.0]
