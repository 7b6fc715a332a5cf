"""``metacomm pack adversarial``: attacks and defences on a learned codec, robustness to unseen attacks.

    metacomm pack adversarial --base CKPT --attack fgm,pgd-l2,pgd-linf,uap,uap-shifted,jam-gauss,jam-tone \\
        --psr-db=-20:-2:2 --ebno-db 8,10 --defence none,adv-train,augment,meta-adv --out DIR

``--base``: a codec checkpoint of ``metacomm train`` (e.g. the AE(7,4)) or a ``meta-train`` checkpoint. Writes
``DIR/results.json`` (one record per attack x defence x PSR x Eb/N0 with ``bler``, ``bler_ci``, ``block_errors``,
``blocks``, ``jam_ratio``; ``clean`` costs; the ``uar`` table), ``DIR/bler_vs_psr_<Eb/N0>dB.png`` and prints a
summary table. See :mod:`metacomm.experiments.adversarial`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from metacomm.cli import _names
from metacomm.cli._text import RANGE_HELP

if TYPE_CHECKING:
    from metacomm.experiments.adversarial import AdversarialConfig

HELP = {
    "attack": "comma list of fgm, pgd-l2, pgd-linf, uap, uap-shifted, jam-gauss, jam-tone",
    "psr_db": "perturbation-to-signal ratio ||p||^2/||x||^2 per block [dB]: START:STOP:STEP or a comma list "
              f"(write --psr-db=-20:-2:2 for negative values; {RANGE_HELP})",
    "ebno_db": f"Eb/N0 per information bit [dB]: START:STOP:STEP or a comma list ({RANGE_HELP})",
    "defence": "comma list of none, adv-train, augment, meta-adv, ae-ml, hamming-ml",
    "test_blocks": "blocks per evaluated point", "pgd_steps": "PGD iterations at evaluation",
    "pgd_step_size": "PGD step relative to the radius", "uap_samples": "received blocks Alg. 1 iterates over",
    "substitute_hidden": "width of the black-box attacker's substitute receiver (2 hidden layers)",
    "substitute_steps": "training steps of the substitute receiver",
    "train_ebno_db": "Eb/N0 [dB] at which the defences are trained",
    "train_psr_db": "PSRs [dB] of augment and meta-adv training", "adv_psr_db": "the one PSR [dB] of adv-train",
    "train_steps": "Adam steps of adv-train and augment", "train_batch": "blocks per training step",
    "train_pgd_steps": "attack iterations while training", "lr": "Adam rate (defences, outer loop)",
    "meta_steps": "MAML steps of meta-adv (0: use --base as the meta-adv initialisation)",
    "meta_batch": "attacker tasks per meta-step", "inner_lr": "meta-adv inner / deployment SGD rate",
    "pilots": "clean pilot blocks of the meta-adv adaptation step",
    "uar_psr_db": "PSR levels [dB] of the UAR table, or auto (six per family, calibrated on the sweep)", "uar_steps": "training steps of each ATA model",
    "seed": "seed of the defences' training and the evaluation draws", "device": "torch device",
}


#: the one-line help in metacomm --help (read without building this parser)
COMMAND_HELP = "adversarial attacks and defences on a learned codec"


def add_parser(subparsers, name="adversarial"):
    p = subparsers.add_parser(name, help=COMMAND_HELP,
                              description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="codec checkpoint (metacomm train) or meta-train checkpoint")
    p.add_argument("--out", required=True, help="output directory")
    for f in _names.dataclass_fields("metacomm.experiments.adversarial", "AdversarialConfig"):  # read from the source: no torch here
        if f.name in ("base", "out", "uar", "quiet"):
            continue
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None, metavar="V",
                       help=f"{HELP.get(f.name, f.name)} (default {f.default})")
    p.add_argument("--no-uar", dest="uar", action="store_false", default=True,
                   help="skip the UAR table (it trains one model per attack family and level)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no table")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from metacomm.experiments.adversarial import AdversarialConfig

    kw = {f.name: getattr(args, f.name) for f in dataclasses.fields(AdversarialConfig)
          if getattr(args, f.name, None) is not None}
    for f in dataclasses.fields(AdversarialConfig):  # numbers typed on the command line
        v = kw.get(f.name)
        if isinstance(v, str) and isinstance(f.default, (int, float)) and not isinstance(f.default, bool):
            kw[f.name] = _number(f.name, v, type(f.default))
    return execute(AdversarialConfig(**kw))


def _number(field: str, text: str, kind):
    from metacomm._validation import ConfigError
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(field, f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def execute(cfg: AdversarialConfig) -> int:
    """Run the sweep of ``cfg`` and print where the results are (shared with ``metacomm run``)."""
    from metacomm.experiments.adversarial import run_adversarial

    run_adversarial(cfg)
    print(f"pack adversarial: results -> {cfg.out}/results.json")
    return 0
