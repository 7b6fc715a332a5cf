"""The inner update rule travels with a ``meta-train`` checkpoint (``inner_rule`` entry) and every consumer uses it.

A Meta-SGD run records ``{"name": "metasgd", "config": {}, "tensors": rates}`` and an SGD run ``{"name": "sgd",
"config": {"lr": inner_lr}, "tensors": {}}``; :func:`load_meta_init` rebuilds the rule, and a file written before
the entry existed loads as the older readers inferred it. ``fewshot`` and the drift run adapt with that rule:
their fast weights after one step equal ``w - rate * g`` with the per-parameter rates and a gradient computed here
by plain autograd on the model (an independent reference). A rule a drift scheme cannot run is refused with one
line (exit 2), never replaced by SGD."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch

from metacomm import ConfigError
from metacomm.adaptation.update_rules import SGD, Adam, MetaSGD, rule_from_spec, rule_spec
from metacomm.artefacts import save_checkpoint
from metacomm.cli.main import main
from metacomm.experiments.meta_init import RULE_KEY, load_meta_init

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scenarios", "data")
K4N4 = os.path.join(DATA, "drift_k4n4.toml")  # rho = 0.9, 2 taps, k = 4, n = 4
IQ = ["meta-train", "--scenario", "iq-demod", "--meta-steps", "3", "--meta-batch", "2", "--val-every", "0",
      "--joint-steps", "0", "--quiet"]
DRIFT = ["meta-train", "--scenario", "drift", "--set", f"drift={K4N4}", "--set", "pilots=2", "--set",
         "frames_per_task=4", "--set", "query=8", "--set", "hidden=8", "--meta-steps", "2", "--meta-batch", "2",
         "--val-every", "0", "--quiet"]


def _load(path):
    return torch.load(path, weights_only=True)


def _rewrite(src, dst, edit):
    """A copy of checkpoint ``src`` with ``edit(payload)`` applied, written as a meta-train checkpoint."""
    payload = _load(src)
    edit(payload)
    save_checkpoint(dst, payload, kind="metacomm-meta")
    return str(dst)


@pytest.fixture(scope="module")
def iq_ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("iq")
    ms, sgd = str(d / "metasgd.pt"), str(d / "sgd.pt")
    assert main([*IQ, "--algo", "metasgd", "--out", ms]) == 0
    assert main([*IQ, "--algo", "maml", "--inner-lr", "0.07", "--out", sgd]) == 0
    return ms, sgd


@pytest.fixture(scope="module")
def drift_ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("drift")
    sgd, ms = str(d / "sgd.pt"), str(d / "metasgd.pt")
    assert main([*DRIFT, "--out", sgd]) == 0
    assert main([*DRIFT, "--algo", "metasgd", "--out", ms]) == 0  # rates for the tracker (adapt tracker.*)
    return sgd, ms


# ----------------------------------------------------------------------------------------------------------------
# The entry and its reader
# ----------------------------------------------------------------------------------------------------------------

def test_meta_train_records_the_rule_and_load_meta_init_rebuilds_it(iq_ckpts):
    ms, sgd = iq_ckpts
    ck = _load(ms)
    entry = ck[RULE_KEY]
    assert entry["name"] == "metasgd" and entry["config"] == {}
    lrs = ck["init"]["lrs"]
    assert set(entry["tensors"]) == set(lrs) == set(ck["adapt"])
    assert all(torch.equal(entry["tensors"][n], lrs[n]) for n in lrs)
    assert set(ck["rule"]) == set(lrs)  # the trainer's resume state stays where it was
    mi = load_meta_init(ms)
    assert isinstance(mi.rule, MetaSGD) and set(mi.rule.rates) == set(lrs)
    assert all(torch.equal(mi.rule.rates[n], lrs[n]) for n in lrs)
    assert mi.joint is None and mi.checkpoint["scenario"] == "iq-demod"

    ck = _load(sgd)
    assert ck[RULE_KEY] == {"name": "sgd", "config": {"lr": 0.07}, "tensors": {}}
    rule = load_meta_init(sgd).rule
    assert type(rule) is SGD and rule.lr == 0.07


def test_a_checkpoint_without_the_entry_loads_as_before(iq_ckpts, tmp_path):
    ms, sgd = iq_ckpts

    def drop(p):
        del p[RULE_KEY]

    old_ms = _rewrite(ms, tmp_path / "old-ms.pt", drop)
    old_sgd = _rewrite(sgd, tmp_path / "old-sgd.pt", drop)
    lrs = _load(ms)["init"]["lrs"]
    rule = load_meta_init(old_ms).rule
    assert isinstance(rule, MetaSGD) and all(torch.equal(rule.rates[n], lrs[n]) for n in lrs)
    rule = load_meta_init(old_sgd).rule
    assert type(rule) is SGD and rule.lr == 0.07


def test_an_entry_that_disagrees_with_the_older_keys_or_is_unknown_is_refused(iq_ckpts, tmp_path, capsys):
    ms, sgd = iq_ckpts

    def as_sgd(p):
        p[RULE_KEY] = {"name": "sgd", "config": {"lr": 0.1}, "tensors": {}}

    def unknown(p):
        p[RULE_KEY] = {"name": "lion", "config": {}, "tensors": {}}

    with pytest.raises(ConfigError, match="disagree") as ei:
        load_meta_init(_rewrite(ms, tmp_path / "a.pt", as_sgd))
    assert ei.value.field == "checkpoint"
    bad = _rewrite(sgd, tmp_path / "b.pt", unknown)
    capsys.readouterr()
    assert main(["fewshot", "--checkpoint", bad, "--pilots", "2", "--steps", "1", "--schemes", "meta",
                 "--test-channels", "2", "--test-blocks", "16", "--out", str(tmp_path / "fs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--checkpoint" in err[0] and "lion" in err[0], err


def test_rule_spec_round_trips():
    w = {"a": torch.randn(3), "b": torch.randn(2, 2)}
    rates = {"a": torch.rand(3), "b": torch.rand(2, 2)}
    for rule in (SGD(0.3), Adam(0.01, betas=(0.8, 0.99), eps=1e-6), MetaSGD(rates)):
        spec = rule_spec(rule)
        back = rule_from_spec(spec)
        assert type(back) is type(rule) and rule_spec(back)["config"] == spec["config"]
        g = {"a": torch.randn(3), "b": torch.randn(2, 2)}
        a, _ = rule.step(w, g, rule.init(w))
        b, _ = back.step(w, g, back.init(w))
        assert all(torch.equal(a[n], b[n]) for n in w)
    from metacomm.adaptation.metaquant import MetaQuant
    mq = MetaQuant(0.1, hidden=4, generator=torch.Generator().manual_seed(0), names=["a"])
    back = rule_from_spec(rule_spec(mq))
    assert isinstance(back, MetaQuant) and all(torch.equal(back.meta[k], mq.meta[k].detach()) for k in mq.meta)


# ----------------------------------------------------------------------------------------------------------------
# fewshot adapts with the checkpoint's rule
# ----------------------------------------------------------------------------------------------------------------

def _spy_finetune(monkeypatch, module):
    """Wrap ``module.finetune_batched``: record the model, the initial params, the adapted names, the step-1 pilot
    batch, the rule and the fast weights after step 1."""
    from metacomm.adaptation.finetune import finetune_batched
    seen = {}

    def spy(model, params, loss_fn, *, draw_batch, on_record, first=None, **kw):
        def draw(step):
            b = draw_batch(step)
            if step == 1:
                seen["batch"] = b
            return b

        def rec(step, phi):
            if step == 1:
                seen["phi"] = {n: t.clone() for n, t in phi.items()}
            on_record(step, phi)

        seen.update(model=model, params={n: t.detach().clone() for n, t in params.items()}, loss_fn=loss_fn,
                    first=first, adapt=kw.get("adapt"))
        return finetune_batched(model, params, loss_fn, draw_batch=draw, on_record=rec, first=first, **kw)

    monkeypatch.setattr(module, "finetune_batched", spy)
    return seen


def _hand_step(model, params, names, loss_fn, batch, rates):
    """``w - rate * g`` per task, ``g`` by autograd on a private copy of the model (task t = slice t)."""
    from torch.utils._pytree import tree_map
    T = next(t for t in batch.values() if isinstance(t, torch.Tensor)).shape[0]
    m = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.copy_(params[n])
    own = dict(m.named_parameters())
    out = {n: [] for n in names}
    for t in range(T):
        bt = tree_map(lambda x, t=t: x[t] if isinstance(x, torch.Tensor) else x, batch)
        grads = torch.autograd.grad(loss_fn(m, bt), [own[n] for n in names])
        for n, g in zip(names, grads, strict=True):
            out[n].append(params[n] - rates(n) * g)
    return {n: torch.stack(v) for n, v in out.items()}


@pytest.mark.parametrize("old_style", [False, True])
def test_fewshot_step_one_is_the_checkpoints_meta_sgd_step(iq_ckpts, tmp_path, monkeypatch, old_style):
    """Rates far from uniform (0.02 .. 0.5, per entry) so that SGD at the inner rate would be visibly different;
    ``old_style``: the same rates in ``init["lrs"]`` only (no entry): inferred Meta-SGD."""
    import metacomm.scenarios.fewshot_iq as fq
    ms, _ = iq_ckpts
    g = torch.Generator().manual_seed(3)
    rates = {n: 0.02 + 0.48 * torch.rand(t.shape, generator=g) for n, t in _load(ms)["init"]["lrs"].items()}

    def edit(p):
        p["init"] = {**p["init"], "lrs": rates, "rule": rates}
        if old_style:
            del p[RULE_KEY]
        else:
            p[RULE_KEY] = {"name": "metasgd", "config": {}, "tensors": rates}

    ck = _rewrite(ms, tmp_path / "rates.pt", edit)
    seen = _spy_finetune(monkeypatch, fq)
    out = tmp_path / "fs"
    assert main(["fewshot", "--checkpoint", ck, "--pilots", "3", "--steps", "0,1", "--schemes", "meta",
                 "--test-channels", "2", "--test-blocks", "16", "--out", str(out)]) == 0
    assert isinstance(seen["first"], MetaSGD)
    names = sorted(seen["phi"].keys() & rates.keys())
    assert names == sorted(rates)
    want = _hand_step(seen["model"], seen["params"], names, seen["loss_fn"], seen["batch"], lambda n: rates[n])
    sgd = _hand_step(seen["model"], seen["params"], names, seen["loss_fn"], seen["batch"], lambda n: 0.1)
    for n in names:
        torch.testing.assert_close(seen["phi"][n], want[n], rtol=1e-5, atol=1e-6)
    assert max(float((want[n] - sgd[n]).abs().max()) for n in names) > 1e-4
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["inner_rule"] == "metasgd"


# ----------------------------------------------------------------------------------------------------------------
# the drift run adapts with the checkpoint's rule, or refuses it
# ----------------------------------------------------------------------------------------------------------------

def _taps_rates(drift_sgd):
    """Per-entry Meta-SGD rates for the drift run's adapted parameter (``decoder.taps``)."""
    taps = _load(drift_sgd)["init"]["model"]["decoder.taps"]
    g = torch.Generator().manual_seed(5)
    return {"decoder.taps": 0.05 + 0.6 * torch.rand(taps.shape, generator=g, dtype=taps.dtype)}


def _with_rates(drift_sgd, dst, rates, old_style=False):
    def edit(p):
        p["init"] = {**p["init"], "lrs": rates, "rule": rates}
        p["algo"] = "metasgd"
        if old_style:
            del p[RULE_KEY]
        else:
            p[RULE_KEY] = {"name": "metasgd", "config": {}, "tensors": rates}
    return _rewrite(drift_sgd, dst, edit)


def _drift_hand_step(model, w0, sig, inner_loss, rates):
    m = copy.deepcopy(model)
    taps = dict(m.named_parameters())["decoder.taps"]
    out = []
    for b in range(sig.msg_p.shape[0]):
        with torch.no_grad():
            taps.copy_(w0)
        y, msg = sig.y_p[b], sig.msg_p[b]
        if inner_loss == "pilot-fit":
            loss = m.decoder.pilot_fit_loss(y, msg)
        else:
            loss = torch.nn.functional.cross_entropy(m.decoder.block_logits(y), msg)
        (g,) = torch.autograd.grad(loss, [taps])
        out.append(w0 - rates * g)
    return torch.stack(out)


@pytest.mark.parametrize("old_style", [False, True])
def test_the_drift_run_adapts_with_the_checkpoints_meta_sgd_rates(drift_ckpts, tmp_path, old_style):
    from metacomm.drift.run import DriftRun, DriftRunConfig
    from metacomm.experiments.drift_session import load_drift_codec
    from metacomm.scenarios.drift_scenarios import load_scenario
    sgd_ck, _ = drift_ckpts
    rates = _taps_rates(sgd_ck)
    ck = _with_rates(sgd_ck, tmp_path / "taps.pt", rates, old_style)
    model, codec, _ = load_drift_codec(ck)
    assert isinstance(codec.rule, MetaSGD) and torch.equal(codec.rule.rates["decoder.taps"], rates["decoder.taps"])
    sc = load_scenario(K4N4)
    cfg = DriftRunConfig(frames=1, pilots=2, steps=1, links=3, payload=8, schemes=["meta", "meta-adv"],
                         lr=codec.inner_lr, adapt=codec.adapt, inner_loss=codec.inner_loss)
    run = DriftRun(sc, model, cfg, rule=codec.rule)
    _, sig = run.step()
    w0 = dict(model.named_parameters())["decoder.taps"].detach()
    want = _drift_hand_step(model, w0, sig, run.ctx.inner_loss, rates["decoder.taps"])
    fast = run.schemes[0].codec.fast["decoder.taps"]
    torch.testing.assert_close(fast, want, rtol=1e-5, atol=1e-6)
    sgd = _drift_hand_step(model, w0, sig, run.ctx.inner_loss, codec.inner_lr)
    assert float((want - sgd).abs().max()) > 1e-4  # SGD at the inner rate would have given other weights
    assert run.result.config["inner_rule"] == "MetaSGD"

    # the SGD checkpoint: SGD at the run's lr, exactly as before the rule was recorded
    model, codec, _ = load_drift_codec(sgd_ck)
    assert type(codec.rule) is SGD and codec.rule.lr == codec.inner_lr
    run = DriftRun(sc, model, DriftRunConfig(frames=1, pilots=2, steps=1, links=3, payload=8, schemes=["meta"],
                                             lr=0.3, adapt=codec.adapt, inner_loss=codec.inner_loss),
                   rule=codec.rule)
    _, sig = run.step()
    want = _drift_hand_step(model, w0, sig, run.ctx.inner_loss, 0.3)
    torch.testing.assert_close(run.schemes[0].codec.fast["decoder.taps"], want, rtol=1e-5, atol=1e-6)


def test_the_drift_command_runs_the_rule_or_refuses_it_with_one_line(drift_ckpts, tmp_path, capsys):
    sgd_ck, tracker_ms = drift_ckpts
    ck = _with_rates(sgd_ck, tmp_path / "taps.pt", _taps_rates(sgd_ck))
    base = ["drift", "--scenario", K4N4, "--frames", "2", "--pilots", "2", "--links", "2", "--payload", "8",
            "--quiet"]
    out = tmp_path / "ok"
    assert main([*base, "--checkpoint", ck, "--schemes", "meta,warm,static,online-meta,meta-adv,meta-q8,track",
                 "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["inner_rule"] == "MetaSGD" and res["config"]["checkpoint_meta"]["inner_rule"] == "metasgd"
    # the decision-directed step is SGD at --lr: a Meta-SGD checkpoint is refused, not run as SGD
    capsys.readouterr()
    assert main([*base, "--checkpoint", ck, "--schemes", "dd-naive", "--out", str(tmp_path / "dd")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--checkpoint" in err[0] and "dd-naive" in err[0] and "metasgd" in err[0], err
    assert not (tmp_path / "dd" / "results.json").exists()
    # a real Meta-SGD drift checkpoint has rates for the tracker only: the adapting schemes cannot run it ...
    capsys.readouterr()
    assert main([*base, "--checkpoint", tracker_ms, "--schemes", "meta,pilot-ls", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--checkpoint" in err[0] and "'meta'" in err[0] and "decoder.taps" in err[0], err
    # ... the ones that do not adapt with it run
    assert main([*base, "--checkpoint", tracker_ms, "--schemes", "track,pilot-ls", "--out", str(tmp_path / "t")]) == 0


# ----------------------------------------------------------------------------------------------------------------
# MetaTrainer with the initialisation fixed (the outer loop of the label-noise pack's Meta-Weight-Net)
# ----------------------------------------------------------------------------------------------------------------

def test_meta_trainer_with_a_fixed_init_trains_the_rule_only_as_a_hand_loop_does():
    from metacomm.adaptation import MetaConfig, MetaTrainer, meta_gradients, params_of
    from metacomm.scenarios import make_scenario
    sc = make_scenario("iq-demod", num_train_devices=10, num_test_devices=2)
    model = sc.build_model(0)
    before = {n: t.detach().clone() for n, t in params_of(model).items()}
    names = list(before)[-2:]
    rule = MetaSGD.like({n: before[n] for n in names}, 0.1)
    cfg = MetaConfig(algo="maml", inner_steps=1, outer_lr=0.01, meta_batch=3, adapt=names)
    tr = MetaTrainer(model, sc.objective, sc.sample_tasks, cfg, seed=4, rule=rule, train_init=False)
    tr.train(3, progress=False)
    assert all(torch.equal(before[n], t) for n, t in params_of(model).items())  # the init did not move

    ref = MetaSGD.like({n: before[n] for n in names}, 0.1)  # the loop train_mwnet used to write by hand
    opt = torch.optim.Adam(list(ref.meta_params.values()), lr=0.01)
    g = torch.Generator().manual_seed(4)
    for _ in range(3):
        mg = meta_gradients(model, sc.objective, before, sc.sample_tasks(3, g), algo="maml", adapt=names,
                            inner_steps=1, rule=ref)
        opt.zero_grad()
        for k, t in ref.meta_params.items():
            t.grad = mg.rule_grads[k]
        opt.step()
    assert all(torch.equal(rule.rates[n], ref.rates[n]) for n in names)
    assert any(not torch.equal(rule.rates[n], torch.full_like(rule.rates[n], 0.1)) for n in names)
    with pytest.raises(ConfigError) as ei:
        MetaTrainer(model, sc.objective, sc.sample_tasks, cfg, rule=SGD(0.1), train_init=False)
    assert ei.value.field == "train_init"
