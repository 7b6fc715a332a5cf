"""Attack sanity at one point (default PSR -6 dB, Eb/N0 10 dB) under two conventions, on the same draws per link.

    python benchmarks/adversarial_sanity.py --ae CKPT [--ae-complex CKPT] [--blocks 100000] [--json OUT.json] [--device cpu|cuda]

* ``metacomm`` convention: PSR = ||p||^2 / ||x||^2 of each link's own block (x: transmitted block, Es = 1 per complex
  use), perturbations and jammers on the signal's real dimensions; Eb/N0 per information bit with the link's rate.
  The AE(7,4) is O'Shea & Hoydis' (7 real uses, `metacomm train --codec ae --n 7 --k 4 --train-ebno-db 3`).
* ``sadeghi`` convention (their released code, github.com/meysamsadeghi/Security-and-Robustness-of-Deep-Learning-in-
  Wireless-Communication-Systems, `All_Autoencoder_Classes.py`, `hamming.py`): the AE(7,4) has n = 7 *complex* uses
  (14 reals, ||x||^2 = 7, sigma^2 = 1/(2 (k/n) Eb/N0) per real; here `--complex-uses`, trained at 8.5 dB as they
  do), ||p||^2 = PSR * n; the Hamming(7,4) BPSK link (7 reals, ||x||^2 = 7) gets ||p||^2 = n PSR / 2, i.e. its PSR
  relative to its own block is 3.01 dB lower.

Attacks: Gaussian jamming, the letter's Alg. 1 UAP (white-box, 300 samples), a PGD-built UAP (maximising the mean
loss over 1000 received blocks), per-block white-box PGD-L2 (10 steps) and FGM.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from metacomm.channels import attacks as A
from metacomm.channels.units import ebnodb_to_no
from metacomm.codecs.checkpoint import load_codec
from metacomm.experiments.adversarial import _received, block_errors, codec_target, craft_uap, hamming_target


def measure(t, psr, eb, blocks, seed=0, device="cpu"):
    no = float(ebnodb_to_no(eb, t.rate))
    g = lambda s: torch.Generator(device).manual_seed(1000 * seed + s)  # noqa: E731
    lf = t.logits_at(no)
    uap = craft_uap(lf, t, no, psr, 300, g(9))
    m, x, y = _received(t, no, 1000, g(10))
    uap_pgd = A.uap_pgd(lf, y, m, A.budget(x, psr, universal=True), t.support, steps=50)
    out = {"clean": block_errors(t, "none", None, no, blocks, g(1)) / blocks}
    for name, kind, uni, n in (("jam-gauss", "jam-gauss", None, blocks), ("jam-tone", "jam-tone", None, blocks),
                               ("uap-alg1", "uap", uap, blocks), ("uap-pgd", "uap", uap_pgd, blocks),
                               ("fgm", "fgm", None, blocks // 4), ("pgd-l2", "pgd-l2", None, blocks // 4)):
        out[name] = block_errors(t, kind, psr, no, n, g(1), universal=uni) / n
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ae", required=True)
    ap.add_argument("--ae-complex", default=None)
    ap.add_argument("--psr-db", type=float, default=-6.0)
    ap.add_argument("--ebno-db", type=float, default=10.0)
    ap.add_argument("--blocks", type=int, default=100000)
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.set_num_threads(1)
    t0 = time.time()
    rows = {}
    ae, _ = load_codec(a.ae)
    rows["metacomm: AE(7,4) 7 real uses"] = measure(codec_target("ae", ae.to(dev)), a.psr_db, a.ebno_db, a.blocks,
                                                    device=dev)
    rows["metacomm: Hamming(7,4)+ML"] = measure(hamming_target(dev), a.psr_db, a.ebno_db, a.blocks, device=dev)
    if a.ae_complex:
        aec, _ = load_codec(a.ae_complex)
        rows["sadeghi: AE(7,4) 7 complex uses"] = measure(codec_target("aec", aec.to(dev)), a.psr_db, a.ebno_db,
                                                          a.blocks, device=dev)
        rows["sadeghi: Hamming(7,4)+ML (PSR - 3.01 dB)"] = measure(hamming_target(dev),
                                                                   a.psr_db - 10 * math.log10(2), a.ebno_db,
                                                                   a.blocks, device=dev)
    for k, v in rows.items():
        print(f"{k:45s} " + "  ".join(f"{n} {b:.3g}" for n, b in v.items()) +
              f"  | pgd-l2/jam {v['pgd-l2'] / max(v['jam-gauss'], 1e-12):.3g}"
              f"  uap-alg1/jam {v['uap-alg1'] / max(v['jam-gauss'], 1e-12):.3g}")
    print(f"wall {time.time() - t0:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"psr_db": a.psr_db, "ebno_db": a.ebno_db, "blocks": a.blocks, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
