r"""Drift runs: every scheme, frame by frame, on the *same* channel realisations (common random numbers).

:func:`run_drift` plays a drift scenario (:mod:`metacomm.scenarios.drift_scenarios`) for ``frames`` frames and
``links`` independent links. Per frame ``t`` it draws the :class:`~metacomm.channels.drift.Frame` once (channel
state and N0 per link), then ``pilots`` known pilot messages and ``payload`` data messages per link with their
unit-variance noise, transmits them with the meta-learned encoder through that frame's channel, and hands the
*same* received pilots and payload to every scheme:

* ``static`` -- the codec adapted once on frame 0's pilots (``steps`` steps from the meta-init), then frozen:
  what a deployed codec does without online adaptation;
* ``retrain`` -- periodic full retraining from scratch: every ``retrain_every`` frames a freshly initialised
  decoder is trained with Adam (``retrain_lr``, ``retrain_steps`` steps) on that frame's pilots only;
* ``meta`` -- adapt from the meta-init every frame (``steps`` SGD steps at ``lr`` on the pilots);
* ``warm`` -- warm-start adaptation every frame (from the previous frame's weights);
* ``online-meta`` -- follow-the-meta-leader (Reptile on the last frames' pilots refines a per-link init);
* ``on-detection``, ``reset-on-change`` -- the detector-driven policies of :class:`AdaptiveCodec`;
* ``pilot-ls`` -- classical: least-squares estimate of the ``L`` taps from the pilot codewords,
  :math:`\hat h = (X^H X)^{-1} X^H y_p`, then ML detection over the codec's codebook with :math:`\hat h`;
* ``genie`` -- ML detection over the codec's own codebook with perfect knowledge of the frame's channel and N0:
  :math:`\hat m = \arg\min_m \|y - \mathcal C_t(c_m)\|^2` with :math:`\mathcal C_t` the noiseless channel of
  frame ``t`` (any channel whose randomness besides AWGN is in its state) -- the best any decoder for this
  encoder can do; ``genie{d}dB`` for each ``genie_offsets_db`` entry ``d``: the same genie with the *same*
  noise draw scaled to Eb/N0 + d dB (d < 0: a worse channel), so "scheme X is within 1 dB of the genie" reads
  BLER(X) <= BLER(genie-1dB).

Outputs (:class:`DriftResult`): per frame and scheme block/bit errors, counts, BLER/BER and adaptation latency
[ms]; :meth:`DriftResult.save` writes ``results.json`` (``{"config", "frames", "summary"}``) and
``results.csv``; :func:`plot_drift` the BER/BLER-over-time figure with the drift value on a second axis;
:meth:`DriftResult.summary_table` the table (mean BLER with Clopper-Pearson 95 % interval over all blocks, frames
above ``bler_target``, mean latency per frame).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from metacomm._validation import (
    ConfigError,
    check_nonneg,
    check_nonneg_int,
    check_positive,
    check_positive_int,
)
from metacomm.adaptation.functional import Adam, batched_loss
from metacomm.adaptation.online import AdaptiveCodec
from metacomm.channels.base import complex_normal, make_generator
from metacomm.codecs.equalization import pilot_matrix
from metacomm.codecs.learned_base import index_to_bits
from metacomm.sims.stats import clopper_pearson

__all__ = ["SCHEMES", "DEFAULT_SCHEMES", "DriftResult", "run_drift", "plot_drift", "parse_schemes"]

SCHEMES = ("static", "retrain", "meta", "warm", "online-meta", "on-detection", "reset-on-change", "pilot-ls",
           "genie")
DEFAULT_SCHEMES = ("static", "retrain", "meta", "warm", "online-meta", "pilot-ls", "genie")
ADAPTIVE = {"meta": dict(policy="every-frame"), "warm": dict(policy="every-frame", warm_start=True),
            "online-meta": dict(policy="online-meta"), "on-detection": dict(policy="on-detection"),
            "reset-on-change": dict(policy="reset-on-change"), "static": dict(policy="every-frame")}


def parse_schemes(text: str | Sequence[str], field_name: str = "--schemes") -> list[str]:
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if not items:
        raise ConfigError(field_name, f"give at least one scheme; allowed: {', '.join(SCHEMES)}")
    for s in items:
        if s not in SCHEMES:
            raise ConfigError(field_name, f"unknown scheme {s!r}; allowed: {', '.join(SCHEMES)}")
    return list(dict.fromkeys(items))


def genie_name(offset_db: float) -> str:
    return f"genie{offset_db:+g}dB"


@dataclass
class DriftResult:
    """Per-frame counts of a drift run. ``frames[t] = {"frame", "segment", "drift", "ebno_db", "gain_db",
    "schemes": {name: {"block_errors", "blocks", "bit_errors", "bits", "bler", "ber", "latency_ms"}}}`` with
    ``gain_db = {"mean", "p10", "p90"}``: the channel's power gain [dB] (noise-free received over transmitted
    payload energy) -- of the mean over links, and the 10th/90th percentiles across links."""

    config: dict
    frames: list[dict] = field(default_factory=list)
    bler_target: float = 0.1

    @property
    def schemes(self) -> list[str]:
        return list(self.frames[0]["schemes"]) if self.frames else []

    def series(self, scheme: str, key: str = "bler") -> list[float]:
        return [f["schemes"][scheme][key] for f in self.frames]

    def summary(self) -> dict:
        out = {}
        for s in self.schemes:
            be = sum(self.series(s, "block_errors"))
            bl = sum(self.series(s, "blocks"))
            bi = sum(self.series(s, "bit_errors"))
            nb = sum(self.series(s, "bits"))
            lat = [v for v in self.series(s, "latency_ms") if v is not None]
            out[s] = {"bler": be / bl, "bler_ci": list(clopper_pearson(be, bl)), "ber": bi / nb,
                      "ber_ci": list(clopper_pearson(bi, nb)), "block_errors": be, "blocks": bl,
                      "bit_errors": bi, "bits": nb,
                      "frames_above_target": int(sum(b > self.bler_target for b in self.series(s))),
                      "latency_ms_mean": (sum(lat) / len(lat)) if lat else None}
        return out

    def summary_table(self) -> str:
        summ = self.summary()
        n = len(self.frames)
        lines = [f"{'scheme':16s} {'mean BLER':>10s} {'95% CI':>21s} {'mean BER':>10s} "
                 f"{'frames BLER>' + format(self.bler_target, 'g'):>16s} {'adapt ms/frame':>15s}"]
        for s, r in summ.items():
            lo, hi = r["bler_ci"]
            lat = "-" if r["latency_ms_mean"] is None else f"{r['latency_ms_mean']:.2f}"
            lines.append(f"{s:16s} {r['bler']:10.4g} [{lo:9.3g}, {hi:9.3g}] {r['ber']:10.4g} "
                         f"{r['frames_above_target']:>9d}/{n:<6d} {lat:>15s}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"config": self.config, "frames": self.frames, "summary": self.summary()}

    def save(self, out_dir) -> tuple[Path, Path]:
        """Write ``results.json`` and ``results.csv`` (one row per frame and scheme) into ``out_dir``."""
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        pj, pc = d / "results.json", d / "results.csv"
        pj.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=True))
        rows = ["frame,segment,drift,ebno_db,scheme,block_errors,blocks,bler,bit_errors,bits,ber,latency_ms"]
        for f in self.frames:
            for s, r in f["schemes"].items():
                lat = "" if r["latency_ms"] is None else f"{r['latency_ms']:.4f}"
                rows.append(f"{f['frame']},{f['segment']},{f['drift']:.6g},{f['ebno_db']:.4f},{s},"
                            f"{r['block_errors']},{r['blocks']},{r['bler']:.6g},{r['bit_errors']},{r['bits']},"
                            f"{r['ber']:.6g},{lat}")
        pc.write_text("\n".join(rows) + "\n")
        return pj, pc


def _rep(t: torch.Tensor, times: int) -> torch.Tensor:
    return t.repeat_interleave(times, dim=0)


def _transmit(channel, x, no, state, noise):
    """``x`` ``[B, N, n]`` through ``channel`` with per-link state/N0 and noise ``[B, N, n_rx]``."""
    B, N, n = x.shape
    st = {k: _rep(v, N) for k, v in state.items()}
    y = channel(x.reshape(B * N, n), _rep(no, N), state=st, noise=noise.reshape(B * N, -1))
    return y.reshape(B, N, -1)


def _noiseless(channel, x, state):
    B, N, n = x.shape
    st = {k: _rep(v, N) for k, v in state.items()}
    zero = torch.zeros(B * N, device=x.device)
    n_rx = channel.output_length(n)
    y = channel(x.reshape(B * N, n), zero, state=st, noise=torch.zeros(B * N, n_rx, dtype=x.dtype, device=x.device))
    return y.reshape(B, N, -1)


def _ml_decide(y, images, no):
    """``argmin_m ||y - images_m||^2`` per link: y ``[B, N, n]``, images ``[B, M, n]`` -> ``[B, N]``."""
    yr = torch.view_as_real(y).flatten(-2)
    ir = torch.view_as_real(images).flatten(-2)
    d = -2.0 * yr @ ir.transpose(-1, -2) + ir.square().sum(-1).unsqueeze(-2)
    return d.argmin(-1)


def _count(msg_hat, msg, k):
    be = int((msg_hat != msg).sum())
    bits_hat = index_to_bits(msg_hat, k, dtype=torch.bool)
    bits = index_to_bits(msg, k, dtype=torch.bool)
    bi = int((bits_hat != bits).sum())
    return be, msg.numel(), bi, msg.numel() * k


def _fresh_decoder_codec(model, seed: int, device):
    fresh = copy.deepcopy(model)
    g = torch.Generator().manual_seed(int(seed))
    if hasattr(fresh, "reset_parameters"):
        fresh.reset_parameters(g)
    fresh.encoder.load_state_dict(model.encoder.state_dict())
    return fresh.to(device)


def run_drift(scenario, model: torch.nn.Module, *, frames: int, pilots: int = 16, steps: int = 1,
              schemes: Sequence[str] = DEFAULT_SCHEMES, links: int = 8, payload: int = 64, seed: int = 0,
              device="cpu", lr: float = 0.1, adapt="decoder.taps", inner_loss: str | None = None,
              num_taps: int | None = None,
              retrain_every: int = 10, retrain_steps: int = 100, retrain_lr: float = 1e-2,
              genie_offsets_db: Sequence[float] = (-1.0,), bler_target: float = 0.1, quiet: bool = True,
              on_frame: Callable[[object, dict], None] | None = None) -> DriftResult:
    """Run a drift scenario (module docstring) and return the per-frame results.

    :param scenario: a :class:`~metacomm.scenarios.drift_scenarios.DriftScenario` (its codec geometry must match
        ``model``: ``k`` bits, ``n`` complex uses).
    :param model: the meta-trained codec (e.g. :class:`~metacomm.scenarios.online_drift.DriftAutoencoder`);
        not modified.
    :param frames: number of frames (>= 1); :param pilots: pilot messages per link and frame (>= 1);
    :param steps: adaptation steps per frame (>= 0); :param links: independent links ``B``;
    :param payload: data messages per link and frame; :param seed: seed of the channel draws (scenario
        timeline) -- data and noise use ``seed + 1``; the retrain init ``seed + 2``.
    :param lr: adaptation SGD rate; :param adapt: adapted parameters (adapt spec); :param inner_loss: the
        pilot loss of the adaptive schemes (``"ce"`` or ``"pilot-fit"``, see :class:`AdaptiveCodec`; default:
        the model's ``meta_inner_loss``, as set by ``load_meta``, else ``"ce"``);
    :param num_taps: model order of ``pilot-ls`` (default: the decoder's ``num_taps``, else 3).
    :param on_frame: ``on_frame(frame, signals)`` after each frame with the shared signals
        (``msg_p, y_p, msg_d, y_d``) -- used by tests to check common random numbers.
    """
    frames = check_positive_int("--frames", frames)
    pilots = check_positive_int("--pilots", pilots)
    steps = check_nonneg_int("--steps", steps)
    links = check_positive_int("--links", links)
    payload = check_positive_int("payload", payload)
    check_positive("lr", lr)
    retrain_every = check_positive_int("retrain_every", retrain_every)
    retrain_steps = check_nonneg_int("retrain_steps", retrain_steps)
    check_nonneg("bler_target", bler_target)
    schemes = parse_schemes(list(schemes))
    if inner_loss is None:
        inner_loss = getattr(model, "meta_inner_loss", "ce")
    dev = torch.device(device)
    k, n = int(model.num_info_bits), int(model.num_channel_uses)
    if scenario.k != k or math.ceil(scenario.n) != n:
        raise ConfigError("--checkpoint", f"the codec has k={k}, n={n} complex uses but scenario {scenario.name!r} "
                                          f"is for k={scenario.k}, n={scenario.n:g}")
    model = copy.deepcopy(model).to(dev).eval()
    L = int(num_taps or getattr(model.decoder, "num_taps", 3))
    M = 2 ** k
    codecs: dict[str, AdaptiveCodec] = {}
    for s in schemes:
        if s in ADAPTIVE:
            codecs[s] = AdaptiveCodec(model, num_links=links, adapt=adapt, steps=steps, lr=lr, loss=inner_loss,
                                      **ADAPTIVE[s]).to(dev)
    retrain_fast = None
    retrain_model = _fresh_decoder_codec(model, seed + 2, dev) if "retrain" in schemes else None
    retrain_names = [nm for nm, _ in retrain_model.named_parameters() if nm.startswith("decoder.")] \
        if retrain_model is not None else []
    g_ch = make_generator(seed, dev)
    g_data = make_generator(seed + 1, dev)
    with torch.no_grad():
        book = model.encoder.codebook()  # [M, n]
    res = DriftResult(config={
        "scenario": scenario.name, "scenario_source": scenario.source, "frames": frames, "pilots": pilots,
        "steps": steps, "links": links, "payload_blocks_per_link": payload, "seed": seed, "device": str(dev),
        "lr": lr, "adapt": adapt, "inner_loss": inner_loss, "schemes": schemes, "k": k, "n": n, "ebno_db": scenario.ebno_db,
        "retrain_every": retrain_every, "retrain_steps": retrain_steps, "retrain_lr": retrain_lr,
        "genie_offsets_db": list(genie_offsets_db), "bler_target": bler_target, "drift_name": scenario.plot,
        "pilot_ls_taps": L,
        "ci": "Clopper-Pearson 95% over blocks (BLER) / bits (BER) pooled over frames and links"},
        bler_target=bler_target)
    from tqdm.auto import tqdm
    it = scenario.frames(frames, batch_size=links, generator=g_ch, device=dev, num_symbols=n)
    for fr in tqdm(it, total=frames, disable=quiet, desc=f"drift {scenario.name}", leave=False):
        n_rx = fr.channel.output_length(n)
        msg_p = torch.randint(0, M, (links, pilots), generator=g_data, device=dev)
        msg_d = torch.randint(0, M, (links, payload), generator=g_data, device=dev)
        w_p = complex_normal((links, pilots, n_rx), generator=g_data, device=dev)
        w_d = complex_normal((links, payload, n_rx), generator=g_data, device=dev)
        no = fr.no.to(dev)
        with torch.no_grad():
            x_p, x_d = book[msg_p], book[msg_d]
            y_p = _transmit(fr.channel, x_p, no, fr.state, w_p)
            y_d = _transmit(fr.channel, x_d, no, fr.state, w_d)
            # Channel gain per link [dB]: received over transmitted payload energy, noise-free.
            gain = _noiseless(fr.channel, x_d, fr.state).abs().square().sum((1, 2)) / x_d.abs().square().sum((1, 2))
            gain_db = 10 * torch.log10(gain.clamp_min(1e-12)).cpu()
        row = {}
        for s in schemes:
            lat = None
            if s in codecs:
                ac = codecs[s]
                if s != "static" or fr.index == 0:
                    info = ac.observe(msg_p, y_p, no)
                    lat = info["latency_s"] * 1e3
                else:
                    lat = 0.0
                msg_hat = ac.decide_block(y_d)
            elif s == "retrain":
                t0 = time.perf_counter()
                if retrain_fast is None or fr.index % retrain_every == 0:
                    retrain_fast = _retrain(retrain_model, retrain_names, msg_p, y_p, retrain_steps, retrain_lr)
                    lat = (time.perf_counter() - t0) * 1e3
                else:
                    lat = 0.0
                with torch.no_grad():
                    shared = {nm: p.detach() for nm, p in retrain_model.named_parameters()
                              if nm not in retrain_names}
                    msg_hat = batched_loss(retrain_model, shared, lambda m, y: m.decoder.block_logits(y), y_d,
                                           retrain_fast).argmax(-1)
            elif s == "pilot-ls":
                t0 = time.perf_counter()
                with torch.no_grad():
                    h_hat = _ls_taps(x_p, y_p, L, n_rx)
                    images = _noiseless(_conv_channel(L), book.expand(links, M, n).contiguous(), {"taps": h_hat})
                    msg_hat = _ml_decide(y_d, images, no)
                lat = (time.perf_counter() - t0) * 1e3
            else:  # genie (+ offsets)
                with torch.no_grad():
                    images = _noiseless(fr.channel, book.expand(links, M, n).contiguous(), fr.state)
                    msg_hat = _ml_decide(y_d, images, no)
            be, bl, bi, nb = _count(msg_hat, msg_d, k)
            row[s] = {"block_errors": be, "blocks": bl, "bit_errors": bi, "bits": nb, "bler": be / bl,
                      "ber": bi / nb, "latency_ms": lat}
            if s == "genie":
                with torch.no_grad():
                    clean = _noiseless(fr.channel, x_d, fr.state)
                    for d in genie_offsets_db:
                        y_off = clean + (no * 10 ** (-float(d) / 10)).sqrt()[:, None, None].to(clean.dtype) * w_d
                        mh = _ml_decide(y_off, images, no)
                        be, bl, bi, nb = _count(mh, msg_d, k)
                        row[genie_name(d)] = {"block_errors": be, "blocks": bl, "bit_errors": bi, "bits": nb,
                                              "bler": be / bl, "ber": bi / nb, "latency_ms": None}
        res.frames.append({"frame": fr.index, "segment": fr.segment, "drift": fr.drift_value,
                           "ebno_db": float(fr.ebno_db.mean()),
                           "gain_db": {"mean": float(10 * torch.log10(gain.mean().clamp_min(1e-12))),
                                       "p10": float(torch.quantile(gain_db, 0.1)),
                                       "p90": float(torch.quantile(gain_db, 0.9))},
                           "schemes": row})
        if on_frame is not None:
            on_frame(fr, {"msg_p": msg_p, "y_p": y_p, "msg_d": msg_d, "y_d": y_d})
    return res


_CONV_CACHE: dict[int, torch.nn.Module] = {}


def _conv_channel(L: int):
    from metacomm.channels.multipath import MultipathBlockFading
    if L not in _CONV_CACHE:
        _CONV_CACHE[L] = MultipathBlockFading(num_taps=L, mode="truncate")
    return _CONV_CACHE[L]


def _ls_taps(x_p, y_p, L, n_rx):
    r"""LS taps from ``P`` pilot blocks per link: :math:`\hat h = (X^H X)^{-1} X^H y` with the stacked
    pilot convolution matrices ``X`` ``[B, P n, L]`` (truncated causal convolution)."""
    B, P, n = x_p.shape
    X = pilot_matrix(x_p.reshape(B * P, n), L).reshape(B, P * n, L)
    y = y_p[..., :n].reshape(B, P * n, 1)
    A = X.mH @ X + 1e-9 * torch.eye(L, dtype=X.dtype, device=X.device)
    return torch.linalg.solve(A, X.mH @ y).squeeze(-1)


def _retrain(model, names, msg_p, y_p, steps, lr):
    """Fresh decoder trained with Adam on this frame's pilots only (all links at once)."""
    B = msg_p.shape[0]
    shared = {nm: p.detach() for nm, p in model.named_parameters() if nm not in names}
    params = dict(model.named_parameters())
    phi = {nm: params[nm].detach().unsqueeze(0).expand(B, *params[nm].shape).clone() for nm in names}
    opt = Adam(lr)
    state = opt.init(phi)
    batch = {"msg": msg_p, "y": y_p}

    def loss_fn(m, b):
        return torch.nn.functional.cross_entropy(m.decoder.block_logits(b["y"]), b["msg"])

    for _ in range(steps):
        phi = {nm: t.detach().requires_grad_(True) for nm, t in phi.items()}
        with torch.enable_grad():
            losses = batched_loss(model, shared, loss_fn, batch, phi)
            grads = torch.autograd.grad(losses.sum(), [phi[nm] for nm in names])
        phi, state = opt.update({nm: t.detach() for nm, t in phi.items()}, dict(zip(names, grads, strict=True)),
                                state)
    return {nm: t.detach() for nm, t in phi.items()}


def _rolling(errors: list[float], counts: list[float], window: int):
    import numpy as np
    e = np.convolve(np.asarray(errors, float), np.ones(window), mode="valid")
    c = np.convolve(np.asarray(counts, float), np.ones(window), mode="valid")
    lo, hi = zip(*(clopper_pearson(int(a), int(b)) for a, b in zip(e, c, strict=True)), strict=True)
    return e / c, np.asarray(lo), np.asarray(hi)


def plot_drift(result: DriftResult, out: str | os.PathLike, *, window: int | None = None,
               schemes: Sequence[str] | None = None) -> Path:
    """Three panels sharing the frame axis: a thin top panel with what drifts -- the channel power gain [dB]
    (mean over links, with the 10-90 % spread across links as a light band; plus the scenario's own drift
    quantity when it is not a gain, e.g. Eb/N0 or the segment, on a right-hand axis) -- then BLER and BER:
    rolling means over ``window`` frames (default ``max(10, T/15)``) with Clopper-Pearson 95 % bands of the pooled
    window counts. Reference curves are distinct: genie black dashed, genie at a dB offset grey dotted, pilot-LS
    brown dash-dot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    T = len(result.frames)
    if T == 0:
        raise ConfigError("results", "no frames to plot")
    window = max(1, min(T, window or max(10, T // 15)))
    schemes = list(schemes or result.schemes)
    t = np.arange(T)[window - 1:] - (window - 1) / 2  # centre of each window
    fig, axes = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True, gridspec_kw={"height_ratios": [1, 2.6, 2.6]})
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:pink", "tab:olive", "tab:cyan"]
    styles = {"genie": ("k", "--", 1.6), "pilot-ls": ("tab:brown", "-.", 1.6)}  # brown/grey: references only
    # --- drift panel
    ax0 = axes[0]
    frames_x = np.arange(T)
    g = [f.get("gain_db") for f in result.frames]
    if all(isinstance(v, dict) for v in g):
        ax0.fill_between(frames_x, [v["p10"] for v in g], [v["p90"] for v in g], color="tab:blue", alpha=0.12, lw=0,
                         label="10-90 % of links")
        ax0.plot(frames_x, [v["mean"] for v in g], color="tab:blue", lw=1.0, label="mean over links")
        ax0.set_ylabel("channel\ngain [dB]", fontsize=9)
        ax0.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    name = result.config.get("drift_name", "drift")
    drift = np.asarray([f["drift"] for f in result.frames], float)
    if name != "gain_db" and np.isfinite(drift).any() and np.nanmax(drift) > np.nanmin(drift):
        ax0r = ax0.twinx()
        ax0r.plot(frames_x, drift, color="tab:orange", lw=1.0, drawstyle="steps-post")
        ax0r.set_ylabel(name, color="tab:orange", fontsize=9)
        ax0r.tick_params(axis="y", colors="tab:orange", labelsize=8)
    ax0.grid(True, alpha=0.3)
    ax0.tick_params(labelsize=8)
    # --- error-rate panels
    for ax, (what, ek, ck) in zip(axes[1:], (("BLER", "block_errors", "blocks"), ("BER", "bit_errors", "bits")),
                                  strict=True):
        ci = 0
        for s in schemes:
            if s.startswith("genie") and s != "genie":
                color, ls, lw = "0.45", ":", 1.6
            elif s in styles:
                color, ls, lw = styles[s]
            else:
                color, ls, lw = colors[ci % len(colors)], "-", 1.4
                ci += 1
            m, lo, hi = _rolling(result.series(s, ek), result.series(s, ck), window)
            floor = 0.5 / sum(result.series(s, ck))
            ax.plot(t, np.maximum(m, floor), color=color, ls=ls, lw=lw, label=s)
            ax.fill_between(t, np.maximum(lo, floor), np.maximum(hi, floor), color=color, alpha=0.12, lw=0)
        ax.set_yscale("log")
        ax.set_ylabel(f"{what}\n(rolling mean, {window} frames)", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    c = result.config
    axes[0].set_title(f"{c.get('scenario')}: {c.get('pilots')} pilots, {c.get('steps')} step(s), "
                      f"{c.get('links')} links x {c.get('payload_blocks_per_link')} blocks/frame; 95% CI bands",
                      fontsize=10)
    axes[2].set_xlabel("frame")
    axes[2].set_xlim(0, T - 1)
    fig.tight_layout()
    p = Path(out)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p
