r"""A 3GPP TDL channel along a trajectory: the *same* paths slot after slot, at a speed that may change, for drift
runs over consecutive OFDM slots (what Sionna's channel models lack: each call of Sionna's ``TDL`` draws new
paths and starts at time 0, at one constant speed).

Model (Sionna's TDL: TR 38.901 Table 7.7.2 profiles, sum-of-sinusoids fading, same draws in the same order).
Per link ``b``, cluster (tap) ``m``, receive antenna ``r`` and transmit antenna ``t``, with ``N`` sinusoids,

.. math::
    a_{m,r,t}(d) = \sqrt{p_m}\,\frac{1}{\sqrt N} \sum_{n=1}^{N} e^{\,j\,(k_c\, d \cos\alpha_{m,n} + \phi_{m,r,t,n})},
    \qquad \alpha_{m,n} = \alpha^{0}_{n} + \theta_{m},\quad k_c = 2\pi f_c / c,

as a function of the **distance travelled** ``d`` [m] instead of time: Sionna writes the phase as
:math:`\omega_D t \cos\alpha` with :math:`\omega_D = 2\pi v f_c / c`, i.e. :math:`k_c\, v t` -- the same thing at
constant speed ``v``. With a speed that changes from slot to slot the Doppler phase is :math:`k_c \int v\,dt =
k_c\, d(t)`, so the channel is continuous (no jump at a slot boundary) and its instantaneous maximum Doppler is
:math:`f_D = v(t) f_c / c`. :math:`\theta_m \sim U(-\pi/N, \pi/N)`, :math:`\phi \sim U(-\pi, \pi)` are drawn once
per link (:meth:`TDLTrajectory.draw`) and then fixed; the LoS profiles (TDL-D/E) add the specular component
:math:`\sqrt{p_{LoS}}\, e^{j(k_c d \cos\theta_{LoS} + \phi_0)}` to the first tap. Delays :math:`\tau_m` = the
profile's normalised delays times ``delay_spread``. The frequency response on the grid (Sionna's
``cir_to_ofdm_channel``, no normalisation: the tabulated powers sum to 1, so :math:`\mathbb{E}|H|^2 = 1` on every
resource element)

.. math::
    H_{r,t}[s, f] = \sum_m a_{m,r,t}(d_s)\, e^{-j 2\pi f \Delta_f \tau_m}.

With ``d_s = v s T_sym`` (constant speed, from 0) and the same generator state, :meth:`TDLTrajectory.h_freq`
equals Sionna's ``GenerateOFDMChannel(TDL(...))`` output (the draws are Sionna's, in Sionna's order: a Doppler
draw that a fixed speed ignores, :math:`\theta`, :math:`\phi`, then :math:`\phi_0` for LoS profiles) -- checked by
the tests against Sionna itself.

Second-order statistics (:func:`tdl_covariances`), exact for this model: the frequency covariance
:math:`C_f[f, g] = \sum_m p_m e^{-j 2\pi (f - g) \Delta_f \tau_m}` (+ the LoS power on the first tap), the time
covariance at speed ``v`` :math:`C_t[s, u] = \sum_m p_m \rho(k_c v (s - u) T_{sym}) / \sum_m p_m` with the
sum-of-sinusoids correlation :math:`\rho(x) = \frac1N \sum_n \mathbb{E}_\theta\, e^{j x \cos(\alpha^0_n + \theta)}`
(Gauss-Legendre quadrature over :math:`\theta`; :math:`\to J_0(x)` for large ``N``), and the space covariance
:math:`\sum_m p_m I + p_{LoS} \mathbf{1}\mathbf{1}^T` (Sionna's TDL: uncorrelated diffuse taps on the receive
antennas, one specular phase common to all of them). Separable, as Sionna's ``LMMSEChannelEstimator``
assumes (for the LoS profiles the specular tap's Doppler differs from the diffuse taps': the time covariance is
their power-weighted mix, the separable approximation).

Shapes: parameters ``theta`` float ``[B, 1, 1, 1, 1, M, 1, N]``, ``phi`` ``[B, 1, R, 1, T, M, 1, N]``, ``phi0``
``[B, 1, 1, 1, 1, 1, 1]`` (LoS only); distances ``d`` float ``[S]`` [m] (shared by the links) or ``[B, S]``; path
gains ``a`` complex ``[B, 1, R, 1, T, M, S]``; responses complex ``[B, 1, R, 1, T, S, F]`` (Sionna's layout, as
:class:`metacomm.channels.ofdm.OFDMChannel`'s ``h_freq``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sionna.phy.channel import cir_to_ofdm_channel, subcarrier_frequencies
from sionna.phy.channel.tr38901 import TDL

from metacomm._sionna import sionna_device
from metacomm._validation import ConfigError, check_positive_int
from metacomm.channels.ofdm import check_ofdm_channel_settings

__all__ = ["SPEED_OF_LIGHT", "TDL_PROFILES", "TDLTrajectory", "tdl_covariances", "sos_time_correlation"]

SPEED_OF_LIGHT = 299_792_458.0  # m/s (Sionna's value)
TDL_PROFILES = tuple(f"tdl-{x}" for x in "abcde")


def _real(t: torch.Tensor) -> torch.Tensor:
    """Sionna keeps some real profile parameters in complex tensors."""
    return t.real if torch.is_complex(t) else t


def _sionna_tdl(profile: str, delay_spread: float, carrier_frequency: float, num_rx_ant: int, num_tx_ant: int,
                precision: str, device) -> TDL:
    if profile not in TDL_PROFILES:
        raise ConfigError("channel", f"a trajectory channel is one of {', '.join(TDL_PROFILES)}, got {profile!r}")
    return TDL(profile[-1].upper(), delay_spread, carrier_frequency, min_speed=0.0, max_speed=0.0,
               num_rx_ant=num_rx_ant, num_tx_ant=num_tx_ant, precision=precision, device=device)


class TDLTrajectory:
    """The TDL channel of ``profile`` as a function of the distance travelled (module docstring).

    :param profile: ``tdl-a`` ... ``tdl-e``.
    :param delay_spread: RMS delay spread [s]; :param carrier_frequency: [Hz].
    :param num_rx_ant: receive antennas (1..4, uncorrelated); :param num_tx_ant: 1.
    :param fft_size, subcarrier_spacing: the grid's subcarriers (Sionna's frequencies, centred on DC) [Hz].
    :param precision: ``"single"`` or ``"double"``; :param device: where the tensors live.
    """

    def __init__(self, profile: str, *, delay_spread: float, carrier_frequency: float, num_rx_ant: int,
                 num_tx_ant: int = 1, fft_size: int, subcarrier_spacing: float, precision: str = "single",
                 device="cpu", fields: dict | None = None):
        st = check_ofdm_channel_settings(profile, delay_spread=delay_spread, carrier_frequency=carrier_frequency,
                                         speed=0.0, num_rx_ant=num_rx_ant, num_tx_ant=num_tx_ant,
                                         rx_polarization="single", normalize="none", fields=fields)
        profile = st["profile"]
        self.profile, self.delay_spread, self.carrier_frequency = profile, float(delay_spread), float(carrier_frequency)
        self.num_rx_ant, self.num_tx_ant = int(num_rx_ant), int(num_tx_ant)
        self.fft_size = check_positive_int("fft_size", fft_size)
        self.subcarrier_spacing = float(subcarrier_spacing)
        self.precision = precision
        self.device = torch.device(sionna_device(device))
        self.rdtype = torch.float64 if precision == "double" else torch.float32
        self.model = _sionna_tdl(profile, delay_spread, carrier_frequency, num_rx_ant, num_tx_ant, precision,
                                 sionna_device(device))
        m = self.model
        if m._spatial_corr_mat_sqrt is not None or m._rx_corr_mat_sqrt is not None or m._tx_corr_mat_sqrt is not None:
            raise ConfigError("channel", "spatially correlated TDL antennas are not supported by the trajectory")
        self.num_sinusoids = int(m._num_sinusoids)
        self.num_clusters = int(m.num_clusters)
        self.wavenumber = 2.0 * math.pi * self.carrier_frequency / SPEED_OF_LIGHT  # k_c [rad/m]
        self.frequencies = subcarrier_frequencies(self.fft_size, self.subcarrier_spacing, precision=precision,
                                                  device=sionna_device(device))

    @property
    def los(self) -> bool:
        return bool(self.model.los)

    def doppler(self, speed: float) -> float:
        """Maximum Doppler shift [Hz] at ``speed`` [m/s]: :math:`v f_c / c`."""
        return float(speed) * self.carrier_frequency / SPEED_OF_LIGHT

    # -- the per-link random parameters ---------------------------------------------------------------------
    def draw(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The fixed random parameters of ``batch_size`` links, drawn from ``generator`` in Sionna's TDL order."""
        B = check_positive_int("links", batch_size)
        kw = {"dtype": self.rdtype, "device": generator.device, "generator": generator}
        M, N, R, T = self.num_clusters, self.num_sinusoids, self.num_rx_ant, self.num_tx_ant
        torch.rand((B, 1, 1, 1, 1, 1, 1, 1), **kw)  # Sionna's Doppler draw (a speed range); the trajectory's is d
        theta = torch.rand((B, 1, 1, 1, 1, M, 1, N), **kw) * (2 * math.pi / N) - math.pi / N
        phi = torch.rand((B, 1, R, 1, T, M, 1, N), **kw) * 2 * math.pi - math.pi
        out = {"theta": theta.to(self.device), "phi": phi.to(self.device)}
        if self.los:
            out["phi0"] = (torch.rand((B, 1, 1, 1, 1, 1, 1), **kw) * 2 * math.pi - math.pi).to(self.device)
        return out

    # -- gains and responses --------------------------------------------------------------------------------
    def cir(self, params: dict[str, torch.Tensor], distance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Path gains complex ``[B, 1, R, 1, T, M, S]`` and delays ``[B, 1, 1, M]`` [s] at ``distance`` [m]
        (``[S]`` or ``[B, S]``)."""
        m = self.model
        d = torch.as_tensor(distance, dtype=self.rdtype, device=self.device)
        B = params["theta"].shape[0]
        if d.dim() == 1:
            d = d.expand(B, -1)
        if d.dim() != 2 or d.shape[0] != B:
            raise ConfigError("distance", f"expected [S] or [{B}, S] distances, got {list(d.shape)}")
        alpha = _real(m._alpha_const).to(self.device, self.rdtype) + params["theta"]  # [B, 1, 1, 1, 1, M, 1, N]
        arg = self.wavenumber * d[:, None, None, None, None, None, :, None] * torch.cos(alpha) + params["phi"]
        h = torch.complex(torch.cos(arg), torch.sin(arg)).sum(-1) / math.sqrt(self.num_sinusoids)
        h = torch.sqrt(_real(m._mean_powers).to(self.device, self.rdtype))[None, None, None, None, None, :, None] * h
        if self.los:
            arg0 = self.wavenumber * d[:, None, None, None, None, :] * torch.cos(
                _real(m._los_angle_of_arrival).to(self.device, self.rdtype)) + params["phi0"][..., 0]
            spec = torch.complex(torch.cos(arg0), torch.sin(arg0))[:, :, :, :, :, None, :]  # [B,1,1,1,1,1,S]
            first = spec * torch.sqrt(_real(m._los_power).to(self.device, self.rdtype)) + h[:, :, :, :, :, :1, :]
            h = torch.cat([first, h[:, :, :, :, :, 1:, :]], dim=5)
        delays = (m._delays.to(self.device, self.rdtype) * self.delay_spread if m._scale_delays
                  else m._delays.to(self.device, self.rdtype) * 1e-9)
        return h, delays[None, None, None, :].expand(B, 1, 1, -1)

    def h_freq(self, params: dict[str, torch.Tensor], distance: torch.Tensor,
               dtype: torch.dtype = torch.complex64) -> torch.Tensor:
        """The frequency response complex ``[B, 1, R, 1, T, S, F]`` at ``distance`` [m] (``[S]`` or ``[B, S]``)."""
        a, tau = self.cir(params, distance)
        return cir_to_ofdm_channel(self.frequencies, a, tau, False).to(dtype)


# -- second-order statistics ------------------------------------------------------------------------------------
def sos_time_correlation(x: np.ndarray, alpha0: np.ndarray, *, points: int = 64) -> np.ndarray:
    r""":math:`\rho(x) = \frac1N \sum_n \mathbb{E}_\theta e^{j x \cos(\alpha^0_n + \theta)}`, :math:`\theta \sim
    U(-\pi/N, \pi/N)` (Gauss-Legendre, ``points`` nodes), for phase lags ``x = k_c \Delta d`` [rad] (any shape)."""
    a0 = np.asarray(alpha0, dtype=np.float64).reshape(-1)
    N = a0.size
    nodes, weights = np.polynomial.legendre.leggauss(points)
    theta = nodes * math.pi / N  # [-pi/N, pi/N]
    w = weights / 2.0  # uniform density on the interval: weights sum to 1
    x = np.asarray(x, dtype=np.float64)
    ang = a0[:, None] + theta[None, :]  # [N, Q]
    phase = np.exp(1j * x[..., None, None] * np.cos(ang))  # [..., N, Q]
    return (phase * w).sum(-1).mean(-1)


def tdl_covariances(traj: TDLTrajectory, speed: float, *, num_ofdm_symbols: int, symbol_duration: float,
                    subcarriers=None, dtype: torch.dtype = torch.complex64, device="cpu"
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Exact time ``[S, S]``, frequency ``[F', F']`` and space ``[R, R]`` covariances of ``traj``'s channel at
    ``speed`` [m/s] (module docstring), on ``subcarriers`` (indices into the ``fft_size`` subcarriers; all by
    default), normalised like :meth:`metacomm.channels.ofdm.OFDMChannel.covariances` (each diagonal = the mean power
    per resource element, 1 for the TDL profiles). ``symbol_duration``: :math:`T_{sym}` [s]."""
    m = traj.model
    p = _real(m._mean_powers).detach().cpu().double().numpy()
    tau = (m._delays.detach().cpu().double().numpy() * traj.delay_spread if m._scale_delays
           else m._delays.detach().cpu().double().numpy() * 1e-9)
    p_los = float(_real(m._los_power).detach().cpu()) if traj.los else 0.0
    total = p.sum() + p_los
    f = traj.frequencies.detach().cpu().double().numpy()
    if subcarriers is not None:
        f = f[np.asarray(list(subcarriers), dtype=np.int64)]
    df = f[:, None] - f[None, :]
    pw = p.copy()
    pw[0] += p_los
    cf = (pw[None, None, :] * np.exp(-2j * math.pi * df[..., None] * tau[None, None, :])).sum(-1)
    S = check_positive_int("num_ofdm_symbols", num_ofdm_symbols)
    lag = (np.arange(S)[:, None] - np.arange(S)[None, :]) * symbol_duration * float(speed) * traj.wavenumber
    rho = sos_time_correlation(lag, _real(m._alpha_const).detach().cpu().double().numpy())
    if p_los:
        theta_los = float(_real(m._los_angle_of_arrival).detach().cpu())
        rho = (p.sum() * rho + p_los * np.exp(1j * lag * math.cos(theta_los))) / total
    ct = total * rho
    cs = p.sum() * np.eye(traj.num_rx_ant) + p_los  # the specular component is common to the antennas
    return tuple(torch.as_tensor(c, dtype=dtype, device=device) for c in (ct, cf, cs))
