"""The fading-ae-quant pack: the quantised objective against its definition (float loss at the quantised
weights, STE gradient), bit-width as a task (vmapped mixed bits == per-task), the float path == fading-ae."""

from __future__ import annotations

import pytest
import torch

from metacomm import ConfigError
from metacomm.adaptation import TaskBatch, params_of
from metacomm.adaptation.functional import batched_loss, call
from metacomm.codecs.quantization import magnitude_mask, quantize_weight
from metacomm.scenarios import make_scenario
from metacomm.scenarios.fewshot_fading import FadingAEObjective


def _sc(**kw):
    return make_scenario("fading-ae-quant", num_train_channels=10, num_test_channels=3, **kw)


def _one(tasks, i):
    from metacomm.adaptation import task_slice
    return task_slice(tasks.support, i)


def test_tasks_carry_a_bit_width_drawn_from_train_bits():
    sc = _sc()
    t = sc.sample_tasks(40, torch.Generator().manual_seed(0))
    assert isinstance(t, TaskBatch)
    assert set(t.support["bits"].tolist()) == {8.0, 6.0, 4.0}
    assert torch.equal(t.support["bits"], t.query["bits"])
    # the channels are fading-ae's (same generator draws first)
    base = make_scenario("fading-ae", num_train_channels=10, num_test_channels=3)
    tb = base.sample_tasks(40, torch.Generator().manual_seed(0))
    assert torch.equal(t.support["taps"], tb.support["taps"]) and torch.equal(t.query["msg"], tb.query["msg"])


def test_quantised_loss_is_the_float_loss_at_the_quantised_weights_and_its_gradient_is_the_ste():
    sc = _sc(sparsity=0.5)
    model = sc.build_model(0)
    batch = _one(sc.sample_tasks(3, torch.Generator().manual_seed(1)), 1)
    params = {n: p.detach().clone().requires_grad_(True) for n, p in params_of(model).items()}
    loss, _ = call(model, params, sc.objective.loss, batch)
    bits = int(batch["bits"])
    # independent definition: weights pruned with the mask and quantised, biases float, through fading-ae's loss
    qp = {}
    for n, p in params.items():
        if n.endswith("weight"):
            m = magnitude_mask(p.detach(), 0.5)
            qp[n] = quantize_weight(p.detach() * m, bits).requires_grad_(True)
        else:
            qp[n] = p.detach().clone().requires_grad_(True)
    ref, _ = call(model, qp, FadingAEObjective(sc.channel).loss, batch)
    assert torch.allclose(loss, ref, rtol=1e-6, atol=1e-7)
    g = torch.autograd.grad(loss, list(params.values()))
    gr = torch.autograd.grad(ref, list(qp.values()))
    for (n, p), a, b in zip(params.items(), g, gr, strict=True):
        expect = b * magnitude_mask(p.detach(), 0.5) if n.endswith("weight") else b
        assert torch.allclose(a, expect, rtol=1e-5, atol=1e-7), n


def test_float_bits_give_exactly_the_fading_ae_loss():
    sc = _sc()
    model = sc.build_model(0)
    batch = _one(sc.sample_val_tasks(2, torch.Generator().manual_seed(2)), 0)
    batch["bits"] = torch.tensor(32.0)
    a, _ = call(model, params_of(model), sc.objective.loss, batch)
    b, _ = call(model, params_of(model), FadingAEObjective(sc.channel).loss, batch)
    assert torch.equal(a, b)


def test_vmapped_mixed_bits_equal_per_task_losses_with_adc_and_activations():
    sc = _sc(act_bits=6, adc_bits=3, train_bits="8,4,1")
    model = sc.build_model(0)
    tasks = sc.sample_tasks(6, torch.Generator().manual_seed(4))
    p = params_of(model)
    stacked = {n: t.unsqueeze(0).expand(6, *t.shape) for n, t in p.items()}
    losses = batched_loss(model, {}, lambda m, b: sc.objective.loss(m, b)[0], tasks.support, stacked)
    for i in range(6):
        li, _ = call(model, p, sc.objective.loss, _one(tasks, i))
        assert torch.allclose(losses[i], li, rtol=1e-6, atol=1e-7)


def test_lower_bit_widths_hurt_an_initialisation_more():
    # a trained float codec loses accuracy monotonically-ish as bits drop; a 1-bit codec is far worse than 8-bit
    sc = _sc()
    model = sc.build_model(0)
    from metacomm.adaptation import MetaConfig, MetaTrainer
    tr = MetaTrainer(model, sc.objective, sc.sample_tasks, MetaConfig(inner_steps=0, meta_batch=20, outer_lr=1e-2))
    tr.train(150, progress=False)
    losses = {}
    for b in (32, 8, 1):
        tasks = sc.sample_val_tasks(50, torch.Generator().manual_seed(5))
        for part in tasks:
            part["bits"] = torch.full_like(part["bits"], b)
        losses[b] = float(batched_loss(model, params_of(model), lambda m, x: sc.objective.loss(m, x)[0],
                                       tasks.query).mean())
    assert abs(losses[8] - losses[32]) < 0.05 * losses[32] + 0.02
    assert losses[1] > losses[8] + 0.1


def test_bad_settings_are_config_errors():
    for kw, field in (({"train_bits": [8, 0]}, "train_bits"), ({"sparsity": 1.0}, "sparsity"),
                      ({"quantize": "weights"}, "quantize"), ({"adc_bits": 20}, "adc_bits")):
        with pytest.raises(ConfigError, match=field):
            _sc(**kw)
    sc = _sc()
    with pytest.raises(ConfigError, match="bits"), sc.using(bits=17):
        pass
    with pytest.raises(ConfigError, match="heldout_channel"):
        sc.heldout_taps("nope")
    taps = sc.heldout_taps("2-tap")
    assert taps.shape == (3, 3) and torch.all(taps[:, 2] == 0)
