r"""Settings of the coded OFDM link (:class:`OFDMLinkConfig`), its presets and TOML files, the Eb/N0 -> N0
conventions and the resource grid; the link itself is :mod:`metacomm.codecs.ofdm` (its docstring describes the
chain, the codeword layout and the conventions).

A link TOML file has the keys of :class:`OFDMLinkConfig` at its top level (all optional: a missing key takes the
default, which is Sionna's neural-receiver tutorial's value; ``codeword_length = "grid"`` or absent: one codeword
filling the grid); unknown keys are refused with one line listing them. Built-in presets: the ``*.toml`` files in
``metacomm/codecs/ofdm_links/`` (:data:`LINK_PRESETS`).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sionna.phy.ofdm import PilotPattern, ResourceGrid

from metacomm._validation import (
    ConfigError,
    check_choice,
    check_db,
    check_nonneg_int,
    check_positive_int,
    reraise,
)
from metacomm.channels.base import make_generator
from metacomm.channels.ofdm import OFDM_NORMALIZATIONS, RX_POLARIZATIONS, check_ofdm_channel_settings
from metacomm.codecs.ldpc import check_ldpc5g_params

__all__ = ["OFDMLinkConfig", "LINK_PRESETS", "PRESET_DIR", "EBNO_CONVENTIONS", "LMMSE_ORDERS",
           "OFDM_BITS_PER_SYMBOL", "load_link_config", "link_config_from_dict", "preset_names",
           "ofdm_ebnodb_to_no", "ebno_overhead_db", "build_resource_grid"]

PRESET_DIR = Path(__file__).with_name("ofdm_links")
EBNO_CONVENTIONS = ("data", "resource-grid")
OFDM_BITS_PER_SYMBOL = {2: "QPSK", 4: "16-QAM", 6: "64-QAM"}
LMMSE_ORDERS = ("auto", "t-f", "f-t", "t-f-s", "f-t-s", "s-t-f", "s-f-t", "t-s-f", "f-s-t")
DEMAPPINGS = ("app", "maxlog")


def preset_names() -> tuple[str, ...]:
    """The built-in link presets (the TOML files shipped in ``metacomm/codecs/ofdm_links/``)."""
    return tuple(sorted(p.stem for p in PRESET_DIR.glob("*.toml")))


LINK_PRESETS = preset_names()


def _bool(field_name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(field_name, f"expected true or false, got {value!r}")


def _int_list(field_name: str, value, what: str) -> list[int]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(field_name, f"expected a list of {what}, got {value!r}")
    return [check_nonneg_int(field_name, v) for v in value]


def _positive(field_name: str, value, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not math.isfinite(v) or v <= 0:
        raise ConfigError(field_name, f"{what} must be a finite number > 0, got {value!r}")
    return v


@dataclass
class OFDMLinkConfig:
    """Settings of a coded OFDM link (keys of a link TOML file). Defaults: Sionna's neural-receiver tutorial.

    Resource grid:

    :ivar fft_size: subcarriers ``F`` (guards and DC included).
    :ivar subcarrier_spacing: :math:`\\Delta_f` [Hz].
    :ivar num_ofdm_symbols: OFDM symbols ``S`` per grid (one slot).
    :ivar cyclic_prefix_length: CP [samples] (frequency-domain simulation: sets the symbol duration, hence the
        channel's time sampling, and the ``"resource-grid"`` Eb/N0 overhead).
    :ivar pilot_ofdm_symbol_indices: OFDM symbols carrying pilots (Kronecker pattern: every effective subcarrier
        of those symbols, QPSK, unit energy).
    :ivar num_guard_carriers: ``[left, right]`` nulled guard subcarriers.
    :ivar dc_null: null the DC subcarrier (index ``F // 2``).
    :ivar pilot_seed: seed of the QPSK pilot values.

    Modulation and code:

    :ivar bits_per_symbol: ``m`` = 2 (QPSK), 4 (16-QAM) or 6 (64-QAM), Gray (3GPP TS 38.211).
    :ivar coderate: 5G LDPC code rate ``r``; ``k = int(n * coderate)`` information bits per codeword.
    :ivar codeword_length: ``n`` coded bits per codeword (multiple of ``m``); ``None`` (or ``"grid"``): the whole
        grid, ``n = N_data m`` (one codeword per grid). Several codewords per grid: ``floor(N_data m / n)``.
    :ivar interleave: use the 5G bit interleaver of ``LDPC5GEncoder(num_bits_per_symbol=m)`` (the tutorial does
        not: ``LDPC5GEncoder(k, n)``).
    :ivar num_bp_iter: belief-propagation iterations of ``LDPC5GDecoder`` (flooding, box-plus; hard decisions).
    :ivar demapping: ``"app"`` or ``"maxlog"`` (Sionna's Demapper after the LMMSE equaliser).

    Channel (:class:`~metacomm.channels.ofdm.OFDMChannel`):

    :ivar channel: ``cdl-a`` ... ``cdl-e``, ``tdl-a`` ... ``tdl-e``, ``umi``.
    :ivar delay_spread: RMS delay spread [s] (ignored for UMi).
    :ivar carrier_frequency: [Hz].
    :ivar speed: UE speed [m/s].
    :ivar num_rx_ant: receive antennas 1..4; ``num_tx_ant``: 1.
    :ivar rx_polarization: ``auto``, ``single``, ``VH`` (dual V/H elements, the tutorial's) or ``cross``.
    :ivar normalize_channel: ``grid`` (unit mean power per grid and example, the tutorial's) or ``none``.

    Eb/N0 and receivers:

    :ivar ebno_convention: ``data`` (tutorial: ``N0 = 1/(Eb/N0 r m)``) or ``resource-grid`` (pilot, CP and
        padding energy charged to Eb); see the module docstring.
    :ivar cov_draws: channel draws for the ``lmmse-cov`` receiver's covariance estimate.
    :ivar cov_seed: seed of those draws (independent of the simulation's draws).
    :ivar lmmse_order: filtering order of Sionna's LMMSEChannelEstimator (``t`` time, ``f`` frequency, ``s``
        space); ``auto``: ``t-f-s`` with more than one receive antenna, else ``t-f``.
    """

    name: str = "custom"
    description: str = ""
    fft_size: int = 128
    subcarrier_spacing: float = 30e3
    num_ofdm_symbols: int = 14
    cyclic_prefix_length: int = 0
    pilot_ofdm_symbol_indices: list = field(default_factory=lambda: [2, 11])
    num_guard_carriers: list = field(default_factory=lambda: [5, 6])
    dc_null: bool = True
    pilot_seed: int = 0
    bits_per_symbol: int = 2
    coderate: float = 0.5
    codeword_length: Any = None
    interleave: bool = False
    num_bp_iter: int = 20
    demapping: str = "app"
    channel: str = "cdl-c"
    delay_spread: float = 100e-9
    carrier_frequency: float = 3.5e9
    speed: float = 10.0
    num_rx_ant: int = 2
    num_tx_ant: int = 1
    rx_polarization: str = "auto"
    normalize_channel: str = "grid"
    ebno_convention: str = "data"
    cov_draws: int = 10_000
    cov_seed: int = 1
    lmmse_order: str = "auto"

    # -- validation ----------------------------------------------------------------------------------------
    def validate(self) -> OFDMLinkConfig:
        """Check and normalise every key (ConfigError naming the key and what is allowed); returns ``self``."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("name", f"expected a non-empty string, got {self.name!r}")
        if not isinstance(self.description, str):
            raise ConfigError("description", f"expected a string, got {self.description!r}")
        self.fft_size = check_positive_int("fft_size", self.fft_size, maximum=4096)
        self.subcarrier_spacing = _positive("subcarrier_spacing", self.subcarrier_spacing,
                                            "the subcarrier spacing [Hz]")
        self.num_ofdm_symbols = check_positive_int("num_ofdm_symbols", self.num_ofdm_symbols, maximum=1024)
        self.cyclic_prefix_length = check_nonneg_int("cyclic_prefix_length", self.cyclic_prefix_length,
                                                     maximum=self.fft_size)
        S = self.num_ofdm_symbols
        pil = _int_list("pilot_ofdm_symbol_indices", self.pilot_ofdm_symbol_indices, "OFDM symbol indices")
        if not pil or len(set(pil)) != len(pil) or max(pil) >= S:
            raise ConfigError("pilot_ofdm_symbol_indices",
                              f"expected distinct OFDM symbol indices in 0..{S - 1} (at least one, not all), got "
                              f"{self.pilot_ofdm_symbol_indices!r}")
        if len(pil) >= S:
            raise ConfigError("pilot_ofdm_symbol_indices", f"all {S} OFDM symbols carry pilots: no data left")
        self.pilot_ofdm_symbol_indices = sorted(pil)
        guards = _int_list("num_guard_carriers", self.num_guard_carriers, "two guard-carrier counts [left, right]")
        if len(guards) != 2:
            raise ConfigError("num_guard_carriers", f"expected [left, right], got {self.num_guard_carriers!r}")
        self.num_guard_carriers = guards
        self.dc_null = _bool("dc_null", self.dc_null)
        F = self.fft_size
        dc = F // 2 if F % 2 == 0 else (F - 1) // 2
        if self.dc_null and not guards[0] <= dc < F - guards[1]:
            raise ConfigError("num_guard_carriers", f"the DC subcarrier {dc} lies in the guard bands {guards} of "
                                                    f"fft_size {F}; use fewer guard carriers or dc_null = false")
        if self.num_effective_subcarriers < 1:
            raise ConfigError("num_guard_carriers", f"no effective subcarrier left: fft_size {F}, guards {guards}, "
                                                    f"dc_null {self.dc_null}")
        self.pilot_seed = check_nonneg_int("pilot_seed", self.pilot_seed)
        m = check_positive_int("bits_per_symbol", self.bits_per_symbol)
        if m not in OFDM_BITS_PER_SYMBOL:
            allowed = ", ".join(f"{b} ({n})" for b, n in OFDM_BITS_PER_SYMBOL.items())
            raise ConfigError("bits_per_symbol", f"unsupported value {self.bits_per_symbol!r}; allowed: {allowed}")
        self.bits_per_symbol = m
        self.coderate = _positive("coderate", self.coderate, "the code rate")
        grid_bits = self.num_data_symbols * m
        n = self.codeword_length
        if n is None or (isinstance(n, str) and n.strip().lower() in ("grid", "auto")):
            n = grid_bits
        else:
            n = check_positive_int("codeword_length", n)
            if n > grid_bits:
                raise ConfigError("codeword_length", f"n = {n} coded bits do not fit the grid's {grid_bits} coded "
                                                     f"bits ({self.num_data_symbols} data REs x {m} bits); allowed: "
                                                     f"a multiple of {m} up to {grid_bits}")
        self.codeword_length = n
        k = int(n * self.coderate)
        try:
            check_ldpc5g_params(k, n, m, k_field="coderate", n_field="codeword_length")
        except ConfigError as err:
            raise ConfigError(err.field, f"k = int(n * coderate) = {k}, n = {n}: {err.message}") from None
        self.interleave = _bool("interleave", self.interleave)
        self.num_bp_iter = check_positive_int("num_bp_iter", self.num_bp_iter, maximum=1000)
        self.demapping = check_choice("demapping", self.demapping, DEMAPPINGS)
        s = check_ofdm_channel_settings(self.channel, delay_spread=self.delay_spread,
                                        carrier_frequency=self.carrier_frequency, speed=self.speed,
                                        num_rx_ant=self.num_rx_ant, num_tx_ant=self.num_tx_ant,
                                        rx_polarization=self.rx_polarization, normalize=self.normalize_channel,
                                        fields={"profile": "channel", "normalize": "normalize_channel"})
        self.channel = s["profile"]
        self.delay_spread, self.carrier_frequency, self.speed = s["delay_spread"], s["carrier_frequency"], s["speed"]
        self.num_rx_ant, self.num_tx_ant = s["num_rx_ant"], s["num_tx_ant"]
        if self.num_tx_ant != 1:
            raise ConfigError("num_tx_ant", f"this link sends one stream from one antenna: allowed 1, got "
                                            f"{self.num_tx_ant!r} (several streams: the nr-pusch link's num_layers)")
        check_choice("rx_polarization", self.rx_polarization, RX_POLARIZATIONS)
        check_choice("normalize_channel", self.normalize_channel, OFDM_NORMALIZATIONS)
        self.ebno_convention = check_choice("ebno_convention", self.ebno_convention, EBNO_CONVENTIONS)
        self.cov_draws = check_positive_int("cov_draws", self.cov_draws, maximum=10**7)
        self.cov_seed = check_nonneg_int("cov_seed", self.cov_seed)
        self.lmmse_order = check_choice("lmmse_order", self.lmmse_order, LMMSE_ORDERS)
        if "s" in self.lmmse_order.split("-") and self.num_rx_ant == 1:
            raise ConfigError("lmmse_order", f"{self.lmmse_order!r} smooths across receive antennas; with one "
                                             "receive antenna use t-f, f-t or auto")
        return self

    # -- derived sizes -------------------------------------------------------------------------------------
    @property
    def num_effective_subcarriers(self) -> int:
        """``F'`` = subcarriers minus guards and DC."""
        return int(self.fft_size) - int(sum(self.num_guard_carriers)) - int(bool(self.dc_null))

    @property
    def num_pilot_symbols(self) -> int:
        """Pilot resource elements per grid, ``P F'``."""
        return len(self.pilot_ofdm_symbol_indices) * self.num_effective_subcarriers

    @property
    def num_data_symbols(self) -> int:
        """Data resource elements per grid, ``N_data = (S - P) F'``."""
        return (int(self.num_ofdm_symbols) - len(self.pilot_ofdm_symbol_indices)) * self.num_effective_subcarriers

    @property
    def n(self) -> int:
        """Coded bits per codeword (after :meth:`validate`)."""
        return int(self.codeword_length)

    @property
    def k(self) -> int:
        """Information bits per codeword, ``int(n * coderate)``."""
        return int(self.n * self.coderate)

    @property
    def num_codewords(self) -> int:
        """Codewords per grid, ``C = floor(N_data m / n)``."""
        return (self.num_data_symbols * self.bits_per_symbol) // self.n

    @property
    def pad_bits(self) -> int:
        """Random padding bits per grid, ``N_data m - C n``."""
        return self.num_data_symbols * self.bits_per_symbol - self.num_codewords * self.n

    @property
    def grid_energy(self) -> float:
        """``E_grid = S (1 + N_CP/F) F'``: energy of a grid's non-null resource elements (Es = 1 each)."""
        cp = 1.0 + self.cyclic_prefix_length / self.fft_size
        return self.num_ofdm_symbols * cp * self.num_effective_subcarriers

    @property
    def resolved_lmmse_order(self) -> str:
        if self.lmmse_order != "auto":
            return self.lmmse_order
        return "t-f-s" if self.num_rx_ant > 1 else "t-f"

    def channel_kwargs(self) -> dict:
        """The :class:`~metacomm.channels.ofdm.OFDMChannel` arguments of this link."""
        return {"profile": self.channel, "fft_size": self.fft_size, "num_ofdm_symbols": self.num_ofdm_symbols,
                "subcarrier_spacing": self.subcarrier_spacing, "cyclic_prefix_length": self.cyclic_prefix_length,
                "delay_spread": self.delay_spread, "carrier_frequency": self.carrier_frequency, "speed": self.speed,
                "num_rx_ant": self.num_rx_ant, "num_tx_ant": self.num_tx_ant,
                "rx_polarization": self.rx_polarization, "normalize": self.normalize_channel,
                "field_names": {"profile": "channel", "normalize": "normalize_channel"}}

    def to_dict(self) -> dict:
        """The settings as plain values (for ``results.json`` and TOML)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    def key(self) -> tuple:
        return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(self.to_dict().items())
                     if k not in ("name", "description"))

    def bytes_per_block(self) -> float:
        """Rough working set of one block (codeword) in bytes: the grid's share of the received grid, channel,
        estimates and LMMSE matrices (~ 200 bytes per resource element and antenna pair) plus the decoder's
        messages (~ 400 bytes per coded bit)."""
        re = self.num_ofdm_symbols * self.fft_size * self.num_rx_ant * (1 + self.num_rx_ant)
        return (200.0 * re) / max(self.num_codewords, 1) + 400.0 * self.n


_FIELDS = tuple(f.name for f in dataclasses.fields(OFDMLinkConfig))


def link_config_from_dict(d: dict, *, source: str = "link") -> OFDMLinkConfig:
    """An :class:`OFDMLinkConfig` from a dict of its keys (a parsed TOML file), validated.

    Unknown keys are refused with one ConfigError (field ``link``) listing them and the allowed keys; a bad value
    raises ConfigError ``link`` whose message names ``source`` and the key.
    """
    if not isinstance(d, dict):
        raise ConfigError("link", f"{source}: expected a table of link settings, got {type(d).__name__}")
    unknown = sorted(set(d) - set(_FIELDS))
    if unknown:
        raise ConfigError("link", f"{source}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                                  f"allowed: {', '.join(_FIELDS)}")
    try:
        return OFDMLinkConfig(**d).validate()
    except ConfigError as err:
        raise reraise("link", err, prefix=f"{source}: ") from None


def load_link_config(spec) -> OFDMLinkConfig:
    """A link config from a preset name (:data:`LINK_PRESETS`), a TOML file path, an :class:`OFDMLinkConfig` or a
    dict. Errors: ConfigError ``link`` (unknown preset / missing or unreadable file / invalid TOML / bad key)."""
    if isinstance(spec, OFDMLinkConfig) or type(spec).__name__ == "PUSCHLinkConfig":
        return spec.validate()
    if isinstance(spec, dict):
        return link_config_from_dict(dict(spec))
    if not isinstance(spec, (str, Path)) or not str(spec).strip():
        raise ConfigError("link", f"expected a preset name ({', '.join(preset_names())}) or a TOML file, got "
                                  f"{spec!r}")
    text = str(spec).strip()
    if text in preset_names():
        path, source = PRESET_DIR / f"{text}.toml", text
    else:
        path, source = Path(text).expanduser(), text
        if not path.is_file():
            raise ConfigError("link", f"{text!r} is neither a built-in link ({', '.join(preset_names())}) nor a "
                                      "TOML file")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("link", f"{source}: invalid TOML: {' '.join(str(err).split())}") from None
    except OSError as err:
        raise ConfigError("link", f"cannot read {source!r}: {err.strerror or err}") from None
    data.setdefault("name", path.stem)
    if data.get("kind") == "nr-pusch":  # a 5G NR PUSCH link (metacomm.codecs.nr_pusch)
        from metacomm.codecs.nr_pusch import pusch_config_from_dict
        try:
            return pusch_config_from_dict(data, source=source)
        except ConfigError as err:
            raise reraise("link", err, prefix=f"{source}: ") from None
    data.pop("kind", None) if data.get("kind") == "ofdm" else None
    return link_config_from_dict(data, source=source)


# -- Eb/N0 ---------------------------------------------------------------------------------------------------
def ebno_overhead_db(cfg: OFDMLinkConfig) -> float:
    """How much higher N0 is under the ``"resource-grid"`` convention than under ``"data"`` at one Eb/N0 [dB]:
    ``10 log10(E_grid / (C k)) - 10 log10(1 / (r m))`` (pilots, CP and padding), >= 0."""
    r = cfg.k / cfg.n
    return 10.0 * math.log10(cfg.grid_energy / (cfg.num_codewords * cfg.k) * r * cfg.bits_per_symbol)


def ofdm_ebnodb_to_no(ebno_db, cfg: OFDMLinkConfig, convention: str | None = None) -> float:
    """N0 per complex resource element (Es = 1) at ``ebno_db`` [dB] for the link ``cfg`` (module docstring)."""
    conv = check_choice("ebno_convention", convention or cfg.ebno_convention, EBNO_CONVENTIONS)
    ebno = 10.0 ** (check_db("ebno_db", ebno_db) / 10.0)
    if conv == "data":
        return 1.0 / (ebno * (cfg.k / cfg.n) * cfg.bits_per_symbol)
    return cfg.grid_energy / (ebno * cfg.num_codewords * cfg.k)


# -- Sionna blocks ---------------------------------------------------------------------------------------------
def _pilot_values(cfg: OFDMLinkConfig) -> np.ndarray:
    g = make_generator(cfg.pilot_seed, "cpu")
    b = torch.randint(0, 2, (cfg.num_pilot_symbols, 2), generator=g).to(torch.float64)
    p = ((1.0 - 2.0 * b[:, 0]) + 1j * (1.0 - 2.0 * b[:, 1])) / math.sqrt(2.0)
    return p.numpy().astype(np.complex64).reshape(1, 1, -1)


def build_resource_grid(cfg: OFDMLinkConfig, precision: str = "single", *, device: str = "cpu") -> ResourceGrid:
    """Sionna's :class:`ResourceGrid` of ``cfg`` with a Kronecker pilot pattern whose QPSK values come from
    ``pilot_seed`` (:class:`PilotPattern` with the mask of ``KroneckerPilotPattern`` for one stream)."""
    rg = ResourceGrid(cfg.num_ofdm_symbols, cfg.fft_size, cfg.subcarrier_spacing, num_tx=1, num_streams_per_tx=1,
                      cyclic_prefix_length=cfg.cyclic_prefix_length, num_guard_carriers=tuple(cfg.num_guard_carriers),
                      dc_null=cfg.dc_null, pilot_pattern=None, precision=precision, device=device)
    mask = np.zeros([1, 1, cfg.num_ofdm_symbols, rg.num_effective_subcarriers], bool)
    mask[..., cfg.pilot_ofdm_symbol_indices, :] = True
    rg.pilot_pattern = PilotPattern(mask, _pilot_values(cfg), normalize=True, precision=precision, device=device)
    return rg
