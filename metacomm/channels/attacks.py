r"""Over-the-air attacks on a receiver: adversarial perturbations and equal-power jammers.

Threat model (Sadeghi & Larsson, "Physical adversarial attacks against end-to-end autoencoder communication
systems", IEEE Comm. Letters 23(5), 2019): the receiver sees

.. math::  y = \mathrm{channel}(x) + n + p,

with the perturbation :math:`p` chosen by an attacker under a power budget given as the
**perturbation-to-signal ratio** per block, :math:`\mathrm{PSR} = \|p\|^2 / \|x\|^2` (linear; the user gives it in
dB, ``psr_db``). :math:`x` is the transmitted block (complex ``[B, N]``, Es = 1 per complex channel use, so
:math:`\|x\|^2 = n_c` for a block-normalised codec), ``y`` the received block. Every perturbation returned here
uses its whole budget: :math:`\|p_b\|^2 = \mathrm{PSR}\cdot\|x_b\|^2` for every block ``b`` up to float rounding
(universal perturbations: :math:`\|u\|^2 = \mathrm{PSR}\cdot\overline{\|x\|^2}`, the mean block energy, equal to
every block's for block-normalised codecs).

**Signal support.** A perturbation only lives on the real dimensions that carry the signal (:class:`Support`):
for the O'Shea-Hoydis AE(7,4) with real uses those are the 7 reals (the unused last imaginary part is left
out), for Hamming(7,4)+BPSK the 7 real parts. Jammers and attacks spread their power over these ``D`` dims only,
so "equal power" means the same energy in the signal's own dimensions (:meth:`Support.from_codebook`).

**Attacks** (white-box: they get ``logits_fn(y) -> [B, M]`` of the receiver under attack and the true messages;
the loss they maximise is the per-block cross-entropy):

* :func:`fgm` -- fast gradient method in the L2 ball: :math:`p = r\, g/\|g\|`, :math:`g = \nabla_y \mathrm{CE}`;
* :func:`pgd_l2` -- projected gradient ascent in the L2 ball (normalised-gradient steps, projection onto the ball,
  as torchattacks' ``PGDL2``); by default every iterate is rescaled to the sphere and the per-block best
  candidate (the FGM point included) is returned, so PGD never does worse than FGM on the loss;
* :func:`pgd_linf` -- PGD with sign steps in the L-infinity ball whose vertices have exactly the PSR budget,
  :math:`\epsilon = r/\sqrt D`; the returned perturbation is the nearest vertex :math:`\epsilon\,\mathrm{sign}(p)`;
* :func:`uap_sadeghi` -- the input-agnostic universal adversarial perturbation of Sadeghi & Larsson, Alg. 1
  (per sample, the minimal flipping perturbation over all target classes by bisection along the class gradient,
  accumulated and projected onto the PSR ball), and :func:`uap_pgd` (one perturbation maximising the mean loss
  over a batch by projected gradient ascent);
* :func:`cyclic_shift` -- the shifted black-box variant: a universal perturbation (crafted on a substitute model)
  rolled by a random number of real dimensions per block, so the attacker need not be synchronised.

**Jammers** (non-adversarial references at equal power): :func:`jam_gauss` (white Gaussian over the support,
scaled per block to the exact budget) and :func:`jam_tone` (a real sinusoid over the support dims with random
frequency and phase per block, scaled to the exact budget).

Randomness: every draw takes an explicit :class:`torch.Generator`, or is passed in as a tensor (``start``,
``draws``) so the attacks can run inside a loss under ``torch.func`` transforms. The iterative attacks compute
:math:`\nabla_y` with :func:`torch.func.grad` and return a detached perturbation (Danskin: the gradient of
:math:`\max_p L(w, p)` w.r.t. the weights is that of :math:`L(w, p^*)`), so they can be called inside a
vmapped, differentiated meta-loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from metacomm._validation import MAX_WORK, ConfigError, check_db, check_positive, check_positive_int

__all__ = ["ATTACKS", "ADVERSARIAL", "JAMMERS", "UNIVERSAL", "Support", "psr_linear", "budget", "psr_db_of",
           "block_ce", "fgm", "pgd_l2", "pgd_linf", "uap_sadeghi", "uap_pgd", "cyclic_shift", "jam_gauss",
           "jam_tone", "scale_to_budget", "random_unit", "perturb", "SegmentAttack", "attack_frame", "parse_attack_list"]

#: every attack name (the pack's ``--attack`` values)
ATTACKS = ("fgm", "pgd-l2", "pgd-linf", "uap", "uap-shifted", "jam-gauss", "jam-tone")
#: per-block white-box attacks
ADVERSARIAL = ("fgm", "pgd-l2", "pgd-linf")
#: universal (input-agnostic) perturbations
UNIVERSAL = ("uap", "uap-shifted")
#: non-adversarial references
JAMMERS = ("jam-gauss", "jam-tone")

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def parse_attack_list(field: str, value, allowed=ATTACKS) -> tuple[str, ...]:
    """A comma string or list of names from ``allowed`` -> tuple (duplicates dropped); ConfigError naming ``field``
    for an unknown or missing name."""
    items = [s.strip() for s in value.split(",")] if isinstance(value, str) else [str(s) for s in value]
    items = [s for s in items if s != ""]
    if not items:
        raise ConfigError(field, f"give at least one of {', '.join(allowed)}")
    for s in items:
        if s not in allowed:
            raise ConfigError(field, f"unknown value {s!r}; allowed: {', '.join(allowed)}")
    return tuple(dict.fromkeys(items))


class Support:
    """The real dimensions of a complex block ``[..., N]`` a perturbation may use.

    ``mask``: bool ``[N, 2]`` over ``torch.view_as_real`` of a block (``[..., 0]`` real, ``[..., 1]`` imaginary
    part). Held as a 0/1 selection matrix ``E`` ``[D, 2N]`` so that :meth:`to_reals` / :meth:`to_complex` are
    matrix products (differentiable, ``vmap``-safe). Real coordinates are ordered sample by sample
    (``Re y_0, Im y_0, Re y_1, ...``, unused ones skipped).
    """

    def __init__(self, mask: torch.Tensor):
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.dim() != 2 or mask.shape[1] != 2 or not bool(mask.any()):
            raise ConfigError("support", f"expected a non-empty bool mask [N, 2], got {tuple(mask.shape)}")
        self.mask = mask
        self.num_samples = int(mask.shape[0])
        idx = mask.reshape(-1).nonzero().flatten()
        self.dim = int(idx.numel())
        e = torch.zeros(self.dim, 2 * self.num_samples, device=mask.device)
        e[torch.arange(self.dim, device=mask.device), idx] = 1.0
        self.E = e

    @classmethod
    def full(cls, num_samples: int, device=None) -> Support:
        """Every real and imaginary part of ``num_samples`` complex samples."""
        return cls(torch.ones(check_positive_int("num_samples", num_samples), 2, dtype=torch.bool, device=device))

    @classmethod
    def from_codebook(cls, codebook: torch.Tensor) -> Support:
        """The real dims where some codeword (complex ``[M, N]``) is non-zero (the signal's own dimensions)."""
        r = torch.view_as_real(codebook.detach().to(torch.complex64))
        return cls((r != 0).any(0))

    def to(self, device) -> Support:
        return Support(self.mask.to(device))

    def to_reals(self, z: torch.Tensor) -> torch.Tensor:
        """Complex ``[..., N]`` -> real ``[..., D]``."""
        r = torch.view_as_real(z).reshape(*z.shape[:-1], 2 * self.num_samples)
        return r @ self.E.to(r.device, r.dtype).T

    def to_complex(self, r: torch.Tensor) -> torch.Tensor:
        """Real ``[..., D]`` -> complex ``[..., N]`` (zeros outside the support)."""
        full = (r @ self.E.to(r.device, r.dtype)).reshape(*r.shape[:-1], self.num_samples, 2)
        return torch.complex(full[..., 0], full[..., 1])


def psr_linear(psr_db, field: str = "psr_db") -> float:
    """PSR in dB -> linear :math:`\\|p\\|^2/\\|x\\|^2`; ConfigError naming ``field`` for NaN, infinite or
    unphysical values (outside ``[-300, 300]`` dB, :func:`~metacomm._validation.check_db`: the power would
    overflow)."""
    return 10.0 ** (check_db(field, psr_db) / 10.0)


def budget(x: torch.Tensor, psr_db, *, universal: bool = False) -> torch.Tensor:
    r"""The L2 radius :math:`r_b = \sqrt{\mathrm{PSR}\,\|x_b\|^2}` per block (float ``[B]``) of the transmitted
    blocks ``x`` (complex ``[B, N]``); ``universal``: one radius from the mean block energy (``[]``)."""
    e = x.abs().square().sum(-1)
    if universal:
        e = e.mean()
    return torch.sqrt(psr_linear(psr_db) * e)


def psr_db_of(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Measured PSR in dB per block, :math:`10\\log_{10}(\\|p_b\\|^2/\\|x_b\\|^2)` (float ``[B]``)."""
    return 10.0 * torch.log10(p.abs().square().sum(-1) / x.abs().square().sum(-1))


def _norm(r: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(r, dim=-1, keepdim=True)


def scale_to_budget(r: torch.Tensor, radius: torch.Tensor, tiny: float = 1e-30,
                    fallback: torch.Tensor | None = None) -> torch.Tensor:
    """Real ``[B, D]`` rescaled so that every row has norm ``radius`` (``[B]`` or scalar) exactly. A row of norm
    below ``tiny`` (e.g. a gradient that underflowed to 0 on a saturated decoder) is replaced by the same row of
    ``fallback`` (same shape; default: the first unit vector), so the budget is always used."""
    radius = torch.as_tensor(radius, dtype=r.dtype, device=r.device)
    if fallback is None:
        fallback = torch.zeros_like(r) + (torch.arange(r.shape[-1], device=r.device) == 0).to(r.dtype)
    peak = r.abs().amax(-1, keepdim=True)
    r = torch.where(peak < tiny, fallback.to(r.dtype), r)
    r = r / r.abs().amax(-1, keepdim=True)  # exact power-of-range rescale first: tiny gradients lose no precision
    return r * (radius.reshape(*radius.shape, 1) if radius.dim() else radius) / _norm(r).clamp_min(tiny)


def random_unit(shape, generator: torch.Generator, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal draws ``shape`` (e.g. ``[B, D]``): the direction of a random start (uniform on the
    sphere after normalisation)."""
    return torch.randn(shape, generator=generator, device=device or generator.device, dtype=dtype)


def block_ce(logits_fn: LogitsFn, y: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-block cross-entropy ``[B]`` of the receiver's logits at ``y`` against the true messages."""
    return F.cross_entropy(logits_fn(y), labels, reduction="none")


def _grad_reals(logits_fn: LogitsFn, y: torch.Tensor, labels, support: Support, r: torch.Tensor) -> torch.Tensor:
    """:math:`\\nabla_r \\sum_b \\mathrm{CE}_b(y + p(r))` over the support coordinates ``r`` ``[B, D]``."""
    from torch.func import grad

    def total(rr):
        return block_ce(logits_fn, y + support.to_complex(rr), labels).sum()

    return grad(total)(r)


def fgm(logits_fn: LogitsFn, y: torch.Tensor, labels: torch.Tensor, radius: torch.Tensor, support: Support
        ) -> torch.Tensor:
    r"""Fast gradient method in the L2 ball: :math:`p = r\,g/\|g\|`, :math:`g = \nabla_y\mathrm{CE}(y)` (on the
    support). ``y`` complex ``[B, N]`` (received, before the attack), ``labels`` int64 ``[B]``, ``radius`` ``[B]``
    (:func:`budget`). Returns the complex perturbation ``[B, N]`` (detached), :math:`\|p_b\| = r_b`."""
    r0 = torch.zeros(*y.shape[:-1], support.dim, dtype=y.real.dtype, device=y.device)
    g = _grad_reals(logits_fn, y, labels, support, r0)
    return support.to_complex(scale_to_budget(g, radius, fallback=-support.to_reals(y))).detach()


def pgd_l2(logits_fn: LogitsFn, y: torch.Tensor, labels: torch.Tensor, radius: torch.Tensor, support: Support, *,
           steps: int = 10, step_size: float = 0.25, start: torch.Tensor | None = None, keep_best: bool = True,
           full_budget: bool = True) -> torch.Tensor:
    r"""Projected gradient ascent on the per-block CE in the L2 ball of radius ``radius`` ``[B]``.

    Iteration (torchattacks ``PGDL2``): :math:`p \leftarrow p + \alpha r\, g/\|g\|`, then
    :math:`p \leftarrow p \min(1, r/\|p\|)`; ``step_size`` :math:`\alpha` is relative to the radius. ``start``
    (real ``[B, D]``, e.g. :func:`random_unit` draws): random start at a uniformly random point of the sphere of
    radius :math:`r/2` in that direction; ``None``: start at 0.
    ``full_budget``: candidates are the iterates rescaled to the sphere :math:`\|p\| = r` (a perturbation uses its
    whole budget); ``keep_best``: return per block the candidate with the largest CE among the FGM point and every
    iterate (so the result is never worse than :func:`fgm`); otherwise the last iterate.
    Returns the complex perturbation ``[B, N]`` (detached).
    """
    steps = check_positive_int("steps", steps)
    rad = radius.reshape(*radius.shape, 1) if radius.dim() else radius
    if start is None:
        r = torch.zeros(*y.shape[:-1], support.dim, dtype=y.real.dtype, device=y.device)
    else:
        r = scale_to_budget(start.to(y.real.dtype), radius) * 0.5
    best = best_loss = None

    def consider(cand):
        nonlocal best, best_loss
        loss = block_ce(logits_fn, y + support.to_complex(cand), labels).detach()
        if best is None:
            best, best_loss = cand, loss
        else:
            better = loss > best_loss
            best = torch.where(better.unsqueeze(-1), cand, best)
            best_loss = torch.where(better, loss, best_loss)

    if keep_best:
        r0 = torch.zeros_like(r)
        consider(scale_to_budget(_grad_reals(logits_fn, y, labels, support, r0), radius,
                                 fallback=-support.to_reals(y)).detach())
    for _ in range(steps):
        g = _grad_reals(logits_fn, y, labels, support, r)
        r = r + step_size * rad * g / (_norm(g) + 1e-10)
        r = r * torch.clamp(rad / _norm(r).clamp_min(1e-12), max=1.0)
        r = r.detach()
        if keep_best:
            consider(scale_to_budget(r, radius, fallback=-support.to_reals(y)) if full_budget else r)
    out = best if keep_best else (scale_to_budget(r, radius, fallback=-support.to_reals(y)) if full_budget else r)
    return support.to_complex(out).detach()


def pgd_linf(logits_fn: LogitsFn, y: torch.Tensor, labels: torch.Tensor, radius: torch.Tensor, support: Support,
             *, steps: int = 10, step_size: float = 0.25, start: torch.Tensor | None = None) -> torch.Tensor:
    r"""PGD in the L-infinity ball :math:`\|p\|_\infty \le \epsilon = r/\sqrt D` (its vertices have exactly the PSR
    budget): :math:`p \leftarrow \mathrm{clip}_\epsilon(p + \alpha\epsilon\,\mathrm{sign}(g))`. ``start`` (real
    ``[B, D]``): random start :math:`\epsilon\,\tanh(\mathrm{start})`; ``None``: 0. Returns the vertex
    :math:`\epsilon\,\mathrm{sign}(p)` (sign 0 -> +1) with the larger CE of it and the FGSM vertex
    :math:`\epsilon\,\mathrm{sign}(g_0)`, complex ``[B, N]`` (detached); :math:`\|p_b\|^2 = r_b^2` exactly."""
    steps = check_positive_int("steps", steps)
    eps = (radius / math.sqrt(support.dim))
    eps = eps.reshape(*eps.shape, 1) if eps.dim() else eps
    zeros = torch.zeros(*y.shape[:-1], support.dim, dtype=y.real.dtype, device=y.device)
    r = zeros if start is None else eps * torch.tanh(start.to(y.real.dtype))

    def vertex(v):
        return eps * torch.where(v >= 0, 1.0, -1.0).to(v.dtype)

    for _ in range(steps):
        g = _grad_reals(logits_fn, y, labels, support, r)
        r = torch.maximum(torch.minimum(r + step_size * eps * torch.sign(g), eps), -eps).detach()
    a = vertex(r)
    b = vertex(_grad_reals(logits_fn, y, labels, support, zeros))
    la = block_ce(logits_fn, y + support.to_complex(a), labels)
    lb = block_ce(logits_fn, y + support.to_complex(b), labels)
    out = torch.where((la >= lb).unsqueeze(-1), a, b)
    return support.to_complex(out).detach()


def _minimal_flip(logits_fn: LogitsFn, y1: torch.Tensor, label: int, support: Support, M: int,
                  iters: int = 30) -> torch.Tensor:
    """Sadeghi & Larsson's per-sample step (eq. (1) of the letter, their ``fgm_attack``): for every target class
    ``c``, the direction :math:`-\\nabla_y \\mathrm{CE}(y, c)` normalised; the smallest step along it that changes
    the decision, by bisection on :math:`[0, \\|y\\|]`; returns the smallest over classes (real ``[D]``)."""
    yc = y1.expand(M, -1)
    classes = torch.arange(M, device=y1.device)
    zeros = torch.zeros(M, support.dim, dtype=y1.real.dtype, device=y1.device)
    d = -_grad_reals(logits_fn, yc, classes, support, zeros)
    d = d / (_norm(d) + 1e-12)
    lo = torch.zeros(M, dtype=d.dtype, device=d.device)
    hi = torch.full((M,), float(y1.abs().square().sum().sqrt()), dtype=d.dtype, device=d.device)
    with torch.no_grad():
        for _ in range(iters):
            mid = (lo + hi) / 2
            pred = logits_fn(yc + support.to_complex(mid[:, None] * d)).argmax(-1)
            same = pred == label
            lo = torch.where(same, mid, lo)
            hi = torch.where(same, hi, mid)
        pred_hi = logits_fn(yc + support.to_complex(hi[:, None] * d)).argmax(-1)
    hi = torch.where(pred_hi == label, torch.full_like(hi, float("inf")), hi)  # never flips along this direction
    hi[label] = float("inf")
    c = int(hi.argmin())
    if not math.isfinite(float(hi[c])):
        return torch.zeros(support.dim, dtype=d.dtype, device=d.device)
    return hi[c] * d[c]


def uap_sadeghi(logits_fn: LogitsFn, y: torch.Tensor, labels: torch.Tensor, radius, support: Support, *,
                num_classes: int, bisection_iters: int = 30) -> torch.Tensor:
    r"""Universal adversarial perturbation, Sadeghi & Larsson (2019) Alg. 1.

    ``y`` complex ``[S, N]``: the received samples (noise included, no attack) the attacker iterates over;
    ``labels`` ``[S]``; ``radius``: the scalar budget :math:`\sqrt{\mathrm{PSR}\,\overline{\|x\|^2}}`. For each
    sample in turn: if the receiver still decides correctly at :math:`y_s + u`, find the minimal flipping
    perturbation :math:`\delta` (:func:`_minimal_flip`) and update :math:`u \leftarrow P(u + \delta)`, the
    projection onto the L2 ball of the budget. The result is rescaled to the budget exactly (as the authors
    evaluate it). Returns complex ``[N]`` (detached). Deterministic given its inputs.
    """
    u = torch.zeros(support.dim, dtype=y.real.dtype, device=y.device)
    rad = float(radius)
    for s in range(y.shape[0]):
        ys = y[s:s + 1]
        with torch.no_grad():
            pred = int(logits_fn(ys + support.to_complex(u)).argmax(-1))
        if pred != int(labels[s]):
            continue
        delta = _minimal_flip(logits_fn, ys + support.to_complex(u), int(labels[s]), support, num_classes,
                              bisection_iters)
        u = u + delta
        n = float(u.norm())
        if n > rad:
            u = u * (rad / n)
    if float(u.norm()) == 0.0:  # nothing to learn from (every sample wrong): fall back to the first gradient
        u = _grad_reals(logits_fn, y, labels, support, torch.zeros(y.shape[0], support.dim, dtype=u.dtype,
                                                                   device=u.device)).sum(0)
    return support.to_complex(scale_to_budget(u[None], torch.as_tensor(rad, dtype=u.dtype))[0]).detach()


def uap_pgd(logits_fn: LogitsFn, y: torch.Tensor, labels: torch.Tensor, radius, support: Support, *,
            steps: int = 50, step_size: float = 0.1, start: torch.Tensor | None = None) -> torch.Tensor:
    r"""One perturbation ``u`` maximising the mean CE over the samples ``y`` ``[S, N]`` by projected gradient
    ascent on the sphere :math:`\|u\| = r` (scalar ``radius``), started at the FGM direction of the mean loss,
    or at ``start`` (real ``[D]``, e.g. normal draws) when given. Returns complex ``[N]`` (detached);
    ``vmap``-safe (no data-dependent control flow)."""
    steps = check_positive_int("steps", steps)
    rad = torch.as_tensor(radius, dtype=y.real.dtype, device=y.device)

    def grad_u(u):
        return _grad_reals(logits_fn, y, labels, support, u.expand(y.shape[0], -1)).sum(0)

    if start is None:
        start = grad_u(torch.zeros(support.dim, dtype=y.real.dtype, device=y.device))
    u = scale_to_budget(start.to(y.real.dtype)[None], rad)[0]
    for _ in range(steps):
        g = grad_u(u)
        u = scale_to_budget((u + step_size * rad * g / (g.norm() + 1e-10))[None], rad)[0].detach()
    return support.to_complex(u).detach()


def cyclic_shift(u: torch.Tensor, support: Support, shifts: torch.Tensor) -> torch.Tensor:
    """A universal perturbation ``u`` (complex ``[N]``) rolled by ``shifts`` (int64 ``[B]``) real support
    dimensions per block -> complex ``[B, N]`` (the unsynchronised black-box attacker). Norm preserved."""
    r = support.to_reals(u)  # [D]
    D = support.dim
    idx = (torch.arange(D, device=r.device)[None, :] - shifts[:, None]) % D
    return support.to_complex(r[idx])


def perturb(kind: str, *, logits_fn: LogitsFn, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor, psr_db,
            support: Support, generator: torch.Generator | None = None, draws: torch.Tensor | None = None,
            universal: torch.Tensor | None = None, steps: int = 10, step_size: float = 0.25) -> torch.Tensor:
    """The perturbation ``[B, N]`` of attack ``kind`` (:data:`ATTACKS`) against the received blocks ``y`` (noise
    included) of the transmitted ``x``. Random parts come from ``draws`` (``[B, D]`` normals for the PGD starts
    and the Gaussian jammer, ``[B, 2]`` uniforms for the tone, int64 ``[B]`` shifts for ``uap-shifted``) or else
    from ``generator``; ``universal``: the crafted universal perturbation (complex ``[N]``) for ``uap`` and
    ``uap-shifted``. ``pgd-*`` use a random start when ``draws`` or ``generator`` is given."""
    B = x.shape[0]
    if kind in ("fgm", "pgd-l2", "pgd-linf"):
        rad = budget(x, psr_db)
        if kind == "fgm":
            return fgm(logits_fn, y, labels, rad, support)
        start = draws
        if start is None and generator is not None:
            start = random_unit((B, support.dim), generator, device=x.device, dtype=x.real.dtype)
        fn = pgd_l2 if kind == "pgd-l2" else pgd_linf
        return fn(logits_fn, y, labels, rad, support, steps=steps, step_size=step_size, start=start)
    if kind in UNIVERSAL:
        if universal is None:
            raise ConfigError("attack", f"{kind} needs a crafted universal perturbation")
        if kind == "uap":
            return universal.expand(B, -1)
        shifts = draws if draws is not None else torch.randint(0, support.dim, (B,), generator=generator,
                                                               device=x.device)
        return cyclic_shift(universal, support, shifts)
    if kind == "jam-gauss":
        return jam_gauss(x, psr_db, support, generator=generator, draws=draws)
    if kind == "jam-tone":
        return jam_tone(x, psr_db, support, generator=generator, draws=draws)
    raise ConfigError("attack", f"unknown attack {kind!r}; allowed: {', '.join(ATTACKS)}")


def jam_gauss(x: torch.Tensor, psr_db, support: Support, *, generator: torch.Generator | None = None,
              draws: torch.Tensor | None = None) -> torch.Tensor:
    """White Gaussian jamming over the support, scaled per block to the exact budget (as Sadeghi & Larsson's
    jammer): complex ``[B, N]``. ``draws``: pre-drawn standard normals ``[B, D]`` (else from ``generator``)."""
    if draws is None:
        draws = random_unit((x.shape[0], support.dim), generator, device=x.device, dtype=x.real.dtype)
    return support.to_complex(scale_to_budget(draws.to(x.real.dtype), budget(x, psr_db)))


def jam_tone(x: torch.Tensor, psr_db, support: Support, *, generator: torch.Generator | None = None,
             draws: torch.Tensor | None = None) -> torch.Tensor:
    r"""Tone jammer: :math:`p_d = \cos(2\pi f d + \varphi)` over the ``D`` real support dims with
    :math:`f \sim U[0, 1/2)` cycles per dimension and :math:`\varphi \sim U[0, 2\pi)` per block, scaled per block
    to the exact budget. ``draws``: pre-drawn uniforms ``[B, 2]`` (else from ``generator``). Complex ``[B, N]``."""
    if draws is None:
        draws = torch.rand((x.shape[0], 2), generator=generator, device=x.device, dtype=x.real.dtype)
    draws = draws.to(x.real.dtype)
    d = torch.arange(support.dim, device=x.device, dtype=x.real.dtype)
    f, phi = 0.5 * draws[:, :1], 2 * math.pi * draws[:, 1:]
    tone = torch.cos(2 * math.pi * f * d + phi)
    return support.to_complex(scale_to_budget(tone, budget(x, psr_db)))


class SegmentAttack:
    """An attacker switched on for a drift-run segment: ``kind`` (:data:`ATTACKS`) at ``psr_db`` [dB] per block.

    Use :meth:`make`: ``kind = "none"`` or ``psr_db = -inf`` mean *no attacker* and give ``None`` (the segment is
    then exactly a segment without an attack). Other non-finite PSRs, and PSRs outside ``[-300, 300]`` dB
    (:func:`~metacomm._validation.check_db`), raise :class:`~metacomm.ConfigError`."""

    def __init__(self, kind: str, psr_db: float, *, steps: int = 10, step_size: float = 0.25,
                 uap_steps: int = 20):
        if kind not in ATTACKS:
            raise ConfigError("kind", f"unknown attack {kind!r}; allowed: none, {', '.join(ATTACKS)}")
        self.kind = kind
        self.psr_db = check_db("psr_db", psr_db)
        self.steps = check_positive_int("steps", steps, maximum=MAX_WORK)
        self.step_size = check_positive("step_size", step_size)
        self.uap_steps = check_positive_int("uap_steps", uap_steps, maximum=MAX_WORK)

    @classmethod
    def make(cls, kind: str, psr_db: float, **kw) -> SegmentAttack | None:
        if kind == "none":
            return None
        if isinstance(psr_db, (int, float)) and not isinstance(psr_db, bool) and psr_db == -math.inf:
            return None
        return cls(kind, psr_db, **kw)

    def __repr__(self) -> str:
        return f"SegmentAttack({self.kind!r}, psr_db={self.psr_db:g})"


def attack_frame(attack: SegmentAttack, logits_fn: LogitsFn | None, blocks: list[tuple], generator: torch.Generator
                 ) -> list[torch.Tensor]:
    """Perturb one drift frame's received blocks. ``blocks``: ``(x [B, P, n], y [B, P, n_rx], msg [B, P])`` groups
    (pilots, payload); returns the attacked ``y`` of each group. Budgets are per block, relative to the transmitted
    block ``x``; the support is every received real dimension. White-box kinds are crafted against ``logits_fn``
    (the run's deployed codec); the universal kinds craft one perturbation per frame on the last group (the
    payload) with :func:`uap_pgd` and apply it to every block (``uap-shifted``: cyclically shifted per block).
    Every draw comes from ``generator`` (a generator of its own, so that the run's other draws are unchanged)."""
    n_rx = blocks[0][1].shape[-1]
    sup = Support.full(n_rx, device=blocks[0][1].device)
    if attack.kind not in JAMMERS and logits_fn is None:
        raise ConfigError("attack", f"{attack.kind} is a white-box attack: the run's codec has no block_logits")
    universal = None
    if attack.kind in UNIVERSAL:
        x, y, m = (t.reshape(-1, t.shape[-1]) if t.dim() == 3 else t.reshape(-1) for t in blocks[-1])
        universal = uap_pgd(logits_fn, y, m, budget(x, attack.psr_db, universal=True), sup, steps=attack.uap_steps)
    out = []
    for x, y, m in blocks:
        B, P = m.shape
        xf, yf, mf = x.reshape(B * P, -1), y.reshape(B * P, -1), m.reshape(-1)
        p = perturb(attack.kind, logits_fn=logits_fn, x=xf, y=yf, labels=mf, psr_db=attack.psr_db, support=sup,
                    generator=generator, universal=universal, steps=attack.steps, step_size=attack.step_size)
        out.append((yf + p).reshape(y.shape))
    return out
