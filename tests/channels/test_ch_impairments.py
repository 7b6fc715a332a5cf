"""Hardware impairments against their defining equations written independently in numpy."""

import math

import numpy as np
import pytest
import scipy.stats as st
import torch

from metacomm import ConfigError
from metacomm.channels import (
    IQImbalance,
    PhaseOffset,
    RandomIQImbalance,
    RappPA,
    SalehPA,
    WienerPhaseNoise,
    make_generator,
)
from metacomm.channels._sampling import sample_beta, sample_gamma


def qam16():
    lv = np.array([-3, -1, 1, 3], dtype=np.float64)
    pts = (lv[:, None] + 1j * lv[None, :]).ravel()
    return pts / np.sqrt(np.mean(np.abs(pts) ** 2))


def rand_x(b, n, seed=0, scale=1.0, device="cpu"):
    rng = np.random.default_rng(seed)
    x = scale * (rng.standard_normal((b, n)) + 1j * rng.standard_normal((b, n))) / np.sqrt(2)
    return x, torch.tensor(x, dtype=torch.complex128, device=device)


# ---- IQ imbalance ---------------------------------------------------------------------------------------------
def np_iq(x, eps, delta_rad, renorm):
    si, sq = x.real, x.imag
    yi = (1 + eps) * (np.cos(delta_rad) * si - np.sin(delta_rad) * sq)
    yq = (1 - eps) * (np.cos(delta_rad) * sq - np.sin(delta_rad) * si)
    y = yi + 1j * yq
    if renorm:
        # normalise so that the 16-QAM constellation keeps unit average energy
        c = qam16()
        ci = (1 + eps) * (np.cos(delta_rad) * c.real - np.sin(delta_rad) * c.imag)
        cq = (1 - eps) * (np.cos(delta_rad) * c.imag - np.sin(delta_rad) * c.real)
        y = y / np.sqrt(np.mean(ci**2 + cq**2))
    return y


@pytest.mark.parametrize("eps,delta_deg", [(0.1, 5.0), (-0.2, -12.0), (0.0, 0.0)])
@pytest.mark.parametrize("renorm", [True, False])
def test_iq_imbalance_equation(eps, delta_deg, renorm, device):
    xn, xt = rand_x(3, 7, device=device)
    y = IQImbalance(eps, delta_deg, renormalize=renorm)(xt).cpu().numpy()
    np.testing.assert_allclose(y, np_iq(xn, eps, np.deg2rad(delta_deg), renorm), rtol=1e-12, atol=1e-12)


def test_iq_renormalised_constellation_has_unit_energy():
    c = torch.tensor(qam16(), dtype=torch.complex128)[None, :]
    for eps, d in [(0.15, 15.0), (0.05, 3.0)]:
        y = IQImbalance(eps, d)(c)
        assert abs(y.abs().square().mean().item() - 1.0) < 1e-12


def test_random_iq_state_is_scaled_beta_5_2(device):
    ch = RandomIQImbalance()
    s = ch.sample_state(4000, 4, generator=make_generator(0, device), device=device)
    assert s["epsilon"].shape == (4000, 1) and s["delta"].shape == (4000, 1)
    e = s["epsilon"].cpu().numpy().ravel() / 0.15
    d = s["delta"].cpu().numpy().ravel() / np.deg2rad(15.0)
    assert st.kstest(e, st.beta(5, 2).cdf).pvalue > 1e-3
    assert st.kstest(d, st.beta(5, 2).cdf).pvalue > 1e-3
    assert abs(np.corrcoef(e, d)[0, 1]) < 0.06  # independent draws


def test_random_iq_applies_per_block_equation():
    ch = RandomIQImbalance(0.3, 20.0)
    s = ch.sample_state(5, 6, generator=make_generator(1), dtype=torch.complex128)
    xn, xt = rand_x(5, 6, seed=1)
    y = ch(xt, 0.0, s).numpy()
    e, d = s["epsilon"].numpy(), s["delta"].numpy()
    for b in range(5):
        np.testing.assert_allclose(y[b], np_iq(xn[b], e[b, 0], d[b, 0], True), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.4, 1.0, 2.7, 5.0])
def test_gamma_sampler_against_scipy(alpha):
    x = sample_gamma((5000,), alpha, generator=make_generator(3), dtype=torch.float64).numpy()
    assert st.kstest(x, st.gamma(alpha).cdf).pvalue > 1e-3


def test_beta_sampler_moments():
    x = sample_beta((20000,), 5.0, 2.0, generator=make_generator(4), dtype=torch.float64).numpy()
    assert abs(x.mean() - 5 / 7) < 0.005
    assert abs(x.var() - 10 / (49 * 8)) < 0.002


# ---- phase offset / phase noise -------------------------------------------------------------------------------
def test_phase_offset_fixed_and_random(device):
    xn, xt = rand_x(4, 5, device=device)
    y = PhaseOffset(40.0)(xt).cpu().numpy()
    np.testing.assert_allclose(y, xn * np.exp(1j * np.deg2rad(40.0)), rtol=1e-12)
    ch = PhaseOffset(random=True)
    s = ch.sample_state(4, 5, generator=make_generator(2, device), device=device, dtype=torch.complex128)
    phi = s["phase"].cpu().numpy()
    np.testing.assert_allclose(ch(xt, 0.0, s).cpu().numpy(), xn * np.exp(1j * phi), rtol=1e-12)
    many = ch.sample_state(5000, 1, generator=make_generator(3, device), device=device)["phase"].cpu().numpy()
    assert st.kstest(many.ravel(), st.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3


@pytest.mark.parametrize("initial", ["zero", "uniform"])
def test_wiener_phase_noise_increments(initial, device):
    sigma2 = 0.02
    ch = WienerPhaseNoise(sigma2, initial_phase=initial)
    s = ch.sample_state(2000, 50, generator=make_generator(5, device), device=device, dtype=torch.complex128)
    phi = s["phase"].cpu().numpy()
    assert phi.shape == (2000, 50)
    inc = np.diff(phi, axis=1).ravel()
    assert abs(inc.mean()) < 0.003
    assert abs(inc.var() / sigma2 - 1.0) < 0.03  # 98000 samples: rel. std of the variance ~0.5 %
    assert st.kstest(inc[:5000] / np.sqrt(sigma2), "norm").pvalue > 1e-3
    if initial == "zero":
        assert np.all(phi[:, 0] == 0.0)
        # random walk: Var(phi_t) = t sigma^2
        assert abs(phi[:, -1].var() / (49 * sigma2) - 1.0) < 0.1
    else:
        assert st.kstest(phi[:, 0], st.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3
    xn, xt = rand_x(2000, 50, device=device)
    np.testing.assert_allclose(ch(xt, 0.0, s).cpu().numpy(), xn * np.exp(1j * phi), rtol=1e-12)


def test_wiener_linewidth_conversion():
    ch = WienerPhaseNoise(linewidth=100e3, symbol_rate=10e6)
    assert ch.variance == pytest.approx(2 * np.pi * 100e3 / 10e6)
    with pytest.raises(ConfigError, match="variance"):
        WienerPhaseNoise()
    with pytest.raises(ConfigError, match="variance"):
        WienerPhaseNoise(0.1, linewidth=1.0, symbol_rate=1.0)
    with pytest.raises(ConfigError, match="initial_phase"):
        WienerPhaseNoise(0.1, initial_phase="random")


# ---- power amplifiers -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("p,ibo", [(0.7, 0.0), (2.0, 3.0), (10.0, -2.0)])
def test_rapp_am_am(p, ibo, device):
    xn, xt = rand_x(4, 64, scale=2.0, device=device)
    y = RappPA(p, input_backoff_db=ibo)(xt).cpu().numpy()
    a_sat = 10 ** (ibo / 20)
    r = np.abs(xn)
    np.testing.assert_allclose(np.abs(y), r / (1 + (r / a_sat) ** (2 * p)) ** (1 / (2 * p)), rtol=1e-10)
    np.testing.assert_allclose(np.angle(y), np.angle(xn), atol=1e-10)  # no AM/PM


def test_rapp_saturates_and_is_linear_for_small_inputs():
    pa = RappPA(3.0, saturation=0.8)
    big = torch.full((1, 1), 1e4 + 0j, dtype=torch.complex128)
    assert abs(pa(big).abs().item() - 0.8) < 1e-9
    small = torch.full((1, 1), 1e-4 * (1 + 1j), dtype=torch.complex128)
    torch.testing.assert_close(pa(small), small, rtol=1e-9, atol=0)


@pytest.mark.parametrize("ibo,norm", [(None, False), (None, True), (6.0, True), (1.0, False)])
def test_saleh_am_am_am_pm(ibo, norm, device):
    aa, ba, ap, bp = 2.1587, 1.1517, 4.0033, 9.1040
    xn, xt = rand_x(4, 64, scale=1.5, device=device)
    y = SalehPA(input_backoff_db=ibo, normalize_gain=norm)(xt).cpu().numpy()
    s = 1.0 if ibo is None else 10 ** (-ibo / 20) / np.sqrt(ba)
    r = np.abs(s * xn)
    amp = aa * r / (1 + ba * r**2)
    phase = ap * r**2 / (1 + bp * r**2)
    if norm:
        amp = amp / (aa * s)
    ref = amp * np.exp(1j * (np.angle(xn) + phase))
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)


def test_saleh_peak_output_at_input_saturation():
    pa = SalehPA(normalize_gain=False)
    r_sat = 1 / math.sqrt(1.1517)
    x = torch.tensor([[r_sat * 0.99, r_sat, r_sat * 1.01]], dtype=torch.complex128)
    a = pa(x).abs()[0].numpy()
    assert a[1] == pytest.approx(2.1587 / (2 * math.sqrt(1.1517)))
    assert a[1] > a[0] and a[1] > a[2]


@pytest.mark.parametrize("pa", [RappPA(0.3), RappPA(0.5), RappPA(2.0), SalehPA(), SalehPA(input_backoff_db=3.0)],
                         ids=["rapp0.3", "rapp0.5", "rapp2", "saleh", "saleh-ibo"])
def test_pa_gradient_at_zero_is_identity(pa):
    """dy/dx at x = 0 is the identity (unit small-signal gain, no phase), never NaN."""
    x = torch.zeros(1, 1, dtype=torch.complex128, requires_grad=True)
    y = pa(x)
    (g_re,) = torch.autograd.grad(y.real.sum(), x, retain_graph=True)
    (g_im,) = torch.autograd.grad(y.imag.sum(), x)
    # torch's convention: grad of a real L w.r.t. complex x is dL/dRe + j dL/dIm
    assert complex(g_re.item()) == pytest.approx(1.0 + 0j)
    assert complex(g_im.item()) == pytest.approx(0.0 + 1j)


def test_pa_bad_input():
    with pytest.raises(ConfigError, match="smoothness"):
        RappPA(0.0)
    with pytest.raises(ConfigError, match="input_backoff_db"):
        RappPA(2.0, 1.0, input_backoff_db=3.0)
    with pytest.raises(ConfigError, match="saturation"):
        RappPA(2.0, -1.0)
    with pytest.raises(ConfigError, match="beta_a"):
        SalehPA(beta_a=0.0)
    with pytest.raises(ConfigError, match="epsilon"):
        IQImbalance(1.5)
    with pytest.raises(ConfigError, match="renormalize"):
        IQImbalance(0.1, renormalize="yes")
