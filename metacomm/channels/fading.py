r"""Flat block-fading channels: Rayleigh and Rician.

Both draw one complex gain :math:`h` per block (row of ``x``), constant over the block's ``n`` symbols, and
apply

.. math::  y_t = h\, x_t + n_t, \qquad n_t \sim \mathcal{CN}(0, N_0), \qquad t = 0, \dots, n-1,

with :math:`\mathbb{E}|h|^2 = 1`, so that the average received signal energy per symbol equals the transmitted
one (:math:`E_s = 1`) and ``no`` keeps its meaning of :math:`N_0 = 1/(E_s/N_0)` *on average* over the fading.

State: ``{"h": complex [batch, 1]}`` in the channel dtype. Input ``x`` complex ``[batch, n]``, output
``[batch, n]``. Same model as :class:`sionna.phy.channel.RayleighBlockFading` for one antenna pair, but drawn
from the explicit generator of the metacomm protocol (Sionna's block draws from its global generator).
"""

from __future__ import annotations

import math

import torch

from metacomm._validation import ConfigError, check_db, check_finite, check_nonneg
from metacomm.channels._sampling import (
    check_complex_dtype,
    check_sample_args,
    check_state_key,
    real_dtype,
    resolve_devices,
    sample_uniform,
)
from metacomm.channels.base import Channel, add_noise, complex_normal

__all__ = ["RayleighBlockFading", "RicianBlockFading", "DEFAULT_K_FACTOR_DB"]

DEFAULT_K_FACTOR_DB = 10.0


class RayleighBlockFading(Channel):
    r"""Flat Rayleigh block fading :math:`y = h x + n`, :math:`h \sim \mathcal{CN}(0, 1)` per block.

    :math:`|h|` is Rayleigh with :math:`\mathbb{E}|h|^2 = 1`; the instantaneous SNR per block is
    :math:`|h|^2 E_s/N_0` (exponentially distributed). State ``"h"``: complex ``[batch, 1]``.
    """

    adds_noise = True

    def sample_state(self, batch_size, num_symbols, *, generator=None, device=None, dtype=torch.complex64):
        check_complex_dtype(dtype)
        batch_size, _ = check_sample_args(batch_size, num_symbols)
        draw, out = resolve_devices(generator, device)
        h = complex_normal((batch_size, 1), generator=generator, dtype=dtype, device=draw)
        return {"h": h.to(out)}

    def apply(self, x, no, state, generator, noise):
        h = check_state_key(state, "h", x.shape[0], type(self).__name__).to(dtype=x.dtype, device=x.device)
        return add_noise(h * x, no, generator, noise)


class RicianBlockFading(Channel):
    r"""Flat Rician block fading :math:`y = h x + n` with

    .. math::  h = \sqrt{\tfrac{K}{K+1}}\, e^{j\theta} + \sqrt{\tfrac{1}{K+1}}\, g, \qquad g \sim \mathcal{CN}(0,1),

    drawn once per block, so :math:`\mathbb{E}|h|^2 = 1`. :math:`K` is the ratio of line-of-sight (specular)
    power to scattered power, :math:`K_{\mathrm{dB}} = 10 \log_{10} K`; :math:`K = 0` is Rayleigh fading and
    :math:`K \to \infty` a static AWGN channel.

    :param k_factor_db: K-factor in dB (give this *or* ``k_factor``; default 10 dB when neither is given).
    :param k_factor: K-factor, linear (>= 0).
    :param los_phase: LoS phase :math:`\theta` in radians when fixed (default 0).
    :param random_los_phase: if True, :math:`\theta \sim U[-\pi, \pi)` independently per block (then ``h`` is
        circularly symmetric, as for a LoS path of unknown distance).

    State ``"h"``: complex ``[batch, 1]``.
    """

    adds_noise = True

    def __init__(self, k_factor_db: float | None = None, *, k_factor: float | None = None,
                 los_phase: float = 0.0, random_los_phase: bool = False):
        super().__init__()
        if k_factor_db is not None and k_factor is not None:
            raise ConfigError("k_factor_db", "give k_factor_db (dB) or k_factor (linear), not both")
        if k_factor_db is None and k_factor is None:
            k_factor_db = DEFAULT_K_FACTOR_DB
        if k_factor_db is not None:
            k = 10.0 ** (check_db("k_factor_db", k_factor_db) / 10.0)
        else:
            k = check_nonneg("k_factor", k_factor)
        self.k_factor = float(k)
        self.los_phase = check_finite("los_phase", los_phase)
        if not isinstance(random_los_phase, bool):
            raise ConfigError("random_los_phase", f"expected True or False, got {random_los_phase!r}")
        self.random_los_phase = random_los_phase

    @property
    def k_factor_db(self) -> float:
        return 10.0 * math.log10(self.k_factor) if self.k_factor > 0 else -math.inf

    def extra_repr(self) -> str:
        return f"k_factor={self.k_factor:.4g}, random_los_phase={self.random_los_phase}"

    def sample_state(self, batch_size, num_symbols, *, generator=None, device=None, dtype=torch.complex64):
        check_complex_dtype(dtype)
        b, _ = check_sample_args(batch_size, num_symbols)
        draw, out = resolve_devices(generator, device)
        k = self.k_factor
        rdt = real_dtype(dtype)
        if self.random_los_phase:
            theta = sample_uniform((b, 1), -math.pi, math.pi, generator=generator, dtype=rdt, device=draw)
        else:
            theta = torch.full((b, 1), self.los_phase, dtype=rdt, device=draw)
        los = math.sqrt(k / (k + 1.0)) * torch.polar(torch.ones_like(theta), theta)
        scat = math.sqrt(1.0 / (k + 1.0)) * complex_normal((b, 1), generator=generator, dtype=dtype, device=draw)
        return {"h": (los.to(dtype) + scat).to(out)}

    def apply(self, x, no, state, generator, noise):
        h = check_state_key(state, "h", x.shape[0], type(self).__name__).to(dtype=x.dtype, device=x.device)
        return add_noise(h * x, no, generator, noise)
