"""Statistics and bookkeeping of the drift processes (metacomm.channels.drift).

References are closed forms written here: rho^k for AR(1), J0(2 pi f_D k T) (scipy) for Jakes, the channel's
tap powers from a test-local channel, the reflection bounds of the SNR walk, 1 - exp(-lambda D) for deep fades.
Tolerances come from the standard error of the estimators (empirical SE of independent per-link products).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.special import j0

from metacomm import ConfigError
from metacomm.channels import fading, multipath
from metacomm.channels.awgn import AWGN
from metacomm.channels.base import Channel, add_noise, complex_normal, make_generator
from metacomm.channels.drift import (
    ConstantParam,
    DeepFades,
    GaussMarkovFading,
    ImpairmentDrift,
    JakesFading,
    LinearRamp,
    ParamRandomWalk,
    Segment,
    SinusoidalShadowing,
    SNRDrift,
    SNRRandomWalk,
    Timeline,
    doppler_frequency,
    doppler_rho,
    reflect,
)

PDP = (0.5, 0.3, 0.2)


class _TapChannel(Channel):
    """Test-local L-tap channel with a known power profile: state {"taps": CN(0, p_l)} [B, L]."""

    adds_noise = True

    def __init__(self, pdp=PDP):
        super().__init__()
        self.pdp = list(pdp)

    def sample_state(self, batch_size, num_symbols, *, generator=None, device=None, dtype=torch.complex64):
        g = complex_normal((batch_size, len(self.pdp)), generator=generator, dtype=dtype)
        return {"taps": g * torch.tensor(self.pdp).sqrt().to(g.real.dtype)}

    def apply(self, x, no, state, generator, noise):
        return add_noise(x * state["taps"][:, :1], no, generator, noise)


class _FlatChannel(Channel):
    """Test-local flat channel with state {"h": CN(0,1)} [B, 1]; adds no noise."""

    def sample_state(self, batch_size, num_symbols, *, generator=None, device=None, dtype=torch.complex64):
        return {"h": complex_normal((batch_size, 1), generator=generator, dtype=dtype)}

    def apply(self, x, no, state, generator, noise):
        return x * state["h"]


class _Gain(Channel):
    """A deterministic 'impairment' y = a x (parameter a), state {}."""

    def __init__(self, a: float = 1.0):
        super().__init__()
        self.a = a

    def apply(self, x, no, state, generator, noise):
        return self.a * x


def _take(it, n):
    return [next(it) for _ in range(n)]


def _lag_corr(h: torch.Tensor, lag: int, power: torch.Tensor):
    """Normalised autocorrelation estimate at ``lag`` and its standard error.

    ``h``: [T, B, L]. Uses one pair per link and tap (frames 0 and ``lag``), which are independent across
    links and taps, so SE = std(products)/sqrt(N).
    """
    prod = (h[lag] * h[0].conj()).real / power  # [B, L]
    est = prod.mean()
    se = prod.std() / math.sqrt(prod.numel())
    return float(est), float(se)


@pytest.mark.parametrize("rho", [0.5, 0.99])
def test_gauss_markov_autocorrelation_and_power(rho):
    g = make_generator(1)
    proc = GaussMarkovFading(rho)
    h = torch.stack([s["taps"] for s in _take(proc.states(_TapChannel(), 20000, 8, generator=g), 3)])
    p = torch.tensor(PDP)
    for lag in (1, 2):
        est, se = _lag_corr(h, lag, p)
        assert abs(est - rho ** lag) < 5 * se + 1e-4, (lag, est, rho ** lag, se)
    # stationarity of the tap power profile: E|h_t,l|^2 = p_l at every frame (SE of |CN|^2 mean = p/sqrt(B))
    pw = (h.abs() ** 2).mean(dim=1)  # [T, L]
    assert torch.all((pw - p).abs() < 5 * p / math.sqrt(20000))


def test_gauss_markov_long_run_stationary_and_flat_state():
    g = make_generator(2)
    proc = GaussMarkovFading(0.9)
    states = _take(proc.states(_FlatChannel(), 4000, 4, generator=g), 60)
    h = torch.stack([s["h"] for s in states])  # [T, B, 1]
    assert h.shape == (60, 4000, 1)
    pw = (h[-1].abs() ** 2).mean()
    assert abs(float(pw) - 1.0) < 5 / math.sqrt(4000)
    est, se = _lag_corr(h[-2:], 1, torch.tensor(1.0))
    assert abs(est - 0.9) < 5 * se


def test_gauss_markov_rho_extremes():
    g = make_generator(3)
    s = _take(GaussMarkovFading(1.0).states(_TapChannel(), 5, 4, generator=g), 3)
    assert torch.equal(s[0]["taps"], s[2]["taps"])
    s = _take(GaussMarkovFading(0.0).states(_TapChannel(), 5, 4, generator=g), 2)
    assert not torch.equal(s[0]["taps"], s[1]["taps"])


def test_gauss_markov_preserve_mean_keeps_mean_and_variance():
    class _Rician(Channel):
        def sample_state(self, batch_size, num_symbols, *, generator=None, device=None, dtype=torch.complex64):
            return {"h": 2.0 + complex_normal((batch_size, 1), generator=generator, dtype=dtype)}

    g = make_generator(4)
    h = torch.stack([s["h"] for s in _take(GaussMarkovFading(0.5, preserve_mean=True).states(
        _Rician(), 20000, 4, generator=g), 6)])
    se = 1 / math.sqrt(20000)
    assert abs(float(h[-1].real.mean()) - 2.0) < 6 * se
    assert abs(float(h[-1].var()) - 1.0) < 0.05
    dev = h - 2.0
    est, se1 = _lag_corr(dev, 1, torch.tensor(1.0))
    assert abs(est - 0.5) < 5 * se1


def test_doppler_to_rho():
    fd = doppler_frequency(30.0, 2.4e9)
    assert fd == pytest.approx(30.0 * 2.4e9 / 299_792_458.0)
    assert doppler_rho(fd, 1e-3) == pytest.approx(float(j0(2 * math.pi * fd * 1e-3)))
    proc = GaussMarkovFading(speed_mps=30.0, carrier_hz=2.4e9, frame_duration_s=1e-3)
    assert proc.rho == pytest.approx(float(j0(2 * math.pi * 30.0 * 2.4e9 / 299_792_458.0 * 1e-3)))
    with pytest.raises(ConfigError, match="doppler_hz"):
        GaussMarkovFading(doppler_hz=500.0, frame_duration_s=1e-3)  # f_D T = 0.5 > first zero of J0
    with pytest.raises(ConfigError, match="frame_duration_s"):
        GaussMarkovFading(doppler_hz=50.0)
    with pytest.raises(ConfigError, match="rho"):
        GaussMarkovFading(1.2)
    with pytest.raises(ConfigError, match="rho"):
        GaussMarkovFading()


@pytest.mark.parametrize("fd", [60.0, 200.0])
def test_jakes_autocorrelation_is_j0(fd):
    T = 1e-3
    g = make_generator(5)
    proc = JakesFading(fd, frame_duration_s=T, num_sinusoids=12)
    h = torch.stack([s["taps"] for s in _take(proc.states(_TapChannel(), 20000, 8, generator=g), 4)])
    p = torch.tensor(PDP)
    for lag in (1, 3):
        ref = float(j0(2 * math.pi * fd * lag * T))
        est, se = _lag_corr(h, lag, p)
        assert abs(est - ref) < 5 * se + 1e-4, (lag, est, ref, se)
        assert proc.autocorrelation(lag) == pytest.approx(ref)
    pw = (h.abs() ** 2).mean(dim=1)
    assert torch.all((pw - p).abs() < 5 * p / math.sqrt(20000))


def test_same_seed_same_sequence_and_different_seed_differs():
    def run(seed):
        g = make_generator(seed)
        tl = Timeline([Segment(3, _TapChannel(), JakesFading(50.0, frame_duration_s=1e-3),
                               snr=SNRDrift(SNRRandomWalk(1.0, -3, 3), DeepFades(0.3, 10, 2))),
                       Segment(3, _FlatChannel(), GaussMarkovFading(0.7))],
                      ebno_db=8.0, bits_per_channel_use=1.0)
        return list(tl.frames(batch_size=6, num_symbols=4, generator=g))

    a, b, c = run(11), run(11), run(12)
    for fa, fb in zip(a, b, strict=True):
        assert fa.state.keys() == fb.state.keys()
        for k in fa.state:
            assert torch.equal(fa.state[k], fb.state[k])
        assert torch.equal(fa.ebno_db, fb.ebno_db)
    assert not torch.equal(a[1].state["taps"], c[1].state["taps"])


def test_snr_random_walk_bounded_and_moving():
    g = make_generator(6)
    walk = SNRRandomWalk(step_db=2.0, min_db=-4.0, max_db=3.0, start_db=0.0)
    s = torch.stack(_take(walk.offsets_db(500, generator=g), 200))
    assert s.shape == (200, 500)
    assert float(s.min()) >= -4.0 and float(s.max()) <= 3.0
    assert torch.all(s[0] == 0.0)
    # the walk explores the whole interval (both bounds approached) and has the configured step scale
    assert float(s.min()) < -3.5 and float(s.max()) > 2.5
    steps = (s[1:] - s[:-1]).abs()
    assert 0.5 < float(steps.median()) < 2.5


def test_reflect_closed_form():
    x = torch.tensor([-1.0, 0.0, 2.5, 5.0, 6.0, 11.0, 14.0])
    y = reflect(x, 0.0, 5.0)
    assert torch.allclose(y, torch.tensor([1.0, 0.0, 2.5, 5.0, 4.0, 1.0, 4.0]))


def test_shadowing_and_deep_fades():
    g = make_generator(7)
    sh = torch.stack(_take(SinusoidalShadowing(3.0, 20, phase_rad=0.5).offsets_db(2, generator=g), 40))
    t = torch.arange(40, dtype=torch.float64)
    ref = 3.0 * torch.sin(2 * math.pi * t / 20 + 0.5)
    assert torch.allclose(sh[:, 0].double(), ref, atol=1e-5)
    lam, D, B, T = 0.05, 4, 4000, 60
    df = torch.stack(_take(DeepFades(lam, 12.0, D).offsets_db(B, generator=g), T))
    assert set(torch.unique(df).tolist()) <= {0.0, -12.0}
    frac = float((df[D:] < 0).double().mean())  # stationary after D frames
    ref = 1 - math.exp(-lam * D)
    assert abs(frac - ref) < 0.01
    # a dip lasts at least D frames: every start of a run of -12 is followed by D-1 more
    x = (df[:, 0] < 0).tolist()
    for i in range(1, T - D):
        if x[i] and not x[i - 1]:
            assert all(x[i:i + D])


def test_param_processes():
    ramp = _take(LinearRamp(0.0, 0.2, 5).values(), 7)
    assert ramp == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    g = make_generator(8)
    w = _take(ParamRandomWalk(1.0, 0.5, 0.0, 2.0).values(g), 300)
    assert w[0] == 1.0 and min(w) >= 0.0 and max(w) <= 2.0 and len(set(w)) > 100
    assert _take(ConstantParam(3.0).values(), 2) == [3.0, 3.0]
    with pytest.raises(ConfigError, match="start"):
        ParamRandomWalk(5.0, 0.1, 0.0, 1.0)


def test_regime_switch_at_boundary_and_awgn_appended():
    g = make_generator(9)
    tl = Timeline([Segment(7, _TapChannel(), GaussMarkovFading(0.9), label="A"),
                   Segment(5, _FlatChannel(), GaussMarkovFading(0.9), label="B")],
                  ebno_db=10.0, bits_per_channel_use=2.0)
    assert tl.boundaries == [0, 7] and tl.num_frames == 12
    frames = list(tl.frames(15, batch_size=3, num_symbols=4, generator=g))
    assert [f.index for f in frames] == list(range(15))
    assert [f.segment for f in frames] == [0] * 7 + [1] * 8  # last segment continues past its duration
    assert all("taps" in f.state for f in frames[:7])
    # the flat channel adds no noise -> AWGN appended, its state prefixed
    assert all(set(f.state) == {"0.h"} for f in frames[7:])
    assert frames[7].label == "B" and tl.plot == "segment" and frames[8].drift_value == 1.0
    # N0 = 1 / (Eb/N0 * bits per channel use)
    assert torch.allclose(frames[0].no, torch.full((3,), 1.0 / (10.0 * 2.0)))
    y = frames[9].channel(torch.ones(3, 4, dtype=torch.complex64), frames[9].no, state=frames[9].state,
                          generator=g)
    assert y.shape == (3, 4)


def test_impairment_drift_rebuilds_channel_per_frame():
    g = make_generator(10)
    imp = ImpairmentDrift(lambda a: _Gain(a), {"a": LinearRamp(1.0, 2.0, 3)}, position="tx", name="gain")
    tl = Timeline([Segment(4, _TapChannel(), GaussMarkovFading(1.0), impairment=imp)],
                  ebno_db=10.0, bits_per_channel_use=1.0)
    assert tl.plot == "a"
    frames = list(tl.frames(batch_size=2, num_symbols=3, generator=g))
    assert [f.drift_value for f in frames] == pytest.approx([1.0, 1.5, 2.0, 2.0])
    x = torch.ones(2, 3, dtype=torch.complex64)
    for f in frames:
        y = f.channel(x, 0.0, state=f.state, generator=g)
        ref = f.drift_value * f.state["1.taps"][:, :1] * x
        assert torch.allclose(y, ref)


def test_timeline_and_process_validation():
    with pytest.raises(ConfigError, match="segments"):
        Timeline([], ebno_db=1.0, bits_per_channel_use=1.0)
    with pytest.raises(ConfigError, match="frames"):
        Segment(-3, AWGN())
    with pytest.raises(ConfigError, match="max_db"):
        SNRRandomWalk(1.0, 3.0, -3.0)
    with pytest.raises(ConfigError, match="plot"):
        Timeline([Segment(2, AWGN())], ebno_db=1.0, bits_per_channel_use=1.0, plot="nope")
    with pytest.raises(ConfigError, match="keys"):
        next(GaussMarkovFading(0.5, keys=("gains",)).states(_TapChannel(), 2, 2))
    with pytest.raises(ConfigError, match="doppler_hz"):
        JakesFading(frame_duration_s=1e-3)


def test_integration_with_library_channels():
    g = make_generator(12)
    for ch, key in [(multipath.MultipathBlockFading(3), "taps"), (fading.RayleighBlockFading(), "h")]:
        s = _take(GaussMarkovFading(0.5).states(ch, 4, 8, generator=g), 2)
        assert key in s[1] and not torch.equal(s[0][key], s[1][key])
        y = ch(torch.ones(4, 8, dtype=torch.complex64), 0.1, state=s[1], generator=g)
        assert y.shape[0] == 4


def test_segment_channel_already_composed_with_awgn_is_not_prefixed_twice():
    """Regression (issue 9): a segment channel that is already ``Compose(stage, AWGN())`` (as
    ``make_channel`` returns impairments) keeps its own state keys; the timeline used to prefix them again
    (``'0.0.taps'``) and the channel then rejected its state."""
    import numpy as np

    from metacomm.channels.compose import Compose
    from metacomm.channels.multipath import MultipathBlockFading
    from metacomm.channels.registry import make_channel

    g = make_generator(13)
    tl = Timeline([Segment(2, Compose(MultipathBlockFading(3, mode="truncate"), AWGN()), GaussMarkovFading(0.5)),
                   Segment(2, make_channel("random-iq-imbalance"))], ebno_db=10.0, bits_per_channel_use=1.0)
    frames = list(tl.frames(batch_size=2, num_symbols=4, generator=g))
    assert all(set(f.state) == {"0.taps"} for f in frames[:2])
    assert all(set(f.state) == {"0.epsilon", "0.delta"} for f in frames[2:])
    x = torch.tensor([[1, 2j, -1, 0.5], [0.3, -1j, 1, 1]], dtype=torch.complex64)
    for f in frames[:2]:  # noiseless output = the truncated convolution with the frame's taps (numpy)
        y = f.channel(x, 0.0, state=f.state, generator=g)
        taps = f.state["0.taps"].numpy()
        ref = np.stack([np.convolve(x[b].numpy(), taps[b])[:4] for b in range(2)])
        np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-6)
    for f in frames[2:]:
        y = f.channel(x, f.no, state=f.state, generator=g)
        assert y.shape == (2, 4) and torch.isfinite(torch.view_as_real(y)).all()
