"""The adaptive OFDM receiver (metacomm.codecs.ofdm_adaptive): its LMMSE solver and likelihood against dense
linear algebra, its soft symbols against Sionna's mapper, the turbo estimate against LS, decisions at high SNR, the
per-link state round trip, the prior checkpoint's checks and the receiver table."""

import math

import numpy as np
import pytest
import scipy.special
import torch
from sionna.phy.mapping import Mapper

from metacomm import ConfigError
from metacomm.channels.base import make_generator
from metacomm.codecs.ofdm import OFDMLink, OFDMLinkConfig
from metacomm.codecs.ofdm_adaptive import AdaptiveOFDMReceiver, PriorBank, load_prior_bank, shipped_prior_for
from metacomm.codecs.ofdm_receivers import RECEIVERS, make_receiver

TINY = {"name": "tiny", "fft_size": 36, "num_ofdm_symbols": 5, "pilot_ofdm_symbol_indices": [1, 3],
        "num_guard_carriers": [2, 1], "dc_null": True, "channel": "tdl-a", "delay_spread": 100e-9, "speed": 3.0,
        "num_rx_ant": 2, "cov_draws": 200, "num_bp_iter": 10}


def tiny(**kw) -> OFDMLinkConfig:
    return OFDMLinkConfig(**{**TINY, **kw}).validate()


def exp_bank(cfg, rho_f=(0.9, 0.3), rho_t=(0.999, 0.6)) -> PriorBank:
    """A hand-made bank: exponential correlations r(d) = rho^d (two frequency, two time entries, 4 hypotheses)."""
    lf = torch.tensor([[r ** d for d in range(cfg.fft_size)] for r in rho_f], dtype=torch.complex64)
    lt = torch.tensor([[r ** d for d in range(cfg.num_ofdm_symbols)] for r in rho_t], dtype=torch.complex64)
    return PriorBank(freq_lags=lf, time_lags=lt, hyp_freq=torch.tensor([0, 0, 1, 1]), hyp_time=torch.tensor([0, 1, 0, 1]),
                     log_prior=torch.full((4,), -math.log(4.0), dtype=torch.float64),
                     labels=["f0t0", "f0t1", "f1t0", "f1t1"], doppler=torch.tensor([0.0, 1.0, 0.0, 1.0]).double(),
                     delay_spread=torch.tensor([1.0, 1.0, 2.0, 2.0]).double() * 1e-7,
                     numerology={"subcarrier_spacing": cfg.subcarrier_spacing, "fft_size": cfg.fft_size,
                                 "num_ofdm_symbols": cfg.num_ofdm_symbols,
                                 "ofdm_symbol_duration": 1.0 / cfg.subcarrier_spacing})


def test_kronecker_lmmse_equals_the_dense_lmmse():
    cfg = tiny()
    link = OFDMLink(cfg, "perfect-csi")
    rx = AdaptiveOFDMReceiver(link, exp_bank(cfg, rho_f=(0.5, 0.5), rho_t=(0.5, 0.5)), rank_freq=64, rank_time=8)
    S, F = 5, 32
    g = make_generator(0)
    ct, cf = rx._cov_t[0].to(torch.complex128), rx._cov_f[0].to(torch.complex128)
    y = torch.randn(1, 1, S, F, dtype=torch.complex128, generator=g)
    a = torch.randn(1, S, F, dtype=torch.complex128, generator=g)
    sigma2 = 0.1 + torch.rand(1, 1, S, F, dtype=torch.float64, generator=g)
    p = torch.tensor([[1.7]], dtype=torch.float64)
    lt, ut = torch.linalg.eigh(ct)
    lf, uf = torch.linalg.eigh(cf)
    h, err = rx.lmmse(y, a, sigma2, p, (lt[None], ut[None]), (lf[None], uf[None]))
    # dense: h = C A^H (A C A^H + Sigma)^-1 y with C = p (C_t kron C_f), row-major (symbol, subcarrier)
    c = 1.7 * torch.kron(ct, cf)
    am = torch.diag(a.reshape(-1))
    cy = am @ c @ am.conj().T + torch.diag(sigma2.reshape(-1)).to(c.dtype)
    gain = c @ am.conj().T @ torch.linalg.inv(cy)
    h_ref = (gain @ y.reshape(-1)).reshape(S, F)
    post = torch.diagonal(c - gain @ am @ c).real.reshape(S, F).mean(-1)
    assert torch.allclose(h[0, 0], h_ref, atol=1e-8)
    assert torch.allclose(err[0, 0], post, atol=1e-8)


def test_pilot_likelihood_differences_equal_the_dense_gaussian_log_density():
    cfg = tiny()
    link = OFDMLink(cfg, "perfect-csi")
    bank = exp_bank(cfg)
    rx = AdaptiveOFDMReceiver(link, bank, rank_freq=64)
    g = make_generator(1)
    h_ls = torch.randn(2, 2, 2, 32, dtype=torch.complex64, generator=g)
    no = torch.tensor([0.3, 0.8])
    power = torch.tensor([[1.0, 0.5], [2.0, 1.0]])
    ll = rx.loglik(h_ls, no, power).double()
    psym = [1, 3]
    ref = torch.zeros(2, 4, dtype=torch.float64)
    for gi in range(2):
        for h in range(4):
            ct = rx._cov_t[bank.hyp_time[h]][psym][:, psym].to(torch.complex128)
            cf = rx._cov_f[bank.hyp_freq[h]].to(torch.complex128)
            for r in range(2):
                c = float(power[gi, r]) * torch.kron(ct, cf) + float(no[gi]) * torch.eye(64, dtype=torch.complex128)
                v = h_ls[gi, r].reshape(-1).to(torch.complex128)
                ref[gi, h] += -(v.conj() @ torch.linalg.solve(c, v)).real - torch.linalg.slogdet(c)[1]
    d = ll - ll[:, :1]
    d_ref = ref - ref[:, :1]
    assert torch.allclose(d, d_ref, rtol=1e-3, atol=1e-2), (d, d_ref)


def test_soft_symbols_match_sionna_mapper_and_moments_by_hand():
    cfg = tiny(bits_per_symbol=4, codeword_length=384)
    rx = AdaptiveOFDMReceiver(OFDMLink(cfg, "perfect-csi"), exp_bank(cfg))
    bits = torch.randint(0, 2, (1, 40, 4), generator=make_generator(2)).float()
    mean, var = rx._soft_symbols(40.0 * (2 * bits - 1))  # ln P(1)/P(0) = +-40: certain
    ref = Mapper("qam", 4, device="cpu")(bits.reshape(1, -1))
    assert torch.allclose(mean, ref.to(mean.dtype), atol=1e-5) and float(var.max()) < 1e-5
    # one uncertain bit (LLR 0) of QPSK: the mean is the midpoint, the variance |d/2|^2
    rxq = AdaptiveOFDMReceiver(OFDMLink(tiny(), "perfect-csi"), exp_bank(tiny()))
    m, v = rxq._soft_symbols(torch.tensor([[[0.0, 40.0]]]))
    pts = Mapper("qam", 2, device="cpu")(torch.tensor([[0.0, 1.0, 1.0, 1.0]]))[0]
    assert torch.allclose(m[0, 0], pts.mean(), atol=1e-5)
    assert math.isclose(float(v[0, 0]), float((pts[0] - pts[1]).abs() ** 2 / 4), rel_tol=1e-4)
    # a probability by hand: P(b0 = 1) = sigmoid(1.3)
    m1, _ = rxq._soft_symbols(torch.tensor([[[1.3, 40.0]]]))
    p1 = scipy.special.expit(1.3)
    assert torch.allclose(m1[0, 0], ((1 - p1) * pts[0] + p1 * pts[1]).to(m1.dtype), atol=1e-5)


def test_data_positions_are_the_resource_grid_mappers():
    cfg = tiny()
    link = OFDMLink(cfg, "perfect-csi")
    rx = AdaptiveOFDMReceiver(link, exp_bank(cfg))
    slot = link.draw(2, 5.0, make_generator(3))
    x = slot.x[:, 0, 0][..., rx._eff]  # [G, S, F']
    assert torch.allclose(x[:, rx._mask], rx._pilots[rx._mask].expand(2, -1))
    enc = link._tx.get("cpu", "single")[1]
    ref = Mapper("qam", 2, device="cpu")(enc(slot.all_bits))
    assert torch.allclose(x.reshape(2, -1)[:, rx._data_idx], ref)


@pytest.fixture(scope="module")
def tiny_run():
    cfg = tiny(speed=30.0, channel="tdl-b")
    link = OFDMLink(cfg, "perfect-csi")
    slot = link.draw(24, 3.0, make_generator(4))
    return cfg, link, slot


def test_turbo_estimate_beats_pilot_only_and_ls_on_the_same_draws(tiny_run):
    cfg, link, slot = tiny_run
    rx = link.get_receiver("adaptive")
    truth = slot.h_freq[:, 0, :, 0, 0][..., rx._eff]
    lp = rx.bank.log_prior.float()[None].expand(slot.num_grids, -1)
    mse = {}
    rx.stop_llr = math.inf  # every grid re-estimates (no early stop)
    for it in (0, 2):
        rx.turbo_iters = it
        h = rx._run(slot.y, slot.no, lp)[1]
        mse[it] = float((h - truth).abs().square().mean())
    rx.turbo_iters, rx.stop_llr = 2, 8.0
    ls = link.get_receiver("ls-lin")
    h_ls = ls.blocks("cpu")[0](slot.y, slot.no)[0][:, 0, :, 0, 0]
    mse["ls-lin"] = float((h_ls - truth).abs().square().mean())
    assert mse[2] < 0.7 * mse[0] < 0.7 * mse["ls-lin"], mse


def test_high_snr_decisions_equal_perfect_csi_and_low_snr_fails():
    cfg = tiny()
    link = OFDMLink(cfg, "adaptive")
    slot = link.draw(16, 12.0, make_generator(5))
    assert torch.equal(link.decide(slot), link.decide(slot, "perfect-csi"))
    assert torch.equal(link.decide(slot), slot.bits)
    low = link.draw(16, -10.0, make_generator(5))
    assert bool(link.score(low, link.decide(low))[1].all())


def test_state_round_trip_and_belief_concentrates(tmp_path):
    cfg = tiny(speed=0.0)
    link = OFDMLink(cfg, "perfect-csi")
    rx = AdaptiveOFDMReceiver(link, exp_bank(cfg), turbo_iters=1, forget=0.1)
    g = make_generator(6)
    slots = [link.draw(3, 8.0, g) for _ in range(3)]
    s0 = rx.init_state(3)
    assert s0["log_belief"].shape == (3, 4)
    _, s1, info = rx.step(slots[0].y, slots[0].no, s0)
    torch.save(s1, tmp_path / "state.pt")
    back = torch.load(tmp_path / "state.pt", weights_only=True)
    a, s2a, _ = rx.step(slots[1].y, slots[1].no, s1)
    b, s2b, _ = rx.step(slots[1].y, slots[1].no, back)
    assert torch.equal(a, b) and torch.equal(s2a["log_belief"], s2b["log_belief"])
    assert torch.allclose(s1["log_belief"].exp().sum(-1), torch.ones(3))
    assert info["h_hat"].shape == (3, 2, 5, 32) and info["doppler_hz"].shape == (3,)
    # a static channel: the belief moves to the slow time entry (hypotheses 0 and 2)
    _, s3, _ = rx.step(slots[2].y, slots[2].no, s2a)
    w = s3["log_belief"].exp()
    assert bool(((w[:, 0] + w[:, 2]) > 0.9).all()), w
    with pytest.raises(ConfigError, match="state"):
        rx.step(slots[0].y, slots[0].no, rx.init_state(2))


def test_estimate_channel_is_a_sionna_channel_estimator(tiny_run):
    cfg, link, slot = tiny_run
    rx = link.get_receiver("adaptive")
    h, err = rx.estimate_channel(slot.y, slot.no)
    assert h.shape == (slot.num_grids, 1, 2, 1, 1, 5, 32) and err.shape == h.shape
    assert torch.isfinite(h).all() and bool((err >= 0).all())


def test_checkpoint_checks(tmp_path):
    cfg = tiny()
    bank = exp_bank(cfg)
    bank.save(tmp_path / "prior.pt")
    assert load_prior_bank(tmp_path / "prior.pt").num_hypotheses == 4
    other = exp_bank(tiny(fft_size=48, num_guard_carriers=[2, 1]))
    with pytest.raises(ConfigError, match="checkpoint.*another OFDM grid"):
        AdaptiveOFDMReceiver(OFDMLink(cfg, "perfect-csi"), other)
    torch.save({"kind": "something-else"}, tmp_path / "x.pt")
    with pytest.raises(ConfigError, match="checkpoint.*not a prior bank of the adaptive OFDM receiver"):
        load_prior_bank(tmp_path / "x.pt")
    with pytest.raises(ConfigError, match="checkpoint.*no such file"):
        load_prior_bank(tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="checkpoint.*takes no checkpoint"):
        make_receiver("ls-lin", OFDMLink(cfg, "perfect-csi"), checkpoint=str(tmp_path / "prior.pt"))


def test_receiver_table_and_shipped_prior():
    assert {"adaptive", "lmmse-cov-turbo"} <= set(RECEIVERS)
    cfg = OFDMLinkConfig().validate()  # the tutorial grid: a shipped prior serves it
    path = shipped_prior_for(cfg)
    assert path is not None
    bank = load_prior_bank(path)
    assert bank.num_hypotheses > 100 and "cpu_seconds" in bank.meta
    d = AdaptiveOFDMReceiver(OFDMLink(cfg, "perfect-csi")).describe()
    assert d["prior"] == str(path) and d["hypotheses"] == bank.num_hypotheses and d["turbo_iters"] == 2
    assert np.all(np.isfinite(bank.freq_lags.abs().numpy()))


def test_metacomm_ber_reaches_the_adaptive_receiver(tmp_path):
    import json

    from metacomm.cli.main import main

    link = tmp_path / "tiny.toml"
    link.write_text('name = "tiny"\nfft_size = 36\nnum_ofdm_symbols = 5\npilot_ofdm_symbol_indices = [1, 3]\n'
                    'num_guard_carriers = [2, 1]\nchannel = "tdl-a"\nspeed = 3.0\nnum_rx_ant = 2\nnum_bp_iter = 10\n')
    out = tmp_path / "out"
    rc = main(["ber", "--link", str(link), "--receiver", "adaptive", "--ebno-db", "12", "--batch-size", "4",
               "--max-blocks", "8", "--quiet", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["receiver"] == "adaptive" and res["points"][0]["block_errors"] == 0


@pytest.mark.slow
def test_the_example_runs_and_its_belief_names_the_true_profile(capsys):
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parents[2] / "examples" / "ofdm_adaptive_rx.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "adaptive     BLER" in out and "belief: cdl-c" in out, out
