"""Throughput of metacomm's BER engine against Sionna's ``sim_ber`` (not a test).

Two links, each simulated in this one process, on the same device, for the same number of blocks (fixed
iteration count: no error targets, no early stop, so both sides do identical work):

1. uncoded Gray QPSK over AWGN, blocks of 1024 bits;
2. 5G NR LDPC (k = 512, n = 1024, 20 BP iterations) + Gray 16-QAM over AWGN.

For each link three runs are timed:

* ``sionna``   -- Sionna's reference pipeline (BinarySource -> [LDPC5GEncoder] -> Mapper -> AWGN -> Demapper
  -> [LDPC5GDecoder]) driven by :func:`sionna.phy.utils.sim_ber`;
* ``engine``   -- the *same* Sionna ``mc_fun`` driven by :func:`metacomm.sims.engine.simulate` (engine overhead
  only);
* ``metacomm`` -- metacomm's own link (:func:`metacomm.codecs.registry.make_link`) driven by ``simulate`` (the
  end-to-end metacomm path a user runs with ``metacomm ber``);
* ``mc-app``   -- QPSK only: the same metacomm link deciding by the signs of its APP demapper's LLRs (Sionna's
  ``Demapper("app")``, as the Sionna side), the like-for-like comparison.

What each side computes per block. Sionna (``mc_fun``): BinarySource, Mapper, AWGN, APP Demapper (LLRs for every
bit), hard decisions ``llr > 0``; ``sim_ber`` counts bit and block errors and syncs with the host every batch.
metacomm QPSK: the same source, mapper and AWGN in metacomm's blocks, but its ``decide`` *slices the signs* of
``Re y``/``Im y`` (for Gray QPSK the APP and max-log LLR signs are exactly these, for any N0): no LLRs are computed,
so the ``metacomm/sionna`` headline includes work skipped (the APP demapper was ~72 % of Sionna's cost);
``mc-app/sionna`` is the like-for-like ratio. ``engine/sionna`` is the engine alone on Sionna's own ``mc_fun``
(the same work on both sides). LDPC: metacomm's link runs Sionna's 5G LDPC encoder/decoder and APP demapper, like
the Sionna side.

Throughput is information bits per second of wall-clock time (median of ``--repeats`` interleaved runs after a
warm-up). Ratios > 1 mean metacomm is faster. Usage::

    python benchmarks/ber_vs_sionna.py [--device cpu|cuda] [--batch-size N] [--iters N] [--repeats R]
        [--threads T] [--links qpsk,ldpc]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def sionna_qpsk_mc_fun(k: int, device: str):
    from sionna.phy.channel import AWGN
    from sionna.phy.mapping import BinarySource, Demapper, Mapper
    from sionna.phy.utils import ebnodb2no

    src = BinarySource(device=device)
    mapper = Mapper("qam", 2, device=device)
    demapper = Demapper("app", "qam", 2, device=device)
    awgn = AWGN(device=device)

    def mc_fun(batch_size, ebno_db):
        b = src([batch_size, k])
        x = mapper(b)
        no = ebnodb2no(ebno_db, 2, 1.0)
        y = awgn(x, no)
        llr = demapper(y, no)
        return b, (llr > 0).to(b.dtype)

    return mc_fun


def sionna_ldpc_mc_fun(k: int, n: int, m: int, device: str):
    from sionna.phy.channel import AWGN
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
    from sionna.phy.mapping import BinarySource, Demapper, Mapper
    from sionna.phy.utils import ebnodb2no

    src = BinarySource(device=device)
    enc = LDPC5GEncoder(k, n, device=device)
    dec = LDPC5GDecoder(enc, num_iter=20, hard_out=True, device=device)
    mapper = Mapper("qam", m, device=device)
    demapper = Demapper("app", "qam", m, device=device)
    awgn = AWGN(device=device)

    def mc_fun(batch_size, ebno_db):
        b = src([batch_size, k])
        x = mapper(enc(b))
        no = ebnodb2no(ebno_db, m, k / n)
        y = awgn(x, no)
        return b, dec(demapper(y, no))

    return mc_fun


def time_call(fn) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of this process) of ``fn()``."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def bench(name, mc_fun, metacomm_link, ebno_dbs, batch_size, iters, device, repeats, app_link=None):
    from sionna.phy.utils import sim_ber

    from metacomm.sims.engine import simulate

    n_blocks = batch_size * iters * len(ebno_dbs)

    def run_sionna():
        sim_ber(mc_fun, torch.tensor(ebno_dbs), batch_size=batch_size, max_mc_iter=iters, early_stop=False,
                verbose=False, device=device)

    def run_engine():
        simulate(mc_fun, ebno_dbs, batch_size=batch_size, max_blocks=batch_size * iters, target_block_errors=None,
                 early_stop=False, quiet=True, device=device, link_kind="mc_fun", seed_sionna=False)

    def run_metacomm():
        simulate(metacomm_link, ebno_dbs, batch_size=batch_size, max_blocks=batch_size * iters,
                 target_block_errors=None, early_stop=False, quiet=True, device=device)

    runs = {"sionna": run_sionna, "engine": run_engine, "metacomm": run_metacomm}
    if app_link is not None:
        def run_app():
            simulate(app_link, ebno_dbs, batch_size=batch_size, max_blocks=batch_size * iters,
                     target_block_errors=None, early_stop=False, quiet=True, device=device)
        runs["mc-app"] = run_app
    _warm(mc_fun, metacomm_link, batch_size, device)  # lazy builds, allocator, caches
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for key, fn in runs.items():  # interleaved, so load changes hit all three alike
            w, c = time_call(fn)
            times[key].append(w)
            cpu[key].append(c)
    b, _ = mc_fun(2, torch.tensor(5.0, device=device))
    k = b.shape[-1]
    bits = n_blocks * k
    med = {key: statistics.median(v) for key, v in times.items()}
    thr = {key: bits / med[key] / 1e6 for key in runs}
    cpu_thr = {key: bits / statistics.median(cpu[key]) / 1e6 for key in runs}
    print(f"\n{name}: {len(ebno_dbs)} points x {iters} batches x {batch_size} blocks x {k} info bits = "
          f"{bits / 1e6:.1f} Mbit per run, device {device}, {torch.get_num_threads()} thread(s), "
          f"median of {repeats}")
    for key in runs:
        spread = f"{min(times[key]):.3f}-{max(times[key]):.3f} s"
        print(f"  {key:9s} {thr[key]:10.3f} Mbit/s wall   {cpu_thr[key]:10.3f} Mbit/s per CPU-second   "
              f"(median {med[key]:.3f} s, range {spread})")
    for key, what in (("engine", "same mc_fun: engine overhead"),
                      ("metacomm", "metacomm link + engine vs Sionna pipeline + sim_ber"),
                      ("mc-app", "like for like: metacomm link with the same APP demapper + engine vs Sionna")):
        if key not in runs:
            continue
        print(f"  ratio {key}/sionna = {thr[key] / thr['sionna']:.2f}x wall, "
              f"{cpu_thr[key] / cpu_thr['sionna']:.2f}x CPU-time  ({what})")
    return thr


def _warm(mc_fun, link, batch_size, device):
    from metacomm.channels import make_generator

    mc_fun(batch_size, torch.tensor(3.0, device=device))
    link(batch_size, 3.0, make_generator(0, device))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="blocks per batch (default: QPSK 1000 on CPU / 100000 on CUDA; LDPC 200 / 10000)")
    ap.add_argument("--iters", type=int, default=None, help="batches per Eb/N0 point (default 10 CPU, 50 CUDA)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions (median reported; default 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    ap.add_argument("--links", default="qpsk,ldpc", help="comma list of qpsk, ldpc (default both)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import sionna.phy

    from metacomm.channels.registry import make_channel
    from metacomm.codecs.registry import make_link
    from metacomm.sims.engine import resolve_device

    dev = resolve_device(args.device)
    device = "cpu" if dev.type == "cpu" else f"cuda:{dev.index or 0}"
    sionna.phy.config.device = device
    sionna.phy.config.seed = 1
    cuda = dev.type == "cuda"
    iters = args.iters or (50 if cuda else 10)
    from importlib.metadata import version

    print(f"torch {torch.__version__}, sionna-no-rt {version('sionna-no-rt')}, python {sys.version.split()[0]}")
    links = args.links.split(",")
    if "qpsk" in links:
        bs = args.batch_size or (100_000 if cuda else 1000)
        import types

        from metacomm.codecs.base import Codec, CodecLink
        from metacomm.codecs.registry import make_codec
        app = make_codec("qpsk", block_length=1024, device=device)
        app.decide = types.MethodType(Codec.decide, app)  # the signs of the APP LLRs, as Sionna's mc_fun
        bench("uncoded QPSK / AWGN, 1024-bit blocks", sionna_qpsk_mc_fun(1024, device),
              make_link("qpsk", make_channel("awgn").to(device), block_length=1024, device=device),
              [0.0, 2.0, 4.0, 6.0], bs, iters, device, args.repeats,
              app_link=CodecLink(app.to(device), make_channel("awgn").to(device)))
    if "ldpc" in links:
        bs = args.batch_size or (10_000 if cuda else 200)
        bench("5G LDPC (512, 1024) + 16-QAM / AWGN", sionna_ldpc_mc_fun(512, 1024, 4, device),
              make_link("ldpc5g", make_channel("awgn").to(device), block_length=512, bits_per_symbol=4,
                        device=device),
              [4.0, 6.0], bs, max(2, iters // 5), device, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
