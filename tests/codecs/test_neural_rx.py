"""Neural receiver: frame layout, untrained = pilot-LS + LMMSE + APP, training improves on it."""

import pytest
import torch

from metacomm import ConfigError
from metacomm.channels import make_generator

multipath = pytest.importorskip("metacomm.channels.multipath")
pytest.importorskip("metacomm.codecs.equalization")

from metacomm.codecs.base import CodecLink, random_bits  # noqa: E402
from metacomm.codecs.neural_rx import NeuralReceiver  # noqa: E402


def test_frame_layout_and_rate():
    rx = NeuralReceiver(2, 8, 4, 3, "truncate")
    bits = random_bits(5, 16, generator=make_generator(0))
    x = rx.encoder(bits)
    assert x.shape == (5, 4 + 2 + 8) and rx.frame_length == 14
    assert torch.all(x[:, 4:6] == 0)  # guard of L-1 zeros
    torch.testing.assert_close(x[:, :4].abs(), torch.ones(5, 4))  # unit-energy QPSK pilots
    assert torch.allclose(x[0, :4], x[1, :4])  # fixed pilot sequence
    assert rx.num_channel_uses == 8 and rx.rate == 2.0  # pilots not counted in Eb


def test_untrained_equals_ls_lmmse_app_by_hand():
    """Zero-initialised correction: the LLRs are the APP demapper on a hand-written LS + LMMSE equaliser."""
    L, P, n = 2, 4, 6
    rx = NeuralReceiver(2, n, P, L, "full")
    ch = multipath.MultipathBlockFading(L, mode="full")
    g = make_generator(3)
    bits = random_bits(4, 2 * n, generator=g)
    no = 0.1
    y = ch(rx.encoder(bits), no, generator=g).to(torch.complex128)
    p = rx.encoder.pilots.to(torch.complex128)
    # LS: y_p = X h with X[t, l] = p[t - l]
    X = torch.zeros(P + L - 1, L, dtype=torch.complex128)
    for t in range(P + L - 1):
        for lag in range(L):
            if 0 <= t - lag < P:
                X[t, lag] = p[t - lag]
    y_p = y[:, : P + L - 1]
    h = torch.linalg.solve(X.mH @ X, (X.mH @ y_p.T)).T  # [B, L]
    # sanity against the generic pipeline (independent LMMSE below)
    y_d = y[:, P + L - 1:]
    llr = rx.decoder(y.to(torch.complex64), no).double()
    hard = (llr > 0).double()
    # independent LMMSE (ignoring the estimation-error term): x_hat = (H^H H + N0 I)^-1 H^H y, unbiased
    errs = 0
    for b in range(4):
        H = torch.zeros(n + L - 1, n, dtype=torch.complex128)
        for t in range(n + L - 1):
            for lag in range(L):
                if 0 <= t - lag < n:
                    H[t, t - lag] = h[b, lag]
        W = torch.linalg.solve(H.mH @ H + no * torch.eye(n, dtype=torch.complex128), H.mH)
        x_hat = W @ y_d[b]
        x_hat = x_hat / torch.diagonal(W @ H).real
        # Gray QPSK (Sionna): bit 0 <-> sign of the real part (0 -> +), bit 1 <-> imaginary part
        ref = torch.stack([(x_hat.real < 0).double(), (x_hat.imag < 0).double()], -1).reshape(-1)
        errs += int((ref != hard[b]).sum())
    assert errs <= 1  # the estimation-error term can flip a marginal decision


def test_bad_config():
    with pytest.raises(ConfigError) as e:
        NeuralReceiver(3)
    assert e.value.field == "bits_per_symbol"
    with pytest.raises(ConfigError) as e:
        NeuralReceiver(2, 8, 2, 3, "truncate")
    assert e.value.field == "num_pilots"
    with pytest.raises(ConfigError) as e:
        NeuralReceiver(2, 8, 4, 3, "circular")
    assert e.value.field == "channel_mode"
    rx = NeuralReceiver(2, 8, 4, 3)
    with pytest.raises(ConfigError, match="y"):
        rx.decoder(torch.zeros(2, 5, dtype=torch.complex64), 0.1)


def _ber(link, eb, n=10, bs=2000, seed=77):
    g = make_generator(seed)
    e = t = 0
    for _ in range(n):
        b, bh = link(bs, eb, g)
        e += int((b != bh).sum())
        t += b.numel()
    return e / t


@pytest.mark.slow
def test_training_lowers_the_bit_cross_entropy():
    """Untrained = LS + LMMSE + APP; a short training run must already lower its BCE (higher BMD rate)."""
    from metacomm.codecs.training import evaluate, train

    ch = multipath.MultipathBlockFading(3, mode="truncate")
    rx = NeuralReceiver(2, 16, 8, 3, "truncate", hidden=32)
    _, loss0 = evaluate(rx, ch, ebno_db=(5.0, 20.0), batch_size=4000, seed=9, loss="bce")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(rx, ch, train_ebno_db=(5.0, 20.0), steps=1000, batch_size=256, lr=2e-3, seed=0, progress=False,
              val_batch_size=500, reinit=False)
    finally:
        torch.set_num_threads(n)
    _, loss1 = evaluate(rx, ch, ebno_db=(5.0, 20.0), batch_size=4000, seed=9, loss="bce")
    assert loss1 < loss0, (loss1, loss0)


@pytest.mark.slow
def test_neural_rx_beats_pilot_ls_lmmse():
    from metacomm.codecs.links import PilotLink
    from metacomm.codecs.qam import UncodedQAM
    from metacomm.codecs.training import train

    ch = multipath.MultipathBlockFading(3, mode="truncate")
    rx = NeuralReceiver(2, 16, 8, 3, "truncate")
    train(rx, ch, train_ebno_db=(0.0, 20.0), steps=3000, batch_size=256, lr=2e-3, seed=0, progress=False)
    for eb in (10.0, 15.0):
        ours = _ber(CodecLink(rx, ch), eb, n=30)
        ls = _ber(PilotLink(UncodedQAM(2, 16), ch, 8, "ls"), eb, n=30)
        assert ours < 0.97 * ls, (eb, ours, ls)
