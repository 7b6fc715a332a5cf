"""``metacomm ber``: Monte-Carlo BER/BLER sweep of a classical or learned link over Eb/N0.

Writes ``OUT/results.json`` (schema in :mod:`metacomm.sims.results`), ``OUT/results.csv`` and ``OUT/ber.png``
(BER and BLER vs Eb/N0 with confidence intervals, the closed-form curve where one exists, and any ``--compare``
results overlaid).
"""

from __future__ import annotations

import argparse
import math
import sys

from metacomm._validation import ConfigError, check_choice, check_nonneg_int, check_positive_int
from metacomm.sims.links import CLASSICAL_CODECS, CODECS, CSI_CHOICES, DECODERS, LEARNED_CODECS

__all__ = ["add_parser", "run", "parse_ebno_range", "CHANNELS"]

CHANNELS = ("awgn", "rayleigh", "rician", "multipath", "tdl-a", "tdl-b", "tdl-c", "tdl-d", "tdl-e")


def parse_ebno_range(text: str, field: str = "--ebno-db") -> list[float]:
    """Eb/N0 points in dB from ``START:STOP:STEP`` (inclusive of STOP when on the grid), ``a,b,c`` or ``x``.

    ``STEP`` must be > 0 and ``STOP >= START``; every value must be finite. The grid is computed as
    ``START + i * STEP`` (not by repeated addition) and rounded to 12 decimals, so ``0:1:0.1`` has 11 points.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(field, "expected START:STOP:STEP (dB) or a comma list, got an empty value")
    s = text.strip()

    def num(tok: str) -> float:
        try:
            v = float(tok)
        except ValueError:
            raise ConfigError(field, f"cannot parse {tok.strip()!r} in {text!r} as a number (dB); expected "
                                     "START:STOP:STEP, e.g. 0:10:2, or a comma list, e.g. 0,3,6") from None
        if not math.isfinite(v):
            raise ConfigError(field, f"Eb/N0 values must be finite numbers of dB, got {tok.strip()!r}")
        return v

    if ":" in s:
        parts = s.split(":")
        if len(parts) != 3:
            raise ConfigError(field, f"expected START:STOP:STEP (three numbers in dB), got {text!r}")
        start, stop, step = (num(p) for p in parts)
        if step <= 0:
            raise ConfigError(field, f"STEP must be > 0 dB, got {parts[2]!r}")
        if stop < start:
            raise ConfigError(field, f"STOP must be >= START, got {text!r}")
        n = int(math.floor((stop - start) / step + 1e-9)) + 1
        if n > 10_000:
            raise ConfigError(field, f"{text!r} gives {n} points; at most 10000 allowed")
        return [round(start + i * step, 12) for i in range(n)]
    vals = [num(p) for p in s.split(",")]
    return vals


def add_parser(subparsers, name: str = "ber") -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name,
        help="Monte-Carlo BER/BLER sweep over Eb/N0 (writes results.json, results.csv, ber.png)",
        description="Monte-Carlo BER/BLER sweep of a link over Eb/N0. Eb/N0 is the SNR per information bit in "
        "dB; Es = 1 per complex channel use and N0 = 1/(Eb/N0 * rate) with rate = information bits per complex "
        "channel use. Each point runs batches until --target-block-errors block errors or --max-blocks blocks; "
        "the sweep stops after the first point without any block error (later points: not simulated). Writes "
        "OUT/results.json, OUT/results.csv and OUT/ber.png with 95% confidence intervals.",
    )
    p.add_argument("--codec", required=True, metavar="NAME",
                   help=f"link to simulate: uncoded {', '.join(CLASSICAL_CODECS[:4])} (Gray, Sionna mapper); "
                   "hamming74 (Hamming(7,4), BPSK); ldpc5g (5G NR LDPC, rate 1/2, k=512 by default, QPSK); learned "
                   f"{', '.join(LEARNED_CODECS)} (needs --checkpoint). Choices: {', '.join(CODECS)}")
    p.add_argument("--decoder", default=None, metavar="NAME",
                   help=f"decoder/demapper of a classical codec: {', '.join(DECODERS)} (app = exact LLR "
                   "demapper, maxlog = max-log demapper, ml = soft ML block decoding, hard = hard-decision "
                   "syndrome decoding, bp = belief propagation); default: the codec's own default")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="checkpoint file of a learned codec (--codec ae|constellation|neural-rx)")
    p.add_argument("--channel", required=True, metavar="NAME",
                   help=f"channel model: {', '.join(CHANNELS)} (awgn: additive noise of N0 per complex sample; "
                   "rayleigh/rician: flat block fading, one gain per block (receiver CSI: see --csi); "
                   "multipath: L-tap block fading with exponential power-delay profile; tdl-*: 3GPP TR 38.901 "
                   "TDL profiles)")
    p.add_argument("--csi", default="ls", metavar="MODE",
                   help="receiver channel knowledge on fading channels: ls (least-squares estimate from "
                   "--num-pilots QPSK pilot symbols per block; pilot energy not counted in Eb) or perfect (genie "
                   "CSI) (default ls; ignored for awgn)")
    p.add_argument("--num-pilots", default=None, metavar="N",
                   help="pilot symbols (complex channel uses) per block for --csi ls on fading channels "
                   "(default 16)")
    p.add_argument("--ebno-db", required=True, metavar="START:STOP:STEP",
                   help="Eb/N0 points in dB: START:STOP:STEP (STOP included when on the grid, STEP > 0) or a "
                   "comma list (e.g. 0,3,6); write --ebno-db=-2:4:1 for negative values")
    p.add_argument("--block-length", type=str, default=None, metavar="K",
                   help="information bits per block (codeword) k; default: the codec's default. Must be a "
                   "multiple of the bits per symbol (uncoded), of 4 (hamming74), or a 5G LDPC k (ldpc5g)")
    p.add_argument("--target-block-errors", type=str, default="100", metavar="N",
                   help="per point, stop after N block errors (default 100; a point's relative CI half-width is "
                   "about 2/sqrt(N))")
    p.add_argument("--max-blocks", type=str, default="100000", metavar="N",
                   help="per point, simulate at most N blocks (default 100000)")
    p.add_argument("--batch-size", type=str, default="1000", metavar="N",
                   help="blocks per batch (one link call) (default 1000)")
    p.add_argument("--seed", type=str, default="0", metavar="S",
                   help="master random seed (non-negative integer); point i uses a seed derived from (S, i), so "
                   "a run is reproducible bit-for-bit on CPU (default 0)")
    p.add_argument("--device", default="cpu", metavar="DEV", help="cpu or cuda (cuda:N) (default cpu)")
    p.add_argument("--ci", default="clopper-pearson", metavar="METHOD",
                   help="95%% interval method for BER/BLER: clopper-pearson (exact, default) or wilson")
    p.add_argument("--compare", nargs="+", default=[], metavar="RESULTS.json",
                   help="earlier results.json files (or their directories) to overlay on ber.png")
    p.add_argument("--quiet", action="store_true", help="no progress bars and no summary table")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output directory for results.json, results.csv and ber.png (created if missing; "
                   "existing metacomm results there are replaced, other files are never overwritten)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    # Cheap validation first, so that bad input fails before anything slow is imported or built.
    check_choice("--codec", args.codec, CODECS)
    check_choice("--channel", args.channel, CHANNELS)
    if args.decoder is not None:
        check_choice("--decoder", args.decoder, DECODERS)
    ebnos = parse_ebno_range(args.ebno_db)
    batch_size = check_positive_int("--batch-size", args.batch_size)
    max_blocks = check_positive_int("--max-blocks", args.max_blocks)
    target = check_positive_int("--target-block-errors", args.target_block_errors)
    seed = check_nonneg_int("--seed", args.seed)
    block_length = None if args.block_length is None else check_positive_int("--block-length", args.block_length)
    check_choice("--ci", args.ci, ("clopper-pearson", "wilson"))
    check_choice("--csi", args.csi, CSI_CHOICES)
    num_pilots = None if args.num_pilots is None else check_positive_int("--num-pilots", args.num_pilots)

    from metacomm.sims.engine import resolve_device, simulate
    from metacomm.sims.links import build_link, link_info
    from metacomm.sims.plots import plot_results
    from metacomm.sims.results import check_output_dir, load_results, save_results

    device = resolve_device(args.device)
    out = check_output_dir(args.out)
    png = out / "ber.png"
    if png.is_dir() or (png.exists() and not (out / "results.json").exists()):
        raise ConfigError("--out", f"{str(png)!r} exists and does not belong to metacomm results in that directory; "
                                   "refusing to overwrite it (choose another --out directory or remove the file)")
    compare = [load_results(c, field_name="--compare") for c in args.compare]

    cfg = {"codec": args.codec, "decoder": args.decoder, "channel": args.channel, "block_length": block_length,
           "checkpoint": args.checkpoint, "device": str(device), "csi": args.csi, "num_pilots": num_pilots}
    link = build_link(cfg)
    decoder = args.decoder
    if decoder is None and args.codec in CLASSICAL_CODECS:
        from metacomm.codecs.registry import DECODERS as CODEC_DECODERS

        decoder = CODEC_DECODERS.get(args.codec, (None,))[0]  # the default the registry applied
    config = {"command": "metacomm ber", "codec": args.codec, "decoder": decoder, "channel": args.channel,
              "block_length": block_length, "checkpoint": args.checkpoint, "ebno_db": ebnos,
              "csi": args.csi if args.channel != "awgn" else "perfect", "num_pilots": num_pilots,
              "argv": " ".join(sys.argv[1:]) if sys.argv else ""}
    config.update(link_info(link))
    result = simulate(link, ebnos, batch_size=batch_size, max_blocks=max_blocks, target_block_errors=target,
                      seed=seed, device=device, quiet=args.quiet, ci_method=args.ci,
                      progress_desc=f"{args.codec}/{args.channel}", config=config)
    if "block_length_bits" not in result.config:
        k = next((p.bits_per_block for p in result.points if p.bits_per_block), None)
        if k:
            result.config["block_length_bits"] = k
    jp = save_results(result, out)
    fig = plot_results([result, *compare], out / "ber.png")
    if not args.quiet:
        print(result.summary())
    print(f"wrote {jp}, {out / 'results.csv'}, {fig}")
    return 0
