"""The ``track-pa-adapt`` drift scheme: ``track`` with its PA correction f_theta adapted online per link."""

from __future__ import annotations

import math
import os

import torch

from metacomm.adaptation.tracking import pa_apply, tap_conv_matrix
from metacomm.drift.protocol import DriftContext, FrameSignals
from metacomm.drift.registry import scheme_names
from metacomm.drift.run import DriftRun, DriftRunConfig
from metacomm.drift.schemes.tracking import PAAdaptTrackScheme, TrackScheme
from metacomm.experiments.drift import load_drift_codec
from metacomm.scenarios.drift_scenarios import load_scenario

CKPT = os.path.join(os.path.dirname(__file__), "..", "..", "metacomm", "checkpoints", "drift_track_pa-drift_p16.pt")


def _model():
    return load_drift_codec(CKPT)[0]


def _rapp(ibo_db: float) -> torch.Tensor:
    # RappPA p = 2 at input back-off ibo_db (Es = 1): A_sat^2 = 10^(ibo/10), as pa_params gives it
    return torch.tensor([1.0, 2.0, 10 ** (ibo_db / 10), 0.0, 0.0, 0.0])


def _frames(model, num, links=6, pilots=16, payload=8, ibo_db=-6.0, no=0.01, seed=0):
    """Synthetic frames of a fixed 3-tap channel per link behind a Rapp PA (p = 2) at ``ibo_db``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        book = model.encoder.codebook()
    M = book.shape[0]
    h = torch.complex(torch.randn(links, 3, generator=g), torch.randn(links, 3, generator=g)) / math.sqrt(6)
    nos = torch.full((links,), no)
    out = []
    for _ in range(num):
        def rx(count):
            msg = torch.randint(0, M, (links, count), generator=g)
            x = book[msg]
            w = torch.complex(torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g)) / math.sqrt(2)
            clean = (tap_conv_matrix(pa_apply(x, _rapp(ibo_db)), 3) @ h[:, None, :, None])[..., 0]
            return msg, x, w, clean + math.sqrt(no) * w, clean
        msg_p, x_p, w_p, y_p, _ = rx(pilots)
        msg_d, x_d, w_d, y_d, clean_d = rx(payload)
        out.append(FrameSignals(None, nos, msg_p, x_p, w_p, y_p, msg_d, x_d, w_d, y_d, clean_d))
    return out


def _setup(model, scheme):
    with torch.no_grad():
        book = model.encoder.codebook()
    scheme.setup(DriftContext(model=model, codebook=book, config=None, device=torch.device("cpu"), k=8, n=8,
                              inner_loss="pilot-fit", num_taps=3))
    return scheme


def test_registered_and_zero_steps_is_track_exactly():
    assert "track-pa-adapt" in scheme_names()
    model, sc = _model(), load_scenario("pa-drift")
    zero = PAAdaptTrackScheme("track-pa-adapt")
    zero.steps = 0
    run = DriftRun(sc, model, DriftRunConfig(frames=25, pilots=16, links=3, payload=16, seed=sc.seed),
                   schemes=[TrackScheme("track"), zero])
    while not run.done:
        rec, _ = run.step()
        a, b = rec["schemes"]["track"], rec["schemes"]["track-pa-adapt"]
        assert (a["block_errors"], a["bit_errors"]) == (b["block_errors"], b["bit_errors"])
    tr, ad = run.schemes
    torch.testing.assert_close(ad.belief[0], tr.belief[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ad.belief[1], tr.belief[1], rtol=1e-5, atol=1e-6)
    assert torch.equal(ad.pa_state[0], torch.zeros(3, 2))


def test_adapted_correction_moves_toward_a_pa_driven_harder_than_f_theta():
    # f_theta is one curve between the Rapp curves at 0 and -3 dB back-off; the link's PA is Rapp at -6 dB
    # (gain 0.49 at |x| = 1 against f_theta's 0.74). After adapting on its pilots the per-link curve is closer
    # to the true Rapp gain on the codebook's amplitudes than f_theta is.
    torch.manual_seed(0)
    model = _model()
    s = _setup(model, PAAdaptTrackScheme("track-pa-adapt"))
    for sig in _frames(model, 120):
        s.decide(sig)
    with torch.no_grad():
        book = model.encoder.codebook()
        true = pa_apply(book, _rapp(-6.0))
        shipped = model.pa(book)
        r = s.ctx.model.decoder.template_symbols()
        u = r.real.square() + r.imag.square()
        o0 = model.pa.out(torch.tanh(model.pa.inp.bias))
        err0 = (shipped - true).abs().square().mean()
        for th in s.pa_state[0]:
            o = model.pa.out(torch.tanh(model.pa.inp((torch.exp(th[0]) * u)[..., None])))
            c = torch.exp(th[1])
            adapted = r * torch.polar(torch.exp(c * (o[..., 0] - o0[0])), c * (o[..., 1] - o0[1]))
            err = (adapted - true).abs().square().mean()
            assert err < 0.5 * err0, (th, err, err0)
            assert th[0] > 0.2  # compresses earlier: a larger input-power scale than f_theta's (alpha = 0)


def test_state_save_and_resume_equal_an_uninterrupted_run():
    model = _model()
    frames = _frames(model, 16, links=3, ibo_db=-3.0, seed=1)
    a = _setup(model, PAAdaptTrackScheme("track-pa-adapt"))
    dec_a = [a.decide(f).msg_hat for f in frames]
    b = _setup(model, PAAdaptTrackScheme("track-pa-adapt"))
    dec_b = [b.decide(f).msg_hat for f in frames[:8]]
    state = b.state_dict()
    c = _setup(model, PAAdaptTrackScheme("track-pa-adapt"))
    c.load_state_dict(state)
    dec_b += [c.decide(f).msg_hat for f in frames[8:]]
    for x, y in zip(dec_a, dec_b, strict=True):
        assert torch.equal(x, y)
    for x, y in zip([*a.belief, *a.pa_state], [*c.belief, *c.pa_state], strict=True):
        assert torch.equal(x, y)


def test_a_checkpoint_without_a_pa_correction_is_refused_with_one_exit_2_line(tmp_path, capsys):
    from metacomm.cli.main import main
    ck = os.path.join(os.path.dirname(CKPT), "drift_track_doppler-fast_p16.pt")
    rc = main(["drift", "--scenario", "doppler-slow", "--pilots", "16", "--checkpoint", ck, "--frames", "2",
               "--threads", "1", "--schemes", "track-pa-adapt", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "track-pa-adapt" in err and "PA correction" in err, err
