r"""A 5G NR PUSCH link on Sionna's own blocks: :class:`sionna.phy.nr.PUSCHTransmitter` (TB CRC, 5G LDPC, rate
matching, scrambling, layer mapping, 5G DMRS on the resource grid) -> metacomm's 3GPP channel in the frequency domain
(:class:`metacomm.channels.ofdm.OFDMChannel`) -> :class:`sionna.phy.nr.PUSCHReceiver` (channel estimation, LMMSE
detection, TB decoding with the CRC status).

Chain per slot (one transport block per slot and UE; ``L`` = ``num_layers`` (1 or 2) layers from as many transmit
antennas)::

    b [B, 1, K_TB] --PUSCHTransmitter--> x [B, 1, L, S, F] --OFDMChannel: y = H x + sqrt(N0) w--> y [B, 1, R, S, F]
      --PUSCHReceiver(channel_estimator)--> (b_hat [B, 1, K_TB], tb_crc_status [B, 1])

``K_TB`` = :attr:`PUSCHLinkConfig.k` (TS 38.214 transport-block size of the MCS and grid), ``F = 12 num_prb``,
``S = 14``. **One block = one transport block**; a block error is any wrong information bit of the TB (the TB CRC
status is recorded too: ``crc_fail``).

Receivers (``receiver``; each says what it knows):

* ``ls-lin`` (default, :class:`~sionna.phy.nr.PUSCHReceiver`'s own): LS at the DMRS + linear interpolation
  (:class:`~sionna.phy.nr.PUSCHLSChannelEstimator`, ``interpolation_type="lin"``) + LMMSE detection; knows the
  DMRS and N0.
* ``ls-nn``: the same with nearest-neighbour interpolation.
* ``perfect-csi``: the slot's true channel (``PUSCHReceiver(channel_estimator="perfect")``) -- the genie.
* ``ls-lin-kbest`` / ``perfect-csi-kbest``: the same estimates with Sionna's :class:`~sionna.phy.ofdm.KBestDetector`
  (list size ``kbest_k``) instead of LMMSE detection: near-ML detection of several layers (with one layer it equals
  ML symbol detection).

(``lmmse-cov`` is not offered for ``nr-pusch``: refused with the list of its receivers.)

**Eb/N0** (Sionna's PUSCH convention): ``N0 = ebnodb2no(ebno_db, m, r, resource_grid)`` -- Sionna's
:func:`~sionna.phy.utils.ebnodb2no` with the TB's modulation order ``m`` and target code rate ``r`` and the resource
grid (the DMRS and CP energy charged to Eb).

**Randomness**: the TB bits ``[B, 1, K_TB]``, the channel (:meth:`OFDMChannel.sample_state`) and the noise ``[B, 1,
R, S, F]`` are drawn, in this order, from the caller's explicit generator; Sionna's PUSCH blocks draw nothing (the
scrambling sequence is a function of the RNTI/ID settings).

A link TOML file for it has ``kind = "nr-pusch"`` and the keys of :class:`PUSCHLinkConfig`; the built-in preset is
``nr-pusch`` (``metacomm/codecs/ofdm_links/nr-pusch.toml``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from metacomm._sionna import SionnaBlocks, sionna_device
from metacomm._validation import ConfigError, check_choice, check_memory, check_positive_int
from metacomm.channels.base import complex_normal
from metacomm.channels.ofdm import OFDMChannel, check_ofdm_channel_settings
from metacomm.codecs.base import random_bits

__all__ = ["PUSCHLinkConfig", "PUSCHLink", "PUSCH_RECEIVERS", "PUSCH_RECEIVER_HELP", "pusch_config_from_dict"]

PUSCH_RECEIVER_HELP = {
    "ls-lin": "PUSCHReceiver's own: LS at the DMRS + linear interpolation + LMMSE detection (knows the DMRS, N0)",
    "ls-nn": "LS at the DMRS + nearest-neighbour interpolation + LMMSE detection (knows the DMRS, N0)",
    "perfect-csi": "the true channel + LMMSE detection (genie reference: knows H and N0)",
    "ls-lin-kbest": "LS + linear interpolation + K-best detection of the layers (near-ML; knows the DMRS, N0)",
    "perfect-csi-kbest": "the true channel + K-best detection (genie channel, near-ML detection)",
}
PUSCH_RECEIVERS = tuple(PUSCH_RECEIVER_HELP)
SUBCARRIER_SPACINGS_KHZ = (15, 30, 60)


@dataclass
class PUSCHLinkConfig:
    """Settings of the NR PUSCH link (keys of a ``kind = "nr-pusch"`` link TOML file).

    :ivar num_prb: PRBs of the carrier's grid (``n_size_grid``; 12 subcarriers each), 1..275.
    :ivar subcarrier_spacing: [kHz], 15, 30 or 60.
    :ivar mcs_index, mcs_table: TS 38.214 MCS (table 1: up to 64-QAM; 2: up to 256-QAM).
    :ivar num_layers: MIMO layers (streams) of the UE, 1 or 2, sent from as many antenna ports (non-codebook
        precoding; 2 antennas: one cross-polarised element for CDL/UMi); at most ``num_rx_ant``.
    :ivar kbest_k: the list size ``K`` of the ``*-kbest`` receivers (Sionna's :class:`~sionna.phy.ofdm.KBestDetector`).
    :ivar dmrs_config_type, dmrs_length, dmrs_additional_position, num_cdm_groups_without_data: the DMRS
        (:class:`sionna.phy.nr.PUSCHDMRSConfig`).
    :ivar channel, delay_spread, carrier_frequency, speed, num_rx_ant, rx_polarization, normalize_channel: the
        3GPP channel (:class:`metacomm.channels.ofdm.OFDMChannel`; units s, Hz, m/s).
    """

    name: str = "nr-pusch"
    description: str = ""
    kind: str = "nr-pusch"
    num_prb: int = 16
    subcarrier_spacing: int = 30
    mcs_index: int = 14
    mcs_table: int = 1
    num_layers: int = 1
    kbest_k: int = 32
    dmrs_config_type: int = 1
    dmrs_length: int = 1
    dmrs_additional_position: int = 1
    num_cdm_groups_without_data: int = 2
    channel: str = "cdl-b"
    delay_spread: float = 300e-9
    carrier_frequency: float = 3.5e9
    speed: float = 10.0
    num_rx_ant: int = 2
    rx_polarization: str = "auto"
    normalize_channel: str = "grid"

    def validate(self) -> PUSCHLinkConfig:
        for f in ("name", "description"):
            if not isinstance(getattr(self, f), str):
                raise ConfigError(f, f"expected a string, got {getattr(self, f)!r}")
        if self.kind != "nr-pusch":
            raise ConfigError("kind", f"expected 'nr-pusch', got {self.kind!r}")
        self.num_prb = check_positive_int("num_prb", self.num_prb, maximum=275)
        if self.subcarrier_spacing not in SUBCARRIER_SPACINGS_KHZ:
            raise ConfigError("subcarrier_spacing", f"[kHz] allowed: {', '.join(map(str, SUBCARRIER_SPACINGS_KHZ))}; "
                                                    f"got {self.subcarrier_spacing!r}")
        if self.num_layers not in (1, 2) or isinstance(self.num_layers, bool):
            raise ConfigError("num_layers", f"allowed 1 or 2 (streams of the UE), got {self.num_layers!r}")
        self.kbest_k = check_positive_int("kbest_k", self.kbest_k, maximum=4096)
        ch = check_ofdm_channel_settings(self.channel, delay_spread=self.delay_spread,
                                         carrier_frequency=self.carrier_frequency, speed=self.speed,
                                         num_rx_ant=self.num_rx_ant, num_tx_ant=self.num_layers,
                                         rx_polarization=self.rx_polarization, normalize=self.normalize_channel,
                                         fields={"profile": "channel", "normalize": "normalize_channel"})
        self.channel, self.delay_spread, self.carrier_frequency = ch["profile"], ch["delay_spread"], \
            ch["carrier_frequency"]
        self.speed, self.num_rx_ant, self.rx_polarization = ch["speed"], ch["num_rx_ant"], ch["rx_polarization"]
        if self.num_layers > self.num_rx_ant:
            raise ConfigError("num_layers", f"{self.num_layers} streams need at least as many receive antennas; "
                                            f"num_rx_ant is {self.num_rx_ant}")
        self.pusch_config()  # Sionna's own checks of the MCS / DMRS combination, as ConfigErrors
        return self

    def pusch_config(self):
        """Sionna's :class:`~sionna.phy.nr.PUSCHConfig` of these settings (ConfigError naming the key)."""
        from sionna.phy.nr import PUSCHConfig
        c = PUSCHConfig()
        for key, set_ in (("num_layers", lambda: (setattr(c, "num_antenna_ports", self.num_layers),
                                                   setattr(c, "num_layers", self.num_layers),
                                                   setattr(c, "precoding", "non-codebook"))),
                          ("num_prb", lambda: setattr(c.carrier, "n_size_grid", self.num_prb)),
                          ("subcarrier_spacing", lambda: setattr(c.carrier, "subcarrier_spacing",
                                                                 self.subcarrier_spacing)),
                          ("mcs_table", lambda: setattr(c.tb, "mcs_table", self.mcs_table)),
                          ("mcs_index", lambda: setattr(c.tb, "mcs_index", self.mcs_index)),
                          ("dmrs_config_type", lambda: setattr(c.dmrs, "config_type", self.dmrs_config_type)),
                          ("dmrs_length", lambda: setattr(c.dmrs, "length", self.dmrs_length)),
                          ("dmrs_additional_position", lambda: setattr(c.dmrs, "additional_position",
                                                                       self.dmrs_additional_position)),
                          ("num_cdm_groups_without_data", lambda: setattr(c.dmrs, "num_cdm_groups_without_data",
                                                                          self.num_cdm_groups_without_data))):
            try:
                set_()
            except (ValueError, AssertionError, TypeError) as e:
                raise ConfigError(key, f"Sionna's PUSCHConfig refuses {getattr(self, key)!r}: {e}") from None
        try:
            c.check_config()
            _ = c.tb_size
        except (ValueError, AssertionError, TypeError) as e:
            raise ConfigError("mcs_index", f"Sionna's PUSCHConfig refuses this combination: {e}") from None
        return c

    # -- derived sizes ----------------------------------------------------------------------------------------
    @property
    def k(self) -> int:
        """Transport-block size [bits]."""
        return int(self.pusch_config().tb_size)

    @property
    def n(self) -> int:
        """Coded bits per slot."""
        return int(self.pusch_config().num_coded_bits)

    @property
    def fft_size(self) -> int:
        return 12 * self.num_prb

    @property
    def num_ofdm_symbols(self) -> int:
        return 14

    def bytes_per_block(self) -> float:
        """Working set per transport block (grids, channel, estimates, LLRs), bytes (an upper estimate)."""
        return 8.0 * self.fft_size * 14 * (6 * self.num_rx_ant + 4) + 64.0 * self.n

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def pusch_config_from_dict(d: dict, *, source: str = "link") -> PUSCHLinkConfig:
    """A validated :class:`PUSCHLinkConfig` from a TOML table (unknown keys refused, naming them)."""
    names = {f.name for f in dataclasses.fields(PUSCHLinkConfig)}
    bad = sorted(k for k in d if k not in names)
    if bad:
        raise ConfigError(f"{source}: {bad[0]}", f"unknown key(s) {', '.join(bad)} of an nr-pusch link; allowed: "
                                                 f"{', '.join(sorted(names))}")
    return PUSCHLinkConfig(**d).validate()


def _blocks(cfg_dict: dict, precision: str, *, device: str):
    import numpy as np
    from sionna.phy.mimo import StreamManagement
    from sionna.phy.nr import PUSCHLSChannelEstimator, PUSCHReceiver, PUSCHTransmitter
    from sionna.phy.ofdm import KBestDetector
    cfg = PUSCHLinkConfig(**cfg_dict).validate()
    pc = cfg.pusch_config()
    tx = PUSCHTransmitter(pc, return_bits=False, precision=precision, device=device)
    kw = {"return_tb_crc_status": True, "precision": precision, "device": device}
    sm = StreamManagement(np.ones([1, 1], bool), cfg.num_layers)

    m = int(pc.tb.num_bits_per_symbol)

    def kbest():  # K at most the number of layer-symbol hypotheses (2^(m L): then exact ML)
        return KBestDetector("bit", cfg.num_layers, min(cfg.kbest_k, 2 ** (m * cfg.num_layers)), tx.resource_grid,
                             sm, "qam", m, precision=precision, device=device)

    def ls(interpolation):
        return PUSCHLSChannelEstimator(tx.resource_grid, cfg.dmrs_length, cfg.dmrs_additional_position,
                                       cfg.num_cdm_groups_without_data, interpolation_type=interpolation,
                                       precision=precision, device=device)

    # built on first use: each receiver is a PUSCHReceiver with its estimator and detector
    makers = {"ls-lin": lambda: PUSCHReceiver(tx, **kw),
              "ls-nn": lambda: PUSCHReceiver(tx, channel_estimator=ls("nn"), **kw),
              "perfect-csi": lambda: PUSCHReceiver(tx, channel_estimator="perfect", **kw),
              "ls-lin-kbest": lambda: PUSCHReceiver(tx, channel_estimator=ls("lin"), mimo_detector=kbest(),
                                                    stream_management=sm, **kw),
              "perfect-csi-kbest": lambda: PUSCHReceiver(tx, channel_estimator="perfect", mimo_detector=kbest(),
                                                         stream_management=sm, **kw)}
    return tx, _Lazy(makers)


class _Lazy(dict):
    """Receivers built on first use (a K-best detector is not built for a run that does not use it)."""

    def __init__(self, makers):
        super().__init__()
        self._makers = makers

    def __missing__(self, key):
        self[key] = value = self._makers[key]()
        return value


class PUSCHLink(nn.Module):
    """The NR PUSCH link (module docstring); a Link for the BER engine: ``forward(batch_size, ebno_db, generator)
    -> (bits [B, K_TB], bits_hat [B, K_TB])`` float 0/1.

    :param config: a :class:`PUSCHLinkConfig` (or a dict of its keys).
    :param receiver: ``ls-lin`` (default), ``ls-nn`` or ``perfect-csi``.
    :param device: where the Sionna blocks are built first (``None``: CPU).
    """

    def __init__(self, config, receiver: str = "ls-lin", *, device=None, precision: str = "single"):
        super().__init__()
        self.config = config if isinstance(config, PUSCHLinkConfig) else pusch_config_from_dict(dict(config))
        self.receiver_name = check_choice("receiver", receiver, PUSCH_RECEIVERS)
        self.precision = check_choice("precision", precision, ("single", "double"))
        self.dtype = torch.complex128 if precision == "double" else torch.complex64
        self.default_device = sionna_device(device)
        self._blocks = SionnaBlocks(partial(_blocks, self.config.to_dict()))
        tx, _ = self._blocks.get(self.default_device, self.precision)
        rg = tx.resource_grid
        c = self.config
        self.channel = OFDMChannel(c.channel, fft_size=rg.fft_size, num_ofdm_symbols=rg.num_ofdm_symbols,
                                   subcarrier_spacing=rg.subcarrier_spacing,
                                   cyclic_prefix_length=int(rg.cyclic_prefix_length), delay_spread=c.delay_spread,
                                   carrier_frequency=c.carrier_frequency, speed=c.speed, num_rx_ant=c.num_rx_ant,
                                   num_tx_ant=c.num_layers,
                                   rx_polarization=c.rx_polarization, normalize=c.normalize_channel)
        pc = c.pusch_config()
        self.k, self.m = int(pc.tb_size), int(pc.tb.num_bits_per_symbol)
        self.coderate = float(pc.tb.target_coderate)
        self._rg = rg

    @property
    def num_info_bits(self) -> int:
        return self.k

    def no(self, ebno_db: float) -> float:
        """N0 for ``ebno_db`` [dB]: Sionna's ``ebnodb2no(ebno_db, m, r, resource_grid)``."""
        from sionna.phy.utils import ebnodb2no
        return float(ebnodb2no(float(ebno_db), self.m, self.coderate, self._rg))

    def describe(self) -> dict:
        c = self.config
        return {"link": c.name, "receiver": self.receiver_name, "link_config": c.to_dict(),
                "block_length_bits": self.k, "codeword_length_bits": c.n, "transport_block_bits": self.k,
                "bits_per_symbol": self.m, "target_coderate": self.coderate,
                "ebno_convention": "sionna ebnodb2no(ebno_db, m, r, resource_grid)"}

    @torch.no_grad()
    def forward(self, batch_size: int, ebno_db: float, generator: torch.Generator | None = None):
        B = check_positive_int("batch_size", batch_size)
        check_memory("batch_size", self.config.bytes_per_block() * B, "one batch of PUSCH slots")
        dev = generator.device if generator is not None else torch.device(self.default_device)
        tx, rxs = self._blocks.get(dev, self.precision)
        rdt = torch.float64 if self.precision == "double" else torch.float32
        b = random_bits(B, self.k, generator=generator, device=dev, dtype=rdt)
        x = tx(b[:, None, :])  # [B, 1, num_layers, S, F]
        state = self.channel.sample_state(B, generator=generator, device=dev, dtype=self.dtype)
        no = self.no(ebno_db)
        w = complex_normal((B, 1, self.config.num_rx_ant, 14, self.config.fft_size), generator=generator,
                           dtype=self.dtype, device=dev)
        y = self.channel.apply(x, no, state, noise=w)
        no_t = torch.tensor(no, dtype=rdt, device=dev)
        rx = rxs[self.receiver_name]
        if self.receiver_name.startswith("perfect-csi"):
            b_hat, crc = rx(y, no_t, state["h_freq"])
        else:
            b_hat, crc = rx(y, no_t)
        self.last_crc_fail = int((~crc.bool()).sum())
        return b, b_hat[:, 0, :].to(b.dtype)

    def extra_repr(self) -> str:
        c = self.config
        return (f"nr-pusch {c.num_prb} PRB x {c.subcarrier_spacing} kHz, MCS {c.mcs_index} (table {c.mcs_table}), "
                f"TB {self.k} bits, {c.channel} {c.delay_spread * 1e9:g} ns at {c.speed:g} m/s, 1x{c.num_rx_ant}, "
                f"receiver {self.receiver_name!r}")
