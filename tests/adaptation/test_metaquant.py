"""MetaQuant rule: its step against the definition (hand-written element loop), its gradients against finite
differences, untrained == STE/SGD, and batched == per-task loop meta-gradients on the quantised objective."""

from __future__ import annotations

import math

import pytest
import torch

from metacomm import ConfigError
from metacomm.adaptation import MetaConfig, MetaTrainer, meta_gradients, params_of
from metacomm.adaptation.metaquant import MetaQuant
from metacomm.adaptation.update_rules import SGD
from metacomm.scenarios import make_scenario


def _rule(seed=0, dtype=torch.float32, hidden=4):
    r = MetaQuant(0.1, hidden=hidden, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # a trained-looking meta-network (v, e nonzero)
        r.meta["v"].copy_(torch.randn(hidden, generator=g, dtype=dtype) * 0.05)
        r.meta["e"].copy_(torch.tensor(0.01, dtype=dtype))
    return r


def test_untrained_metaquant_is_the_ste_sgd_step():
    r = MetaQuant(0.1, generator=torch.Generator().manual_seed(0))
    p = {"a.weight": torch.randn(3, 4), "a.bias": torch.randn(3)}
    g = {k: torch.randn_like(v) for k, v in p.items()}
    new, _ = r.step(p, g, r.init(p))
    ref, _ = SGD(0.1).step(p, g, {})
    for k in p:
        assert torch.allclose(new[k], ref[k], rtol=0, atol=1e-7)


def test_step_equals_the_definition_element_by_element():
    r = _rule(dtype=torch.float64)
    m = {k: t.detach() for k, t in r.meta.items()}
    p = {"l.weight": torch.randn(2, 3, dtype=torch.float64), "l.bias": torch.randn(2, dtype=torch.float64)}
    g = {k: torch.randn_like(v) * 0.05 for k, v in p.items()}
    new, _ = r.step(p, g, {})
    gs, ws = r.grad_scale, r.weight_scale
    for i in range(2):
        for j in range(3):
            gi, wi = float(g["l.weight"][i, j]), float(p["l.weight"][i, j])
            out = sum(float(m["v"][h]) * math.tanh(float(m["U"][h, 0]) * gi * gs + float(m["U"][h, 1]) * wi * ws
                                                  + float(m["c"][h])) for h in range(r.hidden))
            d = gi + (out + float(m["e"])) / gs
            assert abs(float(new["l.weight"][i, j]) - (wi - 0.1 * d)) < 1e-12
    assert torch.allclose(new["l.bias"], p["l.bias"] - 0.1 * g["l.bias"], rtol=0, atol=1e-15)  # bias: plain SGD


def test_gradients_of_the_step_match_finite_differences():
    r = _rule(dtype=torch.float64)
    w = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    g = (torch.randn(3, 2, dtype=torch.float64) * 0.1).requires_grad_(True)
    keys = ("U", "c", "v", "e")

    def f(w, g, U, c, v, e):
        meta = dict(zip(keys, (U, c, v, e), strict=True))
        return r.step({"x.weight": w}, {"x.weight": g}, {}, meta)[0]["x.weight"]

    meta = [r.meta[k].detach().clone().requires_grad_(True) for k in keys]
    assert torch.autograd.gradcheck(f, (w, g, *meta))


def test_batched_equals_per_task_loop_meta_gradients_on_the_quantised_objective():
    torch.manual_seed(0)
    sc = make_scenario("fading-ae-quant", num_train_channels=10, num_test_channels=3, train_bits=[8, 4, 2],
                       sparsity=0.25)
    model = sc.build_model(0)
    tasks = sc.sample_tasks(6, torch.Generator().manual_seed(3))
    assert len(set(tasks.support["bits"].tolist())) > 1  # a mixed-bit-width meta-batch
    rule = _rule()
    kw = dict(algo="maml", inner_steps=2, rule=rule)
    gb = meta_gradients(model, sc.objective, params_of(model), tasks, batched=True, **kw)
    gl = meta_gradients(model, sc.objective, params_of(model), tasks, batched=False, **kw)
    assert torch.allclose(gb.task_losses, gl.task_losses, rtol=1e-5, atol=1e-6)
    for n in gb.grads:
        assert torch.allclose(gb.grads[n], gl.grads[n], rtol=1e-4, atol=1e-7), n
    for k in rule.meta_params:
        assert gb.rule_grads[k].abs().sum() > 0, k
        assert torch.allclose(gb.rule_grads[k], gl.rule_grads[k], rtol=1e-4, atol=1e-8), k


def test_meta_training_updates_the_meta_network():
    sc = make_scenario("fading-ae-quant", num_train_channels=10, num_test_channels=3)
    rule = MetaQuant(0.1, generator=torch.Generator().manual_seed(0))
    before = {k: t.detach().clone() for k, t in rule.meta.items()}
    tr = MetaTrainer(sc.build_model(0), sc.objective, sc.sample_tasks, MetaConfig(meta_batch=4, outer_lr=1e-2),
                     rule=rule)
    tr.train(3, progress=False)
    assert not torch.equal(before["v"], rule.meta["v"])
    d = rule.detached()
    assert all(not t.requires_grad for t in d.meta_params.values())


def test_generator_is_required():
    with pytest.raises(ConfigError, match="generator"):
        MetaQuant(0.1)
