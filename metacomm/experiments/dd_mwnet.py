r"""Meta-train the ``dd-mwnet`` weighting (drift scheme of the label-noise pack) on a drift scenario's own frames.

The scheme (:mod:`metacomm.drift.schemes.label_noise`) per frame and link: the ``warm`` pilot step, then the decisions
:math:`\hat m` of the payload, then one SGD step at the run's ``lr`` from the warm fast weights :math:`\phi` on
pilots (weight 1) + decisions weighted by the net :math:`w_\psi` (:class:`DecisionWeightingRule`,
:func:`~metacomm.drift.schemes.label_noise.dd_update`). Meta-training plays the scenario frame by frame with that very
scheme (a :class:`~metacomm.drift.run.DriftRun` on training seeds, disjoint from the evaluation run's seed) and
at every frame takes one outer Adam step on the net's parameters :math:`\psi` to lower

.. math:: \mathcal L(\psi) = \frac{1}{B N}\sum_{b, d} \mathrm{CE}\big(f_{\phi'_b(\psi)}(y_{b,d}),\, m_{b,d}\big),
          \qquad \phi'_b(\psi) = \phi_b - \alpha \nabla_\phi L_{\text{dd}}(\phi_b; \psi),

the cross-entropy of the adapted codec on the frame's payload with the *true* labels :math:`m` (the simulator knows
them): the payload is what the scheme decides with :math:`\phi'`. Second order (``torch.func.grad`` of a vmapped
``dd_update`` that itself takes ``torch.func.grad``); the warm start :math:`\phi_b` is the scheme's own trajectory
under the current net, detached (truncated at one frame). ``python -m metacomm.experiments.dd_mwnet --help``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

from metacomm.adaptation.example_weighting import DD_FEATURES, DecisionWeightingRule, DecisionWeightNet
from metacomm.adaptation.functional import call
from metacomm.drift.schemes.label_noise import (
    DD_MWNET_KIND,
    DecisionDirectedScheme,
    codec_fingerprint,
    dd_update,
)

__all__ = ["train_dd_mwnet", "weight_auroc", "main"]


class _Trainer(DecisionDirectedScheme):
    r"""``dd-mwnet`` that takes one outer step on its rule's meta-parameters every frame (module docstring).

    Why this outer loop is not :class:`~metacomm.adaptation.trainer.MetaTrainer`'s: a MetaTrainer step draws a
    batch of independent tasks from a sampler and adapts every task from the initialisation :math:`\theta` (the
    model's parameters). Here the "task" of an outer step is the next frame of a drift run, played online, one frame
    per outer step: its support batch holds the scheme's own payload decisions, made with fast weights that the net
    (as updated by the previous outer steps) produced on the previous frames, and the inner step starts from each
    link's warm fast weights :math:`\phi_b` (the scheme's trajectory), not from :math:`\theta`. Neither a sampler
    (tasks independent of the training state) nor adaptation from :math:`\theta` can express that; the step is
    taken inside the run (:meth:`meta_update`, before the frame's own decision-directed step) so the run continues
    on-policy with the updated net.
    """

    def __init__(self, rule: DecisionWeightingRule, outer_lr: float):
        super().__init__("dd-mwnet", weighting="mwnet", rule=rule)
        self.opt = torch.optim.Adam(list(rule.meta_params.values()), lr=outer_lr)
        self.losses: list[float] = []

    def meta_update(self, batch, sig):
        codec, rule = self.codec, self.rule
        model, shared = codec.codec, codec._shared()
        fast = {n: t.detach() for n, t in codec.fast.items()}
        keys = list(rule.meta_params)

        def outer(mp):
            def one(p, b, msg_d):
                new = dd_update(model, shared, rule, p, b, mp)
                return F.cross_entropy(call(model, {**shared, **new}, lambda m, y: m.decoder.block_logits(y),
                                            b["y_d"]), msg_d)
            return torch.vmap(one)(fast, batch, sig.msg_d).mean()

        mp = {k: t.detach() for k, t in rule.meta_params.items()}
        g, loss = torch.func.grad_and_value(outer)(mp)
        for k in keys:
            rule.meta_params[k].grad = g[k]
        self.opt.step()
        self.losses.append(float(loss))


def train_dd_mwnet(scenario: str, pilots: int, out: str, *, checkpoint: str | None = None,
                   seeds=(101, 102, 103), frames: int = 150, links: int = 8, payload: int = 64,
                   outer_lr: float = 0.01, hidden: int = 16, net_seed: int = 0, lr: float | None = None,
                   quiet: bool = False) -> dict:
    """Meta-train a ``dd-mwnet`` net for drift ``scenario`` (built-in name or TOML) with ``pilots`` pilots per
    frame: one run of ``frames`` frames x ``links`` links per training seed in ``seeds`` (channel seed; keep them
    apart from the evaluation run's seed, the scenario's by default), one outer Adam step at ``outer_lr`` per frame.
    ``checkpoint``: the drift codec (default: what ``metacomm drift`` uses for this scenario and pilot count; one
    whose inner rule is not plain SGD is refused, ConfigError ``checkpoint``: the scheme's step is SGD at ``lr``);
    ``lr``: the inner rate (default: the codec's). Writes ``out`` (``weights_only``) and returns its payload.
    The outer loop is the run itself (not :class:`~metacomm.adaptation.trainer.MetaTrainer`; see ``_Trainer``)."""
    from metacomm.artefacts import save_checkpoint
    from metacomm.drift.run import DriftRun, DriftRunConfig
    from metacomm.experiments.drift import DEFAULT_CHECKPOINT, load_drift_codec, shipped_tracker
    from metacomm.scenarios.drift_scenarios import load_scenario

    sc = load_scenario(scenario)
    ck_path = checkpoint or shipped_tracker(scenario, pilots) or DEFAULT_CHECKPOINT
    model, mcfg, _ = load_drift_codec(ck_path)
    lr = mcfg.inner_lr if lr is None else float(lr)
    net = DecisionWeightNet(hidden, generator=torch.Generator().manual_seed(int(net_seed)))
    rule = DecisionWeightingRule(lr, "mwnet", net=net)
    trainer = _Trainer(rule, outer_lr)
    t_cpu, t_wall = time.process_time(), time.perf_counter()
    history = []
    for seed in seeds:
        run = DriftRun(sc, model, DriftRunConfig(frames=frames, pilots=pilots, links=links, payload=payload,
                                                 seed=int(seed), lr=lr, adapt=mcfg.adapt, inner_loss=mcfg.inner_loss,
                                                 ), schemes=[trainer], rule=mcfg.rule)
        errs = blocks = 0
        while not run.done:
            rec, _ = run.step()
            errs += rec["schemes"]["dd-mwnet"]["block_errors"]
            blocks += rec["schemes"]["dd-mwnet"]["blocks"]
        n = len(trainer.losses)
        history.append({"seed": int(seed), "bler": errs / blocks,
                        "outer_loss": sum(trainer.losses[n - frames:]) / frames})
        if not quiet:
            print(f"dd-mwnet {sc.name} p{pilots} seed {seed}: BLER {errs / blocks:.4f} (on-policy, while training), "
                  f"outer CE {history[-1]['outer_loss']:.4f}", file=sys.stderr)
    payload_ck = {
        "net": {k: t.detach().cpu().clone() for k, t in rule.meta_params.items()}, "hidden": int(hidden),
        "features": list(DD_FEATURES), "lr": lr, "scenario": sc.name, "pilots": int(pilots),
        "codec_checkpoint": os.path.basename(ck_path), "codec_fingerprint": codec_fingerprint(model),
        "training": {"seeds": [int(s) for s in seeds], "frames": frames, "links": links, "payload": payload,
                     "outer_lr": outer_lr, "net_seed": int(net_seed), "history": history,
                     "cpu_s": time.process_time() - t_cpu, "wall_s": time.perf_counter() - t_wall,
                     "threads": torch.get_num_threads()},
    }
    save_checkpoint(out, payload_ck, kind=DD_MWNET_KIND, field="out")
    return payload_ck


def weight_auroc(scenario: str, pilots: int, *, net_path: str | None = None, frames: int = 150, links: int = 8,
                 payload: int = 64, seed: int | None = None, gate: float = 0.9) -> dict:
    """Play ``dd-mwnet`` (the shipped net, or ``net_path``) on ``frames`` frames (``seed``: channel seed, default
    the scenario's = the evaluation draws of ``metacomm drift``) and score its payload weights against the truth:
    AUROC of right vs wrong decisions (right = positive, :func:`~metacomm.adaptation.label_noise.auroc`) for the
    learned weights, the confidence gate's 0/1 weights (``>= gate``) and the raw softmax confidence, all on the
    *same* decisions (dd-mwnet's). Returns ``{"mwnet", "gate", "confidence", "wrong_rate", "decisions"}``."""
    from metacomm.adaptation.label_noise import auroc
    from metacomm.drift.run import DriftRun, DriftRunConfig
    from metacomm.experiments.drift import DEFAULT_CHECKPOINT, load_drift_codec, shipped_tracker
    from metacomm.scenarios.drift_scenarios import load_scenario

    sc = load_scenario(scenario)
    model, mcfg, _ = load_drift_codec(shipped_tracker(scenario, pilots) or DEFAULT_CHECKPOINT)
    s = DecisionDirectedScheme("dd-mwnet", weighting="mwnet", net_path=net_path)
    run = DriftRun(sc, model, DriftRunConfig(frames=frames, pilots=pilots, links=links, payload=payload,
                                             seed=sc.seed if seed is None else int(seed), lr=mcfg.inner_lr,
                                             adapt=mcfg.adapt, inner_loss=mcfg.inner_loss), schemes=[s],
                   rule=mcfg.rule)
    w, c, right = [], [], []
    while not run.done:
        _, sig = run.step()
        w.append(s.last_weights.reshape(-1))
        c.append(s.last_confidence.reshape(-1))
        right.append((s.last_decisions == sig.msg_d).reshape(-1))
    w, c, right = torch.cat(w), torch.cat(c), torch.cat(right)
    return {"mwnet": auroc(w, right), "gate": auroc((c >= gate).double(), right), "confidence": auroc(c, right),
            "wrong_rate": float((~right).double().mean()), "decisions": int(right.numel())}


def main(argv=None) -> int:
    from metacomm._validation import ConfigError
    ap = argparse.ArgumentParser(prog="python -m metacomm.experiments.dd_mwnet",
                                 description="Meta-train the dd-mwnet decision weighting on a drift scenario's own "
                                             "frame sequences (true payload labels as the outer loss).")
    ap.add_argument("--scenario", required=True, help="built-in drift scenario name or a .toml file")
    ap.add_argument("--pilots", type=int, required=True, help="pilot messages per link and frame")
    ap.add_argument("--out", required=True, help="output checkpoint (.pt); metacomm drift --schemes dd-mwnet picks "
                                                 "metacomm/checkpoints/dd_mwnet_<scenario>_p<pilots>.pt")
    ap.add_argument("--checkpoint", default=None, help="drift codec (default: the one metacomm drift uses)")
    ap.add_argument("--seeds", default="101,102,103", help="training channel seeds, e.g. 101,102,103 or 101:111 (default 101,102,103;"
                                                           " keep them apart from the evaluation seed)")
    ap.add_argument("--frames", type=int, default=150, help="frames per training seed (default 150)")
    ap.add_argument("--links", type=int, default=8, help="links per run (default 8)")
    ap.add_argument("--outer-lr", type=float, default=0.01, help="outer Adam rate (default 0.01)")
    ap.add_argument("--hidden", type=int, default=16, help="hidden units of the net (default 16)")
    ap.add_argument("--net-seed", type=int, default=0, help="seed of the net's initialisation (default 0)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from metacomm.experiments.drift import parse_seeds
    try:
        seeds = parse_seeds(a.seeds, "--seeds")
        ck = train_dd_mwnet(a.scenario, a.pilots, a.out, checkpoint=a.checkpoint, seeds=seeds, frames=a.frames,
                            links=a.links, outer_lr=a.outer_lr, hidden=a.hidden, net_seed=a.net_seed,
                            quiet=a.quiet)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"dd-mwnet -> {a.out} (CPU {ck['training']['cpu_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
