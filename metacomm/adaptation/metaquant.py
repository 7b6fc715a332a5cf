r"""MetaQuant as an inner update rule: a small shared meta-network replaces the straight-through gradient.

Chen, Wang & Pan, "MetaQuant: learning to quantize by learning to penetrate non-differentiable quantization"
(NeurIPS 2019). With quantised weights :math:`\hat W = Q(W)` the loss gradient is only available w.r.t.
:math:`\hat W`, :math:`g = \partial\mathcal L/\partial\hat W`; the straight-through estimator uses it as the
gradient w.r.t. the float weights. MetaQuant instead feeds :math:`(g, W)` element-wise to a shared
meta-network :math:`M_\eta` whose output is the gradient used for the update,

.. math:: W' = W - \alpha\, M_\eta(g, W),

and trains :math:`\eta` through the loss of the *next* quantised forward :math:`\mathcal L(Q(W'))` (the paper's
"incorporate the meta quantizer into the forward", its Fig. 2). Here that next forward is the query loss of the
adapted quantised codec in the meta-engine's outer loss, so :math:`\eta` is an update rule's meta-parameters
and is meta-trained by :func:`~metacomm.adaptation.algorithms.meta_gradients` / :class:`MetaTrainer` like
Meta-SGD's rates.

The meta-network (the paper's "FC-Grad" form, with a residual so that it starts as the STE):

.. math:: M_\eta(g, w) = g + v^\top \tanh\!\big(U\,[g\,\gamma_g,\; w\,\gamma_w]^\top + c\big) / \gamma_g + e/\gamma_g,

element-wise over every quantised tensor, :math:`U \in \mathbb R^{H\times2}`, :math:`c, v \in \mathbb R^H`,
:math:`e \in \mathbb R` shared by all elements and tensors; :math:`\gamma_g, \gamma_w` fixed input scales
(``grad_scale``, ``weight_scale``: gradients of the small codecs are ~1e-2, weights ~1). ``v = 0`` and
``e = 0`` at initialisation, so an untrained MetaQuant step equals the plain STE/SGD step exactly. Names not
selected by ``names`` (biases) take the plain SGD step :math:`\phi - \alpha g`.

With ``g`` here the gradient the engine passes to :meth:`UpdateRule.step` -- the STE gradient of the quantised
loss, i.e. :math:`\partial\mathcal L/\partial\hat W` (masked by pruning) -- this is exactly MetaQuant's input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch

from metacomm._validation import ConfigError, check_nonneg, check_positive, check_positive_int
from metacomm.adaptation.update_rules import UpdateRule, register_rule

__all__ = ["MetaQuant", "metaquant_direction"]


def metaquant_direction(g: torch.Tensor, w: torch.Tensor, meta: Mapping[str, torch.Tensor], grad_scale: float,
                        weight_scale: float) -> torch.Tensor:
    r""":math:`M_\eta(g, w)` of the module docstring, element-wise (``g``, ``w`` same shape, any dims)."""
    x = torch.stack([g * grad_scale, w * weight_scale], dim=-1)  # [..., 2]
    h = torch.tanh(x @ meta["U"].t() + meta["c"])  # [..., H]
    return g + (h @ meta["v"] + meta["e"]) / grad_scale


@register_rule("metaquant")
class MetaQuant(UpdateRule):
    r"""The MetaQuant inner rule (module docstring): ``step`` returns
    ``phi - lr * M(g, phi)`` for the names ``names`` selects (default: names ending in ``weight``) and
    ``phi - lr * g`` for the others.

    :param lr: inner rate :math:`\alpha \ge 0`.
    :param hidden: width :math:`H` of the meta-network.
    :param names: which adapted tensors take the meta-network (a predicate on the name, or a collection of
        names); default: ``*.weight`` (the quantised ones).
    :param generator: explicit generator of :math:`U, c` (uniform in :math:`\pm 1`); ``v, e`` start at 0.
    :param meta: given meta-parameters ``{"U", "c", "v", "e"}`` instead (kept as given: an outer optimiser
        that holds them updates the rule).
    """

    def __init__(self, lr: float = 0.1, *, hidden: int = 8, names: Callable[[str], bool] | Iterable[str] | None = None,
                 grad_scale: float = 10.0, weight_scale: float = 1.0, generator: torch.Generator | None = None,
                 meta: Mapping[str, torch.Tensor] | None = None, device=None, dtype=torch.float32,
                 requires_grad: bool = True):
        self.lr = check_nonneg("inner_lr", lr)
        self.grad_scale = check_positive("grad_scale", grad_scale)
        self.weight_scale = check_positive("weight_scale", weight_scale)
        #: ``names`` as a checkpoint records it: None (the default ``*.weight``), a sorted list, or a predicate
        self._names = names
        if names is None:
            self._pick = lambda n: n.endswith("weight")
        elif callable(names):
            self._pick = names
        else:
            chosen = set(names)
            self._names = sorted(chosen)
            self._pick = chosen.__contains__
        if meta is not None:
            missing = [k for k in ("U", "c", "v", "e") if k not in meta]
            if missing:
                raise ConfigError("rule", f"MetaQuant meta-parameters missing {', '.join(missing)}")
            self.meta = dict(meta)
            self.hidden = int(self.meta["U"].shape[0])
            return
        self.hidden = check_positive_int("hidden", hidden)
        if not isinstance(generator, torch.Generator):
            raise ConfigError("generator", "MetaQuant draws its meta-network from an explicit torch.Generator: "
                                           "pass generator=")
        H = self.hidden
        U = (2 * torch.rand(H, 2, generator=generator, dtype=dtype) - 1).to(device)
        c = (2 * torch.rand(H, generator=generator, dtype=dtype) - 1).to(device)
        self.meta = {"U": U, "c": c, "v": torch.zeros(H, dtype=dtype, device=device),
                     "e": torch.zeros((), dtype=dtype, device=device)}
        self.meta = {k: t.detach().requires_grad_(requires_grad) for k, t in self.meta.items()}

    @property
    def meta_params(self) -> dict[str, torch.Tensor]:
        return self.meta

    def direction(self, g: torch.Tensor, w: torch.Tensor, meta=None) -> torch.Tensor:
        """:math:`M_\\eta(g, w)` with ``meta`` (default the rule's own)."""
        return metaquant_direction(g, w, self.meta if meta is None else meta, self.grad_scale, self.weight_scale)

    def step(self, params, grads, state, meta_params=None):
        meta = self.meta if meta_params is None else meta_params
        new = dict(params)
        for n, g in grads.items():
            d = self.direction(g, params[n], meta) if self._pick(n) else g
            new[n] = params[n] - self.lr * d
        return new, state

    def detached(self) -> MetaQuant:
        out = MetaQuant(self.lr, names=self._pick, grad_scale=self.grad_scale, weight_scale=self.weight_scale,
                        meta={k: t.detach() for k, t in self.meta.items()})
        out._names = self._names
        return out

    def spec_config(self) -> dict:
        """``{"lr", "grad_scale", "weight_scale", "names"}`` (:func:`~metacomm.adaptation.update_rules.rule_spec`;
        ``names``: None for the default ``*.weight`` or the list of names; a predicate cannot be recorded)."""
        if callable(self._names):
            raise ConfigError("rule", "a MetaQuant rule with a names predicate cannot be recorded in a checkpoint; "
                                      "give names as a list of parameter names")
        return {"lr": float(self.lr), "grad_scale": float(self.grad_scale), "weight_scale": float(self.weight_scale),
                "names": None if self._names is None else list(self._names)}

    @classmethod
    def from_spec(cls, config, tensors) -> MetaQuant:
        return cls(float(config["lr"]), grad_scale=float(config.get("grad_scale", 10.0)),
                   weight_scale=float(config.get("weight_scale", 1.0)), names=config.get("names"),
                   meta=dict(tensors))

    def state_dict(self) -> dict:
        """``{"lr", "grad_scale", "weight_scale", "meta": {...}}`` (tensors detached, for checkpoints)."""
        return {"lr": self.lr, "grad_scale": self.grad_scale, "weight_scale": self.weight_scale,
                "meta": {k: t.detach().cpu().clone() for k, t in self.meta.items()}}

    @classmethod
    def from_state_dict(cls, state: Mapping, device=None, names=None) -> MetaQuant:
        return cls(float(state["lr"]), grad_scale=float(state["grad_scale"]),
                   weight_scale=float(state["weight_scale"]), names=names,
                   meta={k: t.to(device) for k, t in state["meta"].items()})

    def __repr__(self) -> str:
        return f"MetaQuant(lr={self.lr}, hidden={self.hidden})"
