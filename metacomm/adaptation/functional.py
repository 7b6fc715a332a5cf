r"""Functional core of the meta-engine: evaluate any module with given weights, take inner gradient steps.

Everything here is a small pure function of parameter dictionaries (see :mod:`metacomm.adaptation.params`),
built on :func:`torch.func.functional_call` and :func:`torch.func.grad`, so that it composes with
:func:`torch.vmap` (a task axis) and with ordinary autograd (second-order meta-gradients).

A *loss function* has the signature ``loss_fn(model, batch) -> scalar`` (or ``(scalar, stats)`` where noted)
and is written with ordinary module calls on ``model`` (``model.encoder(bits)``, ``model.decoder(y, no)``);
:func:`call` runs it with the given weights swapped in, without modifying the module. ``batch`` is any pytree
(tuple/dict) of tensors; inside :func:`torch.vmap` it carries no task axis.

Inner update, for ``steps`` = :math:`K` steps of an update rule :math:`R` (an
:class:`~metacomm.adaptation.update_rules.UpdateRule`, default plain SGD) on the support loss
:math:`\mathcal L_S`,

.. math::  \phi_0 = \theta_A, \quad s_0 = R.\mathrm{init}(\phi_0), \qquad (\phi_{j+1}, s_{j+1}) =
           R.\mathrm{step}(\phi_j, \nabla_{\phi}\mathcal L_S(\phi_j, \theta_F), s_j, \eta), \quad j = 0..K-1,

where :math:`\theta_A` are the adapted parameters, :math:`\theta_F` the frozen rest and :math:`\eta` the
rule's meta-parameters; for SGD the step is :math:`\phi - \alpha\nabla\mathcal L_S` with a scalar
:math:`\alpha`, for Meta-SGD :math:`\phi - \alpha\odot\nabla\mathcal L_S` with a learned per-parameter tensor
:math:`\alpha = \eta`. With ``create_graph=True`` the result is differentiable w.r.t. :math:`\theta` and
:math:`\eta` (second order, MAML/Meta-SGD); with ``False`` the gradients are detached, so
:math:`\partial\phi_K/\partial\theta_A = I` (first order, FOMAML). The deprecated ``lr=`` argument (a float or a
rate dict) still selects SGD / Meta-SGD.

**Batched-matmul fast path.** Inside :func:`batched_loss` (hence every task-batched inner loop, meta-gradient
and fine-tuning run), calls of :func:`torch.nn.functional.linear` whose weight carries the vmapped task axis
(per-task weights :math:`W^{(t)} \in \mathbb R^{o\times i}` stacked as ``[T, o, i]``) are computed outside
``vmap`` as one batched product on the stacked tensors,

.. math::  Z^{(t)} = X^{(t)} W^{(t)\top} + \mathbf 1 b^{(t)\top}, \qquad X^{(t)} \in \mathbb R^{N\times i},

by :func:`stacked_matmul`, whose backward is again :func:`stacked_matmul`
(:math:`\bar A = \bar C B^\top`, :math:`\bar B = A^\top \bar C`), so gradients of any order flow through it
and every product -- forward, inner gradient, and the outer backward through the inner gradient -- uses the
operand layout that the CPU BLAS runs fastest (tiny inner or outer dimensions otherwise fall on slow
kernels). ReLU is evaluated as :math:`x \odot \mathbb 1[x > 0]` with the mask a constant, which has the same
value and derivatives but a cheaper second-order graph. Everything else (activations, norms, the loss, a
channel) runs through the generic ``vmap`` path, so the fast path applies automatically to the MLP parts
of any model and falls back where it does not apply (shared weights, nested transforms, other layers).
:func:`fast_path` forces it on or off; by default it is used for large batches only
(:data:`FAST_MIN_ELEMENTS`) whose per-task weights include a matrix, where it pays for its per-op interception
cost. Results agree to float rounding.

Randomness: nothing in this module draws random numbers. Noise, channel taps and messages are drawn by the
caller from an explicit :class:`torch.Generator` and passed in the batch (generators cannot be used under
``vmap``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from metacomm._validation import ConfigError, check_nonneg_int
from metacomm.adaptation.params import AdaptSpec, resolve_adapt
from metacomm.adaptation.update_rules import SGD, Adam, Optimizer, UpdateRule, as_rule, sgd_update

__all__ = ["call", "inner_adapt", "inner_adapt_autograd", "inner_adapt_batched", "batched_loss", "SGD", "Adam",
           "Optimizer", "UpdateRule", "sgd_update", "stacked_matmul", "fast_path"]

Params = dict[str, torch.Tensor]
LossFn = Callable[[nn.Module, Any], torch.Tensor]


class _Bound(nn.Module):
    """``forward(*args) = fn(model, *args)``, so :func:`torch.func.functional_call` can swap ``model``'s weights
    for arbitrary user code. ``fn`` is kept out of the module tree."""

    def __init__(self, model: nn.Module, fn: Callable):
        super().__init__()
        self.m = model
        object.__setattr__(self, "_fn", fn)

    def forward(self, *args):
        return self._fn(self.m, *args)


_BOUND_CACHE: dict[tuple[int, int, int], _Bound] = {}


def _zeros_if_unused(grads, tensors) -> tuple:
    """Gradients from ``torch.autograd.grad(..., allow_unused=True)`` with ``None`` (a parameter the loss does not
    use, e.g. decoder weights outside a pilot-fit loss) replaced by zeros: such a parameter is simply not moved."""
    return tuple(torch.zeros_like(t) if g is None else g for g, t in zip(grads, tensors, strict=True))


def call(model: nn.Module, params: Mapping[str, torch.Tensor], fn: Callable, *args) -> Any:
    """``fn(model, *args)`` evaluated with ``params`` in place of ``model``'s tensors of the same names.

    ``params`` may be partial: the module's own tensors (parameters and buffers) are used for the others.
    ``model`` is left untouched afterwards (one owner, one path -- see ARCHITECTURE.md).
    """
    key = (id(model), id(getattr(fn, "__func__", fn)), id(getattr(fn, "__self__", None)))
    bound = _BOUND_CACHE.get(key)
    if bound is None or bound.m is not model or bound._fn != fn:
        bound = _Bound(model, fn)
        if len(_BOUND_CACHE) > 256:
            _BOUND_CACHE.clear()
        _BOUND_CACHE[key] = bound
    return torch.func.functional_call(bound, {"m." + n: t for n, t in params.items()}, args, strict=False)


def _rule_of(rule, lr) -> UpdateRule:
    if rule is not None and lr is not None:
        raise ConfigError("rule", "give the inner update either as rule= or as lr= (deprecated), not both")
    return as_rule(rule, lr=lr)


def _detach_tree(tree):
    return tree_map(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, tree)


def inner_adapt(model: nn.Module, params: Mapping[str, torch.Tensor], support: Any, loss_fn: LossFn, *,
                steps: int = 1, rule: UpdateRule | None = None, meta_params: Mapping[str, torch.Tensor] | None = None,
                create_graph: bool = True, adapt: AdaptSpec = None,
                lr: float | Mapping[str, torch.Tensor] | None = None) -> Params:
    r"""``steps`` steps of the inner update ``rule`` on ``loss_fn(model, support)`` from ``params``.

    :param model: any module; its tensors are not modified.
    :param params: ``{name: tensor}`` starting weights :math:`\theta` (full or partial).
    :param support: the support batch (pytree of tensors) passed to ``loss_fn``.
    :param loss_fn: ``(model, batch) -> scalar`` loss.
    :param steps: inner steps :math:`K \ge 0`.
    :param rule: the :class:`~metacomm.adaptation.update_rules.UpdateRule` (default ``SGD(0.1)``).
    :param meta_params: the rule's meta-parameters to use (default: ``rule.meta_params``); pass differentiable
        copies to get gradients w.r.t. them.
    :param create_graph: keep the graph through the inner gradients (second order). ``False``: first order.
    :param adapt: adapt spec or names (:func:`~metacomm.adaptation.params.resolve_adapt`; default: all keys of
        ``params``); the others stay fixed.
    :param lr: deprecated spelling of ``rule``: a float (``SGD(lr)``) or a rate dict (``MetaSGD(lr)``).
    :returns: a new dict with the adapted tensors :math:`\phi_K` for ``adapt`` and the inputs for the rest.

    Uses :func:`torch.func.grad`, so it works inside :func:`torch.vmap` (per-task weights along a vmapped task
    axis) and nests under outer autograd. For a single task outside any transform,
    :func:`inner_adapt_autograd` computes the same with :func:`torch.autograd.grad`.
    """
    steps = check_nonneg_int("inner_steps", steps)
    rule = _rule_of(rule, lr)
    meta = rule.meta_params if meta_params is None else meta_params
    names = resolve_adapt(model, params, adapt)
    fixed = {n: t for n, t in params.items() if n not in names}
    phi = {n: params[n] for n in names}
    inner_loss = rule.wrap_loss(loss_fn, meta)

    def support_loss(p):
        return call(model, {**fixed, **p}, inner_loss, support)

    grad_fn = torch.func.grad(support_loss)
    state = rule.init(phi)
    for _ in range(steps):
        g = grad_fn(phi)
        if not create_graph:
            g = {n: t.detach() for n, t in g.items()}
        phi, state = rule.step(phi, g, state, meta)
        phi = {n: phi[n] for n in names}
    return {**params, **phi}


def inner_adapt_autograd(model: nn.Module, params: Mapping[str, torch.Tensor], support: Any, loss_fn: LossFn, *,
                         steps: int = 1, rule: UpdateRule | None = None,
                         meta_params: Mapping[str, torch.Tensor] | None = None, create_graph: bool = True,
                         adapt: AdaptSpec = None, lr: float | Mapping[str, torch.Tensor] | None = None) -> Params:
    """Same as :func:`inner_adapt` with :func:`torch.autograd.grad` (single task, not vmappable).

    The reference implementation (what learn2learn/higher do) and the fastest single-task path in eager mode:
    used by the per-task loop and by online adaptation. Tensors in ``params`` that do not require grad are
    made differentiable locally (the caller's tensors are not modified). Runs with grad enabled even inside
    :func:`torch.no_grad`.
    """
    steps = check_nonneg_int("inner_steps", steps)
    rule = _rule_of(rule, lr)
    meta = rule.meta_params if meta_params is None else meta_params
    names = resolve_adapt(model, params, adapt)
    inner_loss = rule.wrap_loss(loss_fn, meta)
    out = dict(params)
    phi = {}
    for n in names:
        t = params[n]
        phi[n] = t if t.requires_grad else t.detach().requires_grad_(True)
    with torch.enable_grad():
        state = rule.init(phi)
        for _ in range(steps):
            loss = call(model, {**out, **phi}, inner_loss, support)
            grads = _zeros_if_unused(torch.autograd.grad(loss, [phi[n] for n in names], create_graph=create_graph,
                                                         allow_unused=True), [phi[n] for n in names])
            new, state = rule.step(phi, dict(zip(names, grads, strict=True)), state, meta)
            if create_graph:
                phi = {n: new[n] for n in names}
            else:
                phi = {n: new[n].detach().requires_grad_(True) for n in names}
                state = _detach_tree(state)
    out.update(phi)
    return out


# --- batched-matmul fast path (module docstring) ------------------------------------------------------------

def _as_t_view(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``[T, r, c]`` as the transposed view of a contiguous ``[T, c, r]`` tensor (copies only if needed)."""
    xt = x.transpose(1, 2)
    return x if xt.is_contiguous() else xt.contiguous().transpose(1, 2)


def _bmm_physical(x: torch.Tensor, y: torch.Tensor, long_k: bool) -> torch.Tensor:
    # Measured on x86 CPUs (MKL/oneDNN): a long contraction runs fastest as bmm(T-view, contiguous), a short
    # one as bmm(contiguous, T-view); other layouts of tiny matrices can be 3-7x slower.
    if long_k:
        return torch.bmm(_as_t_view(x), y.contiguous())
    return torch.bmm(x.contiguous(), _as_t_view(y))


def _bmm_fast(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for ``[T, m, k] @ [T, k, n]``, choosing the physical layout of the product: with a long
    contraction (weight gradients, ``k`` = samples) the smaller of ``m, n`` becomes the row dimension;
    otherwise the larger does (so sample-sized results stay ``[T, N, *]`` contiguous and are never copied)."""
    m, k = a.shape[1], a.shape[2]
    n = b.shape[2]
    long_k = k >= max(m, n)
    if (m <= n) if long_k else (m >= n):
        return _bmm_physical(a, b, long_k)
    return _bmm_physical(b.transpose(1, 2), a.transpose(1, 2), long_k).transpose(1, 2)


class _StackedMatmul(torch.autograd.Function):
    """``C = A @ B`` (``[T, m, k] @ [T, k, n]``) whose backward is again this function, so that it is
    differentiable to any order with the fast layouts at every order."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _bmm_fast(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        ga = stacked_matmul(grad, b.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        gb = stacked_matmul(a.transpose(1, 2), grad) if ctx.needs_input_grad[1] else None
        return ga, gb


def stacked_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Batched matrix product :math:`C_t = A_t B_t` of plain (not vmapped) tensors ``[T, m, k]``, ``[T, k, n]``.

    Equal to :func:`torch.bmm` (same values; gradients of every order, as its backward is itself), but each
    product picks the fastest operand layout. Usable inside :func:`torch.vmap` on the *unwrapped* stacked
    tensors (that is how the fast path calls it); it is not itself vmappable.
    """
    if a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ConfigError("stacked_matmul", f"expected [T, m, k] @ [T, k, n], got {tuple(a.shape)} @ "
                                            f"{tuple(b.shape)}")
    fc = torch._C._functorch
    if not torch._C._are_functorch_transforms_active():
        return _StackedMatmul.apply(a, b)
    # Called on unwrapped tensors from inside vmap: run as an ordinary (single-level) autograd Function.
    prev = fc.get_single_level_autograd_function_allowed()
    fc.set_single_level_autograd_function_allowed(True)
    try:
        return super(torch.autograd.Function, _StackedMatmul).apply(a, b)
    finally:
        fc.set_single_level_autograd_function_allowed(prev)


_FAST: list[bool | None] = [None]

FAST_MIN_ELEMENTS = 1 << 16
"""Automatic mode: the fast path is used when the largest leaf of the task-stacked batch has at least this
many elements. Below it, the Python cost of intercepting every op inside ``vmap`` outweighs the faster
products (measured on a 2-core CPU: 8 tasks x 256 symbols ran ~20 % slower with it, 64 x 1024 ~10 % faster)."""


@contextlib.contextmanager
def fast_path(enabled: bool | None = True):
    """Context manager: force the batched-matmul fast path of :func:`batched_loss` on (``True``), off
    (``False``), or back to automatic (``None``, the default outside any ``fast_path`` block: on for batches
    with a leaf of at least :data:`FAST_MIN_ELEMENTS` elements whose stacked per-task weights include a matrix)."""
    if enabled is not None and not isinstance(enabled, bool):
        raise ConfigError("fast_path", f"expected True, False or None, got {enabled!r}")
    prev = _FAST[0]
    _FAST[0] = enabled
    try:
        yield
    finally:
        _FAST[0] = prev


def _use_fast(batch, stacked: Mapping[str, torch.Tensor] | None = None) -> bool:
    """Whether :func:`batched_loss` takes the fast path: as forced by :func:`fast_path`, else (automatic) when
    the batch is large (:data:`FAST_MIN_ELEMENTS`) and -- if ``stacked`` is given -- some stacked per-task tensor
    is a matrix (``[T, o, i]``, a Linear weight the path can batch). Without one (e.g. only per-tap vectors are
    adapted, as in the ``drift`` scenario) the path would only intercept ops for nothing (measured ~5 % CPU)."""
    if _FAST[0] is not None:
        return _FAST[0]
    if stacked is not None and not any(t.dim() >= 3 for t in stacked.values()):
        return False
    from torch.utils._pytree import tree_leaves
    return max((t.numel() for t in tree_leaves(batch) if isinstance(t, torch.Tensor)), default=0) \
        >= FAST_MIN_ELEMENTS


def _unwrap_task(t, level):
    """Physical tensor of ``t`` with the task axis first if ``t`` is batched at ``level`` over a plain tensor,
    else ``None``."""
    fc = torch._C._functorch
    if not isinstance(t, torch.Tensor) or not fc.is_batchedtensor(t) or fc.maybe_get_level(t) != level:
        return None
    p, bdim = fc._unwrap_batched(t, level)
    if fc.is_functorch_wrapped_tensor(p):
        return None
    return p.movedim(bdim, 0)


def _linear_fast(x, w, b):
    """Stacked-weight ``F.linear`` on the physical tensors, or ``None`` where the fast path does not apply."""
    fc = torch._C._functorch
    level = fc.maybe_current_level()
    if level is None:
        return None
    wp = _unwrap_task(w, level)
    xp = _unwrap_task(x, level)
    if wp is None or xp is None or wp.dim() != 3 or xp.dim() < 2 or xp.shape[0] != wp.shape[0] \
            or xp.shape[-1] != wp.shape[2] or xp.dtype != wp.dtype:
        return None
    if b is not None:
        bp = _unwrap_task(b, level)
        if bp is None:
            if fc.is_functorch_wrapped_tensor(b):
                return None
            bp = b.unsqueeze(0)  # shared bias
        if bp.dim() != 2 or bp.shape[-1] != wp.shape[1]:
            return None
    T, lead = xp.shape[0], xp.shape[1:-1]
    out = stacked_matmul(xp.reshape(T, -1, xp.shape[-1]), wp.transpose(1, 2))
    if b is not None:
        out = out + bp.unsqueeze(1)
    return fc._add_batch_dim(out.reshape(T, *lead, wp.shape[1]), 0, level)


_RELU = (F.relu, torch.relu, torch.Tensor.relu)


class _StackedLinearMode(TorchFunctionMode):
    """Routes stacked-weight ``F.linear`` to :func:`stacked_matmul` and ReLU to a masked product."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, w = args[0], args[1] if len(args) > 1 else kwargs["weight"]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            out = _linear_fast(x, w, bias)
            if out is not None:
                return out
        elif func in _RELU and len(args) == 1 and not kwargs.get("inplace", False):
            x = args[0]
            return x * (x > 0).to(x.dtype)
        return func(*args, **kwargs)


def batched_loss(model: nn.Module, params: Mapping[str, torch.Tensor], loss_fn: Callable, batch: Any,
                 stacked: Mapping[str, torch.Tensor] | None = None) -> Any:
    """``loss_fn`` for ``T`` tasks at once: ``stacked`` holds per-task weights ``[T, ...]``, ``params`` the shared
    (unstacked) ones, every leaf of ``batch`` has a leading task dim. Returns ``loss_fn``'s outputs with a
    leading ``[T]`` (one ``torch.vmap`` of :func:`call`; Linear layers with stacked weights take the
    batched-matmul fast path of the module docstring when :func:`fast_path` selects it)."""
    stacked = dict(stacked or {})
    shared = {n: t for n, t in params.items() if n not in stacked}

    def one(st, b):
        return call(model, {**shared, **st}, loss_fn, b)

    run = torch.vmap(one, in_dims=(0, 0))
    if stacked and _use_fast(batch, stacked):
        with _StackedLinearMode():
            return run(stacked, batch)
    return run(stacked, batch)


def inner_adapt_batched(model: nn.Module, params: Mapping[str, torch.Tensor], support: Any, loss_fn: LossFn, *,
                        num_tasks: int, steps: int = 1, rule: UpdateRule | None = None,
                        meta_params: Mapping[str, torch.Tensor] | None = None, create_graph: bool = True,
                        adapt: AdaptSpec = None, lr: float | Mapping[str, torch.Tensor] | None = None,
                        on_step: Callable[[int, Params], None] | None = None) -> Params:
    r"""The inner loop of :func:`inner_adapt` for ``T = num_tasks`` tasks at once (the task-batched engine).

    The adapted weights are stacked along a task axis, :math:`\phi^{(t)}_0 = \theta_A` for every ``t``
    (``[T, *shape]``, an ``expand`` of :math:`\theta_A`, so gradients flow back to :math:`\theta_A` summed
    over tasks). Each step evaluates all task losses with one vmapped forward (:func:`batched_loss`) and takes
    the gradient of their *sum* with ordinary autograd: because task ``t``'s loss depends only on
    :math:`\phi^{(t)}`, slice ``t`` of that gradient is exactly task ``t``'s own gradient. The update is
    ``rule.step`` on the stacked weights (its state, from ``rule.init`` of the stacked weights, carries the
    task axis). This is faster than nesting :func:`torch.func.grad` inside ``vmap`` and equal to the per-task
    loop to float rounding.

    ``support`` leaves have a leading task dim ``T``. Returns ``{name: [T, *shape]}`` for the adapted names
    only. With ``create_graph=False`` the result is detached (first order). ``rule``, ``meta_params``,
    ``adapt``, ``lr``: as in :func:`inner_adapt`. ``on_step(j, phi)`` (optional) is called with the detached
    stacked weights after ``j = 0..steps`` steps. Runs with grad enabled even inside :func:`torch.no_grad`.
    """
    steps = check_nonneg_int("inner_steps", steps)
    rule = _rule_of(rule, lr)
    meta = rule.meta_params if meta_params is None else meta_params
    names = resolve_adapt(model, params, adapt)
    inner_loss = rule.wrap_loss(loss_fn, meta)
    fixed = {n: t for n, t in params.items() if n not in names}
    with torch.enable_grad():
        phi = {n: params[n].unsqueeze(0).expand(num_tasks, *params[n].shape) for n in names}
        if not create_graph:
            phi = {n: t.detach().clone().requires_grad_(True) for n, t in phi.items()}
        elif not any(t.requires_grad for t in phi.values()):
            phi = {n: t.clone().requires_grad_(True) for n, t in phi.items()}
        state = rule.init(phi)
        if on_step is not None:
            on_step(0, {n: t.detach() for n, t in phi.items()})
        for j in range(steps):
            losses = batched_loss(model, fixed, inner_loss, support, phi)
            grads = _zeros_if_unused(torch.autograd.grad(losses.sum(), [phi[n] for n in names],
                                                         create_graph=create_graph, allow_unused=True),
                                     [phi[n] for n in names])
            new, state = rule.step(phi, dict(zip(names, grads, strict=True)), state, meta)
            phi = {n: new[n] for n in names}
            if not create_graph:
                phi = {n: t.detach().requires_grad_(True) for n, t in phi.items()}
                state = _detach_tree(state)
            if on_step is not None:
                on_step(j + 1, {n: t.detach() for n, t in phi.items()})
    if not create_graph:
        phi = {n: t.detach() for n, t in phi.items()}
    return phi


def check_optimizer_name(field: str, name: str) -> str:
    if name not in ("sgd", "adam"):
        raise ConfigError(field, f"unknown optimiser {name!r}; allowed: sgd, adam")
    return name
