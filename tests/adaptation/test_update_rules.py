"""Inner update rules: SGD / Meta-SGD / Adam against hand computations and torch.optim, every inner loop through
the rule, the extension points (a learned gradient transform, a learned example weighting) meta-trained by the
batched engine and checked against the per-task loop and finite differences, deprecated spellings."""

import copy

import pytest
import torch
from torch import nn

from metacomm import ConfigError
from metacomm.adaptation import (
    SGD,
    Adam,
    MetaConfig,
    MetaSGD,
    MetaTrainer,
    SupervisedObjective,
    TaskBatch,
    UpdateRule,
    call,
    finetune_batched,
    inner_adapt,
    inner_adapt_autograd,
    inner_adapt_batched,
    meta_gradients,
    params_of,
)

torch.set_num_threads(1)


def _mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 1)).to(dtype)


def _tasks(T=3, K=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)

    def batch():
        x = torch.randn(T, K, 2, generator=g, dtype=dtype)
        return x, x.sum(-1, keepdim=True).sin() + 0.1 * torch.randn(T, K, 1, generator=g, dtype=dtype)

    return TaskBatch(batch(), batch())


def _sampler(T, g):
    x, x2 = torch.randn(T, 5, 2, generator=g), torch.randn(T, 5, 2, generator=g)
    a = torch.randn(T, 1, 2, generator=g)
    return TaskBatch((x, (x * a).sum(-1, keepdim=True)), (x2, (x2 * a).sum(-1, keepdim=True)))


# --- the built-in rules -----------------------------------------------------------------------------------

def test_sgd_and_metasgd_steps_are_the_plain_formulas():
    g = torch.Generator().manual_seed(0)
    p = {"a": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g)}
    gr = {"a": torch.randn(3, 4, generator=g)}
    new, st = SGD(0.3).step(p, gr, SGD(0.3).init(p))
    assert torch.equal(new["a"], p["a"] - 0.3 * gr["a"]) and new["b"] is p["b"] and st == {}
    rates = {"a": torch.rand(3, 4, generator=g)}
    new, _ = MetaSGD(rates).step(p, gr, {})
    assert torch.equal(new["a"], p["a"] - rates["a"] * gr["a"])
    # a stacked task axis broadcasts against the per-parameter rates
    ps = {"a": p["a"].expand(5, 3, 4)}
    new, _ = MetaSGD(rates).step(ps, {"a": gr["a"].expand(5, 3, 4)}, {})
    assert torch.equal(new["a"][2], p["a"] - rates["a"] * gr["a"])
    with pytest.raises(ConfigError, match="lrs"):
        MetaSGD({"b": rates["a"]}).step(p, gr, {})


def test_metasgd_initial_rates_constant_per_tensor_and_range():
    p = {"w": torch.zeros(2, 3, dtype=torch.float64), "b": torch.zeros(3, dtype=torch.float64)}
    c = MetaSGD.like(p, 0.05)
    assert all(torch.equal(r, torch.full_like(p[n], 0.05)) and r.requires_grad and r.is_leaf
               for n, r in c.rates.items())
    d = MetaSGD.like(p, {"w": 0.1, "b": torch.tensor([1.0, 2.0, 3.0])})
    assert torch.equal(d.rates["w"], torch.full((2, 3), 0.1, dtype=torch.float64))
    assert torch.equal(d.rates["b"], torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    r = MetaSGD.like(p, (0.005, 0.1), generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)  # independent draw: same generator, same order, same formula
    ref_w = 0.005 + (0.1 - 0.005) * torch.rand(2, 3, generator=g, dtype=torch.float64)
    ref_b = 0.005 + (0.1 - 0.005) * torch.rand(3, generator=g, dtype=torch.float64)
    assert torch.equal(r.rates["w"], ref_w) and torch.equal(r.rates["b"], ref_b)
    assert float(r.rates["w"].detach().min()) >= 0.005 and float(r.rates["w"].detach().max()) < 0.1
    with pytest.raises(ConfigError, match="generator"):
        MetaSGD.like(p, (0.0, 0.1))
    with pytest.raises(ConfigError, match="lrs"):
        MetaSGD.like(p, {"w": 0.1})
    with pytest.raises(ConfigError, match="lrs"):
        MetaSGD.like(p, (0.2, 0.1), generator=torch.Generator())
    with pytest.raises(ConfigError, match="lrs"):
        MetaSGD.like(p, {"w": torch.ones(4), "b": 0.1})


def test_inner_loops_with_adam_rule_equal_torch_optim_adam_per_task():
    """inner_adapt_batched / inner_adapt / inner_adapt_autograd with rule=Adam == torch.optim.Adam on a private
    copy of the model per task (the independent reference)."""
    m = _mlp()
    tasks = _tasks()
    obj = SupervisedObjective()
    rule = Adam(0.05)
    stacked = inner_adapt_batched(m, params_of(m), tasks.support, obj.inner_loss, num_tasks=3, steps=4, rule=rule,
                                  create_graph=False)
    for t in range(3):
        ref = copy.deepcopy(m)
        opt = torch.optim.Adam(ref.parameters(), lr=0.05)
        x, y = tasks.support[0][t], tasks.support[1][t]
        for _ in range(4):
            opt.zero_grad()
            nn.functional.mse_loss(ref(x), y).backward()
            opt.step()
        one = inner_adapt_autograd(m, params_of(m), (x, y), obj.inner_loss, steps=4, rule=rule, create_graph=False)
        fun = inner_adapt(m, params_of(m), (x, y), obj.inner_loss, steps=4, rule=rule, create_graph=False)
        for n, w in ref.named_parameters():
            torch.testing.assert_close(stacked[n][t], w.detach(), rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(one[n], w.detach(), rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(fun[n], w.detach(), rtol=1e-10, atol=1e-12)


def test_vmapped_functional_inner_loop_with_metasgd_rule_and_its_rate_gradient():
    """inner_adapt under torch.vmap (torch.func.grad inside) with Meta-SGD rates equals the per-task autograd
    loop, and d(query loss)/d(rates) through it matches the one-step closed form -g_S * g_Q."""
    m = _mlp()
    obj = SupervisedObjective()
    tasks = _tasks()
    P = {n: p.detach() for n, p in params_of(m).items()}
    rule = MetaSGD.like(P, (0.05, 0.2), generator=torch.Generator().manual_seed(1))

    def one(s):
        return inner_adapt(m, P, s, obj.inner_loss, steps=2, rule=rule, create_graph=True)

    out = torch.vmap(one)(tasks.support)
    for t in range(3):
        ref = inner_adapt_autograd(m, P, (tasks.support[0][t], tasks.support[1][t]), obj.inner_loss, steps=2,
                                   rule=rule)
        for n in P:
            torch.testing.assert_close(out[n][t], ref[n], rtol=1e-10, atol=1e-12)
    # rate gradient of one step, task 0: dL_Q(theta - a*gS)/da = -gS * gQ(phi)
    s, q = (tasks.support[0][0], tasks.support[1][0]), (tasks.query[0][0], tasks.query[1][0])
    th = {n: t.clone().requires_grad_(True) for n, t in P.items()}
    gS = dict(zip(th, torch.autograd.grad(call(m, th, obj.inner_loss, s), list(th.values())), strict=True))
    phi = {n: (P[n] - rule.rates[n].detach() * gS[n]).requires_grad_(True) for n in P}
    gQ = dict(zip(phi, torch.autograd.grad(call(m, phi, obj.inner_loss, q), list(phi.values())), strict=True))
    phi_e = inner_adapt(m, P, s, obj.inner_loss, steps=1, rule=rule)
    got = torch.autograd.grad(call(m, phi_e, obj.inner_loss, q), list(rule.rates.values()))
    for (n, _), gn in zip(rule.rates.items(), got, strict=True):
        torch.testing.assert_close(gn, -gS[n] * gQ[n], rtol=1e-9, atol=1e-12)


# --- extension points ---------------------------------------------------------------------------------------

class LearnedTransform(UpdateRule):
    """MetaQuant-style learned gradient transform: a 2-h-1 meta-network maps (g, w) elementwise to a correction,
    update = lr * (g + net(g, w))."""

    def __init__(self, lr=0.1, hidden=4, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.lr = lr
        self._meta = {"w1": (0.3 * torch.randn(2, hidden, generator=g, dtype=torch.float64)).requires_grad_(True),
                      "b1": torch.zeros(hidden, dtype=torch.float64, requires_grad=True),
                      "w2": (0.3 * torch.randn(hidden, 1, generator=g, dtype=torch.float64)).requires_grad_(True)}

    @property
    def meta_params(self):
        return self._meta

    def step(self, params, grads, state, meta_params=None):
        mp = self._meta if meta_params is None else meta_params
        new = dict(params)
        for n, g in grads.items():
            x = torch.stack([g, params[n]], -1)
            u = (torch.tanh(x @ mp["w1"] + mp["b1"]) @ mp["w2"])[..., 0]
            new[n] = params[n] - self.lr * (g + u)
        return new, state


class LossWeighting(UpdateRule):
    """Learned per-example weighting of the inner loss: w_i = 2 sigmoid(a r_i + b) on squared residuals r_i,
    inner loss = mean_i w_i r_i; then plain SGD."""

    def __init__(self, lr=0.1):
        self.lr = lr
        self._meta = {"a": torch.tensor(-0.3, dtype=torch.float64, requires_grad=True),
                      "b": torch.tensor(0.2, dtype=torch.float64, requires_grad=True)}

    @property
    def meta_params(self):
        return self._meta

    def wrap_loss(self, loss_fn, meta_params=None):
        mp = self._meta if meta_params is None else meta_params

        def weighted(model, batch):
            x, y = batch
            r = ((model(x) - y) ** 2).sum(-1)
            return (2 * torch.sigmoid(mp["a"] * r + mp["b"]) * r).mean()
        return weighted

    def step(self, params, grads, state, meta_params=None):
        return SGD(self.lr).step(params, grads, state)


@pytest.mark.parametrize("make", [LearnedTransform, LossWeighting], ids=["transform", "weighting"])
def test_extension_rules_batched_equals_loop_and_finite_differences(make):
    m = _mlp()
    obj = SupervisedObjective()
    tasks = _tasks()
    rule = make()
    a = meta_gradients(m, obj, params_of(m), tasks, algo="maml", rule=rule, inner_steps=2)
    b = meta_gradients(m, obj, params_of(m), tasks, algo="maml", rule=rule, inner_steps=2, batched=False)
    for n in a.grads:
        torch.testing.assert_close(a.grads[n], b.grads[n], rtol=1e-9, atol=1e-12)
    assert set(a.rule_grads) == set(rule.meta_params)
    for k in rule.meta_params:
        torch.testing.assert_close(a.rule_grads[k], b.rule_grads[k], rtol=1e-9, atol=1e-12)
    assert max(float(v.abs().max()) for v in a.rule_grads.values()) > 1e-6
    # central finite difference of the meta-loss in one meta-parameter entry
    key = next(iter(rule.meta_params))
    h = 1e-6
    losses = []
    for sign in (1, -1):
        with torch.no_grad():
            rule.meta_params[key].view(-1)[0] += sign * h
        losses.append(float(meta_gradients(m, obj, params_of(m), tasks, rule=rule, inner_steps=2).loss))
        with torch.no_grad():
            rule.meta_params[key].view(-1)[0] -= sign * h
    fd = (losses[0] - losses[1]) / (2 * h)
    assert abs(fd - float(a.rule_grads[key].view(-1)[0])) < 1e-6 * max(1.0, abs(fd))


def test_trainer_optimises_any_rules_meta_parameters_without_special_cases():
    """MetaTrainer with algo='maml' and a learned-transform rule: one outer Adam over model + rule parameters;
    the rule's meta-parameters move exactly as torch.optim.Adam would move them given the engine's gradients."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 1))
    rule = LearnedTransform()
    rule._meta = {k: v.detach().float().requires_grad_(True) for k, v in rule._meta.items()}
    tr = MetaTrainer(model, SupervisedObjective(), _sampler, MetaConfig(algo="maml", meta_batch=4, outer_lr=0.01),
                     seed=3, rule=rule)
    before = {k: v.detach().clone() for k, v in rule.meta_params.items()}
    tasks = _sampler(4, torch.Generator().manual_seed(3))
    mg = meta_gradients(copy.deepcopy(model), SupervisedObjective(), params_of(model), tasks, rule=rule)
    tr.step()
    for k, v in rule.meta_params.items():  # first Adam step: theta - lr * sign(g) (bias-corrected m/sqrt(v))
        g = mg.rule_grads[k]
        ref = before[k] - 0.01 * g / (g.abs() + 1e-8)
        torch.testing.assert_close(v.detach(), ref, rtol=1e-5, atol=1e-7)
    sd = tr.state_dict()
    assert sd["lrs"] is None and set(sd["rule"]) == set(rule.meta_params)


def test_metasgd_is_maml_with_the_metasgd_rule_and_trainer_keeps_lrs_checkpoint_key(tmp_path):
    m = _mlp()
    obj = SupervisedObjective()
    tasks = _tasks()
    P = params_of(m)
    rates = {n: torch.full_like(p, 0.07) for n, p in P.items()}
    old = meta_gradients(m, obj, P, tasks, algo="metasgd", lrs=rates, inner_steps=2)
    new = meta_gradients(m, obj, P, tasks, algo="maml", rule=MetaSGD(rates), inner_steps=2)
    for n in P:
        assert torch.equal(old.grads[n], new.grads[n]) and torch.equal(old.lr_grads[n], new.rule_grads[n])
    tr = MetaTrainer(_mlp(dtype=torch.float32), obj, _sampler, MetaConfig(algo="metasgd", meta_batch=2,
                                                                          inner_lr=0.03), seed=0)
    tr.train(2, progress=False)
    tr.save(str(tmp_path / "ck.pt"))
    ck = torch.load(str(tmp_path / "ck.pt"), weights_only=True)
    assert set(ck["lrs"]) == set(tr.adapt) and all(torch.equal(ck["lrs"][n], ck["rule"][n]) for n in ck["lrs"])
    assert not all(torch.equal(v, torch.full_like(v, 0.03)) for v in ck["lrs"].values())  # the rates learned
    # a Meta-SGD trainer started from a random range of rates (explicit generator)
    model = _mlp(dtype=torch.float32)
    rule = MetaSGD.like(params_of(model), (0.01, 0.05), generator=torch.Generator().manual_seed(0))
    tr2 = MetaTrainer(model, obj, _sampler, MetaConfig(algo="metasgd", meta_batch=2), seed=0, rule=rule)
    assert tr2.lrs is rule.rates
    with pytest.raises(ConfigError, match="rule"):
        MetaTrainer(_mlp(dtype=torch.float32), obj, _sampler, MetaConfig(algo="metasgd"), rule=SGD(0.1))


def test_finetune_batched_goes_through_the_rule():
    """finetune_batched: step 1 with a Meta-SGD rule, steps >= 2 with Adam, against per-task hand updates."""
    m = _mlp()
    obj = SupervisedObjective()
    tasks = _tasks(T=2)
    rates = {n: torch.full_like(p, 0.2) for n, p in params_of(m).items()}
    got = finetune_batched(m, params_of(m), obj.inner_loss, num_tasks=2, draw_batch=lambda s: tasks.support,
                           record=[3], on_record=lambda s, p: None, first=MetaSGD(rates), rest=Adam(0.01))
    for t in range(2):
        ref = copy.deepcopy(m)
        x, y = tasks.support[0][t], tasks.support[1][t]
        grads = torch.autograd.grad(nn.functional.mse_loss(ref(x), y), list(ref.parameters()))
        with torch.no_grad():
            for p, g in zip(ref.parameters(), grads, strict=True):
                p -= 0.2 * g
        opt = torch.optim.Adam(ref.parameters(), lr=0.01)
        for _ in range(2):
            opt.zero_grad()
            nn.functional.mse_loss(ref(x), y).backward()
            opt.step()
        for n, w in ref.named_parameters():
            torch.testing.assert_close(got[n][t], w.detach(), rtol=1e-10, atol=1e-12)


def test_deprecated_spellings_and_errors():
    m = _mlp()
    obj = SupervisedObjective()
    tasks = _tasks()
    P = params_of(m)
    a = meta_gradients(m, obj, P, tasks, inner_lr=0.2)
    b = meta_gradients(m, obj, P, tasks, rule=SGD(0.2))
    c = meta_gradients(m, obj, P, tasks, inner_lr=torch.tensor(0.2, dtype=torch.float64))
    for n in P:
        assert torch.equal(a.grads[n], b.grads[n]) and torch.equal(a.grads[n], c.grads[n])
    rates = {n: torch.full_like(p, 0.1) for n, p in P.items()}
    with pytest.raises(ConfigError, match="lrs"):
        meta_gradients(m, obj, P, tasks, algo="maml", lrs=rates)
    with pytest.raises(ConfigError, match="inner_lr"):
        meta_gradients(m, obj, P, tasks, inner_lr=torch.tensor(0.1, requires_grad=True))
    with pytest.raises(ConfigError, match="rule"):
        meta_gradients(m, obj, P, tasks, rule=SGD(0.1), inner_lr=0.1)
    with pytest.raises(ConfigError, match="rule"):
        meta_gradients(m, obj, P, tasks, algo="metasgd", rule=SGD(0.1))
    with pytest.raises(ConfigError, match="rule"):
        inner_adapt(m, P, (tasks.support[0][0], tasks.support[1][0]), obj.inner_loss, rule=SGD(0.1), lr=0.1)
    with pytest.raises(ConfigError, match="rule"):
        meta_gradients(m, obj, P, tasks, rule="sgd")
