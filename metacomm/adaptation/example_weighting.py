r"""Per-example weightings of the inner loss, for adaptation on labels that can be wrong.

The inner loss of a noisy-label support set (``P`` trusted pilots, ``D`` data blocks with possibly wrong labels)
is

.. math:: L(\theta) = \frac{1}{P + D}\Big(\sum_{p} \ell_p(\theta) + \sum_{d} \hat w_d\, \ell_d(\theta)\Big),
          \qquad \hat w = D\, \frac{w}{\sum_d w_d}\ \ (\hat w = 0 \text{ when } \sum_d w_d = 0),

with per-example losses :math:`\ell` (cross-entropy, or GCE) and raw weights :math:`w \ge 0` from a *method*
(uniform weights give plain fine-tuning, so every method coincides with it when it weights all examples alike).

* :func:`l2rw_weights` -- Learning to Reweight Examples (Ren, Zeng, Yang & Urtasun, ICML 2018): perturb the
  weighted loss by :math:`\epsilon_d`, take a virtual SGD step :math:`\theta' = \theta - \alpha \nabla_\theta
  \sum_d \epsilon_d \ell_d`, and set :math:`w_d = \max(0, -\partial L_{\text{clean}}(\theta')/\partial
  \epsilon_d|_{\epsilon = 0}) = \max(0, \alpha\, \nabla L_{\text{clean}}(\theta) \cdot \nabla \ell_d(\theta))`
  (the clean loss is the pilots'); normalised to sum 1. Recomputed at every inner step (one JVP per step).
* :class:`MetaWeightNet` -- Meta-Weight-Net (Shu et al., NeurIPS 2019): :math:`w_d = \sigma(\mathrm{MLP}(\ell_d))`
  of the (detached) loss, 1 -> ``hidden`` -> 1 with ReLU; the MLP's weights are meta-parameters trained
  through the clean query loss after the inner step (:class:`WeightingRule`).
* :func:`gce_loss` -- generalised cross-entropy (Zhang & Sabuncu, NeurIPS 2018): :math:`(1 - p_y^q)/q`; ``q -> 0``
  gives CE, ``q = 1`` gives MAE (:math:`1 - p_y`, half the L1 distance to the one-hot label).

:class:`WeightingRule` is an :class:`~metacomm.adaptation.update_rules.UpdateRule` (SGD step) whose
``wrap_loss`` applies a weighting with its meta-parameters, so the engine meta-trains Meta-Weight-Net's MLP with
the model (second-order MAML differentiates through the weights).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from metacomm.adaptation.update_rules import SGD, UpdateRule

__all__ = ["gce_loss", "normalise_weights", "weighted_mean", "l2rw_weights", "MetaWeightNet", "WeightingRule",
           "DecisionWeightNet", "DecisionWeightingRule", "decision_features", "DD_FEATURES"]


def gce_loss(logits: torch.Tensor, labels: torch.Tensor, q: float = 0.7) -> torch.Tensor:
    r"""Per-example generalised cross-entropy :math:`(1 - p_y^q)/q` ``[..., B]`` (``logits [..., B, M]``,
    ``labels`` int64 ``[..., B]``); ``q = 0`` returns the cross-entropy :math:`-\log p_y` (the limit)."""
    logp = F.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    if q == 0:
        return -logp
    return (1 - torch.exp(q * logp)) / q


def normalise_weights(w: torch.Tensor) -> torch.Tensor:
    """``D * w / sum(w)`` over the last dim (zeros where the sum is 0): weights of mean 1, as uniform ones."""
    D = w.shape[-1]
    s = w.sum(-1, keepdim=True)
    return torch.where(s > 0, D * w / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(w))


def weighted_mean(pilot_losses: torch.Tensor, data_losses: torch.Tensor, w_hat: torch.Tensor | None) -> torch.Tensor:
    """The inner loss of the module docstring from normalised weights ``w_hat`` (``None``: uniform)."""
    P, D = pilot_losses.shape[-1], data_losses.shape[-1]
    data = data_losses.sum(-1) if w_hat is None else (w_hat * data_losses).sum(-1)
    return (pilot_losses.sum(-1) + data) / (P + D)


def l2rw_weights(data_losses_fn: Callable[[dict], torch.Tensor], clean_loss_fn: Callable[[dict], torch.Tensor],
                 params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    r"""Ren et al.'s weights (module docstring) at ``params``: ``data_losses_fn(params) -> [D]`` per-example
    losses, ``clean_loss_fn(params) -> []`` the clean (pilot) loss. Returns ``max(0, grad(clean) . grad(l_d))``
    normalised to sum 1 (zeros when every alignment is <= 0), detached. Uses :func:`torch.func.grad` and
    :func:`torch.func.jvp` (vmappable over tasks)."""
    params = {n: t.detach() for n, t in params.items()}
    g = torch.func.grad(clean_loss_fn)(params)
    _, a = torch.func.jvp(data_losses_fn, (params,), (g,))
    w = a.clamp_min(0)
    s = w.sum(-1, keepdim=True)
    return torch.where(s > 0, w / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(w)).detach()


class MetaWeightNet(nn.Module):
    """Meta-Weight-Net: ``w = sigmoid(Linear(hidden, 1)(relu(Linear(1, hidden)(loss))))`` per example.
    :meth:`functional` evaluates it with a ``{name: tensor}`` dict (the rule's meta-parameters)."""

    def __init__(self, hidden: int = 16, generator: torch.Generator | None = None):
        super().__init__()
        self.l1, self.l2 = nn.Linear(1, hidden), nn.Linear(hidden, 1)
        if generator is not None:
            from metacomm.codecs.learned_base import reset_linear_
            reset_linear_(self.l1, generator)
            reset_linear_(self.l2, generator)
        with torch.no_grad():  # output 0.5 at the start, where the sigmoid is steepest
            self.l2.bias.zero_()

    @staticmethod
    def functional(mp: Mapping[str, torch.Tensor], losses: torch.Tensor) -> torch.Tensor:
        h = F.relu(losses.unsqueeze(-1) * mp["l1.weight"][:, 0] + mp["l1.bias"])
        return torch.sigmoid(h @ mp["l2.weight"][0] + mp["l2.bias"][0])

    def forward(self, losses):
        return self.functional(dict(self.named_parameters()), losses)


class WeightingRule(UpdateRule):
    """SGD at ``lr`` on a per-example-weighted inner loss.

    :param parts: ``(model, support) -> (pilot_losses [P], data_losses [D])`` (one task, differentiable).
    :param method: ``"uniform"`` (plain fine-tuning) or ``"mwnet"`` (weights from :class:`MetaWeightNet` of
        the support batch's ``d_feat`` -- a per-example loss feature drawn outside the loss, e.g. the look-ahead
        loss of :meth:`~metacomm.scenarios.label_noise.LabelNoiseScenario.lookahead_losses` -- or, without it,
        of the detached data losses; its parameters are this rule's :attr:`meta_params`, leaf tensors).
    """

    def __init__(self, parts: Callable, lr: float, method: str = "uniform", net: MetaWeightNet | None = None):
        self.parts, self.lr, self.method = parts, float(lr), method
        self._meta = {}
        if method == "mwnet":
            net = net or MetaWeightNet()
            self._meta = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters()}

    @property
    def meta_params(self):
        return self._meta

    def weights(self, data_losses, meta_params=None, feature=None):
        """Normalised weights ``[D]`` of :attr:`method` (``None`` for uniform); MLP input ``feature`` if given,
        else the detached ``data_losses``."""
        if self.method == "uniform":
            return None
        mp = self._meta if meta_params is None else meta_params
        x = data_losses.detach() if feature is None else feature.detach()
        return normalise_weights(MetaWeightNet.functional(mp, x))

    def wrap_loss(self, loss_fn, meta_params=None):
        def weighted(model, support):
            lp, ld = self.parts(model, support)
            return weighted_mean(lp, ld, self.weights(ld, meta_params, support.get("d_feat")))
        return weighted

    def step(self, params, grads, state, meta_params=None):
        return SGD(self.lr).step(params, grads, state)

    def detached(self):
        r = WeightingRule(self.parts, self.lr, "uniform")
        r.method = self.method
        r._meta = {k: t.detach() for k, t in self._meta.items()}
        return r


# ----------------------------------------------------------------------------------------------------------------
# Decision-directed weighting (drift scheme dd-mwnet)
# ----------------------------------------------------------------------------------------------------------------

#: the per-example inputs of :class:`DecisionWeightNet`, in order
DD_FEATURES = ("log decision loss", "log1p logit margin", "log10 N0", "log pilot loss")


def decision_features(logits_d: torch.Tensor, logits_p: torch.Tensor, msg_p: torch.Tensor,
                      no: torch.Tensor) -> torch.Tensor:
    r"""Per-example features ``[..., D, 4]`` of payload decisions (:data:`DD_FEATURES`), detached: the log of the
    decision's cross-entropy :math:`-\log \max_m p_m` (= minus log softmax confidence), ``log1p`` of the logit
    margin between the decision and the runner-up, :math:`\log_{10} N_0` of the frame, and the log of the
    frame's pilot cross-entropy (how well the current weights fit the known pilots). ``logits_d [..., D, M]``,
    ``logits_p [..., P, M]``, ``msg_p [..., P]``, ``no [...]``; vmappable."""
    logits_d, logits_p = logits_d.detach(), logits_p.detach()
    top = logits_d.topk(2, -1).values
    ce = torch.logsumexp(logits_d, -1) - top[..., 0]
    margin = top[..., 0] - top[..., 1]
    pce = F.cross_entropy(logits_p.reshape(-1, logits_p.shape[-1]), msg_p.reshape(-1),
                          reduction="none").reshape(msg_p.shape).mean(-1)
    D = logits_d.shape[-2]
    no = torch.as_tensor(no, dtype=ce.dtype, device=ce.device)
    return torch.stack([torch.log(ce + 1e-4), torch.log1p(margin),
                        torch.log10(no)[..., None].expand(*no.shape, D),
                        torch.log(pce + 1e-4)[..., None].expand(*pce.shape, D)], -1).detach()


class DecisionWeightNet(nn.Module):
    """Meta-Weight-Net for decision-directed labels: ``w = sigmoid(MLP(features))`` in (0, 1) per payload decision
    from :func:`decision_features` (4 -> ``hidden`` -> 1, ReLU). :meth:`functional` evaluates it from a
    ``{name: tensor}`` dict (meta-parameters)."""

    def __init__(self, hidden: int = 16, generator: torch.Generator | None = None):
        super().__init__()
        self.l1, self.l2 = nn.Linear(len(DD_FEATURES), hidden), nn.Linear(hidden, 1)
        if generator is not None:
            from metacomm.codecs.learned_base import reset_linear_
            reset_linear_(self.l1, generator)
            reset_linear_(self.l2, generator)
        with torch.no_grad():
            self.l2.bias.zero_()

    @staticmethod
    def functional(mp: Mapping[str, torch.Tensor], feats: torch.Tensor) -> torch.Tensor:
        h = F.relu(feats @ mp["l1.weight"].T + mp["l1.bias"])
        return torch.sigmoid(h @ mp["l2.weight"][0] + mp["l2.bias"][0])

    def forward(self, feats):
        return self.functional(dict(self.named_parameters()), feats)


class DecisionWeightingRule(UpdateRule):
    r"""The per-frame step of the decision-directed drift schemes as an update rule: SGD at ``lr`` on

    .. math:: L(\theta) = \frac{1}{P + D}\Big(\sum_p \ell(\theta; y_p, m_p) + \sum_d w_d\, \ell(\theta; y_d, \hat m_d)\Big)

    (pilots weight 1, the payload's own decisions :math:`\hat m` weighted by :math:`w_d`). ``wrap_loss`` builds
    this loss from a support batch ``{"y_p", "msg_p", "y_d", "dec", "no"}`` of one link (the weights are computed
    at the point the loss is evaluated and enter it as constants of the model parameters, but stay differentiable
    w.r.t. the rule's meta-parameters, so second-order meta-gradients reach the weighting net).

    :param method: ``"mwnet"`` -- raw weights :math:`w = \sigma(\mathrm{MLP}(\phi_d))` of
        :class:`DecisionWeightNet` (*not* normalised: the net also sets how much the payload counts against the
        pilots); ``"ones"`` -- :math:`w = 1` (naive decision-directed fine-tuning).
    """

    def __init__(self, lr: float, method: str = "mwnet", net: DecisionWeightNet | None = None,
                 meta_params: Mapping[str, torch.Tensor] | None = None):
        if method not in ("mwnet", "ones"):
            raise ValueError(f"method: expected 'mwnet' or 'ones', got {method!r}")
        self.lr, self.method = lr, method
        self._meta = {}
        if method == "mwnet":
            src = meta_params if meta_params is not None else dict((net or DecisionWeightNet()).named_parameters())
            self._meta = {n: t.detach().clone().requires_grad_(True) for n, t in src.items()}

    @property
    def meta_params(self):
        return self._meta

    def weights(self, logits_d, logits_p, batch, meta_params=None) -> torch.Tensor:
        """Payload weights ``[..., D]`` (from detached logits)."""
        if self.method == "ones":
            return torch.ones(logits_d.shape[:-1], dtype=logits_d.real.dtype, device=logits_d.device)
        mp = self._meta if meta_params is None else meta_params
        return DecisionWeightNet.functional(mp, decision_features(logits_d, logits_p, batch["msg_p"], batch["no"]))

    def wrap_loss(self, loss_fn=None, meta_params=None):
        def weighted(model, b):
            lp = model.decoder.block_logits(b["y_p"])
            ld = model.decoder.block_logits(b["y_d"])
            w = self.weights(ld, lp, b, meta_params)
            P, D = lp.shape[-2], ld.shape[-2]
            return (F.cross_entropy(lp, b["msg_p"], reduction="sum")
                    + (w * F.cross_entropy(ld, b["dec"], reduction="none")).sum()) / (P + D)
        return weighted

    def step(self, params, grads, state, meta_params=None):
        return SGD(self.lr).step(params, grads, state)
