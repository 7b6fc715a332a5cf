"""AdaptiveCodec: batched adaptation equals per-link autograd SGD, policies, decoding, bad input."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from metacomm import ConfigError
from metacomm.adaptation.detectors import ThresholdDetector
from metacomm.adaptation.online import AdaptiveCodec
from metacomm.codecs.autoencoder import Autoencoder
from metacomm.scenarios.online_drift import DriftAutoencoder

torch.set_num_threads(1)


def _codec(seed=0):
    m = DriftAutoencoder(k=4, n=4, num_taps=2, hidden=8)
    m.reset_parameters(torch.Generator().manual_seed(seed))
    with torch.no_grad():  # non-trivial meta-init
        m.decoder.taps.copy_(torch.tensor([0.3, -0.1, 0.2, 0.05]))
        m.decoder.log_beta.fill_(0.7)
    return m


def _pilots(B, P, n, seed=1, M=16):
    g = torch.Generator().manual_seed(seed)
    msg = torch.randint(0, M, (B, P), generator=g)
    y = torch.complex(torch.randn(B, P, n, generator=g), torch.randn(B, P, n, generator=g))
    return msg, y


def _reference_sgd(codec, names, msg, y, steps, lr):
    """Independent reference: a private copy per link, torch.autograd + in-place SGD on its parameters."""
    m = copy.deepcopy(codec)
    params = dict(m.named_parameters())
    for _ in range(steps):
        loss = nn.functional.cross_entropy(m.decoder.block_logits(y), msg)
        grads = torch.autograd.grad(loss, [params[n] for n in names])
        with torch.no_grad():
            for n, g in zip(names, grads, strict=True):
                params[n] -= lr * g
    return {n: params[n].detach() for n in names}


@pytest.mark.parametrize("B", [1, 5])  # 1: the single-link fast path (no vmap)
@pytest.mark.parametrize("adapt,names", [("decoder.taps", ["decoder.taps"]),
                                         ("decoder", ["decoder.taps", "decoder.warp", "decoder.templates",
                                                      "decoder.bias", "decoder.log_beta", "decoder.log_scale"])])
def test_batched_observe_equals_per_link_sgd(adapt, names, B):
    codec = _codec()
    P = 6
    msg, y = _pilots(B, P, 4)
    ac = AdaptiveCodec(codec, num_links=B, adapt=adapt, steps=3, lr=0.1)
    ac.observe(msg, y)
    for b in range(B):
        ref = _reference_sgd(codec, names, msg[b], y[b], 3, 0.1)
        for n in names:
            torch.testing.assert_close(ac.fast[n][b], ref[n], rtol=1e-5, atol=1e-6)
    # decoding uses link b's own weights: compare with the reference copy's logits
    yd = _pilots(B, 7, 4, seed=9)[1]
    logits = ac.block_logits(yd)
    for b in range(B):
        m = copy.deepcopy(codec)
        ref = _reference_sgd(codec, names, msg[b], y[b], 3, 0.1)
        with torch.no_grad():
            for n, t in ref.items():
                dict(m.named_parameters())[n].copy_(t)
            torch.testing.assert_close(logits[b], m.decoder.block_logits(yd[b]), rtol=1e-5, atol=1e-5)


def test_one_step_from_zero_taps_is_matched_filter_estimate():
    r"""At theta_h = 0 all logits are equal (bias 0), so the pilot-CE gradient w.r.t. theta_h is
    -(2 beta s / P) sum_p [Re, Im] of T_p^H y_p + (2 beta s / P) sum_p mean_m T_m^H y_p -- closed form."""
    codec = _codec()
    with torch.no_grad():
        codec.decoder.taps.zero_()
        codec.decoder.bias.zero_()
    B, P, n, L = 1, 8, 4, 2
    msg, y = _pilots(B, P, n)
    ac = AdaptiveCodec(codec, num_links=1, adapt="decoder.taps", steps=1, lr=0.1)
    ac.observe(msg, y)
    d = codec.decoder
    beta, s = float(d.log_beta.detach().exp()), float(d.log_scale.detach().exp())
    t = torch.complex(d.templates[:, :n], d.templates[:, n:]).detach()  # [M, n]

    def corr(tm, yp):  # c_l = sum_i conj(t[i-l]) y[i]  (T^H y for the truncated convolution)
        return torch.stack([(tm[: n - ell].conj() * yp[ell:]).sum() for ell in range(L)])

    g = torch.zeros(L, dtype=torch.complex64)
    for p in range(P):
        yp = y[0, p]
        g += corr(t[msg[0, p]], yp) - torch.stack([corr(t[m], yp) for m in range(t.shape[0])]).mean(0)
    g = 2 * beta * s * g / P  # minus the gradient, complex form
    expected = 0.1 * torch.cat([g.real, g.imag])
    torch.testing.assert_close(ac.fast["decoder.taps"][0], expected, rtol=1e-4, atol=1e-6)


def _numpy_pilot_design(templates, msg, n, L):
    """Real-ified pilot model built with numpy convolutions: y_r = X_r h_r, h_r = [Re h, Im h] (2L),
    y_r = [Re y, Im y] stacked over the P pilots (2 P n)."""
    cols = []
    for ell in range(2 * L):
        e = np.zeros(L, complex)
        e[ell % L] = 1.0 if ell < L else 1j
        yy = np.concatenate([np.convolve(templates[m], e)[:n] for m in msg])
        cols.append(np.concatenate([yy.real, yy.imag]))
    return np.stack(cols, 1)


def _warped_codec(seed=3):
    codec = _codec()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        codec.decoder.warp.copy_(torch.eye(4) + 0.3 * torch.randn(4, 4, generator=g))
        codec.decoder.log_scale.fill_(0.2)
    return codec


def test_pilot_fit_step_equals_numpy_gradient_step():
    r"""One SGD step of the pilot-fit loss L = ||y_r - X_r s W theta||^2 / (P n) against the closed-form gradient
    -(2 / (P n)) s W^T X_r^T (y_r - X_r s W theta), with X_r from numpy convolutions (independent of the
    decoder's torch code), for a non-trivial warp W and scale s, on the single-link and batched paths."""
    codec = _warped_codec()
    d = codec.decoder
    n, L, P, lr = 4, 2, 6, 0.07
    msg, y = _pilots(3, P, n)
    t = torch.complex(d.templates[:, :n], d.templates[:, n:]).detach().numpy().astype(complex)
    W = d.warp.detach().double().numpy() * np.exp(float(d.log_scale.detach()))
    theta0 = d.taps.detach().double().numpy()
    for B in (1, 3):
        ac = AdaptiveCodec(codec, num_links=B, adapt="decoder.taps", steps=1, lr=lr, loss="pilot-fit")
        ac.observe(msg[:B], y[:B])
        for b in range(B):
            X = _numpy_pilot_design(t, msg[b].numpy(), n, L)
            yb = y[b].numpy().reshape(-1)
            yr = np.concatenate([yb.real, yb.imag])
            grad = -(2.0 / (P * n)) * W.T @ X.T @ (yr - X @ W @ theta0)
            np.testing.assert_allclose(ac.fast["decoder.taps"][b].double().numpy(), theta0 - lr * grad,
                                       rtol=1e-4, atol=1e-5)


def test_pilot_fit_with_ideal_preconditioner_lands_on_least_squares_from_any_start():
    r"""With s^2 W W^T = (P n / (2 alpha)) (X_r^T X_r)^{-1} one step from *any* theta (meta-init or a warm
    start) gives the least-squares channel fit h_LS = argmin ||y - X h|| (numpy lstsq) -- why warm starts track."""
    codec = _codec()
    n, L, P, lr = 4, 2, 6, 0.1
    msg, y = _pilots(1, P, n, seed=4)
    d = codec.decoder
    t = torch.complex(d.templates[:, :n], d.templates[:, n:]).detach().numpy().astype(complex)
    X = _numpy_pilot_design(t, msg[0].numpy(), n, L)
    yb = y[0].numpy().reshape(-1)
    yr = np.concatenate([yb.real, yb.imag])
    h_ls = np.linalg.lstsq(X, yr, rcond=None)[0]
    chol = np.linalg.cholesky(np.linalg.inv(X.T @ X))
    with torch.no_grad():
        d.warp.copy_(torch.from_numpy(np.sqrt(P * n / (2 * lr)) * chol).float())
        d.log_scale.zero_()
    ac = AdaptiveCodec(codec, num_links=1, adapt="decoder.taps", steps=1, lr=lr, loss="pilot-fit",
                       warm_start=True)
    for start in (torch.zeros(4), torch.tensor([5.0, -3.0, 2.0, 1.0])):
        ac.fast = {"decoder.taps": start[None].clone()}
        ac.observe(msg, y)
        h = ac.fast["decoder.taps"][0].double().numpy() @ d.warp.detach().double().numpy().T
        np.testing.assert_allclose(h, h_ls, rtol=1e-3, atol=1e-4)


def test_policies():
    codec = _codec()
    B = 3
    msg, y = _pilots(B, 8, 4)
    init = codec.decoder.taps.detach()
    # warm start accumulates: two observes = two steps from init
    warm = AdaptiveCodec(codec, num_links=B, adapt="decoder.taps", policy="every-frame", warm_start=True)
    warm.observe(msg, y)
    warm.observe(msg, y)
    two = AdaptiveCodec(codec, num_links=B, adapt="decoder.taps", steps=2)
    two.observe(msg, y)
    torch.testing.assert_close(warm.fast["decoder.taps"], two.fast["decoder.taps"])
    # from-meta: second observe restarts from the meta-init
    meta = AdaptiveCodec(codec, num_links=B, adapt="decoder.taps")
    meta.observe(msg, y)
    first = meta.fast["decoder.taps"].clone()
    meta.observe(msg, y)
    torch.testing.assert_close(meta.fast["decoder.taps"], first)
    # on-detection: a detector that never fires after warm-up leaves the weights alone
    det = ThresholdDetector(kappa=1e9, warmup=1)
    od = AdaptiveCodec(codec, num_links=B, adapt="decoder.taps", policy="on-detection", detector=det)
    info = od.observe(msg, y)
    assert info["fired"].all()
    after_first = od.fast["decoder.taps"].clone()
    info = od.observe(msg, y)
    assert not info["fired"].any()
    torch.testing.assert_close(od.fast["decoder.taps"], after_first)
    # reset-on-change with a detector that always fires = adapt from the meta-init every frame
    rc = AdaptiveCodec(codec, num_links=B, adapt="decoder.taps", policy="reset-on-change",
                       detector=ThresholdDetector(kappa=0.0, warmup=100))
    rc.observe(msg, y)
    rc.observe(msg, y)
    torch.testing.assert_close(rc.fast["decoder.taps"], first)
    # online-meta: the per-link init moves towards the adapted weights by meta_lr (1 frame in the buffer)
    om = AdaptiveCodec(codec, num_links=B, adapt="decoder.taps", policy="online-meta", meta_lr=0.5)
    om.observe(msg, y)
    torch.testing.assert_close(om.inits["decoder.taps"], init + 0.5 * (first - init))
    om.reset()
    torch.testing.assert_close(om.inits["decoder.taps"], init.expand(B, -1))


def test_online_meta_reptile_over_the_window_equals_per_link_reference():
    """Two frames in the buffer (batched as one W x B adaptation) against per-link autograd SGD (Reptile by hand):
    theta_1 = theta_0 + eps (U_1(theta_0) - theta_0); theta_2 = theta_1 + eps mean_w (U_w(theta_1) - theta_1)."""
    codec = _codec()
    B, P, eps = 3, 5, 0.5
    frames = [_pilots(B, P, 4, seed=s) for s in (11, 12)]
    om = AdaptiveCodec(codec, num_links=B, adapt="decoder.taps", policy="online-meta", meta_lr=eps, meta_window=4,
                       loss="ce")
    for msg, y in frames:
        om.observe(msg, y)

    def step_from(theta, msg, y):
        m = copy.deepcopy(codec)
        with torch.no_grad():
            m.decoder.taps.copy_(theta)
        return _reference_sgd(m, ["decoder.taps"], msg, y, 1, 0.1)["decoder.taps"]

    init = codec.decoder.taps.detach()
    for b in range(B):
        t1 = init + eps * (step_from(init, frames[0][0][b], frames[0][1][b]) - init)
        upd = [step_from(t1, msg[b], y[b]) - t1 for msg, y in frames]
        t2 = t1 + eps * (upd[0] + upd[1]) / 2
        torch.testing.assert_close(om.inits["decoder.taps"][b], t2, rtol=1e-5, atol=1e-6)


def test_decode_llrs_and_single_link_pipeline_use():
    codec = Autoencoder(4, 4, real_uses=False, hidden=16)
    ac = AdaptiveCodec(codec, num_links=1)
    bits = torch.randint(0, 2, (10, 4), generator=torch.Generator().manual_seed(0)).float()
    x = ac.encode(bits)
    assert x.shape == (10, 4) and x.is_complex()
    torch.testing.assert_close(x, codec.encoder(bits))
    llr = ac(x)  # noiseless, identity channel: LLR signs must equal the arg-max block's bits? (not trained)
    assert llr.shape == (10, 4)
    torch.testing.assert_close(llr, codec.decoder(x))


def test_encoder_adaptation_needs_feedback_channel():
    from metacomm.channels.multipath import MultipathBlockFading
    codec = Autoencoder(4, 4, real_uses=False, hidden=8)
    ch = MultipathBlockFading(num_taps=2)
    ac = AdaptiveCodec(codec, num_links=2, adapt="all")
    msg, y = _pilots(2, 4, 4)
    with pytest.raises(ConfigError, match="feedback"):
        ac.observe(msg, y)
    g = torch.Generator().manual_seed(3)
    state = ch.sample_state(2, 4, generator=g)
    noise = _pilots(2, 4, 4, seed=5)[1]
    enc0 = ac.fast["encoder.net.0.weight"].clone()
    ac.observe(msg, y, 0.1, channel=ch, state=state, noise=noise)
    assert not torch.allclose(ac.fast["encoder.net.0.weight"], enc0)
    assert ac.encode(msg).shape == (2, 4, 4)


def test_bad_input():
    codec = _codec()
    with pytest.raises(ConfigError, match="policy"):
        AdaptiveCodec(codec, policy="sometimes")
    with pytest.raises(ConfigError, match="adapt"):
        AdaptiveCodec(codec, adapt="nothing.like.this")
    with pytest.raises(ConfigError, match="lr"):
        AdaptiveCodec(codec, lr=-1.0)
    with pytest.raises(ConfigError, match="loss"):
        AdaptiveCodec(codec, loss="mse")
    with pytest.raises(ConfigError, match="detector"):  # the noise-floor test needs the pilot-fit residual
        AdaptiveCodec(codec, policy="on-detection", detector="noise-floor", loss="ce")
    nf = AdaptiveCodec(codec, num_links=2, policy="on-detection", loss="pilot-fit")
    assert type(nf.detector).__name__ == "NoiseFloorDetector"
    with pytest.raises(ConfigError, match="no"):
        nf.observe(*_pilots(2, 4, 4))
    with pytest.raises(ConfigError, match="loss"):  # plain AE decoder has no generative pilot model
        AdaptiveCodec(Autoencoder(4, 4, real_uses=False, hidden=8), loss="pilot-fit")
    ac = AdaptiveCodec(codec, num_links=2)
    msg, y = _pilots(3, 4, 4)
    with pytest.raises(ConfigError, match="pilots_tx"):
        ac.observe(msg, y)
    with pytest.raises(ConfigError, match="y"):
        ac.decode(torch.zeros(3, 5, 4, dtype=torch.complex64))


def test_default_loss_follows_the_checkpoint(tmp_path):
    """A meta-init trained with the pilot-fit inner loss must be adapted with it: load_meta records the loss on
    the model and AdaptiveCodec picks it up; a codec without the record adapts with the cross-entropy."""
    from metacomm.scenarios.online_drift import OnlineDriftConfig, load_meta, save_meta

    codec = _codec()
    assert AdaptiveCodec(codec).loss == "ce"
    for loss in ("pilot-fit", "ce"):
        path = tmp_path / f"{loss}.pt"
        save_meta(path, codec, OnlineDriftConfig(k=4, n=4, num_taps=2, hidden=8, inner_loss=loss))
        model, cfg, _ = load_meta(path)
        assert cfg.inner_loss == loss and AdaptiveCodec(model).loss == loss
        assert AdaptiveCodec(model, loss="ce").loss == "ce"  # an explicit choice wins
    with pytest.raises(ConfigError, match="inner_loss"):
        OnlineDriftConfig(inner_loss="mse").validate()


def test_observe_refuses_nan_pilots_and_out_of_range_or_bool_messages():
    import pytest as _pytest

    from metacomm import ConfigError
    from metacomm.adaptation import AdaptiveCodec
    from metacomm.scenarios.online_drift import DriftAutoencoder
    model = DriftAutoencoder(4, 4, 3, 16)
    ac = AdaptiveCodec(model, num_links=2, adapt="decoder.taps", loss="pilot-fit")
    msg = torch.randint(0, 16, (2, 5))
    y = torch.randn(2, 5, 4, dtype=torch.complex64)
    ac.observe(msg, y, 0.1)
    before = {n: t.clone() for n, t in ac.fast.items()}
    bad = y.clone()
    bad[1, 2, 0] = float("nan")
    with _pytest.raises(ConfigError, match="pilots_rx"):
        ac.observe(msg, bad, 0.1)
    for m in (torch.full((2, 5), 16), torch.full((2, 5), -1), torch.ones(2, 5, dtype=torch.bool)):
        with _pytest.raises(ConfigError, match="pilots_tx"):
            ac.observe(m, y, 0.1)
    assert all(torch.equal(before[n], ac.fast[n]) for n in before)


def test_adaptive_codec_defaults_work_on_the_shipped_checkpoint():
    """AdaptiveCodec(model) with its defaults (adapt the decoder, the checkpoint's pilot-fit loss) adapts: the
    decoder parameters the pilot-fit loss does not use stay put, the channel belief moves."""
    from metacomm.adaptation import AdaptiveCodec
    from metacomm.experiments.drift import DEFAULT_CHECKPOINT
    from metacomm.scenarios.online_drift import load_meta
    model, cfg, _ = load_meta(DEFAULT_CHECKPOINT)
    ac = AdaptiveCodec(model, num_links=3)
    g = torch.Generator().manual_seed(0)
    msg = torch.randint(0, 2 ** cfg.k, (3, 16), generator=g)
    x = model.encoder.forward_index(msg.reshape(-1)).reshape(3, 16, -1)
    y = x + 0.05 * torch.randn(x.shape, dtype=x.dtype, generator=g)
    before = {n: t.clone() for n, t in ac.fast.items()}
    ac.observe(msg, y, 0.0025)
    moved = [n for n in before if not torch.equal(before[n], ac.fast[n])]
    assert "decoder.taps" in moved
    # the biases and the temperature are not in the pilot-fit loss: zero gradient (not moved), not an error
    assert "decoder.bias" not in moved and "decoder.log_beta" not in moved
