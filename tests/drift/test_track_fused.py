"""The ``track`` scheme's fused path (issue 24) against the recursion it replaces at run time
(:func:`metacomm.adaptation.tracking.track_frames`, the code the tracker was meta-trained through), and the
re-decode bound against a full re-decode by brute force."""

import pytest
import torch

from metacomm.adaptation.tracking import redecode_candidates
from metacomm.codecs.detection import score_decide
from metacomm.drift.run import DriftRun, DriftRunConfig
from metacomm.drift.schemes.tracking import TrackScheme
from metacomm.experiments.drift import load_drift_codec, shipped_tracker
from metacomm.scenarios.drift_scenarios import load_scenario

torch.set_num_threads(1)


def _signals(scenario: str, links: int, frames: int):
    model, _, _ = load_drift_codec(shipped_tracker(scenario, 16))
    run = DriftRun(load_scenario(scenario), model, DriftRunConfig(frames=frames, links=links, schemes=["track"],
                                                                  seed=5))
    return run.ctx, [run.ctx.link.draw(run.ctx, next(run._frames), run.g_data) for _ in range(frames)]


@pytest.mark.parametrize("scenario", ["doppler-fast", "iq-drift", "pa-drift"])
def test_fused_track_decides_as_the_recursion(scenario):
    ctx, sigs = _signals(scenario, 24, 5)
    schemes = {}
    for mode in ("reference", "all", "changed"):
        s = TrackScheme("track")
        s.setup(ctx)
        assert s._fast is not None  # the fused path applies to these checkpoints
        s.fused, s.redecode = mode != "reference", "all" if mode == "reference" else mode
        schemes[mode] = s
    for sig in sigs:
        dec = {k: s.decide(sig).msg_hat for k, s in schemes.items()}
        for k in ("all", "changed"):
            assert torch.equal(dec[k], dec["reference"]), (scenario, k, int((dec[k] != dec["reference"]).sum()))
            for a, b in zip(schemes[k].belief, schemes["reference"].belief, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        assert (dec["reference"] == sig.msg_d).float().mean() > 0.5  # a working receiver, not a trivial one
    st = schemes["changed"].stats
    assert 0 < st["redecoded"] < st["blocks"]  # the bound re-decodes some blocks, not all


def test_blocks_outside_the_redecode_bound_keep_their_decision_under_a_full_redecode():
    """Random images moved by random amounts: every block the bound leaves out has the same arg-max under the
    moved images, found by brute force (float64 distances)."""
    g = torch.Generator().manual_seed(11)
    B, N, M, n = 16, 64, 64, 8
    left_out = 0
    for trial in range(20):
        r = torch.randn(B, M, n, dtype=torch.complex128, generator=g)
        msg = torch.randint(0, M, (B, N), generator=g)
        no = torch.rand(B, generator=g, dtype=torch.float64) * 0.5 + 0.02
        y = torch.gather(r, 1, msg[..., None].expand(B, N, n)) + no.sqrt()[:, None, None] * torch.randn(
            B, N, n, dtype=torch.complex128, generator=g)
        step = 10 ** (-3 + 2.5 * trial / 20)
        r2 = r + step * torch.randn(B, M, n, dtype=torch.complex128, generator=g)
        yc, rc, r2c = y.to(torch.complex64), r.to(torch.complex64), r2.to(torch.complex64)
        scale = (1.0 / no).to(torch.float32)
        best, _, S, smax = score_decide(yc, rc, scale)
        cand = redecode_candidates(yc, smax, S, scale, rc, r2c)
        full = (y[:, :, None, :] - r2[:, None]).abs().square().sum(-1).argmin(-1)
        keep = ~cand
        assert torch.equal(best[keep], full[keep]), trial
        left_out += int(keep.sum())
    assert left_out > 0.3 * 20 * B * N  # the bound is not vacuous


@pytest.mark.parametrize("checkpoint", ["tracker", "online"])
def test_template_decisions_of_the_adaptive_schemes_equal_decide_block(checkpoint):
    """The adaptive schemes decide through template_decide (no functional_call): the same decisions as the
    AdaptiveCodec's own decide_block, for every policy, over frames of fast weights."""
    from metacomm.experiments.drift import DEFAULT_CHECKPOINT
    path = shipped_tracker("doppler-fast", 16) if checkpoint == "tracker" else DEFAULT_CHECKPOINT
    model, _, _ = load_drift_codec(path)
    run = DriftRun(load_scenario("doppler-fast"), model, DriftRunConfig(
        frames=3, links=16, seed=2, schemes=["static", "meta", "warm", "online-meta", "on-detection"]))
    for _ in range(3):
        sig = run.ctx.link.draw(run.ctx, next(run._frames), run.g_data)
        for s in run.schemes:
            got = s.decide(sig).msg_hat
            assert torch.equal(got, s.codec.decide_block(sig.y_d)), s.name
            if s.name == "meta":  # a working receiver (static is frozen at frame 0: rho = 0.5 leaves it behind)
                assert (got == sig.msg_d).float().mean() > 0.5
