"""A defended adaptive drift scheme, to run side by side with the undefended ones when a scenario segment switches an
attacker on (``[segment.attack]``, :mod:`metacomm.channels.attacks`).

``meta-adv``: the ``meta`` policy (every frame, adapt each link's copy of the meta-init on the frame's pilots) with
*adversarial pilot augmentation*: the received pilots are used twice, as received and with a PGD-L2 perturbation at
PSR :attr:`AdversarialPilotScheme.psr_db` (||p||^2/||x||^2 per pilot block, dB) crafted against the meta-init's
receiver, so that the fast weights are fitted to attacked received blocks too (adversarial training inside the
online adaptation). The attack's random start comes from a generator of the scheme's own, seeded by the frame index
(the run's draws are untouched; the same frame gives the same augmentation).
"""

from __future__ import annotations

import torch

from metacomm._validation import check_finite, check_positive_int
from metacomm.channels import attacks as A
from metacomm.drift.protocol import Decision, FrameSignals
from metacomm.drift.registry import register_scheme
from metacomm.drift.schemes.adaptive import AdaptiveScheme

__all__ = ["AdversarialPilotScheme"]


@register_scheme("meta-adv", group="pack", policy="every-frame")
class AdversarialPilotScheme(AdaptiveScheme):
    """``meta`` + adversarial pilot augmentation (module docstring). Knows only what ``meta`` knows (the pilots)."""

    kind = "adaptive"

    def __init__(self, name: str, *, policy: str = "every-frame", warm_start: bool = False, psr_db: float = -10.0,
                 pgd_steps: int = 5):
        super().__init__(name, policy=policy, warm_start=warm_start)
        self.psr_db = check_finite("psr_db", psr_db)
        self.pgd_steps = check_positive_int("pgd_steps", pgd_steps)

    def settings(self) -> dict:
        return {**super().settings(), "psr_db": self.psr_db, "pgd_steps": self.pgd_steps}

    def decide(self, sig: FrameSignals) -> Decision:
        B, P = sig.msg_p.shape
        y = sig.y_p.reshape(B * P, -1)
        x = sig.x_p.reshape(B * P, -1)
        m = sig.msg_p.reshape(-1)
        sup = A.Support.full(y.shape[-1], device=y.device)
        g = torch.Generator(device=y.device).manual_seed(77_777 + sig.index)
        start = A.random_unit((B * P, sup.dim), g, dtype=y.real.dtype)
        p = A.pgd_l2(self.ctx.model.block_logits, y, m, A.budget(x, self.psr_db), sup, steps=self.pgd_steps,
                     start=start)
        y_aug = torch.cat([sig.y_p, (y + p).reshape(sig.y_p.shape)], dim=1)
        info = self.codec.observe(torch.cat([sig.msg_p, sig.msg_p], dim=1), y_aug, sig.no)
        return Decision(self.codec.decide_block(sig.y_d), info["latency_s"] * 1e3)
