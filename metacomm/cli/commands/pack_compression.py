"""``metacomm pack compression``: quantised and pruned codecs that still adapt few-shot (PTQ, QAT, MAML-STE,
MetaQuant) against the float32 codec, pilot-LS + ML and the genie.

    metacomm pack compression --base CKPT --bits 8,6,4,3,2,1 --sparsity 0,0.5,0.75 \\
        --method ptq,qat,maml-ste,metaquant --out DIR

``--base`` is a ``fading-ae`` meta-train checkpoint; qat, maml-ste and metaquant are meta-trained inside the run
from its weights (``--meta-steps``). Writes ``DIR/results.json`` (one record per method x bits x sparsity x steps x
Eb/N0 and per held-out setting: BLER with a Clopper-Pearson interval, model bytes, dB loss at BLER 1e-2 / 1e-3 vs
float32), ``DIR/bler_vs_bits.png``, ``DIR/db_loss_vs_bytes.png`` and ``DIR/codecs.pt``; prints a summary table.
Nothing is written until the run has finished; ``results.json`` and ``codecs.pt`` then record the same run id and
the codecs' SHA-256, and ``codecs.pt`` stays marked unfinished until the results are written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metacomm.cli import _names

if TYPE_CHECKING:
    from metacomm.experiments.compression import CompressionConfig



#: the one-line help in metacomm --help (read without building this parser)
COMMAND_HELP = "quantised / pruned codecs that still adapt (PTQ, QAT, MAML-STE, MetaQuant)"


def add_parser(subparsers, name):
    p = subparsers.add_parser(name, help=COMMAND_HELP,
                              description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="fading-ae meta-train checkpoint (metacomm meta-train --scenario "
                                                 "fading-ae --out CKPT)")
    p.add_argument("--bits", default="8,6,4,3,2,1", help="weight bit-widths, comma list of integers 1-16 "
                                                         "(1 = sign x per-row mean |w|)")
    p.add_argument("--sparsity", default="0,0.5,0.75", help="magnitude-pruning fractions in [0, 1), comma list")
    methods = _names.listing("metacomm.experiments.compression", "METHODS")
    p.add_argument("--method", default=None, help=f"comma list of {methods} (default: all)")
    p.add_argument("--steps", default="0,1,5", help="adaptation steps at which BLER is recorded (>= 0)")
    p.add_argument("--pilots", type=int, default=16, help="pilot messages per adaptation step")
    p.add_argument("--ebno-db", default="10,15,20,25",
                   help="Eb/N0 grid in dB (per information bit) of the BLER curves the dB losses interpolate on")
    p.add_argument("--plot-ebno-db", type=float, default=15.0,
                   help="Eb/N0 [dB] of the BLER-vs-bits plot, the summary table and the genie")
    p.add_argument("--test-channels", type=int, default=None, help="test channels (default: the scenario's 20)")
    p.add_argument("--test-blocks", type=int, default=2000, help="test messages per channel and point")
    p.add_argument("--train-bits", default="8,6,4", help="bit-widths of the meta-training tasks (comma list 1-16)")
    p.add_argument("--train-sparsity", default="0",
                   help="pruning fractions the meta-training tasks draw from (comma list in [0, 1); default 0)")
    p.add_argument("--meta-steps", type=int, default=2000,
                   help="in-run meta-training steps of qat / maml-ste / metaquant from the base weights (0: none)")
    p.add_argument("--meta-batch", type=int, default=20, help="tasks per meta-step")
    p.add_argument("--outer-lr", type=float, default=1e-3, help="outer Adam rate of the in-run meta-training")
    p.add_argument("--metaquant-hidden", type=int, default=8, help="hidden width of MetaQuant's meta-network")
    p.add_argument("--quantize", default="all", help="quantised weights: all (encoder + decoder) or decoder")
    p.add_argument("--adc-bits", default="1,2,3,4",
                   help="held-out receiver-ADC bit-widths on Re/Im of y (comma list 1-16; empty: none)")
    p.add_argument("--adc-clip", type=float, default=2.0,
                   help="ADC clipping range (amplitude, Es = 1 per complex use: 2.0 is ~2.8 sigma per real dim)")
    p.add_argument("--heldout-channel", default="exp-pdp-6db",
                   help="unseen channel family: exp-pdp-6db, 2-tap or none")
    p.add_argument("--heldout-at-bits", default="8,4", help="bit-widths of the ADC / channel held-out evaluations")
    p.add_argument("--genie-steps", type=int, default=2000, help="training steps of the genie per channel (0: skip)")
    p.add_argument("--adam-lr", type=float, default=1e-3, help="Adam rate of adaptation steps >= 2")
    p.add_argument("--seed", type=int, default=0, help="seed of pilots, test data and the meta-training streams")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from metacomm.experiments.compression import CompressionConfig

    keys = ("base", "out", "bits", "sparsity", "method", "steps", "pilots", "ebno_db", "plot_ebno_db",
            "test_channels", "test_blocks", "train_bits", "train_sparsity", "meta_steps", "meta_batch", "outer_lr", "metaquant_hidden",
            "quantize", "adc_bits", "adc_clip", "heldout_channel", "heldout_at_bits", "genie_steps", "adam_lr", "seed",
            "device", "quiet")
    return execute(CompressionConfig(**{k: getattr(args, k) for k in keys
                                        if not (k == "method" and args.method is None)}))


def execute(cfg: CompressionConfig) -> int:
    """Run the pack of ``cfg`` and print where the results are (shared with ``metacomm run``)."""
    from metacomm.experiments.compression import run_compression

    res = run_compression(cfg)
    print(f"pack compression: results -> {cfg.out}/results.json, codecs -> {cfg.out}/codecs.pt (run "
          f"{res['run_id']})")
    return 0
