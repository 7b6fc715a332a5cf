"""make_channel / CHANNEL_NAMES / channel_help."""

import pytest
import torch

from metacomm import ConfigError
from metacomm.channels import (
    AWGN,
    CHANNEL_NAMES,
    TDL,
    Compose,
    MultipathBlockFading,
    RappPA,
    RayleighBlockFading,
    RicianBlockFading,
    channel_help,
    make_channel,
    make_generator,
)
from metacomm.channels.registry import FADING_CHANNEL_NAMES, IMPAIRMENT_NAMES

REQUIRED = ("awgn", "rayleigh", "rician", "multipath", "tdl-a", "tdl-b", "tdl-c", "tdl-d", "tdl-e")


def test_names():
    assert FADING_CHANNEL_NAMES == REQUIRED
    assert set(CHANNEL_NAMES) == set(REQUIRED) | set(IMPAIRMENT_NAMES)
    assert len(set(CHANNEL_NAMES)) == len(CHANNEL_NAMES)


@pytest.mark.parametrize("name", CHANNEL_NAMES)
def test_every_name_builds_a_noisy_channel(name):
    kwargs = {"variance": 0.01} if name == "phase-noise" else {}
    ch = make_channel(name, **kwargs)
    assert ch.adds_noise
    g = make_generator(0)
    x = torch.ones(2, 40, dtype=torch.complex64)
    y = ch(x, 0.1, generator=g)
    assert y.shape == (2, ch.output_length(40))


def test_types_and_kwargs_pass_through():
    assert isinstance(make_channel("awgn"), AWGN)
    assert isinstance(make_channel("rayleigh"), RayleighBlockFading)
    ric = make_channel("rician", k_factor_db=7.0)
    assert isinstance(ric, RicianBlockFading) and ric.k_factor == pytest.approx(10 ** 0.7)
    mp = make_channel("multipath", num_taps=5, decay_db_per_tap=2.0, mode="full")
    assert isinstance(mp, MultipathBlockFading) and mp.num_taps == 5 and mp.mode == "full"
    t = make_channel("TDL-D", delay_spread=30e-9, bandwidth=20e6)
    assert isinstance(t, TDL) and t.model == "D" and t.los
    c = make_channel("rapp", smoothness=3.0, input_backoff_db=2.0)
    assert isinstance(c, Compose) and isinstance(c.stages[0], RappPA) and isinstance(c.stages[1], AWGN)
    bare = make_channel("rapp", with_noise=False)
    assert isinstance(bare, RappPA) and not bare.adds_noise


def test_unknown_name_lists_allowed():
    with pytest.raises(ConfigError) as e:
        make_channel("rayleigh-fast")
    assert e.value.field == "channel"
    msg = str(e.value)
    assert "allowed" in msg and all(n in msg for n in REQUIRED)
    assert isinstance(e.value, ValueError)


def test_unknown_and_bad_kwargs():
    with pytest.raises(ConfigError) as e:
        make_channel("multipath", taps=3)
    assert e.value.field == "taps" and "num_taps" in str(e.value)
    with pytest.raises(ConfigError, match="model"):
        make_channel("tdl-a", model="B")
    with pytest.raises(ConfigError, match="with_noise"):
        make_channel("rayleigh", with_noise=False)
    with pytest.raises(ConfigError) as e:
        make_channel("tdl-b", delay_spread=float("nan"))
    assert e.value.field == "delay_spread"
    with pytest.raises(ConfigError, match="num_taps"):
        make_channel("multipath", num_taps=-2)


def test_help_mentions_every_name_and_units():
    h = channel_help()
    for n in CHANNEL_NAMES:
        assert f"{n}:" in h
    for unit in ("[s]", "[Hz]", "[dB]", "[m/s]", "[deg]", "[rad"):
        assert unit in h
    assert "delay_spread" in channel_help("tdl-c")
    with pytest.raises(ConfigError):
        channel_help("nope")
