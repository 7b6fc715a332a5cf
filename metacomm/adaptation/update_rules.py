r"""Inner update rules: the one pluggable step every inner loop of the meta-engine takes.

An *update rule* says how adapted weights move given their gradients, in the spirit of Optax's
``init``/``update`` pairs and learn2learn's GBML gradient transforms. A rule has

* ``meta_params`` -- its own meta-learned parameters, a ``{key: tensor}`` dict (empty for plain SGD and Adam;
  Meta-SGD's per-parameter rates keyed by parameter name). :class:`~metacomm.adaptation.trainer.MetaTrainer`
  optimises them with the same outer optimiser as the model's parameters, and
  :func:`~metacomm.adaptation.algorithms.meta_gradients` differentiates through them (second order);
* ``init(params) -> state`` -- the rule's per-run state (a pytree of tensors; ``{}`` when stateless). With
  task-stacked ``params`` (``{name: [T, *shape]}``) the state carries the task axis too;
* ``step(params, grads, state, meta_params) -> (params, state)`` -- one update of the names in ``grads``
  (others passed through). *Pure*: no in-place operations, no ``.item()``, no random draws, so it runs under
  :func:`torch.vmap` / :func:`torch.func.grad` and is differentiable w.r.t. ``params`` and ``meta_params``
  (second-order MAML / Meta-SGD). ``meta_params=None`` means the rule's own :attr:`meta_params`;
* ``wrap_loss(loss_fn, meta_params) -> loss_fn`` -- the extension point for rules that act on the inner
  *loss* rather than on the gradient (a learned per-example weighting): the inner loops minimise the wrapped
  loss. Default: ``loss_fn`` unchanged.

Built in:

* :class:`SGD` -- :math:`\phi \leftarrow \phi - \alpha g` (scalar :math:`\alpha \ge 0`). Computed exactly as
  ``phi - lr * g``.
* :class:`MetaSGD` -- :math:`\phi \leftarrow \phi - \alpha \odot g` with a learned rate tensor :math:`\alpha`
  of each adapted parameter's shape (Li et al. 2017). :meth:`MetaSGD.like` builds the rates from a constant,
  a per-tensor dict or a ``(lo, hi)`` range drawn from an explicit :class:`torch.Generator`.
* :class:`Adam` -- functional Adam with bias correction, equal to :class:`torch.optim.Adam` (no weight decay).

Extension points (the next scenario packs): a learned gradient transform (MetaQuant: a small meta-network maps
``(g, w)`` to the update) is a rule whose ``meta_params`` hold the meta-network's weights and whose ``step``
evaluates it functionally; a learned example weighting is a rule whose ``wrap_loss`` reweights per-example
losses with meta-parameters. ``tests/adaptation/test_update_rules.py`` has one of each, meta-trained through
the batched engine and checked against the per-task loop.

Recording a rule in a checkpoint: :func:`rule_spec` writes a rule as ``{"name", "config", "tensors"}`` --
its registered name (``"sgd"``, ``"metasgd"``, ``"adam"``; :func:`register_rule` adds others, e.g.
``"metaquant"``), its settings as plain JSON-able values (``SGD``: ``{"lr"}``; ``Adam``: ``{"lr", "betas",
"eps"}``; ``MetaSGD``: ``{}``) and its meta-parameters (``MetaSGD``: the rates ``{parameter name: tensor}``;
``{}`` for SGD and Adam) -- only tensors and plain types, so it loads with ``torch.load(weights_only=True)``;
:func:`rule_from_spec` rebuilds the rule (ConfigError naming the field for an entry it cannot read).

Legacy names: :class:`Optimizer` (base of the scalar-rate rules; ``update(params, grads, state)`` is ``step``
with the rule's own meta-parameters) stays for existing callers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from metacomm._validation import ConfigError, check_finite, check_nonneg

__all__ = ["UpdateRule", "Optimizer", "SGD", "MetaSGD", "Adam", "as_rule", "sgd_update", "register_rule",
           "rule_spec", "rule_from_spec", "rule_names"]

Params = dict[str, torch.Tensor]


def _lr_of(lr, name: str):
    return lr[name] if isinstance(lr, Mapping) else lr


def sgd_update(params: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor], lr) -> Params:
    """``p - lr * g`` for every name in ``grads`` (others unchanged); ``lr`` a float or ``{name: tensor}``."""
    return {n: (p - _lr_of(lr, n) * grads[n]) if n in grads else p for n, p in params.items()}


class UpdateRule:
    """Base class of inner update rules (module docstring). Subclasses implement :meth:`step` and, when
    stateful, :meth:`init`; rules with learned parameters expose them as :attr:`meta_params`."""

    @property
    def meta_params(self) -> dict[str, torch.Tensor]:
        """The rule's meta-parameters ``{key: tensor}`` (empty by default)."""
        return {}

    def init(self, params: Mapping[str, torch.Tensor]) -> Any:
        """Initial state for ``params`` (a pytree of tensors; ``{}`` for a stateless rule)."""
        return {}

    def step(self, params: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor], state: Any,
             meta_params: Mapping[str, torch.Tensor] | None = None) -> tuple[Params, Any]:
        """One pure update: new ``params`` for every name in ``grads`` (the rest passed through), new state."""
        raise NotImplementedError

    def wrap_loss(self, loss_fn: Callable, meta_params: Mapping[str, torch.Tensor] | None = None) -> Callable:
        """The inner loss the loops minimise (extension point for loss-weighting rules). Default: unchanged."""
        return loss_fn

    def update(self, params, grads, state):
        """Optax-style spelling of :meth:`step` with the rule's own meta-parameters."""
        return self.step(params, grads, state, None)

    def detached(self) -> UpdateRule:
        """The same rule with its meta-parameters detached (for evaluation / first-order use)."""
        return self

    #: the name the rule is recorded under in a checkpoint (:func:`register_rule`); ``None``: not recordable
    spec_name: str | None = None

    def spec_config(self) -> dict:
        """The rule's settings as plain JSON-able values (:func:`rule_spec`); its tensors are its meta-parameters."""
        raise ConfigError("rule", f"{type(self).__name__} cannot be recorded in a checkpoint (no spec_config)")

    @classmethod
    def from_spec(cls, config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> UpdateRule:
        """The rule of :meth:`spec_config` and its meta-parameters ``tensors`` (:func:`rule_from_spec`)."""
        raise ConfigError("rule", f"{cls.__name__} cannot be rebuilt from a checkpoint (no from_spec)")


@dataclass(frozen=True)
class Optimizer(UpdateRule):
    """Base of the scalar-rate rules: ``state = opt.init(params)``; ``params, state = opt.update(params,
    grads, state)`` (or :meth:`step`). ``lr >= 0``; state is a dict of tensors, so it can carry a task/channel
    axis under ``vmap``. No meta-parameters."""

    lr: float

    def __post_init__(self):
        check_nonneg("lr", self.lr)


@dataclass(frozen=True)
class SGD(Optimizer):
    r"""Plain gradient descent :math:`\theta \leftarrow \theta - \eta g` (computed as ``p - lr * g``)."""

    def step(self, params, grads, state, meta_params=None):
        return sgd_update(params, grads, self.lr), state

    def spec_config(self) -> dict:
        return {"lr": float(self.lr)}

    @classmethod
    def from_spec(cls, config, tensors):
        return cls(float(config["lr"]))


@dataclass(frozen=True)
class Adam(Optimizer):
    r"""Adam (Kingma & Ba) with bias correction, identical to :class:`torch.optim.Adam` (no weight decay):

    .. math:: m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
              \theta \leftarrow \theta - \eta\, \frac{m/(1-\beta_1^t)}{\sqrt{v/(1-\beta_2^t)} + \epsilon}.

    State: ``{"t": scalar step count, "m": {name: first moment}, "v": {name: second moment}}``.
    """

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def init(self, params):
        ref = next(iter(params.values()))
        return {"t": torch.zeros((), device=ref.device, dtype=ref.dtype),
                "m": {n: torch.zeros_like(p) for n, p in params.items()},
                "v": {n: torch.zeros_like(p) for n, p in params.items()}}

    def step(self, params, grads, state, meta_params=None):
        b1, b2 = self.betas
        t = state["t"] + 1
        m = {n: b1 * state["m"][n] + (1 - b1) * g for n, g in grads.items()}
        v = {n: b2 * state["v"][n] + (1 - b2) * g * g for n, g in grads.items()}
        c1 = 1 - b1 ** t
        c2 = 1 - b2 ** t
        new = dict(params)
        for n in grads:
            new[n] = params[n] - self.lr * (m[n] / c1) / (torch.sqrt(v[n] / c2) + self.eps)
        return new, {"t": t, "m": {**state["m"], **m}, "v": {**state["v"], **v}}

    def spec_config(self) -> dict:
        return {"lr": float(self.lr), "betas": [float(b) for b in self.betas], "eps": float(self.eps)}

    @classmethod
    def from_spec(cls, config, tensors):
        b1, b2 = config.get("betas", (0.9, 0.999))
        return cls(float(config["lr"]), betas=(float(b1), float(b2)), eps=float(config.get("eps", 1e-8)))


class MetaSGD(UpdateRule):
    r"""Meta-SGD (Li et al. 2017): :math:`\phi \leftarrow \phi - \alpha \odot g` with learned per-parameter rates.

    :param rates: ``{parameter name: rate tensor}`` of each adapted parameter's shape (or broadcastable to it).
        These tensors *are* the rule's :attr:`meta_params` (kept as given, so an outer optimiser that holds them
        updates the rule); build them with :meth:`like`.

    ``step`` computes ``p - rates[name] * g`` for every name in ``grads``; a gradient without a rate is a
    :class:`~metacomm.ConfigError` naming ``lrs``.
    """

    def __init__(self, rates: Mapping[str, torch.Tensor]):
        if not isinstance(rates, Mapping) or not rates:
            raise ConfigError("lrs", "Meta-SGD needs a non-empty dict {parameter name: rate tensor}")
        for n, r in rates.items():
            if not isinstance(r, torch.Tensor):
                raise ConfigError("lrs", f"rate of {n!r} must be a tensor, got {type(r).__name__}")
        self.rates = dict(rates)

    @classmethod
    def like(cls, params: Mapping[str, torch.Tensor], init: Any = 0.1, *,
             generator: torch.Generator | None = None, requires_grad: bool = True) -> MetaSGD:
        """Rates for every tensor of ``params`` (same shape, dtype, device), initialised to

        * a number: ``torch.full_like(p, init)`` (every entry);
        * a dict ``{name: number or tensor}`` with an entry for every name (per-tensor values; a tensor must
          broadcast to the parameter's shape);
        * a pair ``(lo, hi)`` with ``lo <= hi``: i.i.d. uniform draws in ``[lo, hi)`` from ``generator``
          (required: randomness comes only from explicit generators), in the order of ``params``.

        The rates are fresh leaf tensors (``requires_grad`` as given).
        """
        params = dict(params)
        if not params:
            raise ConfigError("adapt", "Meta-SGD needs at least one adapted parameter")
        rates = {}
        if isinstance(init, Mapping):
            missing = [n for n in params if n not in init]
            if missing:
                raise ConfigError("lrs", f"initial rates missing for {', '.join(missing)}")
            for n, p in params.items():
                v = init[n]
                if isinstance(v, torch.Tensor):
                    try:
                        r = torch.broadcast_to(v.detach().to(p.dtype).to(p.device), p.shape).clone()
                    except RuntimeError:
                        raise ConfigError("lrs", f"initial rate of {n!r} has shape {tuple(v.shape)}, not "
                                                 f"broadcastable to {tuple(p.shape)}") from None
                    if not bool(torch.isfinite(r).all()):
                        raise ConfigError("lrs", f"initial rate of {n!r} is not finite")
                else:
                    r = torch.full_like(p, check_finite("lrs", v))
                rates[n] = r.detach()
        elif isinstance(init, (tuple, list)):
            if len(init) != 2:
                raise ConfigError("lrs", f"a range of initial rates is a pair (lo, hi), got {init!r}")
            lo, hi = check_finite("lrs", init[0]), check_finite("lrs", init[1])
            if hi < lo:
                raise ConfigError("lrs", f"range ({lo}, {hi}) has hi < lo")
            if not isinstance(generator, torch.Generator):
                raise ConfigError("generator", "a range of initial rates is drawn from an explicit "
                                               "torch.Generator: pass generator=")
            for n, p in params.items():
                u = torch.rand(p.shape, generator=generator, dtype=p.dtype, device=p.device)
                rates[n] = lo + (hi - lo) * u
        else:
            if isinstance(init, torch.Tensor) or isinstance(init, bool):
                raise ConfigError("lrs", "initial rate: a number, a dict {name: value} or a pair (lo, hi)")
            v = check_finite("lrs", init)
            for n, p in params.items():
                rates[n] = torch.full_like(p, v)
        return cls({n: r.detach().requires_grad_(requires_grad) for n, r in rates.items()})

    @property
    def meta_params(self) -> dict[str, torch.Tensor]:
        return self.rates

    def step(self, params, grads, state, meta_params=None):
        rates = self.rates if meta_params is None else meta_params
        missing = [n for n in grads if n not in rates]
        if missing:
            raise ConfigError("lrs", f"Meta-SGD has no rate for {', '.join(missing)}; it needs a rate tensor "
                                     "for every adapted parameter")
        return sgd_update(params, grads, rates), state

    def detached(self) -> MetaSGD:
        return MetaSGD({n: r.detach() for n, r in self.rates.items()})

    def spec_config(self) -> dict:
        return {}

    @classmethod
    def from_spec(cls, config, tensors):
        return cls(dict(tensors))

    def __repr__(self) -> str:
        return f"MetaSGD({', '.join(f'{n}: {tuple(r.shape)}' for n, r in self.rates.items())})"


def as_rule(rule: Any = None, *, lr: Any = None, field: str = "rule") -> UpdateRule:
    """An :class:`UpdateRule` from the accepted spellings: a rule (returned as is), a ``{name: tensor}`` rate
    dict (:class:`MetaSGD`), or -- when ``rule`` is ``None`` -- the scalar rate ``lr`` (:class:`SGD`,
    a float >= 0 or a 0-dim tensor that does not require grad)."""
    if isinstance(rule, UpdateRule):
        return rule
    if isinstance(rule, Mapping):
        return MetaSGD(rule)
    if rule is not None:
        raise ConfigError(field, f"expected an UpdateRule (SGD, MetaSGD, Adam, ...) or a rate dict, got "
                                 f"{type(rule).__name__}")
    if lr is None:
        lr = 0.1
    if isinstance(lr, Mapping):
        return MetaSGD(lr)
    if isinstance(lr, torch.Tensor):
        if lr.requires_grad:
            raise ConfigError("inner_lr", "a tensor that requires grad would be silently treated as a constant: "
                                          "to learn the inner rate use rule=MetaSGD.like(...) (algo 'metasgd')")
        if lr.dim() != 0:
            raise ConfigError("inner_lr", f"expected a scalar rate, got a tensor of shape {tuple(lr.shape)}; "
                                          "per-parameter rates: rule=MetaSGD(...)")
        lr = float(lr)
    if isinstance(lr, bool):
        raise ConfigError("inner_lr", f"expected a number >= 0, got {lr!r}")
    return SGD(check_nonneg("inner_lr", lr))


# ---------------------------------------------------------------------------------------------------------------
# Recording a rule in a checkpoint
# ---------------------------------------------------------------------------------------------------------------

_RULES: dict[str, type] = {}
#: rules registered by a module that is imported on first use (name -> module)
_LAZY = {"metaquant": "metacomm.adaptation.metaquant"}


def register_rule(name: str):
    """Class decorator: record the rule class under ``name`` in checkpoints (:func:`rule_spec`); the class
    implements :meth:`UpdateRule.spec_config` and :meth:`UpdateRule.from_spec`."""
    def deco(cls):
        cls.spec_name = name
        _RULES[name] = cls
        return cls
    return deco


register_rule("sgd")(SGD)
register_rule("metasgd")(MetaSGD)
register_rule("adam")(Adam)


def rule_names() -> tuple[str, ...]:
    """The names a checkpoint's rule entry may carry."""
    return tuple(dict.fromkeys((*_RULES, *_LAZY)))


def rule_spec(rule: UpdateRule, *, tensors: Mapping[str, torch.Tensor] | None = None) -> dict:
    """``{"name", "config", "tensors"}`` of ``rule`` (module docstring): its registered name, its settings
    (plain values) and its meta-parameters as detached CPU copies -- ``tensors`` instead, when given (e.g. the
    rates of a selected snapshot rather than the rule's current ones; same keys as ``rule.meta_params``)."""
    name = getattr(type(rule), "spec_name", None)
    if not isinstance(rule, UpdateRule) or name is None or _RULES.get(name) is not type(rule):
        raise ConfigError("rule", f"{type(rule).__name__} is not a registered update rule; it cannot be recorded "
                                  "in a checkpoint (register_rule)")
    src = rule.meta_params if tensors is None else tensors
    if set(src) != set(rule.meta_params):
        raise ConfigError("rule", f"tensors {sorted(src)} are not the meta-parameters of {rule!r} "
                                  f"({sorted(rule.meta_params)})")
    return {"name": name, "config": rule.spec_config(),
            "tensors": {k: t.detach().cpu().clone() for k, t in src.items()}}


def rule_from_spec(spec: Any, *, device=None, field: str = "rule") -> UpdateRule:
    """The :class:`UpdateRule` of a :func:`rule_spec` entry, its tensors moved to ``device`` (when given);
    ConfigError naming ``field`` for an entry that is not one (unknown name, missing or bad settings)."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ConfigError(field, f"the inner-rule entry must be {{'name', 'config', 'tensors'}}, got "
                                 f"{type(spec).__name__}")
    name = spec["name"]
    if name not in _RULES and name in _LAZY:
        import importlib
        importlib.import_module(_LAZY[name])
    cls = _RULES.get(name)
    if cls is None:
        raise ConfigError(field, f"unknown inner rule {name!r} in the checkpoint; known: {', '.join(rule_names())}")
    config, tensors = spec.get("config") or {}, spec.get("tensors") or {}
    if not isinstance(config, Mapping) or not isinstance(tensors, Mapping) or \
            not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise ConfigError(field, f"inner rule {name!r}: 'config' must be a table of settings and 'tensors' a "
                                 "table of tensors")
    if device is not None:
        tensors = {k: t.to(device) for k, t in tensors.items()}
    try:
        return cls.from_spec(dict(config), dict(tensors))
    except ConfigError as e:
        raise ConfigError(field, f"inner rule {name!r}: {str(e)}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(field, f"inner rule {name!r}: bad settings {dict(config)!r} ({type(e).__name__}: {e})") \
            from None
