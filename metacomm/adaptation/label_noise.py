r"""Label-noise models for adaptation data: which label a receiver adapts on when labels can be wrong.

A receiver that adapts on its own decisions, or on labels recovered from decoded codewords, sees labels that are
sometimes wrong. The simulator knows the transmitted message, so every model here returns the noisy labels
*and* the is-wrong mask, so that any per-example weighting can be scored (:func:`auroc`).

Every draw comes from the explicit ``generator`` (outside any loss): the result is carried in the task batch.
Shapes: ``msg`` int64 ``[..., B]`` (true messages in ``0..M-1``); returns ``(labels int64 [..., B], wrong bool
[..., B])`` with ``wrong = labels != msg``. ``rate`` in ``[0, 1]`` is the probability that a label is wrong
(the *expected* flip rate; ``bursty`` hits exactly ``round(rate * B)`` consecutive blocks).

Models (:data:`NOISE_MODELS`):

* ``symmetric`` -- with probability ``rate`` the label is replaced by one of the other ``M - 1`` messages,
  uniformly;
* ``pair`` -- with probability ``rate`` the label is replaced by the message whose codeword is nearest to the
  transmitted codeword (Euclidean distance in the codebook, :func:`nearest_neighbours`): the most likely
  confusion of a detector at high SNR;
* ``decision-directed`` -- instance-dependent: the label is the receiver's own hard decision
  (``logits.argmax``); to set the rate, correct decisions are replaced by the receiver's runner-up with
  probability :math:`(r - e)/(1 - e)` when the batch's decision error rate :math:`e < r`, and wrong decisions
  are corrected to the truth with probability :math:`1 - r/e` when :math:`e > r` (an outer code fixing some of
  them), so that :math:`E[\text{wrong rate}] = r` and which blocks are wrong follows the receiver's confusions;
* ``bursty`` -- a deep fade wipes out a contiguous burst of ``round(rate * B)`` blocks (uniform start, cyclic);
  inside it the labels are uniform over the other messages;
* ``contaminated-pilots`` -- symmetric flips at ``rate`` on the data *and* on the pilots that a method trusts as
  clean (the scenario applies the model to both sets).
"""

from __future__ import annotations

import torch

from metacomm._validation import ConfigError

__all__ = ["NOISE_MODELS", "TRAIN_NOISE_MODELS", "apply_label_noise", "nearest_neighbours", "symmetric_flips",
           "pair_flips", "decision_directed_labels", "bursty_flips", "auroc", "check_rate", "parse_noise_models"]

NOISE_MODELS = ("symmetric", "pair", "decision-directed", "bursty", "contaminated-pilots")
#: the models the meta-training tasks use (the others are held out)
TRAIN_NOISE_MODELS = ("symmetric", "pair")


def check_rate(field: str, rate) -> float:
    """A noise rate in ``[0, 1]`` (ConfigError naming ``field`` otherwise)."""
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise ConfigError(field, f"expected a noise rate in [0, 1], got {rate!r}") from None
    if not (0.0 <= r <= 1.0):
        raise ConfigError(field, f"noise rates must lie in [0, 1], got {rate!r}")
    return r


def parse_noise_models(field: str, value, allowed=NOISE_MODELS) -> list[str]:
    """A comma string or list of model names -> list (ConfigError naming ``field`` for unknown names)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out = [str(v).strip() for v in items if str(v).strip()]
    if not out:
        raise ConfigError(field, f"give at least one of {', '.join(allowed)}")
    for v in out:
        if v not in allowed:
            raise ConfigError(field, f"unknown noise model {v!r}; allowed: {', '.join(allowed)}")
    return out


def nearest_neighbours(codebook: torch.Tensor) -> torch.Tensor:
    """``[M]`` int64: for each codeword of ``codebook`` (``[M, n]``, real or complex) the index of the nearest
    *other* codeword in Euclidean distance (ties: the lowest index)."""
    c = torch.view_as_real(codebook).flatten(-2) if codebook.is_complex() else codebook
    d = torch.cdist(c.double(), c.double())
    d.fill_diagonal_(float("inf"))
    return d.argmin(-1)


def _other_uniform(msg: torch.Tensor, M: int, generator) -> torch.Tensor:
    off = torch.randint(1, M, msg.shape, generator=generator, device=msg.device)
    return (msg + off) % M


def symmetric_flips(msg: torch.Tensor, M: int, rate: float, generator: torch.Generator):
    """Symmetric noise (module docstring); ``(labels, wrong)``."""
    flip = torch.rand(msg.shape, generator=generator, device=msg.device) < rate
    other = _other_uniform(msg, M, generator)
    labels = torch.where(flip, other, msg)
    return labels, labels != msg


def pair_flips(msg: torch.Tensor, neighbours: torch.Tensor, rate: float, generator: torch.Generator):
    """Pair (nearest-neighbour) flips: ``labels = neighbours[msg]`` with probability ``rate``."""
    flip = torch.rand(msg.shape, generator=generator, device=msg.device) < rate
    labels = torch.where(flip, neighbours.to(msg.device)[msg], msg)
    return labels, labels != msg


def decision_directed_labels(msg: torch.Tensor, logits: torch.Tensor, rate: float, generator: torch.Generator):
    """Decision-directed labels at a target rate (module docstring). ``logits`` ``[..., B, M]`` of the receiver
    that labels the blocks (detached). The rate is matched per leading index (per task)."""
    logits = logits.detach()
    top2 = logits.topk(2, dim=-1).indices
    dec, runner = top2[..., 0], top2[..., 1]
    wrong = dec != msg
    e = wrong.double().mean(-1, keepdim=True)  # [..., 1] decision error rate of each task's batch
    r = torch.as_tensor(rate, dtype=torch.float64, device=msg.device)
    p_add = torch.where(e < r, (r - e) / (1 - e).clamp_min(1e-12), torch.zeros_like(e))
    p_keep = torch.where(e > r, r / e.clamp_min(1e-12), torch.ones_like(e))
    u = torch.rand(msg.shape, generator=generator, device=msg.device, dtype=torch.float64)
    # a correct decision becomes the runner-up with prob p_add; a wrong one is kept with prob p_keep
    alt = torch.where(runner != msg, runner, dec)  # runner-up (never the truth when the decision is right)
    labels = torch.where(wrong, torch.where(u < p_keep, dec, msg), torch.where(u < p_add, alt, msg))
    return labels, labels != msg


def bursty_flips(msg: torch.Tensor, M: int, rate: float, generator: torch.Generator):
    """A burst of ``round(rate * B)`` consecutive wrong labels (cyclic, uniform start per leading index)."""
    B = msg.shape[-1]
    length = int(round(rate * B))
    start = torch.randint(0, B, (*msg.shape[:-1], 1), generator=generator, device=msg.device)
    pos = (torch.arange(B, device=msg.device) - start) % B
    hit = pos < length
    labels = torch.where(hit, _other_uniform(msg, M, generator), msg)
    return labels, labels != msg


def apply_label_noise(kind: str, msg: torch.Tensor, rate: float, generator: torch.Generator, *, M: int,
                      neighbours: torch.Tensor | None = None, logits: torch.Tensor | None = None):
    """Noisy labels of ``msg`` under model ``kind`` at ``rate`` (module docstring) -> ``(labels, wrong)``.
    ``neighbours`` (``[M]``, :func:`nearest_neighbours`) is needed by ``pair``, ``logits`` (``[..., B, M]``)
    by ``decision-directed``. ``contaminated-pilots`` applies symmetric flips (the caller noises the pilots too).
    Rate 0 returns ``msg`` unchanged (no draw changes a label)."""
    rate = check_rate("rate", rate)
    if kind in ("symmetric", "contaminated-pilots"):
        return symmetric_flips(msg, M, rate, generator)
    if kind == "pair":
        if neighbours is None:
            raise ConfigError("noise", "pair flips need the codebook's nearest-neighbour table")
        return pair_flips(msg, neighbours, rate, generator)
    if kind == "decision-directed":
        if logits is None:
            raise ConfigError("noise", "decision-directed labels need the receiver's logits")
        return decision_directed_labels(msg, logits, rate, generator)
    if kind == "bursty":
        return bursty_flips(msg, M, rate, generator)
    raise ConfigError("noise", f"unknown noise model {kind!r}; allowed: {', '.join(NOISE_MODELS)}")


def auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    r"""Mann-Whitney AUROC: the probability that a random ``positive`` example has a higher score than a random
    negative one (ties count 1/2). ``scores`` float ``[N]``, ``positive`` bool ``[N]``; ``nan`` when either class
    is empty. For weights, call with ``positive = ~wrong`` (right labels should get the higher weights)."""
    s = scores.detach().reshape(-1).double().cpu()
    pos = positive.detach().reshape(-1).bool().cpu()
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    # average ranks (ties share the mean rank)
    order = torch.argsort(s, stable=True)
    _, inv, counts = torch.unique_consecutive(s[order], return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    ranks = torch.empty_like(s)
    ranks[order] = (ends - (counts.double() - 1) / 2)[inv]
    u = float(ranks[pos].sum()) - n1 * (n1 + 1) / 2
    return u / (n1 * n0)
