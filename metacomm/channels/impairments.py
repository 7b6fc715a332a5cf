r"""Hardware impairments (which Sionna does not model): IQ imbalance, carrier phase offset, Wiener phase noise,
power-amplifier nonlinearity (Rapp, Saleh).

Every impairment is a noiseless :class:`~metacomm.channels.base.Channel` stage (``adds_noise = False``) mapping
complex ``x [batch, n]`` to ``y [batch, n]``; chain it with fading and noise, e.g.
``Compose(RappPA(smoothness=2, input_backoff_db=3), RandomIQImbalance(), AWGN())``. Random impairments draw a
per-block realisation into their state, like the fading channels, so one realisation can be reused.
All maps are differentiable in ``x`` everywhere, including ``x = 0`` (the amplitude nonlinearities are written
as functions of :math:`|x|^2`, never of :math:`|x|`).
"""

from __future__ import annotations

import math

import torch

from metacomm._validation import (
    ConfigError,
    check_choice,
    check_db,
    check_finite,
    check_nonneg,
    check_positive,
)
from metacomm.channels._sampling import (
    check_complex_dtype,
    check_sample_args,
    check_state_key,
    real_dtype,
    resolve_devices,
    sample_beta,
    sample_uniform,
)
from metacomm.channels.base import Channel

__all__ = [
    "IQImbalance",
    "RandomIQImbalance",
    "PhaseOffset",
    "WienerPhaseNoise",
    "RappPA",
    "SalehPA",
    "iq_imbalance",
]


def _check_bool(field: str, v) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(field, f"expected True or False, got {v!r}")
    return v


def iq_imbalance(x: torch.Tensor, epsilon, delta, *, renormalize: bool = True) -> torch.Tensor:
    r"""Apply IQ imbalance (Park, Jang, Simeone & Kang, IEEE TSP 2021):

    .. math::
        s_I' = (1+\epsilon)(\cos\delta\, s_I - \sin\delta\, s_Q), \qquad
        s_Q' = (1-\epsilon)(\cos\delta\, s_Q - \sin\delta\, s_I),

    with amplitude imbalance :math:`\epsilon` (linear) and phase imbalance :math:`\delta` [rad]
    (floats or tensors broadcastable to ``x``, e.g. ``[batch, 1]``).

    Renormalisation: for i.i.d. symbols with :math:`\mathbb{E}s_I^2 = \mathbb{E}s_Q^2 = 1/2` and
    :math:`\mathbb{E}s_I s_Q = 0` (any QAM/PSK constellation with Es = 1, used uniformly),
    :math:`\mathbb{E}|s'|^2 = \tfrac12(1+\epsilon)^2 + \tfrac12(1-\epsilon)^2 = 1 + \epsilon^2`, independent of
    :math:`\delta`; ``renormalize=True`` divides by :math:`\sqrt{1+\epsilon^2}` so the output keeps unit average
    energy. (For inputs without those moments the closed form is the same scale, not an exact unit energy.)
    """
    rdt = x.real.dtype
    e = torch.as_tensor(epsilon, dtype=rdt, device=x.device)
    d = torch.as_tensor(delta, dtype=rdt, device=x.device)
    si, sq = x.real, x.imag
    c, s = torch.cos(d), torch.sin(d)
    yi = (1.0 + e) * (c * si - s * sq)
    yq = (1.0 - e) * (c * sq - s * si)
    if renormalize:
        k = torch.rsqrt(1.0 + e * e)
        yi, yq = yi * k, yq * k
    return torch.complex(yi, yq)


class IQImbalance(Channel):
    r"""Fixed IQ imbalance: amplitude :math:`\epsilon` and phase :math:`\delta` (degrees), see :func:`iq_imbalance`.

    :param epsilon: amplitude imbalance (linear, :math:`|\epsilon| < 1`).
    :param delta_deg: phase imbalance in degrees.
    :param renormalize: divide by :math:`\sqrt{1+\epsilon^2}` (unit output energy for proper unit-energy input).

    No random state. A state with keys ``"epsilon"``/``"delta"`` (``[batch, 1]``, delta in radians) overrides
    the fixed values.
    """

    def __init__(self, epsilon: float = 0.0, delta_deg: float = 0.0, renormalize: bool = True):
        super().__init__()
        self.epsilon = check_finite("epsilon", epsilon)
        if not -1.0 < self.epsilon < 1.0:
            raise ConfigError("epsilon", f"must lie in (-1, 1), got {epsilon!r}")
        self.delta_deg = check_finite("delta_deg", delta_deg)
        self.renormalize = _check_bool("renormalize", renormalize)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, delta_deg={self.delta_deg}, renormalize={self.renormalize}"

    def apply(self, x, no, state, generator, noise):
        e = state["epsilon"] if "epsilon" in state else self.epsilon
        d = state["delta"] if "delta" in state else math.radians(self.delta_deg)
        return iq_imbalance(x, e, d, renormalize=self.renormalize)


class RandomIQImbalance(Channel):
    r"""IQ imbalance drawn independently per block (per device), Park, Jang, Simeone & Kang (TSP 2021):

    .. math::  \epsilon = \epsilon_{\max}\, B_1, \quad \delta = \delta_{\max}\, B_2, \qquad
               B_1, B_2 \sim \mathrm{Beta}(a, b)\ \text{i.i.d.}

    defaults :math:`\epsilon_{\max} = 0.15`, :math:`\delta_{\max} = 15°`, :math:`a = 5`, :math:`b = 2`
    (mean of Beta(5,2) = 5/7). The Beta draws use the explicit generator (Gamma ratio, see
    :func:`metacomm.channels._sampling.sample_beta`).

    State: ``"epsilon"`` real ``[batch, 1]`` (linear), ``"delta"`` real ``[batch, 1]`` (radians).
    """

    def __init__(self, epsilon_max: float = 0.15, delta_max_deg: float = 15.0, *, beta_a: float = 5.0,
                 beta_b: float = 2.0, renormalize: bool = True):
        super().__init__()
        self.epsilon_max = check_nonneg("epsilon_max", epsilon_max)
        if self.epsilon_max >= 1.0:
            raise ConfigError("epsilon_max", f"must lie in [0, 1), got {epsilon_max!r}")
        self.delta_max_deg = check_nonneg("delta_max_deg", delta_max_deg)
        self.beta_a = check_positive("beta_a", beta_a)
        self.beta_b = check_positive("beta_b", beta_b)
        self.renormalize = _check_bool("renormalize", renormalize)

    def extra_repr(self) -> str:
        return (f"epsilon_max={self.epsilon_max}, delta_max_deg={self.delta_max_deg}, "
                f"beta=({self.beta_a}, {self.beta_b}), renormalize={self.renormalize}")

    def sample_state(self, batch_size, num_symbols, *, generator=None, device=None, dtype=torch.complex64):
        check_complex_dtype(dtype)
        batch_size, _ = check_sample_args(batch_size, num_symbols)
        draw, out = resolve_devices(generator, device)
        rdt = real_dtype(dtype)
        shape = (batch_size, 1)
        b1 = sample_beta(shape, self.beta_a, self.beta_b, generator=generator, dtype=rdt, device=draw)
        b2 = sample_beta(shape, self.beta_a, self.beta_b, generator=generator, dtype=rdt, device=draw)
        return {"epsilon": (self.epsilon_max * b1).to(out),
                "delta": (math.radians(self.delta_max_deg) * b2).to(out)}

    def apply(self, x, no, state, generator, noise):
        e = check_state_key(state, "epsilon", x.shape[0], "RandomIQImbalance")
        d = check_state_key(state, "delta", x.shape[0], "RandomIQImbalance")
        return iq_imbalance(x, e.to(x.device), d.to(x.device), renormalize=self.renormalize)


class PhaseOffset(Channel):
    r"""Carrier phase offset :math:`y = x\, e^{j\varphi}`, constant over the block.

    :param phase_deg: the fixed offset in degrees (used when ``random=False``).
    :param random: if True, :math:`\varphi \sim U[-\pi, \pi)` independently per block; state ``"phase"`` real
        ``[batch, 1]`` in radians.
    """

    def __init__(self, phase_deg: float = 0.0, *, random: bool = False):
        super().__init__()
        self.phase_deg = check_finite("phase_deg", phase_deg)
        self.random = _check_bool("random", random)

    def extra_repr(self) -> str:
        return "random" if self.random else f"phase_deg={self.phase_deg}"

    def sample_state(self, batch_size, num_symbols, *, generator=None, device=None, dtype=torch.complex64):
        batch_size, _ = check_sample_args(batch_size, num_symbols)
        if not self.random:
            return {}
        check_complex_dtype(dtype)
        draw, out = resolve_devices(generator, device)
        phi = sample_uniform((batch_size, 1), -math.pi, math.pi, generator=generator,
                             dtype=real_dtype(dtype), device=draw)
        return {"phase": phi.to(out)}

    def apply(self, x, no, state, generator, noise):
        if self.random or "phase" in state:
            phi = check_state_key(state, "phase", x.shape[0], "PhaseOffset").to(dtype=x.real.dtype,
                                                                                  device=x.device)
        else:
            phi = torch.tensor(math.radians(self.phase_deg), dtype=x.real.dtype, device=x.device)
        return x * torch.polar(torch.ones_like(phi), phi)


class WienerPhaseNoise(Channel):
    r"""Wiener (random-walk) phase noise :math:`y_t = x_t\, e^{j\varphi_t}`, Lorentzian oscillator spectrum:

    .. math::  \varphi_0 = \varphi_{\mathrm{init}}, \qquad \varphi_t = \varphi_{t-1} + w_t, \quad
               w_t \sim \mathcal{N}(0, \sigma^2), \quad t = 1, \dots, n-1,

    with :math:`\sigma^2 = 2\pi \Delta\nu\, T_s` [rad²] per symbol for a combined (Tx + Rx) 3-dB linewidth
    :math:`\Delta\nu` [Hz] and symbol period :math:`T_s = 1/R_s` [s].

    :param variance: :math:`\sigma^2` in rad² per symbol; or give ``linewidth`` [Hz] and ``symbol_rate``
        [symbols/s] instead.
    :param initial_phase: ``"zero"`` (:math:`\varphi_{\mathrm{init}} = 0`) or ``"uniform"`` (:math:`U[-\pi,\pi)`
        per block, i.e. an unknown carrier phase as well).

    State ``"phase"``: real ``[batch, n]`` in radians.
    """

    INITIAL_PHASES = ("zero", "uniform")

    def __init__(self, variance: float | None = None, *, linewidth: float | None = None,
                 symbol_rate: float | None = None, initial_phase: str = "zero"):
        super().__init__()
        if variance is not None:
            if linewidth is not None or symbol_rate is not None:
                raise ConfigError("variance", "give either variance (rad^2/symbol) or linewidth and symbol_rate, "
                                  "not both")
            self.variance = check_nonneg("variance", variance)
        else:
            if linewidth is None or symbol_rate is None:
                raise ConfigError("variance", "give variance (rad^2/symbol) or both linewidth [Hz] and "
                                  "symbol_rate [symbols/s]")
            lw = check_nonneg("linewidth", linewidth)
            rs = check_positive("symbol_rate", symbol_rate)
            self.variance = 2.0 * math.pi * lw / rs
        self.initial_phase = check_choice("initial_phase", initial_phase, self.INITIAL_PHASES)

    def extra_repr(self) -> str:
        return f"variance={self.variance:.4g} rad^2/symbol, initial_phase={self.initial_phase!r}"

    def sample_state(self, batch_size, num_symbols, *, generator=None, device=None, dtype=torch.complex64):
        check_complex_dtype(dtype)
        b, n = check_sample_args(batch_size, num_symbols)
        draw, out = resolve_devices(generator, device)
        rdt = real_dtype(dtype)
        w = math.sqrt(self.variance) * torch.randn((b, max(n - 1, 0)), generator=generator, dtype=rdt,
                                                   device=draw)
        if self.initial_phase == "uniform":
            phi0 = sample_uniform((b, 1), -math.pi, math.pi, generator=generator, dtype=rdt, device=draw)
        else:
            phi0 = torch.zeros((b, 1), dtype=rdt, device=draw)
        phi = phi0 + torch.cat([torch.zeros((b, 1), dtype=rdt, device=draw), torch.cumsum(w, dim=1)], dim=1)
        return {"phase": phi.to(out)}

    def apply(self, x, no, state, generator, noise):
        phi = check_state_key(state, "phase", x.shape[0], "WienerPhaseNoise")
        if phi.shape[-1] != x.shape[-1]:
            raise ConfigError("state", f"WienerPhaseNoise 'phase' has {phi.shape[-1]} samples per block, x has "
                              f"{x.shape[-1]}")
        phi = phi.to(dtype=x.real.dtype, device=x.device)
        return x * torch.polar(torch.ones_like(phi), phi)


def _backoff_scale(input_backoff_db: float | None) -> float:
    return 1.0 if input_backoff_db is None else 10.0 ** (-input_backoff_db / 20.0)


class RappPA(Channel):
    r"""Rapp solid-state PA model (AM/AM only, no AM/PM), unit small-signal gain:

    .. math::  y = \frac{x}{\bigl(1 + (|x|/A_{\mathrm{sat}})^{2p}\bigr)^{1/(2p)}}, \qquad
               |y| = \frac{|x|}{\bigl(1 + (|x|/A_{\mathrm{sat}})^{2p}\bigr)^{1/(2p)}}, \quad \arg y = \arg x,

    so :math:`|y| \to A_{\mathrm{sat}}` for large inputs and :math:`y \approx x` for small ones; larger
    smoothness :math:`p` approaches an ideal limiter.

    :param smoothness: :math:`p > 0`.
    :param saturation: :math:`A_{\mathrm{sat}}` (amplitude, relative to the unit RMS input amplitude), *or*
    :param input_backoff_db: input back-off IBO [dB] of the unit-power input from saturation,
        :math:`\mathrm{IBO} = 10\log_{10}(A_{\mathrm{sat}}^2 / \mathbb{E}|x|^2)`, i.e.
        :math:`A_{\mathrm{sat}} = 10^{\mathrm{IBO}/20}` for :math:`E_s = 1`. Default: :math:`A_{\mathrm{sat}} = 1`
        (0 dB IBO).

    The gain is computed from :math:`|x|^2` (smooth), with the :math:`u^p` term guarded at :math:`u = 0`, so the
    Jacobian at :math:`x = 0` is the identity (the exact limit) and never NaN.
    """

    def __init__(self, smoothness: float = 2.0, saturation: float | None = None, *,
                 input_backoff_db: float | None = None):
        super().__init__()
        self.smoothness = check_positive("smoothness", smoothness)
        if saturation is not None and input_backoff_db is not None:
            raise ConfigError("input_backoff_db", "give saturation or input_backoff_db, not both")
        if input_backoff_db is not None:
            self.saturation = 10.0 ** (check_db("input_backoff_db", input_backoff_db) / 20.0)
        else:
            self.saturation = 1.0 if saturation is None else check_positive("saturation", saturation)

    @property
    def input_backoff_db(self) -> float:
        return 20.0 * math.log10(self.saturation)

    def extra_repr(self) -> str:
        return f"smoothness={self.smoothness}, saturation={self.saturation:.4g} (IBO {self.input_backoff_db:.2f} dB)"

    def apply(self, x, no, state, generator, noise):
        p = self.smoothness
        u = (x.real.square() + x.imag.square()) / (self.saturation ** 2)  # (|x|/A_sat)^2
        pos = u > 0
        up = torch.where(pos, torch.where(pos, u, torch.ones_like(u)).pow(p), torch.zeros_like(u))
        gain = (1.0 + up).pow(-1.0 / (2.0 * p))
        return x * gain.to(x.dtype)


class SalehPA(Channel):
    r"""Saleh TWT amplifier model (IEEE Trans. Commun. 1981), AM/AM and AM/PM:

    .. math::  A(r) = \frac{\alpha_a r}{1 + \beta_a r^2}, \qquad \Phi(r) = \frac{\alpha_\phi r^2}{1 + \beta_\phi r^2},
               \qquad y = A(r)\, e^{j(\arg x + \Phi(r))}, \quad r = |s x|,

    defaults :math:`\alpha_a = 2.1587`, :math:`\beta_a = 1.1517`, :math:`\alpha_\phi = 4.0033`,
    :math:`\beta_\phi = 9.1040` (Saleh's fitted TWT). The input saturates at :math:`r_{\mathrm{sat}} = 1/\sqrt{\beta_a}`
    (output peak :math:`\alpha_a / (2\sqrt{\beta_a})`).

    :param input_backoff_db: IBO [dB] of the unit-power input below input saturation: the input is scaled by
        :math:`s = r_{\mathrm{sat}} 10^{-\mathrm{IBO}/20}`; ``None`` (default) applies the model to ``x``
        directly (:math:`s = 1`).
    :param normalize_gain: if True (default), divide the output by :math:`\alpha_a s` so the small-signal gain
        is 1 (:math:`y \approx x` for small :math:`|x|`); if False, the raw model output.

    Written as :math:`y = x \cdot \frac{\alpha_a s}{1+\beta_a s^2|x|^2} e^{j\Phi}` (a function of :math:`|x|^2`), so
    it is smooth at :math:`x = 0`.
    """

    def __init__(self, alpha_a: float = 2.1587, beta_a: float = 1.1517, alpha_phi: float = 4.0033,
                 beta_phi: float = 9.1040, *, input_backoff_db: float | None = None, normalize_gain: bool = True):
        super().__init__()
        self.alpha_a = check_positive("alpha_a", alpha_a)
        self.beta_a = check_positive("beta_a", beta_a)
        self.alpha_phi = check_finite("alpha_phi", alpha_phi)
        self.beta_phi = check_nonneg("beta_phi", beta_phi)
        self.input_backoff_db = None if input_backoff_db is None else check_db("input_backoff_db",
                                                                              input_backoff_db)
        self.normalize_gain = _check_bool("normalize_gain", normalize_gain)

    @property
    def input_scale(self) -> float:
        """:math:`s`: the factor applied to ``x`` before the model."""
        if self.input_backoff_db is None:
            return 1.0
        return _backoff_scale(self.input_backoff_db) / math.sqrt(self.beta_a)

    def extra_repr(self) -> str:
        return (f"alpha_a={self.alpha_a}, beta_a={self.beta_a}, alpha_phi={self.alpha_phi}, "
                f"beta_phi={self.beta_phi}, input_backoff_db={self.input_backoff_db}, "
                f"normalize_gain={self.normalize_gain}")

    def apply(self, x, no, state, generator, noise):
        s = self.input_scale
        r2 = (x.real.square() + x.imag.square()) * (s * s)
        amp_gain = self.alpha_a * s / (1.0 + self.beta_a * r2)  # A(r)/|x|
        if self.normalize_gain:
            amp_gain = amp_gain / (self.alpha_a * s)
        phase = self.alpha_phi * r2 / (1.0 + self.beta_phi * r2)
        return x * torch.polar(amp_gain, phase)
