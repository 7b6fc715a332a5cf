r"""A coded OFDM link (SIMO, one stream) on Sionna's OFDM blocks: 5G LDPC + Gray QAM on a resource grid over a
3GPP channel (:class:`metacomm.channels.ofdm.OFDMChannel`), with Sionna's classical receivers.

Chain per resource grid (one slot)::

    u [C, k] --LDPC5GEncoder--> c [C, n] --(C codewords + padding)--> [N_data m] --Mapper--> [N_data]
      --ResourceGridMapper (data REs, pilots on the pilot symbols, nulls on guards/DC)--> x [1, 1, S, F]
      --OFDMChannel: y = H x + sqrt(N0) w--> y [1, R, S, F]
      --receiver (channel estimate + LMMSEEqualizer + Demapper)--> LLR [N_data m] --LDPC5GDecoder--> u_hat [C, k]

Shapes: ``S`` = ``num_ofdm_symbols``, ``F`` = ``fft_size``, ``R`` = ``num_rx_ant``; the effective subcarriers are
``F' = F - guards_left - guards_right - dc_null``; the pilot symbols carry pilots on all ``F'`` subcarriers
(Kronecker pattern, one stream); the data resource elements are ``N_data = (S - P) F'`` for ``P`` pilot symbols,
filled by Sionna's ResourceGridMapper in symbol-major order (OFDM symbol 0's subcarriers low to high, then symbol
1, ...), each with ``m`` = ``bits_per_symbol`` coded bits (QPSK ``m = 2``, 16-QAM 4, 64-QAM 6).

**Codewords on the grid.** ``codeword_length`` ``n`` (default: the whole grid, ``n = N_data m``) and
``k = int(n * coderate)`` information bits (the tutorial's rounding). A grid carries ``C = floor(N_data m / n)``
codewords, codeword ``j`` on coded bits ``[j n, (j+1) n)`` of the grid; the ``N_data m - C n`` bits left over
(a multiple of ``m``) are random padding drawn from the generator, transmitted and never scored. **One block = one
codeword**: ``batch_size`` blocks are carried by ``ceil(batch_size / C)`` grids; codewords of the last grid beyond
``batch_size`` are transmitted (random bits) but not scored.

**Eb/N0 and N0** (``ebno_convention``; Es = 1 per resource element that carries energy, ``N0`` per complex
resource element, ``r = k/n``):

* ``"data"`` (default; Sionna's neural-receiver tutorial calls ``ebnodb2no(ebno_db, m, coderate)`` *without* the
  resource grid): ``N0 = 1 / (Eb/N0 * r * m)`` -- Eb counts the data resource elements only; pilots, cyclic prefix,
  guard carriers and padding are overhead not charged to Eb;
* ``"resource-grid"`` (Sionna's ``ebnodb2no(ebno_db, m, coderate, resource_grid)``, used by its MIMO OFDM
  tutorials): ``N0 = E_grid / (Eb/N0 * C k)`` with ``E_grid = S (1 + N_CP/F) F'`` the energy of a grid's
  non-null resource elements (data and pilots, CP included; guards and DC carry none) -- i.e. Eb is the whole
  transmitted energy per information bit. Without padding this equals Sionna's formula exactly. At the same
  Eb/N0 its N0 is :func:`ebno_overhead_db` dB higher than the ``"data"`` convention's (a BLER curve moves right by
  that much; the tutorial grid: 10 log10(1624/1392) = 0.67 dB).

**Randomness.** Everything random is drawn from the explicit :class:`torch.Generator` the caller (the BER engine)
passes, in a fixed order per call: information bits ``[G C, k]``, padding bits ``[G, pad]``, the channel
realisation (:meth:`OFDMChannel.sample_state`, which makes Sionna's model draw from the same generator), the noise
``w ~ CN(0, 1)`` ``[G, 1, R, S, F]``. The pilot values are QPSK drawn once from a generator seeded with
``pilot_seed`` (Sionna's ``KroneckerPilotPattern`` would draw them from its global generator). Sionna's global
generators and torch's default generator are never used.

**Slots for later drift runs.** :meth:`OFDMLink.draw` returns one slot's signals (:class:`OFDMSlot`: bits, grid,
channel state, N0, noise, received grid), :meth:`OFDMLink.decide` decodes a slot with any receiver (all receivers
can see the same draws) and :meth:`OFDMLink.score` counts its bit and block errors; :meth:`OFDMLink.forward` is the
three in a row (the Link protocol ``link(batch_size, ebno_db, generator) -> (bits, bits_hat)``).

Presets (:data:`LINK_PRESETS`, TOML files in ``metacomm/codecs/ofdm_links/``): ``sionna-nrx-tutorial`` is the link
of Sionna's "Neural Receiver for OFDM SIMO Systems" tutorial. A TOML file describing a link has the keys of
:class:`OFDMLinkConfig` at its top level (all optional; missing keys take the defaults, which are the tutorial's);
unknown keys are refused with one line listing them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
from sionna.phy.mapping import Mapper
from sionna.phy.ofdm import ResourceGrid, ResourceGridMapper
from torch import nn

from metacomm._sionna import SionnaBlocks, sionna_device
from metacomm._validation import check_choice, check_memory, check_positive_int
from metacomm.channels.base import complex_normal
from metacomm.channels.ofdm import OFDMChannel
from metacomm.codecs.base import random_bits
from metacomm.codecs.ofdm_config import (
    EBNO_CONVENTIONS,
    LINK_PRESETS,
    LMMSE_ORDERS,
    OFDM_BITS_PER_SYMBOL,
    PRESET_DIR,
    OFDMLinkConfig,
    build_resource_grid,
    ebno_overhead_db,
    link_config_from_dict,
    load_link_config,
    ofdm_ebnodb_to_no,
    preset_names,
)
from metacomm.codecs.ofdm_receivers import RECEIVER_HELP, RECEIVERS, OFDMReceiver, make_receiver

__all__ = ["OFDMLinkConfig", "OFDMLink", "OFDMSlot", "OFDMReceiver", "RECEIVERS", "RECEIVER_HELP", "LINK_PRESETS",
           "PRESET_DIR", "EBNO_CONVENTIONS", "LMMSE_ORDERS", "OFDM_BITS_PER_SYMBOL", "load_link_config",
           "link_config_from_dict", "preset_names", "ofdm_ebnodb_to_no", "ebno_overhead_db", "build_resource_grid",
           "make_receiver"]


def _tx_blocks(cfg_dict: dict, precision: str, *, device: str):
    cfg = OFDMLinkConfig(**cfg_dict).validate()
    rg = build_resource_grid(cfg, precision, device=device)
    m = cfg.bits_per_symbol
    enc = LDPC5GEncoder(cfg.k, cfg.n, num_bits_per_symbol=m if cfg.interleave else None, precision=precision,
                        device=device)
    mapper = Mapper("qam", m, precision=precision, device=device)
    return rg, enc, mapper, ResourceGridMapper(rg, precision=precision, device=device)


def _decoder(cfg_dict: dict, precision: str, *, device: str) -> LDPC5GDecoder:
    cfg = OFDMLinkConfig(**cfg_dict).validate()
    # its own encoder instance (the code description), not the transmitter's: one owner per block
    code = LDPC5GEncoder(cfg.k, cfg.n, num_bits_per_symbol=cfg.bits_per_symbol if cfg.interleave else None,
                         precision=precision, device=device)
    return LDPC5GDecoder(code, hard_out=True, return_infobits=True, num_iter=cfg.num_bp_iter, precision=precision,
                         device=device)


def _receiver_settings(receiver) -> dict:
    """``{"receiver_settings": ...}`` of a receiver that describes itself (the adaptive one), else ``{}``."""
    describe = getattr(receiver, "describe", None)
    return {"receiver_settings": describe()} if callable(describe) else {}


# -- the link --------------------------------------------------------------------------------------------------
@dataclass
class OFDMSlot:
    """One batch of slots' signals, drawn once by :meth:`OFDMLink.draw` (shared by every receiver).

    :ivar bits: scored information bits, float 0/1 ``[B, k]`` (``B`` = ``num_blocks``).
    :ivar all_bits: every transmitted codeword's information bits ``[G C, k]`` (the first ``B`` are ``bits``).
    :ivar x: transmitted resource grids, complex ``[G, 1, 1, S, F]`` (Es = 1 on data and pilot REs, 0 on nulls).
    :ivar state: the channel realisation ``{"h_freq": complex [G, 1, R, 1, 1, S, F]}``.
    :ivar no: N0 per complex resource element, float ``[G]``; ``ebno_db``: the Eb/N0 [dB] it came from.
    :ivar noise: the unit-variance noise ``w`` ``[G, 1, R, S, F]``; ``y``: received grids ``H x + sqrt(N0) w``.
    """

    bits: torch.Tensor
    all_bits: torch.Tensor
    x: torch.Tensor
    state: dict
    no: torch.Tensor
    noise: torch.Tensor
    y: torch.Tensor
    ebno_db: float
    num_blocks: int

    @property
    def h_freq(self) -> torch.Tensor:
        return self.state["h_freq"]

    @property
    def num_grids(self) -> int:
        return int(self.y.shape[0])


class OFDMLink(nn.Module):
    """The coded OFDM link of ``config`` with a receiver (see the module docstring); a Link for the BER engine.

    Args:
        config: an :class:`OFDMLinkConfig`, a preset name, a TOML path or a dict of its keys.
        receiver: a name of :data:`metacomm.codecs.ofdm_receivers.RECEIVERS` (``ls-nn``, ``ls-lin``, ``lmmse-cov``,
            ``perfect-csi``) or an :class:`~metacomm.codecs.ofdm_receivers.OFDMReceiver` instance.
        device: where the Sionna blocks are built first (``None``: CPU); a call computes on its generator's device.
        precision: ``"single"`` (complex64) or ``"double"``.
        receiver_checkpoint: the ``adaptive`` receiver's prior bank (default: the shipped one for the grid).

    ``num_info_bits`` = ``k`` (one block = one codeword); :meth:`forward` ``(batch_size, ebno_db, generator)`` ->
    ``(bits [B, k], bits_hat [B, k])`` float 0/1.
    """

    def __init__(self, config, receiver="ls-nn", *, device=None, precision: str = "single",
                 receiver_checkpoint=None):
        super().__init__()
        self.config = load_link_config(config)
        self.precision = check_choice("precision", precision, ("single", "double"))
        self.dtype = torch.complex128 if self.precision == "double" else torch.complex64
        self.channel = OFDMChannel(**self.config.channel_kwargs())
        cfg_dict = self.config.to_dict()
        self.default_device = sionna_device(device)  # validated here; blocks are built on first use per device
        self._tx = SionnaBlocks(partial(_tx_blocks, cfg_dict))
        self._dec = SionnaBlocks(partial(_decoder, cfg_dict))
        self._receivers: dict[str, nn.Module] = {}
        self.receiver = make_receiver(receiver, self, checkpoint=receiver_checkpoint)
        self.receiver_name = getattr(self.receiver, "name", type(self.receiver).__name__)

    # -- sizes ---------------------------------------------------------------------------------------------
    @property
    def num_info_bits(self) -> int:
        return self.config.k

    @property
    def codeword_length(self) -> int:
        return self.config.n

    @property
    def rate(self) -> float:
        """Information bits per data resource element, ``k m / n``."""
        return self.config.k * self.config.bits_per_symbol / self.config.n

    def resource_grid(self, device=None) -> ResourceGrid:
        """Sionna's resource grid of this link on ``device`` (default: the link's ``device``)."""
        return self._tx.get(device or self.default_device, self.precision)[0]

    def get_receiver(self, name):
        """A receiver of this link by name (built once and kept), or ``name`` itself if it is a receiver."""
        if not isinstance(name, str):
            return make_receiver(name, self)
        if name == getattr(self.receiver, "name", None):
            return self.receiver
        if name not in self._receivers:
            self._receivers[name] = make_receiver(name, self)
        return self._receivers[name]

    def no(self, ebno_db: float) -> float:
        """N0 per complex resource element for ``ebno_db`` [dB] (the config's ``ebno_convention``)."""
        return ofdm_ebnodb_to_no(ebno_db, self.config)

    def describe(self) -> dict:
        """Numbers for ``results.json``: the link's settings and derived sizes."""
        c = self.config
        return {"link": c.name, "receiver": self.receiver_name, "link_config": c.to_dict(),
                "block_length_bits": c.k, "codeword_length_bits": c.n, "codewords_per_grid": c.num_codewords,
                "pad_bits_per_grid": c.pad_bits, "data_res_per_grid": c.num_data_symbols,
                "pilot_res_per_grid": c.num_pilot_symbols, "rate_bits_per_channel_use": self.rate,
                "ebno_convention": c.ebno_convention, "ebno_overhead_db": ebno_overhead_db(c),
                **_receiver_settings(self.receiver)}

    # -- one slot --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def draw(self, batch_size: int, ebno_db: float, generator: torch.Generator | None = None, *,
             no: torch.Tensor | float | None = None, state: dict | None = None) -> OFDMSlot:
        """Draw the signals of ``batch_size`` blocks (codewords) at ``ebno_db`` [dB] (or at the explicit N0 ``no``,
        a number or ``[G]`` per grid), in the order of the module docstring. ``state``: a given channel
        realisation ``{"h_freq": [G, 1, R, 1, 1, S, F]}`` for the ``G`` grids (a drift run's slot; the channel draw
        is then skipped)."""
        c = self.config
        B = check_positive_int("batch_size", batch_size)
        G = -(-B // c.num_codewords)
        check_memory("batch_size", c.bytes_per_block() * B, "one batch of OFDM blocks")
        dev = generator.device if generator is not None else torch.device(self.default_device)
        rg, enc, mapper, rg_mapper = self._tx.get(dev, self.precision)
        rdt = torch.float64 if self.precision == "double" else torch.float32
        u = random_bits(G * c.num_codewords, c.k, generator=generator, device=dev, dtype=rdt)
        cw = enc(u).reshape(G, c.num_codewords * c.n)
        if c.pad_bits:
            cw = torch.cat([cw, random_bits(G, c.pad_bits, generator=generator, device=dev, dtype=rdt)], dim=-1)
        x = rg_mapper(mapper(cw)[:, None, None, :])  # [G, 1, 1, S, F]
        if state is None:
            state = self.channel.sample_state(G, generator=generator, device=dev, dtype=self.dtype)
        else:
            state = {"h_freq": self.channel.check_state(state, G).to(device=dev, dtype=self.dtype)}
        if no is None:
            no_t = torch.full((G,), self.no(ebno_db), dtype=rdt, device=dev)
        else:
            no_t = torch.as_tensor(no, dtype=rdt, device=dev).reshape(-1).expand(G).clone()
        w = complex_normal((G, 1, c.num_rx_ant, c.num_ofdm_symbols, c.fft_size), generator=generator,
                           dtype=self.dtype, device=dev)
        y = self.channel.apply(x, no_t, state, noise=w)
        return OFDMSlot(bits=u[:B], all_bits=u, x=x, state=state, no=no_t, noise=w, y=y,
                        ebno_db=float(ebno_db) if ebno_db is not None else math.nan, num_blocks=B)

    @torch.no_grad()
    def llr(self, slot: OFDMSlot, receiver=None) -> torch.Tensor:
        """Coded-bit LLRs (``ln P(1)/P(0)``) of the scored codewords, ``[B, n]``, from ``receiver`` (default the
        link's)."""
        rx = self.receiver if receiver is None else self.get_receiver(receiver)
        c = self.config
        llr = rx(slot.y, slot.no, h_freq=slot.h_freq if getattr(rx, "needs_channel", False) else None)
        llr = llr.reshape(slot.num_grids, -1)[:, :c.num_codewords * c.n]
        return llr.reshape(-1, c.n)[:slot.num_blocks]

    @torch.no_grad()
    def decide(self, slot: OFDMSlot, receiver=None) -> torch.Tensor:
        """Decoded information bits ``[B, k]`` (float 0/1) of ``slot`` with ``receiver`` (default the link's)."""
        llr = self.llr(slot, receiver)
        dec = self._dec.get(llr.device, self.precision)
        return dec(llr).to(slot.bits.dtype)

    @torch.no_grad()
    def decode(self, slot: OFDMSlot, grid_llr: torch.Tensor) -> torch.Tensor:
        """Decoded information bits ``[B, k]`` of ``slot`` from a receiver's grid LLRs ``[G, ..., N_data m]`` (a
        stateful receiver's :meth:`step` output): split into the scored codewords, 5G LDPC decoding."""
        c = self.config
        llr = grid_llr.reshape(slot.num_grids, -1)[:, :c.num_codewords * c.n].reshape(-1, c.n)[:slot.num_blocks]
        return self._dec.get(llr.device, self.precision)(llr).to(slot.bits.dtype)

    @staticmethod
    def score(slot: OFDMSlot, bits_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(bit_errors int64 [B], block_error bool [B])`` of a decision for ``slot``."""
        err = (bits_hat != slot.bits)
        return err.sum(-1), err.any(-1)

    def forward(self, batch_size: int, ebno_db: float, generator: torch.Generator | None = None):
        slot = self.draw(batch_size, ebno_db, generator)
        return slot.bits, self.decide(slot)

    def extra_repr(self) -> str:
        c = self.config
        return (f"link={c.name!r}, receiver={self.receiver_name!r}, grid={c.num_ofdm_symbols}x{c.fft_size} "
                f"({c.num_data_symbols} data REs), {OFDM_BITS_PER_SYMBOL[c.bits_per_symbol]}, LDPC k={c.k} n={c.n} "
                f"x{c.num_codewords}/grid, ebno_convention={c.ebno_convention!r}")

