"""A drift run plays any kind of link, not only (k, n) block codecs over taps: a toy second link (uncoded BPSK
over flat Rayleigh fading whose gain the link draws itself) runs through DriftRun with its own schemes, and the
genie's and pilot-LS's bit error rates match the closed forms. Schemes of one kind of link refuse the other."""

from __future__ import annotations

import math
import textwrap

import pytest
import torch

from metacomm import ConfigError
from metacomm.channels.base import complex_normal
from metacomm.drift.protocol import Decision, DriftContext, DriftLink, DriftScheme, FrameSignals
from metacomm.drift.run import DriftRun, DriftRunConfig
from metacomm.scenarios.drift_scenarios import parse_scenario
from metacomm.scenarios.online_drift import DriftAutoencoder

EBNO_DB = 6.0
AWGN_K1 = textwrap.dedent(f"""\
    name = "toy-awgn"
    ebno_db = {EBNO_DB}
    [codec]
    k = 1
    n = 1
    [[segment]]
    frames = 100
    channel = "awgn"
    """)


class FlatBPSKLink(DriftLink):
    """Uncoded BPSK, one bit per block: per frame and link a fresh flat Rayleigh gain h ~ CN(0, 1) (drawn from the
    run's data generator, first), then P pilot and N payload bits, y = h x + sqrt(N0) w with the frame's N0."""

    name = "toy-bpsk"

    def context(self, scenario, model, config, device):
        book = torch.tensor([[1.0 + 0j], [-1.0 + 0j]], dtype=torch.complex64, device=device)
        return DriftContext(model=model, codebook=book, config=config, device=device, k=1, n=1, inner_loss="ce",
                            num_taps=1, scenario=scenario, link=self)

    def draw(self, ctx, frame, g_data):
        c, dev = ctx.config, ctx.device
        h = complex_normal((c.links, 1, 1), generator=g_data, device=dev)
        msg_p = torch.randint(0, 2, (c.links, c.pilots), generator=g_data, device=dev)
        msg_d = torch.randint(0, 2, (c.links, c.payload), generator=g_data, device=dev)
        w_p = complex_normal((c.links, c.pilots, 1), generator=g_data, device=dev)
        w_d = complex_normal((c.links, c.payload, 1), generator=g_data, device=dev)
        no = frame.no.to(dev)
        s = no.sqrt()[:, None, None].to(torch.complex64)
        x_p, x_d = ctx.codebook[msg_p], ctx.codebook[msg_d]
        sig = FrameSignals(frame=frame, no=no, msg_p=msg_p, x_p=x_p, w_p=w_p, y_p=h * x_p + s * w_p, msg_d=msg_d,
                           x_d=x_d, w_d=w_d, y_d=h * x_d + s * w_d, clean_d=h * x_d)
        sig.memo("h", lambda: h)
        return sig

    def score(self, ctx, sig, decision):
        if decision.msg_hat.shape != sig.msg_d.shape:
            raise ConfigError("scheme", f"decided {tuple(decision.msg_hat.shape)} bits")
        e, n = int((decision.msg_hat != sig.msg_d).sum()), sig.msg_d.numel()
        return {"block_errors": e, "blocks": n, "bit_errors": e, "bits": n, "bler": e / n, "ber": e / n}


class _ToyScheme(DriftScheme):
    links = ("toy-bpsk",)
    state_attrs = ()


class ToyGenie(_ToyScheme):
    kind = "reference"

    def decide(self, sig):
        h = sig.memo("h", None)
        return Decision((torch.conj(h) * sig.y_d).real[..., 0].lt(0).long(), None)


class ToyPilotLS(_ToyScheme):
    kind = "classical"

    def decide(self, sig):
        h = (sig.x_p.conj() * sig.y_p).sum(1, keepdim=True) / sig.x_p.abs().square().sum(1, keepdim=True)
        return Decision((torch.conj(h) * sig.y_d).real[..., 0].lt(0).long(), 0.0)


def _run(schemes, link=None, model=None, frames=100):
    sc = parse_scenario(AWGN_K1)
    cfg = DriftRunConfig(frames=frames, pilots=2, links=64, payload=32, seed=3)
    return DriftRun(sc, model, cfg, schemes=schemes, link=link if link is not None else FlatBPSKLink()).run()


def test_a_second_kind_of_link_runs_and_matches_the_closed_forms():
    """Genie: BER = (1 - sqrt(g / (1 + g))) / 2 with g = Eb/N0 (one bit per complex use, Es = 1). Pilot-LS with
    P = 2 BPSK pilots (estimate h + e, e ~ CN(0, N0 / P)): BER = (1 - mu) / 2 with mu the correlation coefficient of
    the two complex Gaussians of the decision statistic, mu = sqrt(g / (1 + g)) sqrt(g P / (1 + g P)) (Proakis,
    Digital Communications, the two-Gaussian quadratic form; P -> inf gives the genie)."""
    res = _run([ToyGenie("toy-genie"), ToyPilotLS("toy-ls")])
    assert res.config["link"] == "toy-bpsk" and res.schemes == ["toy-genie", "toy-ls"]
    g = 10 ** (EBNO_DB / 10)
    want = {"toy-genie": 0.5 * (1 - math.sqrt(g / (1 + g))),
            "toy-ls": 0.5 * (1 - math.sqrt(g / (1 + g)) * math.sqrt(2 * g / (1 + 2 * g)))}
    # the bits of one link and frame share its gain: the independent samples are the frames (each the mean over
    # 64 links), so the interval is over the per-frame BERs (4.4 standard errors: a ~1e-5 false-alarm rate)
    for name, p in want.items():
        ber = torch.tensor(res.series(name, "ber"), dtype=torch.float64)
        half = 4.4 * float(ber.std()) / math.sqrt(len(ber))
        assert abs(float(ber.mean()) - p) <= half, (name, float(ber.mean()), p, half)
    summ = res.summary()
    assert summ["toy-genie"]["bler"] < summ["toy-ls"]["bler"]


def test_schemes_declare_their_link_and_refuse_the_other():
    from metacomm.drift.schemes.ls import PilotLSScheme
    model = DriftAutoencoder(k=1, n=1, num_taps=1, hidden=4)
    with pytest.raises(ConfigError, match="^schemes: scheme 'pilot-ls' decides block links, not a 'toy-bpsk' link"):
        _run([PilotLSScheme("pilot-ls")], model=model, frames=1)
    from metacomm.drift.links import BlockCodecLink
    with pytest.raises(ConfigError, match="^schemes: scheme 'toy-ls' decides toy-bpsk links, not a 'block' link"):
        _run([ToyPilotLS("toy-ls")], link=BlockCodecLink(), model=model, frames=1)
