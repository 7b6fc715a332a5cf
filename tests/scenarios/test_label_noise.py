"""The label-noise pack: noise models against their definitions, L2RW / GCE / AUROC against hand computations,
no harm at rate 0, batched == per-task meta-gradients of the pack's objectives, and the CLI's bad-input lines."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from metacomm.adaptation import meta_gradients, params_of
from metacomm.adaptation.example_weighting import MetaWeightNet, WeightingRule, gce_loss, l2rw_weights
from metacomm.adaptation.label_noise import (
    apply_label_noise,
    auroc,
    bursty_flips,
    decision_directed_labels,
    nearest_neighbours,
    pair_flips,
    symmetric_flips,
)
from metacomm.cli.main import main
from metacomm.scenarios import make_scenario


def _g(s):
    return torch.Generator().manual_seed(s)


def _within_binomial(k, n, p, z=4.5):
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("rate", [0.1, 0.4, 0.6])
def test_symmetric_flip_rate_is_binomial_and_flips_change_the_label(rate):
    M, N = 16, 40000
    msg = torch.randint(0, M, (N,), generator=_g(0))
    lab, wrong = symmetric_flips(msg, M, rate, _g(1))
    assert torch.equal(wrong, lab != msg)
    assert _within_binomial(int(wrong.sum()), N, rate)
    # wrong labels are uniform over the other M-1 messages: each offset (lab - msg) % M in 1..M-1 equally often
    off = ((lab - msg) % M)[wrong]
    counts = torch.bincount(off, minlength=M)
    assert counts[0] == 0
    k = int(wrong.sum())
    for c in counts[1:]:
        assert _within_binomial(int(c), k, 1 / (M - 1))


def test_pair_flips_land_on_the_nearest_codeword():
    M = 16
    book = torch.randn(M, 4, dtype=torch.complex64, generator=_g(3))
    nn_ = nearest_neighbours(book)
    # independent reference: double loop over codeword pairs
    for i in range(M):
        d = [sum(abs(complex(book[i, t]) - complex(book[j, t])) ** 2 for t in range(4)) if j != i else math.inf
             for j in range(M)]
        assert int(nn_[i]) == min(range(M), key=lambda j: d[j])
    msg = torch.randint(0, M, (20000,), generator=_g(4))
    lab, wrong = pair_flips(msg, nn_, 0.3, _g(5))
    assert torch.equal(lab[wrong], nn_[msg[wrong]])
    assert _within_binomial(int(wrong.sum()), 20000, 0.3)


def test_rate_zero_changes_nothing_and_draws_are_reproducible():
    M = 16
    msg = torch.randint(0, M, (4, 64), generator=_g(0))
    logits = torch.randn(4, 64, M, generator=_g(1))
    nn_ = torch.arange(M) ^ 1
    for kind in ("symmetric", "pair", "decision-directed", "bursty", "contaminated-pilots"):
        lab, wrong = apply_label_noise(kind, msg, 0.0, _g(2), M=M, neighbours=nn_, logits=logits)
        assert torch.equal(lab, msg) and not wrong.any(), kind
        a = apply_label_noise(kind, msg, 0.3, _g(7), M=M, neighbours=nn_, logits=logits)
        b = apply_label_noise(kind, msg, 0.3, _g(7), M=M, neighbours=nn_, logits=logits)
        c = apply_label_noise(kind, msg, 0.3, _g(8), M=M, neighbours=nn_, logits=logits)
        assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0]), kind


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_decision_directed_labels_follow_the_receiver_at_the_set_rate(rate):
    M, N = 16, 40000
    msg = torch.randint(0, M, (N,), generator=_g(0))
    # a receiver that is wrong on ~15 % of the blocks (its decision = msg + 1 there)
    logits = F.one_hot(msg, M).float() * 3
    bad = torch.rand(N, generator=_g(1)) < 0.15
    logits[bad] = F.one_hot((msg[bad] + 1) % M, M).float() * 3 + F.one_hot(msg[bad], M).float()
    lab, wrong = decision_directed_labels(msg[None], logits[None], rate, _g(2))
    lab, wrong = lab[0], wrong[0]
    assert _within_binomial(int(wrong.sum()), N, rate)
    dec = logits.argmax(-1)
    if rate < 0.15:  # only the receiver's own wrong decisions are wrong labels
        assert torch.equal(lab[wrong], dec[wrong])
    else:  # its wrong decisions are all kept; the extra ones are its runner-up (the truth's runner-up here)
        assert torch.equal(lab[bad], dec[bad])


def test_bursty_flips_are_one_contiguous_burst_of_the_set_length():
    M, B = 16, 40
    msg = torch.randint(0, M, (50, B), generator=_g(0))
    lab, wrong = bursty_flips(msg, M, 0.25, _g(1))
    assert (wrong.sum(-1) == 10).all()
    for row in wrong:
        idx = torch.nonzero(row).flatten().tolist()
        starts = [i for i in idx if (i - 1) % B not in idx]
        assert len(starts) == 1


def test_l2rw_weights_equal_the_definition_by_explicit_autograd():
    torch.manual_seed(0)
    W = torch.randn(5, 3, dtype=torch.float64)
    b = torch.randn(5, dtype=torch.float64)
    xd, yd = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 5, (8,))
    xc, yc = torch.randn(4, 3, dtype=torch.float64), torch.randint(0, 5, (4,))
    params = {"W": W, "b": b}

    def data_losses(p):
        return F.cross_entropy(xd @ p["W"].T + p["b"], yd, reduction="none")

    def clean(p):
        return F.cross_entropy(xc @ p["W"].T + p["b"], yc)

    w = l2rw_weights(data_losses, clean, params)
    # Ren et al.: eps-perturbed virtual step, derivative of the clean loss w.r.t. eps at eps = 0
    alpha = 0.37
    eps = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    Wl, bl = W.clone().requires_grad_(True), b.clone().requires_grad_(True)
    lw = (eps * F.cross_entropy(xd @ Wl.T + bl, yd, reduction="none")).sum()
    gW, gb = torch.autograd.grad(lw, [Wl, bl], create_graph=True)
    lc = F.cross_entropy(xc @ (Wl - alpha * gW).T + (bl - alpha * gb), yc)
    ge = torch.autograd.grad(lc, eps)[0]
    ref = (-ge).clamp_min(0)
    ref = ref / ref.sum()
    torch.testing.assert_close(w, ref)
    assert (ref > 0).any() and (ref == 0).any()  # the case exercises both the clipping and the normalisation


def test_gce_equals_its_closed_form_and_limits():
    logits = torch.randn(6, 5, dtype=torch.float64, generator=_g(0))
    y = torch.randint(0, 5, (6,), generator=_g(1))
    p = torch.softmax(logits, -1)[torch.arange(6), y]
    torch.testing.assert_close(gce_loss(logits, y, 0.5), (1 - p ** 0.5) / 0.5)
    torch.testing.assert_close(gce_loss(logits, y, 1.0), 1 - p)  # MAE: half the L1 distance to the one-hot label
    torch.testing.assert_close(gce_loss(logits, y, 1.0), 0.5 * (torch.softmax(logits, -1) - F.one_hot(y, 5)).abs().sum(-1))
    torch.testing.assert_close(gce_loss(logits, y, 1e-7), -torch.log(p), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gce_loss(logits, y, 0), F.cross_entropy(logits, y, reduction="none"))


def test_auroc_matches_hand_computed_cases():
    assert auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([False, False, True, True])) == 0.75
    assert auroc(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([True, False, True])) == 0.75  # a tie counts 1/2
    assert auroc(torch.tensor([3.0, 2.0, 1.0]), torch.tensor([False, True, True])) == 0.0
    assert math.isnan(auroc(torch.tensor([1.0, 2.0]), torch.tensor([True, True])))


def _scenario():
    return make_scenario("label-noise", num_train_channels=10, num_test_channels=3, messages_per_task=8, pilots=2)


def test_meta_gradients_of_the_pack_objectives_batched_equal_the_per_task_loop():
    sc = _scenario()
    model = sc.build_model(0)
    tasks = sc.sample_tasks(3, _g(3))
    theta = params_of(model)
    rule = WeightingRule(sc.objective.losses, 0.1, "mwnet", MetaWeightNet(generator=_g(4)))
    kw = dict(algo="maml", adapt=list(theta), inner_steps=2, rule=rule)
    a = meta_gradients(model, sc.objective, theta, tasks, batched=True, **kw)
    b = meta_gradients(model, sc.objective, theta, tasks, batched=False, **kw)
    for n in a.grads:
        torch.testing.assert_close(a.grads[n], b.grads[n], rtol=1e-4, atol=1e-6)
    assert set(a.rule_grads) == set(rule.meta_params)
    for k in a.rule_grads:
        torch.testing.assert_close(a.rule_grads[k], b.rule_grads[k], rtol=1e-4, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in a.rule_grads.values())


def test_robust_init_meta_gradients_batched_equal_the_per_task_loop():
    from metacomm.scenarios.label_noise import ConsistencyObjective
    sc = _scenario()
    model = sc.build_model(0)
    tasks = sc.sample_tasks(3, _g(3))
    q = tasks.query
    t_logp = torch.log_softmax(torch.randn(*q["msg"].shape, 16, generator=_g(6)), -1)
    tasks = tasks._replace(query={**q, "t_logp": t_logp})
    obj = ConsistencyObjective(sc.channel, 0.7)
    theta = params_of(model)
    kw = dict(algo="maml", adapt=list(theta), inner_steps=2, inner_lr=0.1)
    a = meta_gradients(model, obj, theta, tasks, batched=True, **kw)
    b = meta_gradients(model, obj, theta, tasks, batched=False, **kw)
    torch.testing.assert_close(a.task_losses, b.task_losses, rtol=1e-5, atol=1e-6)
    for n in a.grads:
        torch.testing.assert_close(a.grads[n], b.grads[n], rtol=1e-4, atol=1e-6)
    # the consistency term is there: lambda = 0 changes the meta-loss
    c = meta_gradients(model, ConsistencyObjective(sc.channel, 0.0), theta, tasks, batched=True, **kw)
    assert not torch.allclose(a.task_losses, c.task_losses)


def test_lookahead_losses_equal_a_hand_written_virtual_step():
    sc = _scenario()
    model = sc.build_model(0)
    sup = sc.support_batch(sc.test_taps, _g(1), noise="symmetric", rate=0.3)
    theta = {n: p.detach() for n, p in model.named_parameters()}
    stacked = {n: t.unsqueeze(0).expand(3, *t.shape) for n, t in theta.items()}
    got = sc.lookahead_losses(model, stacked, sup, 0.1)
    for t in range(3):
        s = {k: v[t] for k, v in sup.items()}
        m = sc.build_model(0)
        lp, ld = sc.objective.losses(m, s)
        ((lp.sum() + ld.sum()) / (lp.numel() + ld.numel())).backward()
        with torch.no_grad():
            for p in m.parameters():
                p -= 0.1 * p.grad
            ref = sc.objective.losses(m, s)[1]
        torch.testing.assert_close(got[t], ref, rtol=1e-4, atol=1e-5)


def test_tasks_carry_training_noise_only_and_contaminated_pilots_flip_the_pilots():
    sc = _scenario()
    t = sc.sample_tasks(200, _g(0))
    s = t.support
    assert torch.equal(s["d_wrong"].bool(), s["d_label"] != s["d_msg"])
    assert torch.equal(s["p_label"], s["p_msg"])
    rate = s["d_wrong"].mean()
    assert 0.15 < rate < 0.35  # rates uniform in [0, 0.5]: mean 0.25
    sup = sc.support_batch(sc.test_taps, _g(1), noise="contaminated-pilots", rate=0.5, pilots=400)
    assert _within_binomial(int((sup["p_label"] != sup["p_msg"]).sum()), 3 * 400, 0.5)


@pytest.fixture(scope="module")
def trained():
    """A fading-ae autoencoder trained jointly on the training channels for a few seconds (BLER ~ 0.49 on new
    channels before adaptation, ~ 0.43 after 3 plain SGD steps at 0.01)."""
    torch.set_num_threads(1)
    sc = make_scenario("label-noise", num_train_channels=20, num_test_channels=20, messages_per_task=16, pilots=4)
    model = sc.build_model(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = _g(9)
    from metacomm.adaptation.functional import batched_loss
    for _ in range(1500):
        q = sc.sample_tasks(8, g).query
        loss, _ = batched_loss(model, dict(model.named_parameters()), sc.objective.loss, q)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
    sc.set_codebook(model)
    return sc, model, {n: p.detach() for n, p in model.named_parameters()}


#: measured harm at rate 0 (also in docs/packs/label-noise.md): L2RW's clipped, normalised weights put the whole step on
#: the few payload blocks whose gradient aligns with the 4 pilots' (many weights are exactly 0), a much noisier step
#: than uniform weights; the gated baseline trains on its own decisions of a codec that is wrong on half the blocks.
#: Kept as strict xfails, not tuned away.
_HARM = {"l2rw": "L2RW concentrates the step on few examples",
         "gated": "own decisions of a codec that is wrong on ~half the blocks"}


@pytest.mark.parametrize("method", [
    "oracle", "gce", "mwnet", *[pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=r)) for m, r in _HARM.items()]])
def test_rate_zero_every_label_using_method_matches_naive_within_intervals(trained, method):
    from metacomm.experiments.label_noise import train_mwnet
    from metacomm.sims.stats import clopper_pearson
    sc, model, params = trained
    sup = sc.support_batch(sc.test_taps, _g(1), noise="symmetric", rate=0.0)
    mw = None
    if method == "mwnet":  # meta-trained briefly on symmetric + pair flips, as the pack does (look-ahead input)
        mw = train_mwnet(sc, model, params, steps=30, meta_batch=5, outer_lr=0.01, lr=0.01, seed=0, inner_steps=3,
                         feature="lookahead")
    res = {}
    for m in ("naive", method):
        phi, _ = sc.adapt(model, params, sup, method=m, steps=3, lr=0.01, mwnet=mw, mwnet_input="lookahead")
        res[m] = sc.test_bler(model, phi, sc.test_taps, _g(5), 1000)
    e0, n0 = res["naive"]
    assert 0.01 < e0 / n0 < 0.9
    lo0, hi0 = clopper_pearson(int(e0), int(n0), 0.05)
    e, n = res[method]
    lo, hi = clopper_pearson(int(e), int(n), 0.05)
    # no harm: the method's BLER is not significantly above naive's (intervals touch, or it is lower). Measured on
    # this CPU (torch 2.13): mwnet 0.3987 vs naive 0.4196 -- *below* naive with disjoint intervals, which the earlier
    # two-sided check counted as a failure; the oracle equals naive exactly at rate 0 (checked two-sided).
    assert lo <= hi0, (method, e / n, e0 / n0)
    if method == "oracle":
        assert (e, n) == (e0, n0)


@pytest.mark.parametrize("flag,value", [("--rate", "0,1.5"), ("--rate", "-0.1"), ("--noise", "gaussian"),
                                        ("--method", "coteaching")])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, flag, value):
    argv = ["pack", "label-noise", "--base", "scratch", "--out", str(tmp_path / "o"), flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0]


@pytest.mark.slow
def test_the_pack_headline_at_its_defaults_over_three_base_checkpoints(tmp_path):
    """README claim, measured at the pack's own defaults on three fading-ae bases (`metacomm meta-train --scenario
    fading-ae --algo maml --seed S`, S = 0, 1, 2; 7-9 CPU-min each), symmetric noise at rate 0.4: the clean-label
    oracle closes the whole naive gap on every base, the classical pilot-LS + ML beats every learned method, and
    Meta-Weight-Net is *not robust across bases*: it closes about half the gap on one base (measured 52 %, weight
    AUROC 0.93) and none on the two others (-0.8 % and -11 %, AUROC 0.19 and 0.09: an inverted weighting)."""
    import json

    from metacomm.cli.main import main
    gaps, aurocs = [], []
    for seed in (0, 1, 2):
        base = tmp_path / f"meta_{seed}.pt"
        assert main(["meta-train", "--scenario", "fading-ae", "--algo", "maml", "--seed", str(seed), "--quiet",
                     "--out", str(base)]) == 0
        out = tmp_path / f"ln_{seed}"
        assert main(["pack", "label-noise", "--base", str(base), "--noise", "symmetric", "--rate", "0.4", "--method",
                     "naive,mwnet", "--quiet", "--no-plot", "--out", str(out)]) == 0
        doc = json.loads((out / "results.json").read_text())
        r = {x["method"]: x for x in doc["results"]}
        assert r["oracle"]["bler"] < 0.5 * r["naive"]["bler"]
        assert doc["reference"]["bler"] < min(x["bler"] for x in r.values())
        gaps.append(r["mwnet"]["gap_closed"])
        aurocs.append(r["mwnet"]["weight_auroc"])
    assert max(gaps) > 0.3 and min(gaps) < 0.05, gaps
    assert max(aurocs) > 0.8 and min(aurocs) < 0.5, aurocs
