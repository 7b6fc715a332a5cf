r"""The block link of a drift run: a ``(k, n)`` block codec over the scenario's per-frame channel.

:class:`BlockCodecLink` (``name = "block"``): per frame and link, ``P`` pilot and ``N`` payload messages drawn
uniformly from the ``2^k`` messages, encoded by the meta-learned encoder (codebook ``[2^k, n]``, Es = 1 per complex
use), sent through that frame's channel (per-link state and N0 = Es / (Eb/N0 * k/n) per complex sample, as the
scenario's timeline sets it) with unit-variance complex noise scaled by :math:`\sqrt{N_0}`; a decision is scored
per block (BLER) and per information bit (BER, the natural binary labels of the message index).
"""

from __future__ import annotations

import copy
import math

import torch

from metacomm._validation import ConfigError
from metacomm.channels.base import complex_normal
from metacomm.codecs.detection import noiseless_images
from metacomm.codecs.learned_base import index_to_bits
from metacomm.drift.protocol import Decision, DriftContext, DriftLink, FrameSignals

__all__ = ["BlockCodecLink", "check_codec_fits", "score_workspace"]


def score_workspace(ctx: DriftContext):
    """The run's one :class:`~metacomm.codecs.detection.ScoreWorkspace`: the ``[links, N, 2^k]`` score buffers
    every block receiver of the run writes its codebook search into, one after the other (schemes decide in turn,
    so one set of buffers serves them all: the working set of a run is one score tensor, not one per scheme).
    Kept on the context (attribute ``_score_workspace``) for the run's lifetime."""
    from metacomm.codecs.detection import ScoreWorkspace
    ws = ctx.__dict__.get("_score_workspace")
    if ws is None:
        ws = ctx.__dict__["_score_workspace"] = ScoreWorkspace()
    return ws


def check_codec_fits(scenario, model, field: str = "model") -> tuple[int, int]:
    """``(k, n)`` of ``model`` when its geometry is the scenario's (``k`` bits on ``n`` complex uses), else
    ConfigError naming ``field``."""
    k, n = int(model.num_info_bits), int(model.num_channel_uses)
    if scenario.k != k or math.ceil(scenario.n) != n:
        raise ConfigError(field, f"the codec has k={k}, n={n} complex uses but scenario {scenario.name!r} is for "
                                 f"k={scenario.k}, n={scenario.n:g}")
    return k, n


def _rep(t: torch.Tensor, times: int) -> torch.Tensor:
    return t.repeat_interleave(times, dim=0)


def _transmit(channel, x, no, state, noise):
    """``x`` ``[B, N, n]`` through ``channel`` with per-link state/N0 and noise ``[B, N, n_rx]``."""
    B, N, n = x.shape
    st = {k: _rep(v, N) for k, v in state.items()}
    y = channel(x.reshape(B * N, n), _rep(no, N), state=st, noise=noise.reshape(B * N, -1))
    return y.reshape(B, N, -1)


class BlockCodecLink(DriftLink):
    """The ``(k, n)`` block-codec link (module docstring)."""

    name = "block"

    def context(self, scenario, model, config, device) -> DriftContext:
        k, n = check_codec_fits(scenario, model)
        inner_loss = config.inner_loss if config.inner_loss is not None else getattr(model, "meta_inner_loss", "ce")
        model = copy.deepcopy(model).to(device).eval()
        L = int(getattr(model.decoder, "num_taps", 3))
        with torch.no_grad():
            book = model.encoder.codebook()  # [M, n]
        return DriftContext(model=model, codebook=book, config=config, device=device, k=k, n=n,
                            inner_loss=inner_loss, num_taps=L, scenario=scenario, link=self)

    def draw(self, ctx: DriftContext, frame, g_data: torch.Generator) -> FrameSignals:
        """Draw one frame's pilots and payload from ``g_data`` (in this order: pilot messages ``[B, P]``, payload
        messages ``[B, N]``, pilot noise ``[B, P, n_rx]``, payload noise ``[B, N, n_rx]``) and transmit them
        through ``frame`` (its channel, per-link state and N0). An attacker of the frame's segment perturbs the
        received blocks with its own generator (the run's draws are unchanged)."""
        c = ctx.config
        B, P, N, n, M, dev = c.links, c.pilots, c.payload, ctx.n, ctx.num_messages, ctx.device
        n_rx = frame.channel.output_length(n)
        msg_p = torch.randint(0, M, (B, P), generator=g_data, device=dev)
        msg_d = torch.randint(0, M, (B, N), generator=g_data, device=dev)
        w_p = complex_normal((B, P, n_rx), generator=g_data, device=dev)
        w_d = complex_normal((B, N, n_rx), generator=g_data, device=dev)
        no = frame.no.to(dev)
        with torch.no_grad():
            x_p, x_d = ctx.codebook[msg_p], ctx.codebook[msg_d]
            y_p = _transmit(frame.channel, x_p, no, frame.state, w_p)
            y_d = _transmit(frame.channel, x_d, no, frame.state, w_d)
            clean_d = noiseless_images(frame.channel, x_d, frame.state)
        attack = getattr(frame, "attack", None)
        if attack is not None:
            from metacomm.channels.attacks import attack_frame
            g_att = torch.Generator(device=g_data.device).manual_seed(
                (g_data.initial_seed() * 1_000_003 + 7919 * int(frame.index) + 424_242) % (2 ** 63))
            y_p, y_d_att = attack_frame(attack, getattr(ctx.model, "block_logits", None),
                                        [(x_p, y_p, msg_p), (x_d, y_d, msg_d)], g_att)
            # the perturbation is part of the noise-free received payload: the genie's dB-offset yardsticks, which
            # rebuild the payload from clean_d and the noise, see the attacker too (gain_db then includes its energy)
            clean_d = clean_d + (y_d_att - y_d)
            y_d = y_d_att
        return FrameSignals(frame=frame, no=no, msg_p=msg_p, x_p=x_p, w_p=w_p, y_p=y_p, msg_d=msg_d, x_d=x_d,
                            w_d=w_d, y_d=y_d, clean_d=clean_d)

    def score(self, ctx: DriftContext, sig: FrameSignals, decision: Decision) -> dict:
        """Block and bit errors of a decision: bit errors are the popcounts of ``msg_hat XOR msg`` (the natural
        binary labels of the message index; a ``2^k`` popcount table for ``k <= 16``, else the bits themselves),
        both counts read in one host sync."""
        msg_hat, msg, k = decision.msg_hat, sig.msg_d, ctx.k
        if tuple(msg_hat.shape) != tuple(msg.shape):
            raise ConfigError("scheme", f"decided {tuple(msg_hat.shape)} messages, expected {tuple(msg.shape)}")
        if k <= 16:
            table = ctx.__dict__.get("_popcount")
            if table is None or table.device != msg.device or table.numel() != 2 ** k:
                table = index_to_bits(torch.arange(2 ** k, device=msg.device), k, dtype=torch.int64).sum(-1)
                ctx.__dict__["_popcount"] = table
            x = torch.bitwise_xor(msg_hat.to(torch.int64), msg)
            be, bi = torch.stack(((x != 0).sum(), table[x].sum())).tolist()
        else:
            be = int((msg_hat != msg).sum())
            bi = int((index_to_bits(msg_hat, k, dtype=torch.bool) != index_to_bits(msg, k, dtype=torch.bool)).sum())
        bl, nb = msg.numel(), msg.numel() * k
        return {"block_errors": be, "blocks": bl, "bit_errors": bi, "bits": nb, "bler": be / bl, "ber": bi / nb}

    def frame_record(self, ctx: DriftContext, sig: FrameSignals) -> dict:
        """``gain_db``: the channel power gain [dB] per link -- noise-free received over transmitted payload
        energy; of the mean over links (of the linear gains) and the 10th/90th percentiles across links."""
        with torch.no_grad():
            gain = sig.clean_d.abs().square().sum((1, 2)) / sig.x_d.abs().square().sum((1, 2))
            gain_db = 10 * torch.log10(gain.clamp_min(1e-12)).cpu()
        return {"gain_db": {"mean": float(10 * torch.log10(gain.mean().clamp_min(1e-12))),
                            "p10": float(torch.quantile(gain_db, 0.1)), "p90": float(torch.quantile(gain_db, 0.9))}}
