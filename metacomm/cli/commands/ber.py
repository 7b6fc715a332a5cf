"""``metacomm ber``: Monte-Carlo BER/BLER sweep of a classical or learned link, or of a coded OFDM link
(``--link NAME --receiver R``), over Eb/N0.

Writes ``OUT/results.json`` (schema in :mod:`metacomm.sims.results`), ``OUT/results.csv`` and ``OUT/ber.png``
(BER and BLER vs Eb/N0 with confidence intervals, the closed-form curve where one exists, and any ``--compare``
results overlaid).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from metacomm._lazy import lazy_getattr
from metacomm.cli import _names
from metacomm.cli._text import RANGE_HELP
from metacomm.cli.commands._executor import add_executor_flags, executor_kwargs
from metacomm.sims.links import (  # torch-free (tests/cli/test_startup.py)
    CLASSICAL_CODECS,
    CODECS,
    DECODERS,
    LEARNED_CODECS,
    OFDM_DEFAULT_RECEIVER,
)

if TYPE_CHECKING:
    from metacomm.experiments.ber import BerConfig

__all__ = ["add_parser", "run", "parse_ebno_range", "CHANNELS"]  # noqa: F822 (lazy: __getattr__)

#: names this module exports without importing them at start-up (they pull in torch and Sionna)
_LAZY = {"parse_ebno_range": ("metacomm.experiments.ber", "parse_ebno_range"),
         "CHANNELS": ("metacomm.experiments.ber", "CHANNELS"),
         "BerConfig": ("metacomm.experiments.ber", "BerConfig"),
         "run_ber": ("metacomm.experiments.ber", "run_ber")}


def __getattr__(name: str):
    return lazy_getattr(globals(), _LAZY, name)


def _receivers() -> str:
    """``name (what it knows); ...`` from the receivers' own table (``RECEIVER_HELP``, read without importing it)."""
    try:
        table = _names.constant("metacomm.codecs.ofdm_receivers", "RECEIVER_HELP")
    except _names.StaticReadError:
        table = None
    if isinstance(table, dict) and all(isinstance(v, str) for v in table.values()):
        return "; ".join(f"{k}: {v}" for k, v in table.items())
    return _names.listing("metacomm.codecs.ofdm_receivers", "RECEIVERS")


def _receiver_names() -> str:
    from metacomm.sims.links import ofdm_receivers
    return "\n".join(ofdm_receivers())


#: the one-line help in metacomm --help (read without building this parser)
COMMAND_HELP = "Monte-Carlo BER/BLER sweep over Eb/N0 (writes results.json, results.csv, ber.png)"


def add_parser(subparsers, name: str = "ber") -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name,
        help=COMMAND_HELP,
        description="Monte-Carlo BER/BLER sweep of a link over Eb/N0. Eb/N0 is the SNR per information bit in "
        "dB; Es = 1 per complex channel use and N0 = 1/(Eb/N0 * rate) with rate = information bits per complex "
        "channel use. Each point runs batches until --target-block-errors block errors or --max-blocks blocks; "
        "the sweep stops after the first point without any block error (later points: not simulated). Writes "
        "OUT/results.json, OUT/results.csv and OUT/ber.png with 95% confidence intervals. Either --codec and "
        "--channel, or --link (a coded OFDM link: one block = one 5G LDPC codeword; Eb/N0 by the link's "
        "ebno_convention, 'data' by default: N0 = 1/(Eb/N0 * coderate * bits per symbol), pilots and guards not "
        "charged to Eb, as in Sionna's neural-receiver tutorial).",
    )
    p.add_argument("--link", default=None, metavar="NAME|FILE.toml",
                   help=f"a coded OFDM link instead of --codec/--channel: a built-in preset "
                   f"({', '.join(_names.ofdm_link_presets())}; sionna-nrx-tutorial is Sionna's neural-receiver "
                   "tutorial link, CDL-C 100 ns, 3.5 GHz, UE 10 m/s, 30 kHz x 128 subcarriers x 14 symbols, QPSK, LDPC rate 1/2 n = 2784, 1x2 "
                   "antennas) or a TOML file with the keys of metacomm.codecs.ofdm_config.OFDMLinkConfig (fft_size, "
                   "subcarrier_spacing [Hz], num_ofdm_symbols, pilot_ofdm_symbol_indices, num_guard_carriers, "
                   "bits_per_symbol, coderate, codeword_length [bits], channel, delay_spread [s], carrier_frequency "
                   "[Hz], speed [m/s], num_rx_ant, ...; missing keys take the tutorial's values)")
    p.add_argument("--receiver", default=None, metavar="NAME", action=_names.ListNames, lister=_receiver_names,
                   help=f"receiver of the --link (default {OFDM_DEFAULT_RECEIVER}): {_receivers()}; each followed "
                   "by APP demapping into the LDPC decoder")
    p.add_argument("--codec", default=None, metavar="NAME",
                   help="(required without --link) link to simulate: uncoded "
                   f"{', '.join(CLASSICAL_CODECS[:4])} (Gray, Sionna mapper); hamming74 (Hamming(7,4), BPSK); "
                   "ldpc5g (5G NR LDPC, rate 1/2, k=512 by default, QPSK); learned "
                   f"{', '.join(LEARNED_CODECS)} (needs --checkpoint). Choices: {', '.join(CODECS)}")
    p.add_argument("--decoder", default=None, metavar="NAME",
                   help=f"decoder/demapper of a classical codec: {', '.join(DECODERS)} (app = exact LLR "
                   "demapper, maxlog = max-log demapper, ml = soft ML block decoding, hard = hard-decision "
                   "syndrome decoding, bp = belief propagation); default: the codec's own default")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="checkpoint file of a learned codec (--codec ae|constellation|neural-rx), or with --link "
                        "--receiver adaptive the adaptive OFDM receiver's prior bank (default: the shipped one for "
                        "the link's grid)")
    p.add_argument("--channel", default=None, metavar="NAME",
                   help="(required without --link) channel model: "
                   f"{_names.listing('metacomm.experiments.ber', 'CHANNELS')} (awgn: additive noise of N0 per complex sample; rayleigh/rician: flat block fading, one gain per block (receiver "
                   "CSI: see --csi); multipath: L-tap block fading with exponential power-delay profile; tdl-*: "
                   "3GPP TR 38.901 TDL profiles)")
    p.add_argument("--csi", default="ls", metavar="MODE",
                   help="receiver channel knowledge on fading channels: ls (least-squares estimate from "
                   "--num-pilots QPSK pilot symbols per block; pilot energy not counted in Eb) or perfect (genie "
                   "CSI) (default ls; ignored for awgn)")
    p.add_argument("--num-pilots", default=None, metavar="N",
                   help="pilot symbols (complex channel uses) per block for --csi ls on fading channels "
                   "(default 16)")
    p.add_argument("--ebno-db", required=True, metavar="START:STOP:STEP",
                   help=f"Eb/N0 points in dB: START:STOP:STEP ({RANGE_HELP}) or a comma list (e.g. 0,3,6); write "
                   "--ebno-db=-2:4:1 for negative values")
    p.add_argument("--block-length", type=str, default=None, metavar="K",
                   help="information bits per block (codeword) k; default: the codec's default. Must be a "
                   "multiple of the bits per symbol (uncoded), of 4 (hamming74), or a 5G LDPC k (ldpc5g)")
    p.add_argument("--target-block-errors", type=str, default="100", metavar="N",
                   help="per point, stop after N block errors (default 100; a point's relative CI half-width is "
                   "about 2/sqrt(N))")
    p.add_argument("--max-blocks", type=str, default="100000", metavar="N",
                   help="per point, simulate at most N blocks (default 100000)")
    p.add_argument("--batch-size", type=str, default="1000", metavar="N",
                   help="blocks per batch (one link call) (default 1000; with --link a block is one codeword on "
                   "its share of a resource grid, a few MB of working memory each: e.g. 128)")
    p.add_argument("--seed", type=str, default="0", metavar="S",
                   help="master random seed (non-negative integer); point i uses a seed derived from (S, i), so "
                   "a run is reproducible bit-for-bit on CPU (default 0)")
    p.add_argument("--device", default="cpu", metavar="DEV", help="cpu or cuda (cuda:N) (default cpu)")
    p.add_argument("--ci", default="clopper-pearson", metavar="METHOD",
                   help="95%% interval method for BER/BLER: clopper-pearson (exact, default) or wilson")
    p.add_argument("--compare", nargs="+", default=[], metavar="RESULTS.json",
                   help="earlier results.json files (or their directories) to overlay on ber.png")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted sweep in --out: finished points (written one by one as they "
                        "finish) are kept, the rest are simulated; the result equals an uninterrupted sweep's. "
                        "Without a results.json, or with one holding no finished point (killed before the first "
                        "point finished), the sweep starts; a foreign file or another sweep's results are refused")
    p.add_argument("--quiet", action="store_true", help="no progress bars and no summary table")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output directory for results.json, results.csv and ber.png (created if missing; "
                   "existing metacomm results there are replaced, other files are never overwritten)")
    add_executor_flags(p, "sweep point")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from metacomm.experiments.ber import BerConfig

    return execute(BerConfig(codec=args.codec, channel=args.channel, link=args.link, receiver=args.receiver,
                    ebno_db=args.ebno_db, out=args.out, decoder=args.decoder,
                    checkpoint=args.checkpoint, csi=args.csi, num_pilots=args.num_pilots,
                    block_length=args.block_length, target_block_errors=args.target_block_errors,
                    max_blocks=args.max_blocks, batch_size=args.batch_size, seed=args.seed, device=args.device,
                    ci=args.ci, compare=args.compare, resume=args.resume, progress=not args.quiet,
                    **executor_kwargs(args)))


def execute(cfg: BerConfig) -> int:
    """Run the sweep of ``cfg`` and print what was written (shared with ``metacomm run``)."""
    run_ber = globals().get("run_ber") or __getattr__("run_ber")  # a test may have replaced the module's run_ber
    result, jp, fig = run_ber(cfg)
    if cfg.progress:
        print(result.summary())
    print(f"wrote {jp}, {jp.parent / 'results.csv'}, {fig}")
    return 0
