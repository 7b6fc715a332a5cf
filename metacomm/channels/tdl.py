r"""3GPP TR 38.901 tapped-delay-line (TDL-A ... TDL-E) channels, via Sionna.

Pipeline (all Sionna 2.x blocks, single antenna pair):

1. :class:`sionna.phy.channel.tr38901.TDL` draws the continuous-time channel impulse response (CIR): path
   gains :math:`a_m(t)` (sum-of-sinusoids Rayleigh fading, plus a Rician specular first path for the LoS
   models D and E) at the tabulated normalised delays :math:`\tau_m = \tilde\tau_m \cdot` ``delay_spread``, with the
   tabulated powers :math:`p_m` (normalised, :math:`\sum_m p_m = 1`). Doppler from ``speed`` [m/s] and
   ``carrier_frequency`` [Hz]: :math:`f_D = v f_c / c`.
2. :func:`sionna.phy.channel.cir_to_time_channel` samples the CIR with an ideal sinc pulse at the sampling
   rate = ``bandwidth`` :math:`W` [Hz] (one complex sample per symbol):
   :math:`\bar h_{b,\ell} = \sum_m a_m(b/W)\,\mathrm{sinc}(\ell - W\tau_m)` for lags
   :math:`\ell = L_{\min} .. L_{\max}` (default :math:`L_{\min} = -6` and
   :math:`L_{\max} = \lceil W \tau_{\max} \rceil + 6` from :func:`sionna.phy.channel.time_lag_discrete_time_channel`),
   :math:`L = L_{\max} - L_{\min} + 1` taps.
3. :class:`sionna.phy.channel.ApplyTimeChannel` convolves, :math:`z_b = \sum_k \bar h_{b,k} x_{b-k}`,
   ``b = 0 .. n+L-2`` (output ``b`` is time :math:`b + L_{\min}`); metacomm's :func:`~metacomm.channels.base.add_noise`
   adds :math:`\mathcal{CN}(0, N_0)` noise from the explicit generator.

Block fading: with ``speed = 0`` (default) one CIR is drawn per block and the state holds
``"taps"`` complex ``[batch, L]``; with a speed > 0 the taps vary within the block (channel aging,
``n + L - 1`` time steps at the sampling rate) and the state holds ``"taps"`` ``[batch, n+L-1, L]``
(row ``b`` = the taps applied at output ``b``, the layout of ``ApplyTimeChannel``).

Power normalisation (``normalize``):

* ``"average"`` (default): taps are divided by :math:`\sqrt{E}` with the *expected* discrete-tap energy
  :math:`E = \sum_m p_m \sum_{\ell=L_{\min}}^{L_{\max}} \mathrm{sinc}^2(\ell - W\tau_m)` (independent paths,
  :math:`\mathbb{E}|a_m|^2 = p_m`), so :math:`\mathbb{E}\sum_\ell|\bar h_\ell|^2 = 1` exactly while each
  realisation keeps its own fading energy. (:math:`E < 1` only by the sinc energy outside the lag window.)
* ``"block"``: Sionna's ``normalize=True``: every realisation has unit energy averaged over the block.
* ``"none"``: Sionna's raw taps.

Randomness: Sionna's TDL draws through ``self.torch_rng`` (normally Sionna's global per-device generator).
metacomm uses a subclass whose ``torch_rng`` returns the caller's explicit :class:`torch.Generator` during
:meth:`TDL.sample_state`, so the draw is reproducible from that generator alone and Sionna's global state is
neither used nor modified. (With ``generator=None`` a fresh generator is seeded from torch's default
generator.) The Sionna blocks are created lazily per (device, precision) and cached.

``mode="full"`` (default) returns all ``n + L - 1`` outputs; ``mode="truncate"`` the ``n`` outputs aligned
with the symbols, times :math:`0 .. n-1` (the precursor and tail samples are dropped).
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch
from sionna.phy.channel import ApplyTimeChannel, cir_to_time_channel, time_lag_discrete_time_channel
from sionna.phy.channel.tr38901 import TDL as _SionnaTDL
from sionna.phy.channel.tr38901.tdl import _TDL_PARAMETER_FILES

from metacomm._sionna import SionnaBlocks
from metacomm._validation import (
    ConfigError,
    check_choice,
    check_int,
    check_memory,
    check_nonneg,
    check_positive,
    check_positive_int,
)
from metacomm.channels._sampling import (
    check_complex_dtype,
    check_sample_args,
    check_state_key,
    resolve_devices,
)
from metacomm.channels.base import Channel, State, add_noise, make_generator
from metacomm.channels.multipath import MODES, convolution_matrix

__all__ = ["TDL", "TDL_MODELS", "NORMALIZATIONS"]

TDL_MODELS = tuple(_TDL_PARAMETER_FILES)
"""Sionna's TDL profiles: scalable TR 38.901 ``A``-``E`` and fixed-delay TS 38.101-4 ``A10`` ... ``D30``."""
_SCALABLE = ("A", "B", "C", "D", "E")
NORMALIZATIONS = ("average", "block", "none")


class _GeneratorTDL(_SionnaTDL):
    """Sionna's TDL whose random draws come from an explicitly set generator (see module docstring)."""

    _explicit_generator: torch.Generator | None = None

    @property
    def torch_rng(self) -> torch.Generator:  # noqa: D401 - overrides sionna.phy.Object.torch_rng
        g = self._explicit_generator
        return g if g is not None else super().torch_rng


def _make_tdl(precision: str, *, device: str, **config) -> _GeneratorTDL:
    return _GeneratorTDL(**config, precision=precision, device=device)


def _make_apply(n: int, precision: str, *, device: str, num_taps: int) -> ApplyTimeChannel:
    return ApplyTimeChannel(n, num_taps, precision=precision, device=device)


class TDL(Channel):
    r"""3GPP TDL channel (see the module docstring for the model, normalisation and randomness).

    :param model: ``"A"`` ... ``"E"`` (TR 38.901 Table 7.7.2-1..5; D and E have a LoS path) or a fixed-delay
        TS 38.101-4 profile (``"A30"``, ``"B100"``, ``"C300"``, ...; ``delay_spread`` is then ignored).
    :param delay_spread: RMS delay spread [s] that scales the normalised delays (e.g. 10 ns very short,
        30 ns short, 100 ns nominal, 300 ns long, 1000 ns very long).
    :param carrier_frequency: carrier frequency [Hz] (Doppler only).
    :param bandwidth: sampling rate = symbol rate = bandwidth :math:`W` [Hz]; one tap per :math:`1/W` s.
    :param speed: UE speed [m/s] (0 = static block fading). Or ``min_speed``/``max_speed`` [m/s]: speed drawn
        uniformly per block.
    :param num_sinusoids: sinusoids of Sionna's sum-of-sinusoids fading generator.
    :param l_min, l_max: lag window in samples (default Sionna's recommendation for the model's largest delay).
    :param mode: ``"full"`` (``n + L - 1`` outputs) or ``"truncate"`` (``n`` outputs).
    :param normalize: ``"average"``, ``"block"`` or ``"none"``.
    :param spec_version: TR 38.901 table version, ``"19.2"`` or ``"16.1"``.
    """

    adds_noise = True

    def __init__(self, model: str = "A", delay_spread: float = 100e-9, carrier_frequency: float = 3.5e9,
                 bandwidth: float = 10e6, *, speed: float = 0.0, min_speed: float | None = None,
                 max_speed: float | None = None, num_sinusoids: int = 20, l_min: int | None = None,
                 l_max: int | None = None, mode: str = "full", normalize: str = "average",
                 spec_version: str = "19.2"):
        super().__init__()
        self.model = check_choice("model", model, TDL_MODELS)
        self.delay_spread = check_positive("delay_spread", delay_spread) if model in _SCALABLE else None
        self.carrier_frequency = check_positive("carrier_frequency", carrier_frequency)
        self.bandwidth = check_positive("bandwidth", bandwidth)
        if min_speed is None and max_speed is None:
            lo = hi = check_nonneg("speed", speed)
        else:
            lo = check_nonneg("min_speed", 0.0 if min_speed is None else min_speed)
            hi = check_nonneg("max_speed", lo if max_speed is None else max_speed)
            if hi < lo:
                raise ConfigError("max_speed", f"must be >= min_speed ({lo}), got {hi}")
        self.min_speed, self.max_speed = lo, hi
        self.num_sinusoids = check_positive_int("num_sinusoids", num_sinusoids)
        self.mode = check_choice("mode", mode, MODES)
        self.normalize = check_choice("normalize", normalize, NORMALIZATIONS)
        self.spec_version = check_choice("spec_version", spec_version, ("19.2", "16.1"))
        self._tdls = SionnaBlocks(partial(
            _make_tdl, model=self.model, delay_spread=self.delay_spread, carrier_frequency=self.carrier_frequency,
            num_sinusoids=self.num_sinusoids, min_speed=self.min_speed, max_speed=self.max_speed,
            spec_version=self.spec_version))

        ref = self._sionna_tdl(torch.device("cpu"), "double")
        self.path_delays = ref.delays.cpu().numpy().astype(np.float64)   # [s]
        self.path_powers = ref.mean_powers.cpu().numpy().astype(np.float64)  # linear, sum 1
        self.los = bool(ref.los)
        d_min, d_max = time_lag_discrete_time_channel(self.bandwidth, float(self.path_delays.max()))
        self.l_min = int(d_min) if l_min is None else check_int("l_min", l_min)
        self.l_max = int(d_max) if l_max is None else check_int("l_max", l_max)
        if self.l_min > 0:
            raise ConfigError("l_min", f"must be <= 0 (the lag window must contain lag 0), got {l_min}")
        if self.l_max < 0:
            raise ConfigError("l_max", f"must be >= 0, got {l_max}")
        # the lag window's sinc table [paths, L] and a draw's taps: refuse a window that cannot fit up front
        # (e.g. an enormous bandwidth x delay product), naming the setting that made it
        check_memory("bandwidth" if l_max is None else "l_max", 16.0 * (len(self.path_delays) + 4) * self.num_taps,
                     f"a TDL lag window of {self.num_taps} taps")
        self._applies = SionnaBlocks(partial(_make_apply, num_taps=self.num_taps))
        lags = np.arange(self.l_min, self.l_max + 1, dtype=np.float64)
        sinc2 = np.sinc(lags[None, :] - self.bandwidth * self.path_delays[:, None]) ** 2
        unnormalised = self.path_powers @ sinc2  # E|h_l|^2 of Sionna's raw taps, [L]
        self.raw_energy = float(unnormalised.sum())

    # -- geometry -------------------------------------------------------------------------------------------
    @property
    def num_taps(self) -> int:
        """Discrete taps ``L = l_max - l_min + 1``."""
        return self.l_max - self.l_min + 1

    @property
    def lag0(self) -> int:
        """Index of the zero-delay tap in ``taps`` (``-l_min``)."""
        return -self.l_min

    @property
    def time_varying(self) -> bool:
        return self.max_speed > 0.0

    def output_length(self, num_symbols: int) -> int:
        return num_symbols + self.num_taps - 1 if self.mode == "full" else num_symbols

    def extra_repr(self) -> str:
        ds = "fixed" if self.delay_spread is None else f"{self.delay_spread:.3g} s"
        return (f"model={self.model!r}, delay_spread={ds}, bandwidth={self.bandwidth:.4g} Hz, "
                f"speed=[{self.min_speed}, {self.max_speed}] m/s, taps={self.num_taps} "
                f"(lags {self.l_min}..{self.l_max}), mode={self.mode!r}, normalize={self.normalize!r}")

    # -- Sionna blocks (lazily per device and precision, metacomm._sionna.SionnaBlocks) ----------------------
    def _sionna_tdl(self, device: torch.device, precision: str) -> _GeneratorTDL:
        return self._tdls.get(device, precision)

    def _apply_block(self, n: int, device: torch.device, precision: str) -> ApplyTimeChannel:
        return self._applies.get(device, n, precision)

    # -- protocol -------------------------------------------------------------------------------------------
    def sample_state(self, batch_size, num_symbols, *, generator=None, device=None, dtype=torch.complex64):
        check_complex_dtype(dtype)
        b, n = check_sample_args(batch_size, num_symbols, positive=True,
                                 width=self.num_taps * ((num_symbols if isinstance(num_symbols, int) else 1)
                                                        + self.num_taps if self.time_varying else 1))
        draw, out = resolve_devices(generator, device)
        if generator is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())  # from torch's default generator
            generator = make_generator(seed, draw)
        precision = "double" if dtype == torch.complex128 else "single"
        tdl = self._sionna_tdl(draw, precision)
        steps = n + self.num_taps - 1 if self.time_varying else 1
        tdl._explicit_generator = generator
        try:
            a, tau = tdl(b, steps, self.bandwidth)
        finally:
            tdl._explicit_generator = None
        h = cir_to_time_channel(self.bandwidth, a, tau, self.l_min, self.l_max,
                                normalize=self.normalize == "block")
        h = h.reshape(b, steps, self.num_taps)  # [batch, 1, 1, 1, 1, steps, L] -> [batch, steps, L]
        if self.normalize == "average":
            h = h / math.sqrt(self.raw_energy)
        if not self.time_varying:
            h = h[:, 0, :]
        return {"taps": h.to(dtype=dtype, device=out)}

    def _check_taps(self, state: State, x: torch.Tensor) -> torch.Tensor:
        taps = check_state_key(state, "taps", x.shape[0], "TDL")
        n, L = x.shape[-1], self.num_taps
        ok = taps.shape[-1] == L and (taps.dim() == 2 or (taps.dim() == 3 and taps.shape[1] in (1, n + L - 1)))
        if not ok:
            raise ConfigError("state", f"TDL 'taps' must be [batch, {L}] or [batch, {n + L - 1}, {L}] for "
                              f"n = {n}, got {tuple(taps.shape)}")
        return taps

    def apply(self, x, no, state, generator, noise):
        taps = self._check_taps(state, x)
        n = x.shape[-1]
        precision = "double" if x.dtype == torch.complex128 else "single"
        block = self._apply_block(n, x.device, precision)
        h_time = taps.to(dtype=x.dtype, device=x.device)
        h_time = h_time[:, None, :] if h_time.dim() == 2 else h_time  # [batch, T or 1, L]
        h_time = h_time[:, None, None, None, None]  # [batch, rx, rx_ant, tx, tx_ant, T, L]
        y = block(x[:, None, None, :], h_time).reshape(x.shape[0], n + self.num_taps - 1)
        if self.mode == "truncate":
            y = y[:, self.lag0:self.lag0 + n]
        return add_noise(y, no, generator, noise)

    def convolution_matrix(self, state: State, num_symbols: int) -> torch.Tensor:
        """:math:`\\mathbf{H}` ``[batch, output_length(n), n]`` with ``y = H x + noise`` for a state."""
        return convolution_matrix(state["taps"], num_symbols, mode=self.mode, lag0=self.lag0)
