"""Automatic path choice of the task-batched engine (issue 13): the batched-matmul fast path is taken only for a
large batch whose per-task weights include a matrix; whichever path is chosen, the meta-gradient equals the
per-task loop's (functional_call + autograd.grad per task)."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from metacomm.adaptation import SupervisedObjective, TaskBatch, functional, meta_gradients, params_of


@pytest.fixture
def fast_entries(monkeypatch):
    """Counts entries into the fast path's torch-function mode."""
    count = []
    real = functional._StackedLinearMode

    class Spy(real):
        def __enter__(self):
            count.append(1)
            return super().__enter__()

    monkeypatch.setattr(functional, "_StackedLinearMode", Spy)
    return count


def _mlp_tasks(T, N, seed=0):
    g = torch.Generator().manual_seed(seed)

    def batch():
        x = torch.randn(T, N, 2, generator=g, dtype=torch.float64)
        return x, (x[..., :1] * x[..., 1:] > 0).long().squeeze(-1)

    return TaskBatch(batch(), batch())


@pytest.mark.parametrize("adapt,fast", [(["0.bias", "2.bias", "4.bias"], False), (["2.weight", "4.weight"], True)],
                         ids=["vectors-only", "matrices"])
def test_automatic_choice_and_its_gradient_equals_the_loop(adapt, fast, fast_entries, monkeypatch):
    """Above FAST_MIN_ELEMENTS (lowered here so the test stays small), adapting only vectors runs the generic
    path (nothing for the fast path to batch), adapting Linear weights the fast path; both equal the loop."""
    monkeypatch.setattr(functional, "FAST_MIN_ELEMENTS", 64)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2)).double()
    tasks = _mlp_tasks(T=4, N=32)  # leaves of 4 x 32 x 2 = 256 >= 64 elements
    P = params_of(m)
    obj = SupervisedObjective(criterion=nn.functional.cross_entropy)
    kw = dict(algo="maml", adapt=adapt, inner_steps=2, inner_lr=0.3)
    a = meta_gradients(m, obj, P, tasks, batched=True, **kw)
    assert bool(fast_entries) == fast
    b = meta_gradients(m, obj, P, tasks, batched=False, **kw)
    for n in P:
        torch.testing.assert_close(a.grads[n], b.grads[n], rtol=1e-9, atol=1e-12)
    assert any(float(a.grads[n].abs().max()) > 1e-4 for n in adapt)


def test_drift_meta_step_takes_the_generic_path_and_equals_the_loop(fast_entries, monkeypatch):
    """The drift scenario adapts only the tracker's per-tap vectors (0 inner steps, meta_defaults): its automatic
    path is the generic one even for a large batch, and its meta-gradient equals the per-task loop's."""
    from metacomm.scenarios import make_scenario
    monkeypatch.setattr(functional, "FAST_MIN_ELEMENTS", 1)
    data = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scenarios", "data", "drift_k4n4.toml")
    sc = make_scenario("drift", drift=data, hidden=8, pilots=1, query=4, frames_per_task=3, test_frames=4,
                       num_test_sequences=2)
    model = sc.build_model(0)
    tasks = sc.sample_tasks(3, torch.Generator().manual_seed(3))
    P = params_of(model)
    kw = dict(algo="maml", adapt=sc.objective.adapt, inner_steps=sc.meta_defaults["inner_steps"], inner_lr=0.1)
    a = meta_gradients(model, sc.objective, P, tasks, batched=True, **kw)
    assert not fast_entries
    b = meta_gradients(model, sc.objective, P, tasks, batched=False, **kw)
    for n in P:
        assert torch.allclose(a.grads[n], b.grads[n], rtol=1e-4, atol=1e-6), n
    assert any(float(g.abs().max()) > 0 for g in a.grads.values())
