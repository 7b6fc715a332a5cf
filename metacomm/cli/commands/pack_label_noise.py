"""``metacomm pack label-noise``: few-shot adaptation from noisy and decision-directed labels.

    metacomm pack label-noise --base CKPT --noise symmetric,pair,decision-directed,bursty,contaminated-pilots \\
        --rate 0,0.1,0.2,0.4,0.6 --method naive,pilots-only,l2rw,mwnet,robust-init,gated,gce --out DIR

``--base``: a ``metacomm meta-train --scenario fading-ae`` checkpoint. Writes ``DIR/results.json`` (one record per
method x noise x rate with ``bler``, ``bler_ci``, ``block_errors``, ``blocks``, ``gap_to_oracle``, ``gap_closed``,
``weight_auroc``, ``held_out``), ``DIR/bler_vs_rate.png`` and prints a summary table. See
:mod:`metacomm.experiments.label_noise`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from metacomm.cli import _names

if TYPE_CHECKING:
    from metacomm.experiments.label_noise import LabelNoiseConfig

HELP = {
    "noise": "comma list of symmetric, pair, decision-directed, bursty, contaminated-pilots",
    "rate": "comma list of label-noise rates in [0, 1]",
    "method": "comma list of naive, pilots-only, l2rw, mwnet, robust-init, gated, gce, meta-init",
    "pilots": "clean pilot blocks per support set", "data": "noisy-labelled payload blocks per support set",
    "steps": "SGD adaptation steps", "lr": "SGD adaptation rate", "test_channels": "new test channels",
    "test_blocks": "test blocks per channel", "meta_steps": "outer steps of mwnet and robust-init meta-training",
    "meta_batch": "tasks per outer step", "outer_lr": "outer Adam rate of robust-init",
    "weight_lr": "outer Adam rate of the Meta-Weight-Net MLP",
    "mwnet_input": "Meta-Weight-Net input: lookahead (loss after a virtual plain step) or loss (Shu et al.)",
    "train_rate_max": "largest meta-training noise rate (higher rates are held out)",
    "base_steps": "MAML steps when --base scratch", "ebno_db": "Eb/N0 per information bit [dB] (default: the base's)",
    "seed": "seed of every draw", "device": "torch device",
}


#: the one-line help in metacomm --help (read without building this parser)
COMMAND_HELP = "few-shot adaptation from noisy / decision-directed labels"


def add_parser(subparsers, name="label-noise"):
    p = subparsers.add_parser(name, help=COMMAND_HELP,
                              description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="fading-ae meta-train checkpoint (or 'scratch')")
    p.add_argument("--out", required=True, help="output directory")
    for f in _names.dataclass_fields("metacomm.experiments.label_noise", "LabelNoiseConfig"):  # read from the source: no torch here
        if f.name in ("base", "out", "plot", "quiet"):
            continue
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None, metavar="V",
                       help=f"{HELP.get(f.name, f.name)} (default {f.default})")
    p.add_argument("--no-plot", dest="plot", action="store_false", default=True, help="no figure")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no table")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from metacomm.experiments.label_noise import LabelNoiseConfig

    kw = {f.name: getattr(args, f.name) for f in dataclasses.fields(LabelNoiseConfig)
          if getattr(args, f.name, None) is not None}
    for f in dataclasses.fields(LabelNoiseConfig):  # numbers typed on the command line
        v = kw.get(f.name)
        if isinstance(v, str) and isinstance(f.default, (int, float)) and not isinstance(f.default, bool):
            kw[f.name] = _number(f.name, v, type(f.default))
    return execute(LabelNoiseConfig(**kw))


def _number(field: str, text: str, kind):
    from metacomm._validation import ConfigError
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(field, f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def execute(cfg: LabelNoiseConfig) -> int:
    """Run the sweep of ``cfg`` and print where the results are (shared with ``metacomm run``)."""
    from metacomm.experiments.label_noise import run_label_noise

    run_label_noise(cfg)
    print(f"pack label-noise: results -> {cfg.out}/results.json")
    return 0
