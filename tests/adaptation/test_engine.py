"""Meta-engine: task-batched meta-gradients vs the per-task loop and closed forms; optimisers; trainer."""

import warnings

import pytest
import torch
from torch import nn

from metacomm import ConfigError
from metacomm.adaptation import (
    ALGORITHMS,
    Adam,
    MetaConfig,
    MetaObjective,
    MetaTrainer,
    SupervisedObjective,
    TaskBatch,
    functional,
    inner_adapt,
    inner_adapt_autograd,
    meta_gradients,
    params_of,
    select_names,
)
from metacomm.adaptation.functional import fast_path, stacked_matmul


class EncDec(nn.Module):
    """A tiny encoder/decoder-shaped model (the engine must be model-agnostic)."""

    def __init__(self, act=nn.Tanh):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(3, 8), act(), nn.Linear(8, 4))
        self.decoder = nn.Sequential(nn.Linear(4, 8), act(), nn.Linear(8, 2))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def _tasks(T=4, B=6, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator(device=device).manual_seed(seed)

    def batch():
        return (torch.randn(T, B, 3, generator=g, dtype=dtype, device=device),
                torch.randn(T, B, 2, generator=g, dtype=dtype, device=device))

    return TaskBatch(batch(), batch())


@pytest.mark.parametrize("algo", ALGORITHMS)
@pytest.mark.parametrize("adapt", ["all", "decoder"])
@pytest.mark.parametrize("fast", [True, False], ids=["bmm", "vmap"])
@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU])
def test_batched_equals_loop(algo, adapt, fast, act, device, monkeypatch):
    """Task-batched meta-gradients (batched-matmul fast path and generic vmap path) equal the per-task loop
    over functional_call + autograd.grad, for every algorithm, with smooth and ReLU activations."""
    torch.manual_seed(0)
    m = EncDec(act).double().to(device)
    calls = []
    real = functional.stacked_matmul
    monkeypatch.setattr(functional, "stacked_matmul", lambda a, b: calls.append(1) or real(a, b))
    obj = SupervisedObjective(adapt=adapt)
    spec = "head" if algo == "anil" else adapt
    names = select_names(m, spec)
    P = params_of(m)
    lrs = {n: 0.05 + 0.1 * torch.rand_like(P[n]) for n in names} if algo == "metasgd" else None
    tasks = _tasks(device=device)
    with fast_path(fast):
        a = meta_gradients(m, obj, P, tasks, algo=algo, adapt=names, inner_steps=2, inner_lr=0.3, lrs=lrs,
                           batched=True)
    assert bool(calls) == fast  # the fast path is taken exactly when enabled
    b = meta_gradients(m, obj, P, tasks, algo=algo, adapt=names, inner_steps=2, inner_lr=0.3, lrs=lrs,
                       batched=False)
    for n in P:
        torch.testing.assert_close(a.grads[n], b.grads[n], rtol=1e-9, atol=1e-12)
    assert any(a.grads[n].abs().max() > 1e-4 for n in names)
    if algo == "metasgd":
        for n in names:
            torch.testing.assert_close(a.lr_grads[n], b.lr_grads[n], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(a.task_losses, b.task_losses)
    if algo in ("reptile",):
        frozen = [n for n in P if n not in names]
        assert all(float(a.grads[n].abs().max()) == 0.0 for n in frozen)


def _linreg_tasks(T, N, d, seed):
    g = torch.Generator().manual_seed(seed)
    Xs, Xq = torch.randn(T, N, d, generator=g, dtype=torch.float64), torch.randn(T, N, d, generator=g,
                                                                                 dtype=torch.float64)
    ys, yq = torch.randn(T, N, generator=g, dtype=torch.float64), torch.randn(T, N, generator=g,
                                                                              dtype=torch.float64)
    return Xs, ys, Xq, yq


class Lin(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.w = nn.Parameter(torch.randn(d, dtype=torch.float64))

    def forward(self, x):
        return x @ self.w


def test_maml_fomaml_reptile_closed_form_linear_regression():
    """L(w) = mean((Xw - y)^2): gradient 2/N X^T(Xw - y), Hessian 2/N X^T X. One inner step:
    phi = w - a g_S(w); MAML grad = (I - a H_S) g_Q(phi); FOMAML grad = g_Q(phi); Reptile = w - phi."""
    d, T, N, a = 3, 5, 7, 0.05
    torch.manual_seed(1)
    m = Lin(d)
    Xs, ys, Xq, yq = _linreg_tasks(T, N, d, 3)
    obj = SupervisedObjective()
    tasks = TaskBatch((Xs, ys), (Xq, yq))
    w = m.w.detach()
    maml, fo, rep = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64), \
        torch.zeros(d, dtype=torch.float64)
    for t in range(T):
        gS = 2 / N * Xs[t].T @ (Xs[t] @ w - ys[t])
        HS = 2 / N * Xs[t].T @ Xs[t]
        phi = w - a * gS
        gQ = 2 / N * Xq[t].T @ (Xq[t] @ phi - yq[t])
        maml += (torch.eye(d, dtype=torch.float64) - a * HS) @ gQ / T
        fo += gQ / T
        rep += (w - phi) / T
    for algo, ref in (("maml", maml), ("fomaml", fo), ("reptile", rep)):
        got = meta_gradients(m, obj, params_of(m), tasks, algo=algo, adapt=["w"], inner_steps=1, inner_lr=a)
        torch.testing.assert_close(got.grads["w"], ref, rtol=1e-10, atol=1e-12)
    # Meta-SGD: d/d alpha of L_Q(w - alpha * gS) = -gS * gQ(phi) (elementwise), at alpha = a.
    lrs = {"w": torch.full((d,), a, dtype=torch.float64)}
    got = meta_gradients(m, obj, params_of(m), tasks, algo="metasgd", adapt=["w"], inner_steps=1, lrs=lrs)
    ref_lr = torch.zeros(d, dtype=torch.float64)
    for t in range(T):
        gS = 2 / N * Xs[t].T @ (Xs[t] @ w - ys[t])
        gQ = 2 / N * Xq[t].T @ (Xq[t] @ (w - a * gS) - yq[t])
        ref_lr += -gS * gQ / T
    torch.testing.assert_close(got.lr_grads["w"], ref_lr, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got.grads["w"], maml, rtol=1e-10, atol=1e-12)


def test_inner_adapt_paths_agree_and_match_manual_sgd():
    torch.manual_seed(2)
    m = Lin(4)
    Xs, ys, _, _ = _linreg_tasks(1, 9, 4, 5)
    obj = SupervisedObjective()
    p = params_of(m)
    a = inner_adapt(m, p, (Xs[0], ys[0]), obj.inner_loss, steps=3, lr=0.1)
    b = inner_adapt_autograd(m, p, (Xs[0], ys[0]), obj.inner_loss, steps=3, lr=0.1)
    w = m.w.detach().clone()
    for _ in range(3):
        w = w - 0.1 * 2 / 9 * Xs[0].T @ (Xs[0] @ w - ys[0])
    torch.testing.assert_close(a["w"], w)
    torch.testing.assert_close(b["w"], w)
    assert torch.equal(m.w.detach(), p["w"].detach())  # model untouched


def test_functional_adam_matches_torch_adam():
    torch.manual_seed(3)
    w0 = torch.randn(5, dtype=torch.float64)
    target = torch.randn(5, dtype=torch.float64)
    w_ref = w0.clone().requires_grad_(True)
    opt = torch.optim.Adam([w_ref], lr=0.01)
    fa = Adam(0.01)
    params = {"w": w0.clone()}
    state = fa.init(params)
    for _ in range(5):
        opt.zero_grad()
        ((w_ref - target) ** 3).abs().sum().backward()
        opt.step()
        w = params["w"].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(((w - target) ** 3).abs().sum(), [w])
        params, state = fa.update(params, {"w": g}, state)
    torch.testing.assert_close(params["w"], w_ref.detach(), rtol=1e-12, atol=1e-12)


def _sampler(num, g):
    x = torch.randn(num, 8, 3, generator=g, device=g.device)
    w = torch.randn(num, 3, 2, generator=g, device=g.device)
    y = torch.einsum("tbi,tij->tbj", x, w)
    x2 = torch.randn(num, 8, 3, generator=g, device=g.device)
    return TaskBatch((x, y), (x2, torch.einsum("tbi,tij->tbj", x2, w)))


@pytest.mark.parametrize("algo", ["maml", "metasgd"])
def test_checkpoint_resume_is_exact(tmp_path, algo):
    cfg = dict(algo=algo, inner_steps=1, inner_lr=0.1, outer_lr=0.01, meta_batch=3)

    def make():
        torch.manual_seed(7)
        return MetaTrainer(EncDec(), SupervisedObjective(), _sampler, MetaConfig(**cfg), seed=11)

    full = make()
    full.train(6, progress=False)
    part = make()
    part.train(3, progress=False, checkpoint_path=str(tmp_path / "ck.pt"))
    resumed = make()
    resumed.load(str(tmp_path / "ck.pt"))
    assert resumed.step_count == 3
    resumed.train(6, progress=False)
    for (n, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    if algo == "metasgd":
        for n in full.lrs:
            assert torch.equal(full.lrs[n], resumed.lrs[n])
    assert [h["loss"] for h in full.history] == [h["loss"] for h in resumed.history]


class NaNAtStep(MetaObjective):
    """MSE objective that returns NaN while ``poison`` is set."""

    poison = False

    def loss(self, model, batch):
        x, y = batch
        loss = ((model(x) - y) ** 2).mean()
        if self.poison:
            loss = loss * float("nan")
        return loss, {}


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "loop"])
@pytest.mark.parametrize("algo", ALGORITHMS)
def test_nan_guard_skips_and_reports(algo, batched):
    """A NaN meta-gradient (for every algorithm, batched and per-task loop) is detected: the step is skipped
    and logged, no weight (nor Meta-SGD rate) changes, and training continues with finite weights."""
    torch.manual_seed(0)
    obj = NaNAtStep()
    tr = MetaTrainer(EncDec(), obj, _sampler, MetaConfig(algo=algo, meta_batch=2, outer_lr=0.01, batched=batched),
                     seed=0)
    tr.step()
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    rates_before = {k: v.detach().clone() for k, v in tr.rule.meta_params.items()}
    assert bool(rates_before) == (algo == "metasgd")
    obj.poison = True
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        rep = tr.step()
    assert rep.skipped and tr.skipped == [2]
    assert any("skipped" in str(x.message) for x in w)
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, before[k])
    for k, v in tr.rule.meta_params.items():
        assert torch.equal(v.detach(), rates_before[k])
    obj.poison = False
    assert not tr.step().skipped
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())


def test_bad_input():
    m = EncDec()
    obj = SupervisedObjective()
    tasks = _tasks(dtype=torch.float32)
    with pytest.raises(ConfigError, match="algo"):
        meta_gradients(m, obj, params_of(m), tasks, algo="mamlx", adapt=["decoder.0.weight"])
    with pytest.raises(ConfigError, match="inner_lr"):
        MetaConfig(inner_lr=-0.1).validate()
    with pytest.raises(ConfigError, match="inner_steps"):
        MetaConfig(inner_steps=-1).validate()
    with pytest.raises(ConfigError, match="outer_lr"):
        MetaConfig(outer_lr=0).validate()
    with pytest.raises(ConfigError, match="adapt"):
        select_names(m, "transmitter")
    with pytest.raises(ConfigError, match="adapt"):
        select_names(m, "rx.*")
    assert select_names(m, "head") == ["decoder.2.weight", "decoder.2.bias"]
    assert select_names(m, "decoder") == [n for n, _ in m.named_parameters() if n.startswith("decoder.")]
    with pytest.raises(ConfigError, match="lrs"):
        meta_gradients(m, obj, params_of(m), tasks, algo="metasgd", adapt=["decoder.0.weight"])


def test_single_task_inner_adapt_is_fast():
    """Online adaptation path (issue 5): 16 pilots, 1 step on a Park-sized MLP, well under 5 ms."""
    import time
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16))
    x, y = torch.randn(16, 8), torch.randint(0, 16, (16,))
    obj = SupervisedObjective(criterion=nn.functional.cross_entropy)
    p = params_of(m)
    for _ in range(5):
        inner_adapt_autograd(m, p, (x, y), obj.inner_loss, steps=1, lr=0.1, create_graph=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = float("inf")
        for _ in range(7):  # best of 7 rounds: robust to other processes on a shared machine
            t0 = time.perf_counter()
            for _ in range(10):
                inner_adapt_autograd(m, p, (x, y), obj.inner_loss, steps=1, lr=0.1, create_graph=False)
            best = min(best, (time.perf_counter() - t0) / 10)
    finally:
        torch.set_num_threads(threads)
    assert best < 5e-3


@pytest.mark.parametrize("shape", [(3, 5, 2, 4), (2, 4, 9, 3), (3, 2, 7, 6), (2, 6, 3, 2)])
def test_stacked_matmul_matches_bmm_to_second_order(shape):
    """stacked_matmul vs torch.bmm: values, and first and second derivatives (gradcheck/gradgradcheck against
    finite differences), for every layout branch (long / short contraction, wide / tall results)."""
    T, m, k, n = shape
    g = torch.Generator().manual_seed(sum(shape))
    a = torch.randn(T, m, k, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(T, k, n, generator=g, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(stacked_matmul(a, b), torch.bmm(a, b), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(stacked_matmul(a, b.transpose(1, 2).contiguous().transpose(1, 2)), a @ b)
    assert torch.autograd.gradcheck(stacked_matmul, (a, b))
    assert torch.autograd.gradgradcheck(stacked_matmul, (a, b))
    with pytest.raises(ConfigError, match="stacked_matmul"):
        stacked_matmul(a, b.transpose(1, 2))


def test_fast_path_falls_back_outside_its_domain():
    """Shared (unstacked) weights, Linear without bias and a vmapped loss with no stacked weights all give the
    per-task values."""
    torch.manual_seed(4)
    m = nn.Sequential(nn.Linear(3, 5, bias=False), nn.ReLU(), nn.Linear(5, 2)).double()
    tasks = _tasks(T=3, B=4)
    P = params_of(m)
    obj = SupervisedObjective()
    for names in (["0.weight"], ["2.weight", "2.bias"], list(P)):
        a = meta_gradients(m, obj, P, tasks, algo="maml", adapt=names, inner_steps=1, inner_lr=0.2)
        b = meta_gradients(m, obj, P, tasks, algo="maml", adapt=names, inner_steps=1, inner_lr=0.2, batched=False)
        for n in P:
            torch.testing.assert_close(a.grads[n], b.grads[n], rtol=1e-10, atol=1e-12)


def test_best_initialisation_is_the_lowest_validation_loss_and_survives_resume(tmp_path):
    """Validation snapshots: `best` holds the weights of the validation with the lowest held-out loss (checked
    against the recorded history), not the last iterate, and a checkpoint round-trip keeps it."""
    cfg = MetaConfig(algo="maml", inner_steps=1, inner_lr=0.1, outer_lr=0.3, meta_batch=3, val_every=2,
                     val_tasks=4)
    torch.manual_seed(7)
    tr = MetaTrainer(EncDec(), SupervisedObjective(), _sampler, cfg, seed=11, val_sampler=_sampler)
    snaps = {}
    for _ in range(10):
        tr.train(tr.step_count + 2, progress=False)
        snaps[tr.step_count] = {k: v.clone() for k, v in tr.model.state_dict().items()}
    vals = {h["step"]: h["val_loss"] for h in tr.history if "val_loss" in h}
    assert sorted(vals) == list(range(2, 21, 2))
    best_step = min(vals, key=lambda s: (vals[s], s))
    assert tr.best["step"] == best_step and tr.best["val"]["val_loss"] == vals[best_step]
    for k, v in snaps[best_step].items():
        assert torch.equal(tr.best["model"][k], v), k
    # Re-validating the snapshot reproduces its recorded loss (the snapshot is the weights it was scored on).
    again = MetaTrainer(EncDec(), SupervisedObjective(), _sampler, cfg, seed=11, val_sampler=_sampler)
    again.model.load_state_dict(tr.best["model"])
    assert again.validate()["val_loss"] == pytest.approx(vals[best_step], rel=1e-6)
    tr.save(str(tmp_path / "ck.pt"))
    back = MetaTrainer(EncDec(), SupervisedObjective(), _sampler, cfg, seed=11, val_sampler=_sampler)
    back.load(str(tmp_path / "ck.pt"))
    assert back.best["step"] == best_step
    assert back.consider_best({"val_loss": float("nan")}) is False
    assert back.consider_best({"val_loss": vals[best_step] * 2}) is False
    assert back.consider_best({"val_loss": vals[best_step] / 2}) is True and back.best["step"] == 20
