r"""The adaptive OFDM receiver (``adaptive``): an LMMSE channel estimate whose time/frequency statistics are not
known per link but inferred at run time from a prior bank learned over a family of 3GPP channels, followed by
data-aided (turbo) re-estimation from the receiver's own decoded codewords.

What it knows: the pilots, N0, the code, and a **prior bank** (a checkpoint made by
``scripts/make_ofdm_adaptive_prior.py``) -- the frequency correlations of the family's delay profiles (3GPP CDL-A..E,
TDL-A..E at several RMS delay spreads, UMi) and the time correlations of its mobility (speeds 0..60 m/s), each
estimated from Monte-Carlo draws of :class:`metacomm.channels.ofdm.OFDMChannel`. It does **not** know the link's
profile, delay spread, speed or its true covariance (``lmmse-cov`` does).

Per slot (one resource grid ``g``; receive antennas ``r`` estimated separately, the antennas' powers from the pilots):

1. **Belief over the family.** LS estimates on the pilot symbols ``h_ls [G, R, P, F']`` (Kronecker pilots: whole OFDM
   symbols). For every hypothesis ``h = (frequency correlation k_f, time correlation k_t)`` of the bank the pilots'
   exact Gaussian log-likelihood under ``p_r (C_t[k_t] (x) C_f[k_f]) + N0 I`` is evaluated in the hypotheses'
   eigenbases (``rank_freq`` leading frequency eigenvectors; the rest treated as noise-only, exact when those
   eigenvalues are 0), added to the carried log-belief (the per-link state; :meth:`AdaptiveOFDMReceiver.step`) and
   normalised: posterior weights ``w [G, H]``.
2. **Pilot LMMSE** with the posterior-mixture covariances ``C_f = sum_h w_h C_f[k_f(h)]``, ``C_t`` likewise,
   Kronecker-separable, solved exactly in the leading eigenbasis of the mixtures (``rank_freq`` x ``rank_time``
   coefficients per antenna): ``h_hat = Phi (Lambda^{-1} + Phi^H D Phi)^{-1} Phi^H b`` with ``D`` the per-RE
   precision ``|a|^2 / sigma^2`` and ``b = conj(a) y / sigma^2`` for known symbols ``a`` (the pilots).
3. **Turbo re-estimation** (``turbo_iters`` times): LMMSE equalisation + APP demapping, 5G LDPC belief propagation
   returning a-posteriori coded-bit LLRs (``LDPC5GDecoder(return_infobits=False, hard_out=False)``), soft data
   symbols ``a = E[x]``, ``v = Var[x]`` from them, and step 2 again over **all** resource elements (pilots and data,
   ``sigma^2 = N0 + p_r v``). A grid whose decoder has converged (every a-posteriori |LLR| >= ``stop_llr``) leaves
   the loop.
4. LMMSE equalisation (Sionna's :class:`LMMSEEqualizer` with the estimate's error variance, averaged per OFDM
   symbol) + demapping -> coded-bit LLRs ``[G, 1, 1, N_data m]`` for the link's decoder.

``lmmse-cov-turbo`` is the classical counterpart: the same turbo loop on the link's **true** covariances (those of
``lmmse-cov``, antenna powers from the true space covariance): the fair baseline for the data-aided part.

State per link (for drift runs over slots): ``{"log_belief": float [G, H]}`` (log-weights over the bank's
hypotheses, normalised), made by :meth:`AdaptiveOFDMReceiver.init_state`, advanced by
:meth:`AdaptiveOFDMReceiver.step` (``(y, no, state) -> (llr, state, info)``; the prior of slot t + 1 is the
posterior of slot t mixed with the meta prior by ``forget``), a plain tensor dict that ``torch.save`` /
``torch.load(weights_only=True)`` round-trip. :meth:`forward` (the ``OFDMReceiver`` interface) starts every grid from
the meta prior (stateless: a BER sweep's grids are independent links).

Sionna drop-in: :meth:`AdaptiveOFDMReceiver.estimate_channel` ``(y, no) -> (h_hat [G, 1, R, 1, 1, S, F'], err_var)``
has :class:`sionna.phy.ofdm.LSChannelEstimator`'s call signature (steps 1-2, pilots only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
from sionna.phy.mapping import Constellation, Demapper
from sionna.phy.mimo import StreamManagement
from sionna.phy.ofdm import LMMSEEqualizer

from metacomm._sionna import SionnaBlocks
from metacomm._validation import ConfigError, check_nonneg_int, check_positive_int
from metacomm.artefacts import register_kind
from metacomm.channels.ofdm import OFDMChannel
from metacomm.codecs.ofdm_config import OFDMLinkConfig, build_resource_grid
from metacomm.codecs.ofdm_receiver_base import OFDMReceiver

__all__ = ["PriorBank", "AdaptiveOFDMReceiver", "build_prior_bank", "load_prior_bank", "shipped_prior_for",
           "PRIOR_KIND", "FAMILY_PROFILES", "FAMILY_DELAY_SPREADS", "FAMILY_SPEEDS", "CHECKPOINT_DIR"]

PRIOR_KIND = "ofdm-adaptive-prior"
PRIOR_VERSION = 1
register_kind(PRIOR_KIND, PRIOR_VERSION, "prior bank of the adaptive OFDM receiver",
              "scripts/make_ofdm_adaptive_prior.py (PriorBank.save)",
              weights=("freq_lags", "time_lags", "log_prior"))  # doppler/delay_spread: NaN where undefined (UMi)
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
FAMILY_PROFILES = ("cdl-a", "cdl-b", "cdl-c", "cdl-d", "cdl-e", "tdl-a", "tdl-b", "tdl-c", "tdl-d", "tdl-e", "umi")
#: RMS delay spreads [s] of the family's CDL/TDL hypotheses (UMi draws its own); 100 ns is deliberately absent
FAMILY_DELAY_SPREADS = (20e-9, 40e-9, 70e-9, 130e-9, 250e-9, 500e-9)
#: UE speeds [m/s] at the reference carrier 3.5 GHz (f_D = v f_c / c: 0 .. 700 Hz); 10 and 34.26 m/s absent
FAMILY_SPEEDS = (0.0, 5.0, 15.0, 25.0, 40.0, 60.0)
REFERENCE_CARRIER = 3.5e9
_EIG_REL = 1e-4  # eigenvalues below this fraction of the largest are dropped from the LMMSE basis


# -- the prior bank ----------------------------------------------------------------------------------------------
def _toeplitz(lags: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Hermitian Toeplitz matrices ``C[..., a, b] = r(idx_a - idx_b)`` from lags ``r(d) = E[h_{i+d} h_i^*]``,
    ``lags [..., L]`` (d = 0..L-1), ``r(-d) = conj(r(d))``; ``idx [N]`` integer positions -> ``[..., N, N]``."""
    d = idx[:, None] - idx[None, :]
    c = lags[..., d.abs()]
    return torch.where(d >= 0, c, c.conj())


def _lags(cov: torch.Tensor) -> torch.Tensor:
    """Average the diagonals of ``cov [N, N]``: ``r(d) = mean_i cov[i + d, i]``, d = 0..N-1."""
    n = cov.shape[-1]
    return torch.stack([torch.diagonal(cov, offset=-d).mean() for d in range(n)])


@dataclass
class PriorBank:
    """A bank of channel statistics learned over a family of channels, on one OFDM numerology.

    :ivar freq_lags: frequency correlations ``r_f(d)`` per subcarrier lag ``d = 0..fft_size-1``, complex
        ``[K_f, fft_size]`` (unit power at lag 0).
    :ivar time_lags: time correlations ``r_t(d)`` per OFDM-symbol lag ``d = 0..S-1``, complex ``[K_t, S]``.
    :ivar hyp_freq: ``[H]`` int64, the frequency entry of each hypothesis; ``hyp_time``: its time entry.
    :ivar log_prior: ``[H]`` float, the meta prior over hypotheses (log, normalised).
    :ivar labels: ``H`` strings naming each hypothesis (``"tdl-b 130ns 25m/s"``).
    :ivar doppler: ``[H]`` float, each hypothesis' maximum Doppler [Hz]; ``delay_spread``: ``[H]`` RMS [s] (NaN for
        UMi).
    :ivar numerology: ``{"subcarrier_spacing": Hz, "fft_size": int, "num_ofdm_symbols": int,
        "ofdm_symbol_duration": s}`` the lags are sampled on.
    :ivar meta: how it was made (family, draws, seed, CPU seconds, script).
    """

    freq_lags: torch.Tensor
    time_lags: torch.Tensor
    hyp_freq: torch.Tensor
    hyp_time: torch.Tensor
    log_prior: torch.Tensor
    labels: list
    doppler: torch.Tensor
    delay_spread: torch.Tensor
    numerology: dict
    meta: dict = field(default_factory=dict)

    @property
    def num_hypotheses(self) -> int:
        return int(self.hyp_freq.numel())

    def to_dict(self) -> dict:
        return {"kind": PRIOR_KIND, "version": PRIOR_VERSION, "freq_lags": self.freq_lags, "time_lags": self.time_lags,
                "hyp_freq": self.hyp_freq, "hyp_time": self.hyp_time, "log_prior": self.log_prior,
                "labels": list(self.labels), "doppler": self.doppler, "delay_spread": self.delay_spread,
                "numerology": dict(self.numerology), "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, d, *, field_name: str = "checkpoint") -> PriorBank:
        if not isinstance(d, dict) or d.get("kind") != PRIOR_KIND:
            kind = d.get("kind") if isinstance(d, dict) else type(d).__name__
            raise ConfigError(field_name, f"not an adaptive OFDM receiver prior (kind {kind!r}, expected "
                                          f"{PRIOR_KIND!r}); make one with scripts/make_ofdm_adaptive_prior.py")
        if d.get("version") != PRIOR_VERSION:
            raise ConfigError(field_name, f"prior version {d.get('version')!r}, this metacomm reads {PRIOR_VERSION}")
        try:
            bank = cls(**{k: d[k] for k in ("freq_lags", "time_lags", "hyp_freq", "hyp_time", "log_prior", "labels",
                                              "doppler", "delay_spread", "numerology")}, meta=d.get("meta", {}))
        except KeyError as e:
            raise ConfigError(field_name, f"prior checkpoint lacks {e.args[0]!r}") from None
        h = bank.num_hypotheses
        ok = (bank.freq_lags.ndim == 2 and bank.time_lags.ndim == 2 and bank.hyp_time.shape == (h,)
              and bank.log_prior.shape == (h,) and len(bank.labels) == h and h > 0
              and int(bank.hyp_freq.max()) < bank.freq_lags.shape[0] and int(bank.hyp_time.max()) < bank.time_lags.shape[0])
        if not ok:
            raise ConfigError(field_name, "prior checkpoint tensors have inconsistent shapes")
        return bank

    def save(self, path) -> None:
        """Write the bank as a metacomm checkpoint of kind :data:`PRIOR_KIND` (atomic, format-tagged)."""
        from metacomm.artefacts import save_checkpoint
        save_checkpoint(path, self.to_dict(), kind=PRIOR_KIND, field="out")

    def check_link(self, cfg: OFDMLinkConfig, *, field_name: str = "checkpoint") -> None:
        """ConfigError ``field_name`` unless ``cfg``'s numerology is the one the bank was learned on."""
        n = self.numerology
        want = {"subcarrier_spacing": float(cfg.subcarrier_spacing), "fft_size": int(cfg.fft_size),
                "num_ofdm_symbols": int(cfg.num_ofdm_symbols),
                "ofdm_symbol_duration": (1.0 + cfg.cyclic_prefix_length / cfg.fft_size) / cfg.subcarrier_spacing}
        bad = [k for k, v in want.items() if not math.isclose(float(n.get(k, math.nan)), float(v), rel_tol=1e-6)]
        if bad:
            got = ", ".join(f"{k}={n.get(k)!r}" for k in bad)
            exp = ", ".join(f"{k}={want[k]!r}" for k in bad)
            raise ConfigError(field_name, f"the prior was learned for another OFDM grid ({got}; the link has {exp}); "
                                          f"make one for this grid with scripts/make_ofdm_adaptive_prior.py")


def load_prior_bank(spec, *, field_name: str = "checkpoint") -> PriorBank:
    """A :class:`PriorBank` from a path (``torch.load(weights_only=True)``), a dict or a bank."""
    if isinstance(spec, PriorBank):
        return spec
    if isinstance(spec, dict):
        return PriorBank.from_dict(spec, field_name=field_name)
    p = Path(spec)
    if not p.is_file():
        raise ConfigError(field_name, f"no such file: {str(spec)!r}")
    from metacomm.artefacts import load_checkpoint
    d = load_checkpoint(p, kinds=PRIOR_KIND, field=field_name)  # torch.load(weights_only=True), kind + finiteness
    return PriorBank.from_dict(d, field_name=field_name)


def shipped_prior_for(cfg: OFDMLinkConfig) -> Path | None:
    """The shipped prior checkpoint (``metacomm/checkpoints/ofdm_adaptive_*.pt``) learned on ``cfg``'s numerology,
    or ``None``."""
    for p in sorted(CHECKPOINT_DIR.glob("ofdm_adaptive_*.pt")):
        try:
            load_prior_bank(p).check_link(cfg)
        except ConfigError:
            continue
        return p
    return None


def build_prior_bank(cfg: OFDMLinkConfig, *, profiles=FAMILY_PROFILES, delay_spreads=FAMILY_DELAY_SPREADS,
                     speeds=FAMILY_SPEEDS, num_draws: int = 500, seed: int = 7,
                     carrier_frequency: float = REFERENCE_CARRIER, progress=None) -> PriorBank:
    """Learn a :class:`PriorBank` for ``cfg``'s numerology from Monte-Carlo draws of the family's channels.

    Frequency entries: one per (CDL/TDL profile, delay spread) (UMi: one, its delay spreads drawn from its LSPs), the
    lags averaged from :meth:`OFDMChannel.covariances` at speed 0 over ``num_draws`` grids (one receive antenna).
    Time entries: one per (profile, speed) at 100 ns. Hypotheses: every (frequency, time) pair of one profile; the
    meta prior is uniform over profiles, then over that profile's pairs. Seeds ``seed + i`` per entry (independent
    of any simulation's draws)."""
    import time as _time

    t0 = _time.process_time()
    num_draws = check_positive_int("num_draws", num_draws, maximum=10**6)
    seed = check_nonneg_int("seed", seed)
    base = dict(fft_size=cfg.fft_size, num_ofdm_symbols=cfg.num_ofdm_symbols, subcarrier_spacing=cfg.subcarrier_spacing,
                cyclic_prefix_length=cfg.cyclic_prefix_length, carrier_frequency=carrier_frequency, num_rx_ant=1,
                rx_polarization="single", normalize=cfg.normalize_channel)
    freq, time_, hf, ht, labels, dopp, dss, logp = [], [], [], [], [], [], [], []
    counter = 0
    for prof in profiles:
        prof_ds = [None] if prof == "umi" else list(delay_spreads)
        fi = []
        for ds in prof_ds:
            ch = OFDMChannel(prof, speed=0.0, delay_spread=100e-9 if ds is None else ds, **base)
            _, cf, _ = ch.covariances(num_draws=num_draws, seed=seed + counter, dtype=torch.complex64)
            counter += 1
            lag = _lags(cf.to(torch.complex128))
            freq.append(lag / lag[0].real)
            fi.append((len(freq) - 1, ds))
            if progress:
                progress(f"{prof} {'' if ds is None else f'{ds * 1e9:.0f} ns'}")
        ti = []
        for v in speeds:
            ch = OFDMChannel(prof, speed=float(v), delay_spread=100e-9, **base)
            ct, _, _ = ch.covariances(num_draws=num_draws, seed=seed + counter, dtype=torch.complex64)
            counter += 1
            lag = _lags(ct.to(torch.complex128))
            time_.append(lag / lag[0].real)
            ti.append((len(time_) - 1, ch.doppler))
            if progress:
                progress(f"{prof} {v:g} m/s")
        n_pairs = len(fi) * len(ti)
        for kf, ds in fi:
            for kt, fd in ti:
                hf.append(kf)
                ht.append(kt)
                dss.append(math.nan if ds is None else ds)
                dopp.append(fd)
                labels.append(f"{prof} {'umi-lsp' if ds is None else f'{ds * 1e9:.0f}ns'} {fd:.0f}Hz")
                logp.append(-math.log(len(profiles)) - math.log(n_pairs))
    lp = torch.tensor(logp, dtype=torch.float64)
    numerology = {"subcarrier_spacing": float(cfg.subcarrier_spacing), "fft_size": int(cfg.fft_size),
                  "num_ofdm_symbols": int(cfg.num_ofdm_symbols),
                  "ofdm_symbol_duration": (1.0 + cfg.cyclic_prefix_length / cfg.fft_size) / cfg.subcarrier_spacing}
    meta = {"profiles": list(profiles), "delay_spreads_s": [float(x) for x in delay_spreads],
            "speeds_m_s": [float(x) for x in speeds], "carrier_frequency_hz": float(carrier_frequency),
            "num_draws": int(num_draws), "seed": int(seed), "cpu_seconds": _time.process_time() - t0}
    return PriorBank(freq_lags=torch.stack(freq).to(torch.complex64), time_lags=torch.stack(time_).to(torch.complex64),
                     hyp_freq=torch.tensor(hf, dtype=torch.int64), hyp_time=torch.tensor(ht, dtype=torch.int64),
                     log_prior=lp - torch.logsumexp(lp, 0), labels=labels,
                     doppler=torch.tensor(dopp, dtype=torch.float64),
                     delay_spread=torch.tensor(dss, dtype=torch.float64), numerology=numerology, meta=meta)


_ON_THE_FLY: dict = {}
ON_THE_FLY_DRAWS = 200


def _on_the_fly_bank(cfg: OFDMLinkConfig) -> PriorBank:
    """The family's bank for a grid without a shipped prior, learned now from ``ON_THE_FLY_DRAWS`` draws per entry
    (seed 7; a few CPU seconds to a minute, once per numerology and process)."""
    key = (float(cfg.subcarrier_spacing), int(cfg.fft_size), int(cfg.num_ofdm_symbols), int(cfg.cyclic_prefix_length),
           cfg.normalize_channel)
    if key not in _ON_THE_FLY:
        bank = build_prior_bank(cfg, num_draws=ON_THE_FLY_DRAWS)
        bank.meta["source"] = f"learned at first use ({ON_THE_FLY_DRAWS} draws per entry)"
        _ON_THE_FLY[key] = bank
    return _ON_THE_FLY[key]


def single_hypothesis_bank(cov_time: torch.Tensor, cov_freq: torch.Tensor, cfg: OFDMLinkConfig, eff_idx) -> PriorBank:
    """A one-hypothesis bank from known covariances (``[S, S]`` and ``[F', F']`` on the effective subcarriers
    ``eff_idx``): the classical receiver's statistics in the bank format (lags averaged from the matrices; the
    frequency lags at missing offsets interpolated linearly)."""
    ct = cov_time.to(torch.complex128)
    lt = _lags(ct)
    cf = cov_freq.to(torch.complex128)
    idx = torch.as_tensor(np.asarray(eff_idx), dtype=torch.int64)
    d = idx[:, None] - idx[None, :]
    sums = torch.zeros(cfg.fft_size, dtype=torch.complex128)
    cnt = torch.zeros(cfg.fft_size, dtype=torch.float64)
    mask = d >= 0
    sums.index_add_(0, d[mask], cf[mask])
    cnt.index_add_(0, d[mask], torch.ones_like(d[mask], dtype=torch.float64))
    have = cnt > 0
    lf = torch.zeros_like(sums)
    lf[have] = sums[have] / cnt[have]
    pos = torch.nonzero(have).flatten()
    for i in torch.nonzero(~have).flatten().tolist():  # a lag no pair realises (across the DC null): interpolate
        lo, hi = pos[pos < i], pos[pos > i]
        if len(lo) and len(hi):
            a, b = int(lo[-1]), int(hi[0])
            lf[i] = lf[a] + (lf[b] - lf[a]) * (i - a) / (b - a)
        elif len(lo):
            lf[i] = lf[int(lo[-1])]
    return PriorBank(freq_lags=(lf / lf[0].real)[None].to(torch.complex64),
                     time_lags=(lt / lt[0].real)[None].to(torch.complex64),
                     hyp_freq=torch.zeros(1, dtype=torch.int64), hyp_time=torch.zeros(1, dtype=torch.int64),
                     log_prior=torch.zeros(1, dtype=torch.float64), labels=["true covariance"],
                     doppler=torch.full((1,), math.nan, dtype=torch.float64),
                     delay_spread=torch.full((1,), math.nan, dtype=torch.float64),
                     numerology={"subcarrier_spacing": float(cfg.subcarrier_spacing), "fft_size": int(cfg.fft_size),
                                 "num_ofdm_symbols": int(cfg.num_ofdm_symbols),
                                 "ofdm_symbol_duration": (1.0 + cfg.cyclic_prefix_length / cfg.fft_size)
                                 / cfg.subcarrier_spacing},
                     meta={"source": "the link's true covariances (lmmse-cov)"})


# -- Sionna blocks -----------------------------------------------------------------------------------------------
def _rx_blocks(cfg_dict: dict, precision: str, *, device: str):
    cfg = OFDMLinkConfig(**cfg_dict).validate()
    rg = build_resource_grid(cfg, precision, device=device)
    eq = LMMSEEqualizer(rg, StreamManagement(np.array([[1]]), 1), precision=precision, device=device)
    dm = Demapper(cfg.demapping, "qam", cfg.bits_per_symbol, precision=precision, device=device)
    code = LDPC5GEncoder(cfg.k, cfg.n, num_bits_per_symbol=cfg.bits_per_symbol if cfg.interleave else None,
                         precision=precision, device=device)
    dec = LDPC5GDecoder(code, hard_out=False, return_infobits=False, num_iter=cfg.num_bp_iter, precision=precision,
                        device=device)
    return eq, dm, dec


def _top_eig(c: torch.Tensor, rank_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Leading eigenpairs of Hermitian ``c [..., N, N]``: ``(lam [..., r], U [..., N, r])``, ``r`` the most any
    matrix of the batch needs (eigenvalues above ``_EIG_REL`` of its largest), at most ``rank_max``."""
    lam, u = torch.linalg.eigh(c)
    lam, u = lam.flip(-1), u.flip(-1)
    need = int((lam > _EIG_REL * lam[..., :1]).sum(-1).max())
    r = max(1, min(rank_max, need))
    return lam[..., :r].clamp_min(0.0), u[..., :r]


class AdaptiveOFDMReceiver(OFDMReceiver):
    """The adaptive receiver (module docstring). ``(y [G, 1, R, S, F], no [G]) -> LLR [G, 1, 1, N_data m]``.

    Args:
        link: the :class:`~metacomm.codecs.ofdm.OFDMLink` (its config and resource grid).
        prior: a :class:`PriorBank`, its checkpoint path, or ``None``: the shipped prior for the link's grid, or,
            for a grid without one, the family's bank learned at first use (:data:`ON_THE_FLY_DRAWS` draws per entry,
            cached per numerology for the process).
        turbo_iters: data-aided re-estimations (0: pilots only).
        forget: in :meth:`step`, the weight of the meta prior mixed into the carried belief per slot (0..1).
        rank_freq, rank_time: at most this many leading eigenvectors of the frequency / time covariance.
        name: the receiver's name (default ``"adaptive"``).
        stop_llr: a grid leaves the turbo loop once every coded bit's a-posteriori |LLR| is at least this (the
            decoder has converged: re-estimating would not change its decision); ``inf``: always iterate.
        antenna_power: ``None`` (estimated per grid from the pilots) or known per-antenna powers ``[R]``.
    """

    name = "adaptive"

    def __init__(self, link, prior=None, *, turbo_iters: int = 2, forget: float = 0.05, rank_freq: int = 32,
                 rank_time: int = 6, name: str | None = None, antenna_power=None, stop_llr: float = 8.0):
        super().__init__(link)
        cfg = self.config
        if prior is None:
            prior = shipped_prior_for(cfg) or _on_the_fly_bank(cfg)
        self.prior_source = str(prior) if not isinstance(prior, PriorBank) else str(prior.meta.get("source", "bank"))
        self.bank = load_prior_bank(prior)
        self.bank.check_link(cfg)
        self.turbo_iters = check_nonneg_int("turbo_iters", turbo_iters, maximum=20)
        if not (isinstance(forget, (int, float)) and 0.0 <= float(forget) <= 1.0):
            raise ConfigError("forget", f"must be a number in [0, 1], got {forget!r}")
        self.forget = float(forget)
        if not (isinstance(stop_llr, (int, float)) and float(stop_llr) > 0):
            raise ConfigError("stop_llr", f"must be a number > 0, got {stop_llr!r}")
        self.stop_llr = float(stop_llr)
        self.rank_freq = check_positive_int("rank_freq", rank_freq, maximum=4096)
        self.rank_time = check_positive_int("rank_time", rank_time, maximum=1024)
        if name is not None:
            self.name = name
        rg = link.resource_grid()
        eff = torch.as_tensor(np.asarray(rg.effective_subcarrier_ind), dtype=torch.int64)
        mask = torch.as_tensor(np.asarray(rg.pilot_pattern.mask)[0, 0]).bool()  # [S, F'] pilot REs
        S, Fe = mask.shape
        psym = torch.nonzero(mask.all(-1)).flatten()
        if not bool(mask[psym].all()) or int(mask.sum()) != len(psym) * Fe:
            raise ConfigError("pilot_ofdm_symbol_indices", "the adaptive receiver needs Kronecker pilots on whole "
                                                           "OFDM symbols")
        pil = torch.zeros(S * Fe, dtype=torch.complex64)
        pil[torch.nonzero(mask.flatten()).flatten()] = torch.as_tensor(
            np.asarray(rg.pilot_pattern.pilots)[0, 0]).to(torch.complex64)
        self._eff = eff
        self._mask = mask
        self._psym = psym
        self._pilots = pil.reshape(S, Fe)
        self._data_idx = torch.nonzero(~mask.flatten()).flatten()  # ResourceGridMapper order (symbol-major)
        self._cov_f = _toeplitz(self.bank.freq_lags.to(torch.complex128), eff).to(torch.complex64)  # [Kf, F', F']
        self._cov_t = _toeplitz(self.bank.time_lags.to(torch.complex128)[:, :S],
                                torch.arange(S)).to(torch.complex64)  # [Kt, S, S]
        if self.bank.time_lags.shape[1] < S or self.bank.freq_lags.shape[1] < int(eff.max()) + 1:
            raise ConfigError("checkpoint", "the prior's lags do not cover the link's grid")
        # per frequency entry: leading eigenpairs (likelihood); per time entry: eigenpairs on the pilot symbols
        lam, u = torch.linalg.eigh(self._cov_f.to(torch.complex128))
        rf = min(self.rank_freq, Fe)
        self._lik_lf = lam.flip(-1)[:, :rf].clamp_min(0.0).to(torch.float32)
        self._lik_uf = u.flip(-1)[:, :, :rf].to(torch.complex64)
        lt, ut = torch.linalg.eigh(self._cov_t[:, psym][:, :, psym].to(torch.complex128))
        self._lik_lt = lt.clamp_min(0.0).to(torch.float32)
        self._lik_ut = ut.to(torch.complex64)
        self._antenna_power = None if antenna_power is None else torch.as_tensor(antenna_power, dtype=torch.float32)
        c = Constellation("qam", cfg.bits_per_symbol, device="cpu")
        self._points = c.points.detach().to(torch.complex64).cpu()
        m = cfg.bits_per_symbol
        idx = torch.arange(2 ** m)
        self._labels = ((idx[:, None] >> torch.arange(m - 1, -1, -1)[None, :]) & 1).to(torch.float32)  # [2^m, m]
        self._blocks = SionnaBlocks(partial(_rx_blocks, cfg.to_dict()))

    # -- state ------------------------------------------------------------------------------------------------
    def init_state(self, num_links: int) -> dict:
        """The per-link state before any slot: ``{"log_belief": float [num_links, H]}`` (the meta prior)."""
        n = check_positive_int("num_links", num_links)
        return {"log_belief": self.bank.log_prior.to(torch.float32)[None].expand(n, -1).clone()}

    def _prior_from_state(self, state: dict, num_grids: int, device) -> torch.Tensor:
        lb = state["log_belief"].to(device=device, dtype=torch.float32)
        if lb.shape != (num_grids, self.bank.num_hypotheses):
            raise ConfigError("state", f"log_belief must be [{num_grids}, {self.bank.num_hypotheses}], got "
                                       f"{list(lb.shape)}")
        meta = self.bank.log_prior.to(device=device, dtype=torch.float32)[None]
        if self.forget <= 0.0:
            return lb
        return torch.logaddexp(lb + math.log1p(-self.forget) if self.forget < 1.0 else torch.full_like(lb, -math.inf),
                               meta + math.log(self.forget))

    # -- helpers ----------------------------------------------------------------------------------------------
    def _to(self, t, dev):
        return t.to(dev)

    def _split(self, y: torch.Tensor) -> torch.Tensor:
        """``y [G, 1, R, S, F]`` -> effective subcarriers ``[G, R, S, F']``."""
        return y[:, 0][..., self._eff.to(y.device)]

    def _powers(self, h_ls: torch.Tensor, no: torch.Tensor) -> torch.Tensor:
        """Per grid and antenna channel power ``[G, R]``: known, or ``mean |h_ls|^2 - N0`` (floored)."""
        if self._antenna_power is not None:
            return self._antenna_power.to(h_ls.device)[None].expand(h_ls.shape[0], -1)
        e = h_ls.abs().square().mean(dim=(-2, -1))
        return torch.maximum(e - no[:, None], 0.05 * e).clamp_min(1e-6)

    def loglik(self, h_ls: torch.Tensor, no: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
        """Pilot log-likelihood (up to a constant) of each hypothesis, float ``[G, H]``.

        ``h_ls`` complex ``[G, R, P, F']`` (LS on the pilot symbols, noise variance ``no [G]``), ``power [G, R]``.
        """
        dev = h_ls.device
        uf, lf = self._lik_uf.to(dev), self._lik_lf.to(dev)  # [Kf, F', r], [Kf, r]
        ut, lt = self._lik_ut.to(dev), self._lik_lt.to(dev)  # [Kt, P, P], [Kt, P]
        hf, ht = self.bank.hyp_freq.to(dev), self.bank.hyp_time.to(dev)
        y1 = torch.einsum("grpf,kfj->grkpj", h_ls, uf.conj())  # [G, R, Kf, P, r]
        z = torch.einsum("hpi,grhpj->grhij", ut[ht].conj(), y1[:, :, hf])  # [G, R, H, P, r]
        v = (power[:, :, None, None, None] * lt[ht][None, None, :, :, None] * lf[hf][None, None, :, None, :]
             + no[:, None, None, None, None])
        z2 = z.abs().square()
        ll = (z2 * (1.0 / no[:, None, None, None, None] - 1.0 / v) - torch.log(v / no[:, None, None, None, None]))
        return ll.sum(dim=(1, 3, 4))

    def _mixture(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior-mixture covariances ``(C_t [G, S, S], C_f [G, F', F'])`` of weights ``w [G, H]``."""
        dev = w.device
        kf, kt = self._cov_f.shape[0], self._cov_t.shape[0]
        wf = torch.zeros(w.shape[0], kf, dtype=w.dtype, device=dev).index_add_(1, self.bank.hyp_freq.to(dev), w)
        wt = torch.zeros(w.shape[0], kt, dtype=w.dtype, device=dev).index_add_(1, self.bank.hyp_time.to(dev), w)
        cf = torch.einsum("gk,kab->gab", wf.to(torch.complex64), self._cov_f.to(dev))
        ct = torch.einsum("gk,kab->gab", wt.to(torch.complex64), self._cov_t.to(dev))
        return ct, cf

    def lmmse(self, y: torch.Tensor, a: torch.Tensor, sigma2: torch.Tensor, power: torch.Tensor,
              eig_t: tuple, eig_f: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Kronecker-prior LMMSE channel estimate from ``y = h a + e`` on every resource element.

        ``y`` complex ``[G, R, S, F']``; ``a`` complex ``[G, S, F']`` the known/soft symbols (0 where nothing is
        known); ``sigma2`` float ``[G, R, S, F']`` the variance of ``e``; ``power [G, R]``; ``eig_t = (lam [G, rt],
        U [G, S, rt])``, ``eig_f = (lam [G, rf], U [G, F', rf])`` of the prior's time/frequency correlation.
        Returns ``(h_hat [G, R, S, F'], err_var [G, R, S])`` (error variance averaged over subcarriers, prior
        variance outside the basis included).
        """
        lt, ut = eig_t
        lf, uf = eig_f
        G, R, S, Fe = y.shape
        rt, rf = lt.shape[-1], lf.shape[-1]
        d = (a.abs().square()[:, None] / sigma2).to(y.real.dtype)  # [G, R, S, F']
        b = a.conj()[:, None] * y / sigma2
        gt = torch.einsum("gfj,grtf,gfk->grtjk", uf.conj(), d.to(uf.dtype), uf)  # [G, R, S, rf, rf]
        amat = torch.einsum("gti,gtk,grtjl->grijkl", ut.conj(), ut, gt).reshape(G, R, rt * rf, rt * rf)
        lam = (power[:, :, None, None] * lt[:, None, :, None] * lf[:, None, None, :]).reshape(G, R, rt * rf)
        sq = lam.clamp_min(0.0).sqrt().to(amat.dtype)  # whitened coordinates beta = Lambda^{-1/2} alpha
        amat = sq[..., :, None] * amat * sq[..., None, :] + torch.eye(rt * rf, dtype=amat.dtype, device=amat.device)
        c = torch.einsum("gti,grtf,gfj->grij", ut.conj(), b, uf.conj()).reshape(G, R, rt * rf, 1) * sq[..., None]
        chol, info = torch.linalg.cholesky_ex(amat)
        if bool((info != 0).any()):  # numerically indefinite (should not happen): add jitter
            amat = amat + 1e-5 * torch.eye(rt * rf, dtype=amat.dtype, device=amat.device)
            chol = torch.linalg.cholesky(amat)
        alpha = (torch.cholesky_solve(c, chol) * sq[..., None]).reshape(G, R, rt, rf)
        h_hat = torch.einsum("gti,grij,gfj->grtf", ut, alpha, uf)
        kinv = (sq[..., :, None] * torch.cholesky_inverse(chol) * sq[..., None, :]).reshape(G, R, rt, rf, rt, rf)
        # per-symbol mean of diag(Phi K Phi^H): sum_{i,i',j} U_t[t,i] K[(i,j),(i',j)] conj(U_t[t,i']) / F'
        kjj = torch.diagonal(kinv, dim1=3, dim2=5).sum(-1)  # [G, R, rt, rt]
        post = torch.einsum("gti,grik,gtk->grt", ut, kjj, ut.conj()).real / Fe
        # prior variance outside the kept basis, per symbol
        kept = torch.einsum("gti,gi->gt", ut.abs().square(), lt) * lf.sum(-1, keepdim=True) / Fe  # [G, S]
        outside = (power[:, :, None] * (1.0 - kept[:, None, :])).clamp_min(0.0)
        return h_hat, (post + outside).clamp_min(0.0)

    def _soft_symbols(self, llr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Coded-bit LLRs ``[G, N_data, m]`` (``ln P(1)/P(0)``) -> soft symbols ``(mean, var)`` ``[G, N_data]``."""
        lab = self._labels.to(llr.device, llr.dtype)
        logits = llr @ lab.T  # [G, N, 2^m]
        p = torch.softmax(logits, dim=-1).to(torch.complex64)
        pts = self._points.to(llr.device)
        mean = p @ pts
        var = (p.real @ pts.abs().square().to(p.real.dtype)) - mean.abs().square()
        return mean, var.clamp_min(0.0)

    def _equalise(self, blocks, y, h_hat, err_t, no):
        eq, dm, _ = blocks
        h7 = h_hat[:, None, :, None, None]  # [G, 1, R, 1, 1, S, F']
        ev = err_t[:, None, :, None, None, :, None].expand_as(h7.real)
        x_hat, no_eff = eq(y, h7, ev, no)
        return dm(x_hat, no_eff)

    def _decode_app(self, blocks, llr: torch.Tensor) -> torch.Tensor:
        """Demapper LLRs ``[G, 1, 1, N_data m]`` -> a-posteriori coded-bit LLRs of the same shape (pad bits 0)."""
        _, _, dec = blocks
        c = self.config
        G = llr.shape[0]
        flat = llr.reshape(G, -1)
        cw = flat[:, :c.num_codewords * c.n].reshape(-1, c.n)
        app = dec(cw).reshape(G, -1)
        if c.pad_bits:
            app = torch.cat([app, torch.zeros(G, c.pad_bits, dtype=app.dtype, device=app.device)], -1)
        return app.reshape(llr.shape)

    # -- the receiver -----------------------------------------------------------------------------------------
    def _pilot_stage(self, ye, no, log_prior):
        dev = ye.device
        psym = self._psym.to(dev)
        pil = self._pilots.to(dev)
        pp = pil[psym]  # [P, F']
        h_ls = ye[:, :, psym] * pp.conj() / pp.abs().square()
        power = self._powers(h_ls, no)
        ll = self.loglik(h_ls, no, power)
        log_post = log_prior + ll
        log_post = log_post - torch.logsumexp(log_post, -1, keepdim=True)
        w = log_post.exp()
        ct, cf = self._mixture(w)
        eig_t = _top_eig(ct, self.rank_time)
        eig_f = _top_eig(cf, self.rank_freq)
        G, R, S, Fe = ye.shape
        a = pil[None].expand(G, S, Fe)
        sigma2 = torch.where(self._mask.to(dev)[None, None], no[:, None, None, None],
                             torch.full_like(no[:, None, None, None], 1e30)).expand(G, R, S, Fe)
        h_hat, err = self.lmmse(ye, a, sigma2, power, eig_t, eig_f)
        return h_hat, err, power, eig_t, eig_f, log_post

    def _run(self, y: torch.Tensor, no: torch.Tensor, log_prior: torch.Tensor):
        blocks = self.blocks(y.device)
        no = no.to(device=y.device, dtype=y.real.dtype).reshape(-1)
        ye = self._split(y)
        h_hat, err, power, eig_t, eig_f, log_post = self._pilot_stage(ye, no, log_prior)
        G, R, S, Fe = ye.shape
        dev = y.device
        m = self.config.bits_per_symbol
        mask = self._mask.to(dev)
        didx = self._data_idx.to(dev)
        c = self.config
        llr = self._equalise(blocks, y, h_hat, err, no)
        active = torch.arange(G, device=dev)  # grids still iterating
        for _ in range(self.turbo_iters):
            app = self._decode_app(blocks, llr[active])
            # stop where the decoder has converged: every codeword bit's a-posteriori |LLR| >= stop_llr
            conf = app.reshape(len(active), -1)[:, :c.num_codewords * c.n].abs().amin(-1)
            go = conf < self.stop_llr
            active, app = active[go], app[go]
            if len(active) == 0:
                break
            n_a = len(active)
            mean, var = self._soft_symbols(app.reshape(n_a, -1, m))
            a = self._pilots.to(dev).reshape(-1).repeat(n_a, 1)
            v = torch.zeros(n_a, S * Fe, dtype=var.dtype, device=dev)
            a[:, didx] = mean
            v[:, didx] = var
            a, v = a.reshape(n_a, S, Fe), v.reshape(n_a, S, Fe)
            pw = power[active]
            sigma2 = no[active][:, None, None, None] + pw[:, :, None, None] * v[:, None]
            sigma2 = torch.where(mask[None, None] | (a.abs()[:, None] > 0), sigma2, torch.full_like(sigma2, 1e30))
            et = (eig_t[0][active], eig_t[1][active])
            ef = (eig_f[0][active], eig_f[1][active])
            h_a, err_a = self.lmmse(ye[active], a, sigma2, pw, et, ef)
            h_hat, err = h_hat.clone(), err.clone()
            h_hat[active], err[active] = h_a, err_a
            llr = llr.clone()
            llr[active] = self._equalise(blocks, y[active], h_a, err_a, no[active])
        return llr, h_hat, err, log_post

    @torch.no_grad()
    def forward(self, y: torch.Tensor, no: torch.Tensor, *, h_freq: torch.Tensor | None = None) -> torch.Tensor:
        G = y.shape[0]
        lp = self.bank.log_prior.to(device=y.device, dtype=torch.float32)[None].expand(G, -1)
        return self._run(y, torch.as_tensor(no), lp)[0]

    @torch.no_grad()
    def step(self, y: torch.Tensor, no: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict, dict]:
        """One slot of each of ``G`` links carrying ``state`` (:meth:`init_state`): ``(llr [G, 1, 1, N_data m],
        new_state, info)``; ``info`` has ``h_hat [G, R, S, F']``, ``err_var [G, R, S]``, the posterior mean
        Doppler ``doppler_hz [G]`` and delay spread ``delay_spread_s [G]`` of the belief."""
        prior = self._prior_from_state(state, y.shape[0], y.device)
        llr, h_hat, err, log_post = self._run(y, torch.as_tensor(no), prior)
        w = log_post.exp().double()
        dop = (w * self.bank.doppler.to(w.device)[None]).sum(-1)
        ds = self.bank.delay_spread.to(w.device)
        ok = torch.isfinite(ds)
        dsm = (w[:, ok] * ds[ok][None]).sum(-1) / w[:, ok].sum(-1).clamp_min(1e-30)
        return llr, {"log_belief": log_post.float()}, {"h_hat": h_hat, "err_var": err, "doppler_hz": dop.float(),
                                                       "delay_spread_s": dsm.float()}

    @torch.no_grad()
    def estimate_channel(self, y: torch.Tensor, no) -> tuple[torch.Tensor, torch.Tensor]:
        """Sionna ``channel_estimator`` call: pilots only (steps 1-2). ``y [G, 1, R, S, F]``, ``no`` [G] or a number
        -> ``(h_hat [G, 1, R, 1, 1, S, F'], err_var [G, 1, R, 1, 1, S, F'])``."""
        G = y.shape[0]
        no = torch.as_tensor(no, dtype=y.real.dtype, device=y.device).reshape(-1).expand(G).contiguous()
        lp = self.bank.log_prior.to(device=y.device, dtype=torch.float32)[None].expand(G, -1)
        h_hat, err = self._pilot_stage(self._split(y), no, lp)[:2]
        h7 = h_hat[:, None, :, None, None]
        return h7, err[:, None, :, None, None, :, None].expand_as(h7.real).contiguous()

    def describe(self) -> dict:
        """Settings for a results file: the prior's source and size, and the loop's settings."""
        return {"receiver": self.name, "prior": self.prior_source, "hypotheses": self.bank.num_hypotheses,
                "prior_meta": {k: v for k, v in self.bank.meta.items() if isinstance(v, (int, float, str, list))},
                "turbo_iters": self.turbo_iters, "stop_llr": self.stop_llr, "forget": self.forget,
                "rank_freq": self.rank_freq, "rank_time": self.rank_time}

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, hypotheses={self.bank.num_hypotheses}, turbo_iters={self.turbo_iters}, "
                f"forget={self.forget}, prior={self.prior_source!r}")


def classical_turbo_receiver(link, *, turbo_iters: int = 2) -> AdaptiveOFDMReceiver:
    """``lmmse-cov-turbo``: the same turbo loop on the link's true covariances (``lmmse-cov``'s: time, frequency,
    and the per-antenna powers from the space covariance's diagonal) -- the classical data-aided baseline."""
    rg = link.resource_grid()
    cfg = link.config
    ct, cf, cs = link.channel.covariances(num_draws=cfg.cov_draws, seed=cfg.cov_seed,
                                          subcarriers=[int(i) for i in rg.effective_subcarrier_ind], dtype=link.dtype)
    bank = single_hypothesis_bank(ct, cf, cfg, rg.effective_subcarrier_ind)
    return AdaptiveOFDMReceiver(link, bank, turbo_iters=turbo_iters, name="lmmse-cov-turbo",
                                antenna_power=torch.diagonal(cs).real.to(torch.float32))
