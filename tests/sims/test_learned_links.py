"""build_link for learned codecs: the checkpoint's training channel kwargs are used, mismatches are refused."""

import pytest
import torch

import metacomm.codecs.autoencoder as ae_mod
import metacomm.codecs.checkpoint as ckpt
import metacomm.codecs.neural_rx as neural_rx
from metacomm import ConfigError
from metacomm.channels import make_generator
from metacomm.sims.links import build_link, learned_channel_kwargs


@pytest.fixture
def rx_checkpoint(tmp_path):
    """A tiny neural receiver trained (notionally) on 2-tap full-convolution multipath: not the registry default
    (3 taps, truncate), so a link built with default channel settings could not even run it."""
    rx = neural_rx.NeuralReceiver(2, 4, 4, 2, "full", hidden=8, num_hidden_layers=1, num_iterations=0)
    path = tmp_path / "rx.pt"
    ckpt.save_codec(path, rx, {"channel": "multipath", "channel_kwargs": {"num_taps": 2, "mode": "full"}})
    return path


def _cfg(path, **kw):
    return {"codec": "neural-rx", "channel": "multipath", "checkpoint": str(path), **kw}


def test_checkpoint_channel_kwargs_are_used(rx_checkpoint):
    link = build_link(_cfg(rx_checkpoint))
    assert link.channel.num_taps == 2 and link.channel.mode == "full"
    bits, bits_hat = link(16, 30.0, make_generator(0))
    assert bits.shape == bits_hat.shape == (16, 8)
    # 2-tap full-mode channel, 30 dB, LS from 4 pilots: the (untrained = LS + LMMSE) receiver decodes nearly all
    assert float((bits != bits_hat).float().mean()) < 0.1


def test_explicit_kwargs_override_and_mismatch_is_refused(rx_checkpoint):
    with pytest.raises(ConfigError) as e:
        build_link(_cfg(rx_checkpoint, channel_kwargs={"mode": "truncate"}))
    assert e.value.field == "channel" and "mode='full'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        build_link(_cfg(rx_checkpoint, channel_kwargs={"num_taps": 3}))
    assert e.value.field == "channel" and "2 taps" in str(e.value)


def test_other_channel_gets_only_explicit_kwargs(tmp_path):
    path = tmp_path / "ae.pt"
    ckpt.save_codec(path, ae_mod.Autoencoder(2, 2), {"channel": "multipath", "channel_kwargs": {"num_taps": 2}})
    link = build_link({"codec": "ae", "channel": "awgn", "checkpoint": str(path)})  # kwargs not forwarded
    assert type(link.channel).__name__ == "AWGN"
    link = build_link({"codec": "ae", "channel": "multipath", "checkpoint": str(path)})
    assert link.channel.num_taps == 2
    assert torch.is_tensor(link(4, 5.0, make_generator(1))[0])


def test_learned_channel_kwargs_rules():
    meta = {"channel": "Multipath", "channel_kwargs": {"num_taps": 2, "mode": "full"}}
    assert learned_channel_kwargs("multipath", {}, meta) == {"num_taps": 2, "mode": "full"}
    assert learned_channel_kwargs("multipath", {"num_taps": 4}, meta) == {"num_taps": 4, "mode": "full"}
    assert learned_channel_kwargs("awgn", {}, meta) == {}
    assert learned_channel_kwargs("multipath", {}, None) == {}
    with pytest.raises(ConfigError):
        learned_channel_kwargs("multipath", {}, {"channel": "multipath", "channel_kwargs": [1]})
