r"""3GPP TR 38.901 channels in the frequency domain of an OFDM resource grid (CDL, TDL, UMi), via Sionna.

Model (Sionna 2.x blocks): the channel model draws a channel impulse response per batch example,
path gains :math:`a_m(t)` sampled once per OFDM symbol and delays :math:`\tau_m`;
:class:`sionna.phy.channel.GenerateOFDMChannel` turns it into the frequency response of every resource element
(no ISI and no ICI: the cyclic prefix is assumed long enough and the channel constant within a symbol),

.. math::
    H_{r,t}[s, f] = \sum_m a_{m,r,t}(s\,T_{\mathrm{sym}})\, e^{-j 2\pi f \Delta_f \tau_m},
    \qquad T_{\mathrm{sym}} = (1 + N_{\mathrm{CP}}/N_{\mathrm{FFT}}) / \Delta_f,

for receive antenna ``r``, transmit antenna ``t``, OFDM symbol ``s`` and subcarrier ``f`` (Sionna's subcarrier
frequencies, centred on DC), and :meth:`OFDMChannel.apply` computes
:math:`y_r[s,f] = \sum_t H_{r,t}[s,f]\, x_t[s,f] + \sqrt{N_0}\, w_r[s,f]` with :class:`ApplyOFDMChannel` and
metacomm's own noise :math:`w \sim \mathcal{CN}(0, 1)` (``N0`` per complex resource element, ``N0/2`` per
real dimension).

Profiles (``profile``):

* ``cdl-a`` ... ``cdl-e``: :class:`sionna.phy.channel.tr38901.CDL` (clusters with angles, antenna patterns and
  polarisation; D and E have a LoS cluster), uplink: the UE (one vertically polarised TR 38.901-pattern antenna) is
  the transmitter, the base station's array (below) the receiver; ``delay_spread`` [s] scales the normalised
  delays, the UE moves at ``speed`` [m/s] in a random direction (:math:`f_D = v f_c / c`).
* ``tdl-a`` ... ``tdl-e``: :class:`sionna.phy.channel.tr38901.TDL`, ``num_rx_ant`` spatially uncorrelated
  receive antennas (no antenna pattern, no polarisation), Jakes-like sum-of-sinusoids fading at ``speed``.
* ``umi``: :class:`sionna.phy.channel.tr38901.UMi` (urban micro street canyon, uplink, omnidirectional UE
  antenna, pathloss and shadow fading off, as in Sionna's "OFDM MIMO channel estimation" tutorial). Per batch
  example a fresh single-sector topology is drawn **here, from the explicit generator** (Sionna's
  ``gen_single_sector_topology`` draws from its global generator): BS at the origin, 10 m high, facing +x; the UE
  outdoors, 1.5 m high, dropped uniformly over the annular 120-degree sector ``10 m <= d_2D <= 100 m``, random
  heading, speed ``speed`` in a random horizontal direction; the LoS state is drawn with TR 38.901 Table 7.4.2-1's
  UMi probability :math:`P = 1` for :math:`d \le 18` m, else :math:`18/d + e^{-d/36}(1 - 18/d)`. The delay
  spread comes from UMi's large-scale parameters (``delay_spread`` is ignored).

Receive array (CDL and UMi): ``rx_polarization = "single"``: ``num_rx_ant`` vertically polarised elements in a
row (half-wavelength spacing); ``"VH"``: ``num_rx_ant / 2`` dual-polarised elements (vertical + horizontal,
Sionna's neural-receiver tutorial: one dual-polarised element for 2 antennas); ``"cross"``: the same with +-45
degree slants; ``"auto"`` (default): ``"VH"`` for an even count, ``"single"`` otherwise. All with the TR 38.901
element pattern at ``carrier_frequency``. With a vertically polarised UE, a ``"VH"`` array's horizontal element
receives mostly cross-polar power (measured with ``normalize="grid"``: CDL-C about 0.35-0.5 of the mean power
per grid against 1.5-1.65 on the vertical element; UMi 0.32 against 1.68), so per-antenna powers are not equal;
``"cross"`` balances them.

Power normalisation (``normalize``):

* ``"grid"`` (default, Sionna's ``normalize_channel=True``): each batch example's response is scaled so that its
  mean :math:`|H|^2` over the receive and transmit antennas, the OFDM symbols and **all** ``fft_size``
  subcarriers (guards included) is exactly 1.
* ``"none"``: Sionna's raw response. TDL: :math:`\mathbb{E}|H_{r,t}[s,f]|^2 = \sum_m p_m = 1` on every resource
  element and antenna (the tabulated powers are normalised); CDL/UMi: includes the antenna patterns' gains.

Randomness: every draw comes from the caller's :class:`torch.Generator`. Sionna's channel models draw through
``self.torch_rng`` of several sub-objects (the model, its ray / LSP / coefficient generators, the UMi scenario);
at construction every Sionna object of the model gets a subclass (same class name) whose ``torch_rng`` returns
the explicit generator during :meth:`OFDMChannel.sample_state`, so Sionna's global generators (and torch's
default one) are neither used nor changed. The one remaining global draw in Sionna's UMi (the LoS Bernoulli
draw) is avoided by passing the LoS state drawn here. ``generator=None`` draws a seed from torch's default
generator.

Interface: like a metacomm :class:`~metacomm.channels.Channel` (``sample_state`` / ``apply`` / ``forward`` with an
explicit generator and optional pre-drawn noise), but on resource grids ``[batch, 1, antennas, symbols,
subcarriers]`` instead of ``[batch, n]`` blocks, so it is not a ``Channel`` subclass and not in
:func:`~metacomm.channels.make_channel`.

State: ``{"h_freq": complex [batch, 1, num_rx_ant, 1, num_tx_ant, num_ofdm_symbols, fft_size]}`` -- Sionna's
layout ``[batch, num_rx, num_rx_ant, num_tx, num_tx_ant, symbols, subcarriers]``, so a genie receiver can give it
to Sionna's OFDM blocks directly (after :class:`sionna.phy.ofdm.RemoveNulledSubcarriers`).

Covariances (:meth:`OFDMChannel.covariances`): the time ``[S, S]``, frequency ``[F', F']`` and space
``[R, R]`` covariance matrices of :math:`H` on chosen subcarriers, estimated by Monte Carlo over ``num_draws``
channel draws from a generator seeded with ``seed`` (Sionna's channel-estimation tutorial's estimator, e.g.
:math:`\hat R^{(f)} = \frac{1}{K S R}\sum_{k,s,r} h_{k,r,s}h_{k,r,s}^{\mathrm H}`, zero mean assumed); cached per
(channel settings, subcarriers, draws, seed, precision) for the process's lifetime.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import partial

import torch
from sionna.phy import Object
from sionna.phy.channel import ApplyOFDMChannel, GenerateOFDMChannel
from sionna.phy.channel.tr38901 import CDL, TDL, Antenna, AntennaArray, UMi
from sionna.phy.constants import SPEED_OF_LIGHT
from sionna.phy.ofdm import ResourceGrid
from torch import nn

from metacomm._sionna import SionnaBlocks
from metacomm._validation import (
    ConfigError,
    check_choice,
    check_memory,
    check_nonneg_int,
    check_positive_int,
)
from metacomm.channels._sampling import check_complex_dtype, resolve_devices
from metacomm.channels.base import complex_normal, make_generator
from metacomm.channels.units import broadcast_no

__all__ = ["OFDMChannel", "PROFILES", "OFDM_NORMALIZATIONS", "RX_POLARIZATIONS", "MAX_RX_ANT",
           "check_ofdm_channel_settings", "explicit_rng_objects", "explicit_rng"]

PROFILES = (*(f"cdl-{c}" for c in "abcde"), *(f"tdl-{c}" for c in "abcde"), "umi")
OFDM_NORMALIZATIONS = ("grid", "none")
RX_POLARIZATIONS = ("auto", "single", "VH", "cross")
MAX_RX_ANT = 4
TX_ANT_CHOICES = (1, 2)

# UMi single-sector drop (see the module docstring)
UMI_BS_HEIGHT = 10.0   # m
UMI_UT_HEIGHT = 1.5    # m
UMI_MIN_DISTANCE = 10.0   # m (2D)
UMI_MAX_DISTANCE = 100.0  # m (2D)
UMI_SECTOR = 2.0 * math.pi / 3.0  # rad


# -- explicit generators for Sionna objects ------------------------------------------------------------------
class _ExplicitRNG:
    """Mixin: ``torch_rng`` is ``_explicit_generator`` while one is set, else Sionna's own."""

    _explicit_generator: torch.Generator | None = None

    @property
    def torch_rng(self) -> torch.Generator:  # noqa: D401 - overrides sionna.phy.Object.torch_rng
        g = self._explicit_generator
        return g if g is not None else super().torch_rng


_EXPLICIT_CLASSES: dict[type, type] = {}


def _explicit_class(cls: type) -> type:
    # same name, qualname and module: Sionna dispatches on type(self).__name__ in places (UMi's scenario_kind)
    sub = _EXPLICIT_CLASSES.get(cls)
    if sub is None:
        sub = _EXPLICIT_CLASSES[cls] = type(cls.__name__, (_ExplicitRNG, cls),
                                            {"__qualname__": cls.__qualname__, "__module__": cls.__module__})
    return sub


def explicit_rng_objects(module: nn.Module) -> list:
    """Give every Sionna object in ``module`` (itself and its sub-modules) an explicit-generator subclass.

    Returns the objects; :func:`explicit_rng` sets their generator for the duration of a draw. Idempotent.
    """
    objs = []
    for m in module.modules():
        if isinstance(m, Object):
            if not isinstance(m, _ExplicitRNG):
                m.__class__ = _explicit_class(type(m))
            objs.append(m)
    return objs


@contextmanager
def explicit_rng(objs, generator: torch.Generator):
    """Within the block, every object of ``objs`` (from :func:`explicit_rng_objects`) draws from ``generator``."""
    for o in objs:
        o._explicit_generator = generator
    try:
        yield
    finally:
        for o in objs:
            o._explicit_generator = None


# -- validation ----------------------------------------------------------------------------------------------
def _finite_number(field: str, value, what: str, *, positive: bool) -> float:
    bound = "> 0" if positive else ">= 0"
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not math.isfinite(v) or (v <= 0 if positive else v < 0):
        raise ConfigError(field, f"{what} must be a finite number {bound}, got {value!r}")
    return v


def check_ofdm_channel_settings(profile, *, delay_spread, carrier_frequency, speed, num_rx_ant, num_tx_ant=1,
                                rx_polarization="auto", normalize="grid", fields: dict | None = None) -> dict:
    """Validate the channel settings; returns them normalised (profile lower-case, numbers as floats/ints).

    ``fields`` maps an argument name to the config key to name in errors (e.g. ``{"profile": "channel"}``).
    Raises :class:`ConfigError` naming the key and the allowed values.
    """
    f = {"profile": "profile", "delay_spread": "delay_spread", "carrier_frequency": "carrier_frequency",
         "speed": "speed", "num_rx_ant": "num_rx_ant", "num_tx_ant": "num_tx_ant",
         "rx_polarization": "rx_polarization", "normalize": "normalize", **(fields or {})}
    prof = profile.strip().lower() if isinstance(profile, str) else profile
    check_choice(f["profile"], prof, PROFILES)
    out = {"profile": prof}
    out["delay_spread"] = _finite_number(f["delay_spread"], delay_spread, "the RMS delay spread [s]", positive=True)
    if out["delay_spread"] > 1e-5:
        raise ConfigError(f["delay_spread"], f"the RMS delay spread is in seconds (TR 38.901: 10e-9 very short ... "
                                             f"1000e-9 very long); {delay_spread!r} s is more than 10 us")
    out["carrier_frequency"] = _finite_number(f["carrier_frequency"], carrier_frequency,
                                              "the carrier frequency [Hz]", positive=True)
    out["speed"] = _finite_number(f["speed"], speed, "the UE speed [m/s]", positive=False)
    if out["speed"] >= SPEED_OF_LIGHT:
        raise ConfigError(f["speed"], f"the UE speed is in m/s and must be below the speed of light, got {speed!r}")
    try:
        r = check_positive_int(f["num_rx_ant"], num_rx_ant)
    except ConfigError:
        r = -1
    if not 1 <= r <= MAX_RX_ANT:
        raise ConfigError(f["num_rx_ant"], f"receive antennas must be an integer in 1..{MAX_RX_ANT}, "
                                           f"got {num_rx_ant!r}")
    out["num_rx_ant"] = r
    try:
        t = check_positive_int(f["num_tx_ant"], num_tx_ant)
    except ConfigError:
        t = -1
    if t not in TX_ANT_CHOICES:
        raise ConfigError(f["num_tx_ant"], f"transmit antennas: allowed {', '.join(map(str, TX_ANT_CHOICES))}, "
                                           f"got {num_tx_ant!r}")
    out["num_tx_ant"] = t
    pol = check_choice(f["rx_polarization"], rx_polarization, RX_POLARIZATIONS)
    if pol == "auto":
        pol = "VH" if r % 2 == 0 else "single"
    if pol in ("VH", "cross") and r % 2:
        raise ConfigError(f["rx_polarization"], f"{pol!r} (dual-polarised elements) needs an even number of "
                                                f"receive antennas, got {r}; allowed for {r}: single, auto")
    out["rx_polarization"] = pol
    out["normalize"] = check_choice(f["normalize"], normalize, OFDM_NORMALIZATIONS)
    return out


# -- Sionna blocks per device and precision ------------------------------------------------------------------
def _rx_array(num_rx_ant: int, polarization: str, carrier_frequency: float, precision: str, device: str):
    if polarization == "single":
        return AntennaArray(1, num_rx_ant, "single", "V", "38.901", carrier_frequency, precision=precision,
                            device=device)
    return AntennaArray(1, num_rx_ant // 2, "dual", polarization, "38.901", carrier_frequency, precision=precision,
                        device=device)


def _ue_antenna(num_tx_ant: int, pattern: str, carrier_frequency: float, precision: str, device: str):
    """The UE: one vertically polarised element, or for 2 transmit antennas one cross-polarised (+-45 deg) one."""
    if num_tx_ant == 1:
        return Antenna("single", "V", pattern, carrier_frequency, precision=precision, device=device)
    return AntennaArray(1, 1, "dual", "cross", pattern, carrier_frequency, precision=precision, device=device)


def _build(settings: tuple, precision: str, *, device: str):
    """(model, its Sionna objects, GenerateOFDMChannel, ApplyOFDMChannel) for one device and precision."""
    s = dict(settings)
    prof, fc, v = s["profile"], s["carrier_frequency"], s["speed"]
    family, letter = (prof.split("-") + [""])[:2]
    if family == "cdl":
        ut = _ue_antenna(s["num_tx_ant"], "38.901", fc, precision, device)
        bs = _rx_array(s["num_rx_ant"], s["rx_polarization"], fc, precision, device)
        # min_speed = max_speed: in Sionna 2.2 CDL's max_speed defaults to 0 (not to min_speed as in 1.x), so
        # CDL(min_speed=v) alone would draw speeds uniformly in [0, v]
        model = CDL(letter.upper(), s["delay_spread"], fc, ut, bs, "uplink", min_speed=v, max_speed=v,
                    precision=precision, device=device)
    elif family == "tdl":
        model = TDL(letter.upper(), s["delay_spread"], fc, min_speed=v, max_speed=v, num_rx_ant=s["num_rx_ant"],
                    num_tx_ant=s["num_tx_ant"], precision=precision, device=device)
    else:  # umi
        ut = _ue_antenna(s["num_tx_ant"], "omni", fc, precision, device)
        bs = _rx_array(s["num_rx_ant"], s["rx_polarization"], fc, precision, device)
        model = UMi(fc, "low", ut, bs, "uplink", enable_pathloss=False, enable_shadow_fading=False,
                    precision=precision, device=device)
    objs = explicit_rng_objects(model)
    grid = ResourceGrid(s["num_ofdm_symbols"], s["fft_size"], s["subcarrier_spacing"],
                        cyclic_prefix_length=s["cyclic_prefix_length"], precision=precision, device=device)
    generate = GenerateOFDMChannel(model, grid, normalize_channel=s["normalize"] == "grid", precision=precision,
                                   device=device)
    apply = ApplyOFDMChannel(precision=precision, device=device)
    return model, objs, generate, apply


_COV_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


class OFDMChannel(nn.Module):
    r"""3GPP channel on an OFDM resource grid (see the module docstring for the model, normalisation, randomness).

    :param profile: ``"cdl-a"`` ... ``"cdl-e"``, ``"tdl-a"`` ... ``"tdl-e"`` or ``"umi"``.
    :param fft_size: subcarriers of the grid (guards and DC included; the response is computed on all of them).
    :param num_ofdm_symbols: OFDM symbols per grid (one channel time sample per symbol).
    :param subcarrier_spacing: :math:`\Delta_f` [Hz].
    :param cyclic_prefix_length: CP [samples]; only sets the symbol duration
        :math:`T_{\mathrm{sym}} = (1 + N_{CP}/N_{FFT})/\Delta_f` [s] between the channel's time samples.
    :param delay_spread: RMS delay spread [s] (CDL/TDL; ignored for UMi).
    :param carrier_frequency: carrier frequency [Hz] (Doppler, antenna element spacing).
    :param speed: UE speed [m/s] (constant within a batch; each grid is a fresh realisation).
    :param num_rx_ant: receive antennas, 1..4.
    :param num_tx_ant: transmit antennas (UE), 1 or 2 (CDL/UMi: one cross-polarised element; TDL: uncorrelated).
    :param rx_polarization: ``"auto"``, ``"single"``, ``"VH"`` or ``"cross"`` (CDL/UMi receive array).
    :param normalize: ``"grid"`` or ``"none"``.
    :param field_names: config keys to name in errors instead of the argument names (``{"profile": "channel"}``).
    """

    def __init__(self, profile: str = "cdl-c", *, fft_size: int = 128, num_ofdm_symbols: int = 14,
                 subcarrier_spacing: float = 30e3, cyclic_prefix_length: int = 0, delay_spread: float = 100e-9,
                 carrier_frequency: float = 3.5e9, speed: float = 0.0, num_rx_ant: int = 1, num_tx_ant: int = 1,
                 rx_polarization: str = "auto", normalize: str = "grid", field_names: dict | None = None):
        super().__init__()
        fn = {"fft_size": "fft_size", "num_ofdm_symbols": "num_ofdm_symbols",
              "subcarrier_spacing": "subcarrier_spacing", "cyclic_prefix_length": "cyclic_prefix_length",
              **(field_names or {})}
        s = check_ofdm_channel_settings(profile, delay_spread=delay_spread, carrier_frequency=carrier_frequency,
                                        speed=speed, num_rx_ant=num_rx_ant, num_tx_ant=num_tx_ant,
                                        rx_polarization=rx_polarization, normalize=normalize, fields=field_names)
        s["fft_size"] = check_positive_int(fn["fft_size"], fft_size, maximum=4096)
        s["num_ofdm_symbols"] = check_positive_int(fn["num_ofdm_symbols"], num_ofdm_symbols, maximum=1024)
        s["subcarrier_spacing"] = _finite_number(fn["subcarrier_spacing"], subcarrier_spacing,
                                                 "the subcarrier spacing [Hz]", positive=True)
        s["cyclic_prefix_length"] = check_nonneg_int(fn["cyclic_prefix_length"], cyclic_prefix_length,
                                                     maximum=s["fft_size"])
        if s["profile"] == "umi":
            s["delay_spread"] = None
        self.settings = s
        for k, v in s.items():
            setattr(self, k, v)
        self._blocks = SionnaBlocks(partial(_build, tuple(sorted(s.items()))))

    # -- geometry ------------------------------------------------------------------------------------------
    @property
    def family(self) -> str:
        """``"cdl"``, ``"tdl"`` or ``"umi"``."""
        return self.profile.split("-")[0]

    @property
    def ofdm_symbol_duration(self) -> float:
        """:math:`T_{\\mathrm{sym}}` [s], CP included."""
        return (1.0 + self.cyclic_prefix_length / self.fft_size) / self.subcarrier_spacing

    @property
    def doppler(self) -> float:
        """Maximum Doppler shift :math:`f_D = v f_c / c` [Hz]."""
        return self.speed * self.carrier_frequency / SPEED_OF_LIGHT

    def state_shape(self, batch_size: int) -> tuple[int, ...]:
        return (batch_size, 1, self.num_rx_ant, 1, self.num_tx_ant, self.num_ofdm_symbols, self.fft_size)

    def key(self) -> tuple:
        """The settings as a hashable tuple (cache key)."""
        return tuple(sorted(self.settings.items()))

    def extra_repr(self) -> str:
        ds = "from UMi LSPs" if self.delay_spread is None else f"{self.delay_spread:.3g} s"
        pol = "" if self.family == "tdl" else f" ({self.rx_polarization})"
        return (f"profile={self.profile!r}, delay_spread={ds}, carrier_frequency={self.carrier_frequency:.4g} Hz, "
                f"speed={self.speed:g} m/s (f_D={self.doppler:.1f} Hz), rx={self.num_rx_ant}{pol}, "
                f"tx={self.num_tx_ant}, grid={self.num_ofdm_symbols}x{self.fft_size} "
                f"@ {self.subcarrier_spacing:g} Hz, normalize={self.normalize!r}")

    # -- draws ---------------------------------------------------------------------------------------------
    def _umi_topology(self, b: int, generator: torch.Generator, dtype: torch.dtype, device) -> tuple:
        def u(*shape):
            return torch.rand(shape, generator=generator, dtype=dtype, device=device)

        lo, hi = UMI_MIN_DISTANCE, UMI_MAX_DISTANCE
        d = torch.sqrt(u(b, 1) * (hi * hi - lo * lo) + lo * lo)  # uniform over the annular sector's area
        phi = (u(b, 1) - 0.5) * UMI_SECTOR
        ut_loc = torch.stack([d * torch.cos(phi), d * torch.sin(phi), torch.full_like(d, UMI_UT_HEIGHT)], -1)
        bs_loc = torch.zeros(b, 1, 3, dtype=dtype, device=device)
        bs_loc[..., 2] = UMI_BS_HEIGHT
        ut_orient = torch.zeros(b, 1, 3, dtype=dtype, device=device)
        ut_orient[..., 0] = u(b, 1) * 2.0 * math.pi
        bs_orient = torch.zeros(b, 1, 3, dtype=dtype, device=device)
        heading = u(b, 1) * 2.0 * math.pi
        vel = torch.stack([self.speed * torch.cos(heading), self.speed * torch.sin(heading),
                           torch.zeros_like(heading)], -1)
        indoor = torch.zeros(b, 1, dtype=torch.bool, device=device)
        dd = d[:, None, :]  # [batch, num_bs, num_ut]
        p_los = torch.where(dd <= 18.0, torch.ones_like(dd), 18.0 / dd + torch.exp(-dd / 36.0) * (1.0 - 18.0 / dd))
        los = u(b, 1, 1) < p_los
        return ut_loc, bs_loc, ut_orient, bs_orient, vel, indoor, los

    def sample_state(self, batch_size: int, num_symbols=None, *, generator: torch.Generator | None = None,
                     device=None, dtype=torch.complex64) -> dict[str, torch.Tensor]:
        """One channel realisation per batch example: ``{"h_freq": complex [B, 1, R, 1, T, S, F]}``.

        ``num_symbols`` is accepted for symmetry with :meth:`metacomm.channels.Channel.sample_state` and must be
        ``None`` or the grid's ``num_ofdm_symbols``. Draws happen on the generator's device; the result is on
        ``device`` (default: the generator's device).
        """
        check_complex_dtype(dtype)
        b = check_positive_int("batch_size", batch_size)
        if num_symbols is not None and num_symbols != self.num_ofdm_symbols:
            raise ConfigError("num_symbols", f"the grid has {self.num_ofdm_symbols} OFDM symbols, got {num_symbols!r}")
        check_memory("batch_size", 8.0 * 2 * math.prod(self.state_shape(b)), "a batch of OFDM channel responses")
        draw, out = resolve_devices(generator, device)
        if generator is None:
            generator = make_generator(int(torch.randint(0, 2**62, (1,)).item()), draw)
        precision = "double" if dtype == torch.complex128 else "single"
        model, objs, generate, _ = self._blocks.get(draw, precision)
        rdt = torch.float64 if precision == "double" else torch.float32
        with explicit_rng(objs, generator):
            if self.family == "umi":
                topo = self._umi_topology(b, generator, rdt, draw)
                model.reset_topology()  # fresh buffers: the draw does not depend on the previous batch
                model.set_topology(*topo)
            h = generate(b)
        return {"h_freq": h.to(dtype=dtype, device=out)}

    def check_state(self, state: dict, batch_size: int | None = None) -> torch.Tensor:
        if not isinstance(state, dict) or "h_freq" not in state:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ConfigError("state", f"an OFDM channel state needs key 'h_freq'; got {got}")
        h = state["h_freq"]
        want = self.state_shape(h.shape[0] if batch_size is None else batch_size)
        if tuple(h.shape) != want:
            raise ConfigError("state", f"'h_freq' must be {list(want)} [batch, 1, rx ant, 1, tx ant, symbols, "
                                       f"subcarriers], got {list(h.shape)}")
        return h

    def apply(self, x: torch.Tensor, no, state: dict, *, generator: torch.Generator | None = None,
              noise: torch.Tensor | None = None) -> torch.Tensor:
        """``y = H x + sqrt(N0) w``: ``x`` complex ``[B, 1, T, S, F]`` (Sionna's resource-grid layout, Es = 1 per
        resource element) -> ``y`` ``[B, 1, R, S, F]``.

        ``no``: N0 per complex resource element (linear), a number or ``[B]``; ``noise``: optional pre-drawn
        ``CN(0, 1)`` of ``y``'s shape (else drawn from ``generator``).
        """
        want = (x.shape[0], 1, self.num_tx_ant, self.num_ofdm_symbols, self.fft_size)
        if not torch.is_complex(x) or tuple(x.shape) != want:
            raise ConfigError("x", f"expected a complex resource grid {list(want)}, got {x.dtype} {list(x.shape)}")
        h = self.check_state(state, x.shape[0]).to(dtype=x.dtype, device=x.device)
        precision = "double" if x.dtype == torch.complex128 else "single"
        _, _, _, apply = self._blocks.get(x.device, precision)
        y = apply(x, h)
        no_t = broadcast_no(no, y, field="no", allow_zero=True, per_block=True)
        if noise is None:
            noise = complex_normal(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        elif tuple(noise.shape) != tuple(y.shape):
            raise ConfigError("noise", f"must have the output's shape {list(y.shape)}, got {list(noise.shape)}")
        return y + torch.sqrt(no_t).to(y.dtype) * noise

    def forward(self, x: torch.Tensor, no, *, state: dict | None = None, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None, return_state: bool = False):
        if state is None:
            state = self.sample_state(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        y = self.apply(x, no, state, generator=generator, noise=noise)
        return (y, state) if return_state else y

    # -- second-order statistics ---------------------------------------------------------------------------
    def covariances(self, *, num_draws: int = 10_000, seed: int = 1, subcarriers=None, batch_size: int = 500,
                    device=None, dtype=torch.complex64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Monte-Carlo time, frequency and space covariance matrices of :math:`H` (see the module docstring).

        :param num_draws: channel realisations (grids) averaged; the estimate's relative error per entry is about
            :math:`1/\sqrt{\text{num\_draws}\cdot\text{(averaged dims)}}` for weakly correlated entries.
        :param seed: seed of the generator the draws come from (the estimate is a function of the settings and
            the seed only).
        :param subcarriers: subcarrier indices (0..fft_size-1) to keep, e.g. the effective (non-null) ones; all
            by default.
        :returns: ``(cov_time [S, S], cov_freq [F', F'], cov_space [R, R])`` complex, on ``device`` (CPU default),
            each normalised by the number of terms averaged.
        """
        n = check_positive_int("cov_draws", num_draws, maximum=10**7)
        seed = check_nonneg_int("cov_seed", seed)
        sub = tuple(range(self.fft_size)) if subcarriers is None else tuple(int(i) for i in subcarriers)
        if not sub or min(sub) < 0 or max(sub) >= self.fft_size:
            raise ConfigError("subcarriers", f"indices must lie in 0..{self.fft_size - 1}")
        key = (self.key(), sub, n, seed, str(dtype))
        cached = _COV_CACHE.get(key)
        if cached is None:
            g = make_generator(seed, "cpu")
            idx = torch.tensor(sub)
            S, F, R = self.num_ofdm_symbols, len(sub), self.num_rx_ant
            ct = torch.zeros(S, S, dtype=torch.complex128)
            cf = torch.zeros(F, F, dtype=torch.complex128)
            cs = torch.zeros(R, R, dtype=torch.complex128)
            done = 0
            while done < n:
                b = min(batch_size, n - done)
                h = self.sample_state(b, generator=g, device="cpu", dtype=dtype)["h_freq"]
                h = h[:, 0, :, 0, 0][..., idx].to(torch.complex128)  # [b, R, S, F']
                cf += torch.einsum("brsf,brsg->fg", h, h.conj())
                ct += torch.einsum("brsf,brtf->st", h, h.conj())
                cs += torch.einsum("brsf,bqsf->rq", h, h.conj())
                done += b
            cached = ((ct / (n * R * F)).to(dtype), (cf / (n * R * S)).to(dtype), (cs / (n * S * F)).to(dtype))
            _COV_CACHE[key] = cached
        dev = torch.device("cpu") if device is None else torch.device(device)
        return tuple(c.to(dev) for c in cached)
