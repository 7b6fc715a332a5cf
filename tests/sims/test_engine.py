"""Engine stopping rules, reproducibility and counting with synthetic links of known error probability."""

import math

import numpy as np
import pytest
import torch
from scipy import stats as st

from metacomm import ConfigError
from metacomm.sims.engine import link_kind_of, point_seed, simulate


def flip_link(p_of_ebno, k=64):
    """Each bit flipped independently with probability p(ebno_db), all draws from the generator."""

    def link(batch_size, ebno_db, generator):
        dev = generator.device
        bits = torch.randint(0, 2, (batch_size, k), generator=generator, device=dev).float()
        flips = (torch.rand(batch_size, k, generator=generator, device=dev) < p_of_ebno(ebno_db)).float()
        return bits, (bits + flips) % 2

    return link


def counts(res):
    return [(p.bit_errors, p.bits, p.block_errors, p.blocks, p.bit_errors_sq) for p in res.points]


def test_ber_bler_within_ci_of_known_p(device):
    p = 0.01
    k = 64
    res = simulate(flip_link(lambda e: p, k), [0.0], batch_size=500, max_blocks=20_000, target_block_errors=2000,
                   seed=5, device=device, quiet=True, alpha=0.001)
    pt = res.points[0]
    assert pt.simulated and pt.stop_reason == "target_block_errors"
    assert pt.ber_ci[0] <= p <= pt.ber_ci[1]
    bler = 1 - (1 - p) ** k
    assert pt.bler_ci[0] <= bler <= pt.bler_ci[1]
    assert pt.bits == pt.blocks * k and pt.bits_per_block == k
    # independent bits: design-effect-corrected interval is essentially the bit-level one
    assert pt.ber_ci_block[1] - pt.ber_ci_block[0] == pytest.approx(pt.ber_ci[1] - pt.ber_ci[0], rel=0.15)


def test_count_exactness_against_numpy():
    # deterministic link: block j has exactly (j mod 5) bit errors at distinct positions
    k = 10

    def link(batch_size, ebno_db, generator):
        bits = torch.zeros(batch_size, k)
        hat = torch.zeros(batch_size, k)
        for j in range(batch_size):
            hat[j, : j % 5] = 1
        return bits, hat

    res = simulate(link, [1.0], batch_size=7, max_blocks=23, target_block_errors=None, quiet=True)
    e = np.concatenate([np.arange(7) % 5] * 3 + [np.arange(2) % 5])  # batches of 7,7,7 then 2
    pt = res.points[0]
    assert (pt.blocks, pt.bits) == (23, 230)
    assert pt.bit_errors == e.sum() and pt.block_errors == (e > 0).sum() and pt.bit_errors_sq == (e * e).sum()
    assert pt.stop_reason == "max_blocks"


def test_stopping_rules():
    link = flip_link(lambda e: 10 ** (-e / 10) / 20, k=32)
    res = simulate(link, [0, 5, 10, 40, 50], batch_size=100, max_blocks=5000, target_block_errors=50, seed=1,
                   quiet=True)
    p0, p1, p2, p3, p4 = res.points
    for pt in (p0, p1):
        assert pt.stop_reason == "target_block_errors" and pt.block_errors >= 50 and pt.blocks <= 5000
    # reaching the target does not overshoot by more than about one check's worth of batches
    assert p0.blocks <= 2 * 100 * math.ceil(50 / (p0.block_errors / p0.blocks) / 100) + 100
    assert p3.stop_reason == "max_blocks" and p3.blocks == 5000
    # 40 dB: p = 5e-6 per bit -> a few errors at most; 50 dB: p = 5e-7
    if p3.block_errors == 0:
        assert not p4.simulated and p4.stop_reason == "skipped_after_error_free_point"
        assert p4.ber is None and p4.ber_ci is None and res.to_dict()["points"][4]["ber"] is None
    # a point with zero errors is reported as simulated zero, with a real interval
    res2 = simulate(flip_link(lambda e: 0.0), [0, 1, 2], batch_size=10, max_blocks=30, target_block_errors=1,
                    quiet=True)
    assert [p.simulated for p in res2.points] == [True, False, False]
    assert res2.points[0].ber == 0.0 and res2.points[0].blocks == 30
    assert res2.points[0].bler_ci[1] == pytest.approx(1 - 0.025 ** (1 / 30))
    res3 = simulate(flip_link(lambda e: 0.0), [0, 1], batch_size=10, max_blocks=30, target_block_errors=1,
                    quiet=True, early_stop=False)
    assert all(p.simulated for p in res3.points)


def test_target_bit_errors():
    res = simulate(flip_link(lambda e: 0.05, k=100), [0.0], batch_size=10, max_blocks=10**6,
                   target_block_errors=None, target_bit_errors=1000, quiet=True)
    pt = res.points[0]
    assert pt.stop_reason == "target_bit_errors" and 1000 <= pt.bit_errors < 1000 + 20 * 100 * 0.05 * 10 * 3


def test_reproducible_and_points_independent():
    link = flip_link(lambda e: 10 ** (-e / 10) / 10)
    kw = dict(batch_size=64, max_blocks=3000, target_block_errors=40, quiet=True)
    a = simulate(link, [0, 3, 6], seed=11, **kw)
    b = simulate(link, [0, 3, 6], seed=11, **kw)
    assert counts(a) == counts(b)
    # point 2 alone (same index in the seed derivation) gives the same counts as within the sweep
    c = simulate(link, [6], seed=11, first_point_index=2, **kw)
    assert counts(c)[0] == counts(a)[2]
    # the seeds of points are distinct and a different master seed changes the counts
    assert len({p.seed for p in a.points}) == 3
    d = simulate(link, [0, 3, 6], seed=12, **kw)
    assert counts(d) != counts(a)
    assert point_seed(11, 2) == a.points[2].seed


def test_mc_fun_is_detected_and_seeded():
    import sionna.phy

    def mc_fun(batch_size, ebno_db):
        assert isinstance(ebno_db, torch.Tensor)
        g = sionna.phy.config.torch_rng("cpu") if hasattr(sionna.phy.config, "torch_rng") else None
        b = torch.randint(0, 2, (batch_size, 16), generator=g)
        flips = (torch.rand(batch_size, 16, generator=g) < 0.1).to(b.dtype)
        return b, (b + flips) % 2

    assert link_kind_of(mc_fun) == "mc_fun"
    assert link_kind_of(flip_link(lambda e: 0.1)) == "link"
    kw = dict(batch_size=50, max_blocks=2000, target_block_errors=100, quiet=True, seed=3)
    a = simulate(mc_fun, [1.0, 2.0], **kw)
    b = simulate(mc_fun, [1.0, 2.0], **kw)
    assert a.config["link_kind"] == "mc_fun"
    assert counts(a) == counts(b)
    assert a.points[0].ber_ci[0] <= 0.1 <= a.points[0].ber_ci[1]


def test_soft_estimates_and_shapes():
    def link(batch_size, ebno_db, generator):
        bits = torch.randint(0, 2, (batch_size, 2, 8), generator=generator).float()  # 2 streams per item
        logits = (2 * bits - 1) * 3.0
        logits[:, 0, 0] = -logits[:, 0, 0]  # one wrong bit in stream 0 of every item
        return bits, logits

    res = simulate(link, [0.0], batch_size=10, max_blocks=40, target_block_errors=None, soft_estimates=True,
                   quiet=True)
    pt = res.points[0]
    assert pt.blocks == 40 and pt.bits == 320 and pt.block_errors == 20 and pt.bit_errors == 20


def test_binomial_fluctuation_is_plausible():
    # over many independent points the z-scores of BER vs p are ~ N(0, 1)
    p, k = 0.02, 50
    res = simulate(flip_link(lambda e: p, k), list(range(40)), batch_size=200, max_blocks=200,
                   target_block_errors=None, quiet=True, seed=2)
    n = 200 * k
    z = np.array([(pt.bit_errors - n * p) / math.sqrt(n * p * (1 - p)) for pt in res.points])
    assert st.kstest(z, "norm").pvalue > 1e-3


@pytest.mark.parametrize("kw,field", [
    (dict(batch_size=0), "batch_size"), (dict(batch_size=-5), "batch_size"), (dict(batch_size=2.5), "batch_size"),
    (dict(max_blocks=0), "max_blocks"), (dict(target_block_errors=0), "target_block_errors"),
    (dict(seed=-1), "seed"), (dict(ebno_dbs=[0, float("nan")]), "ebno_db"), (dict(ebno_dbs=[]), "ebno_db"),
    (dict(ebno_dbs=[float("inf")]), "ebno_db"), (dict(device="tpu"), "device"),
    (dict(ci_method="bayes"), "ci_method"),
])
def test_bad_input(kw, field):
    args = dict(ebno_dbs=[0.0], batch_size=10, max_blocks=10, target_block_errors=1, quiet=True)
    args.update(kw)
    ebnos = args.pop("ebno_dbs")
    with pytest.raises(ConfigError) as ei:
        simulate(flip_link(lambda e: 0.1), ebnos, **args)
    assert ei.value.field == field and isinstance(ei.value, ValueError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_cuda():
    with pytest.raises(ConfigError, match="^device: "):
        simulate(flip_link(lambda e: 0.1), [0.0], batch_size=1, max_blocks=1, target_block_errors=1, device="cuda")


def test_bad_link_outputs():
    with pytest.raises(ConfigError, match="link"):
        simulate(lambda b, e, g: torch.zeros(b, 3), [0.0], batch_size=2, max_blocks=2, target_block_errors=1,
                 quiet=True)
    with pytest.raises(ConfigError, match="link"):
        simulate(lambda b, e, g: (torch.zeros(b, 3), torch.zeros(b, 4)), [0.0], batch_size=2, max_blocks=2,
                 target_block_errors=1, quiet=True)


def test_planned_check_schedule():
    # the CUDA default (several batches between host reads) run on CPU: same stopping semantics, bounded overshoot,
    # reproducible; with a per-batch schedule the point stops at the first batch reaching the target
    link = flip_link(lambda e: 0.002, k=16)  # BLER ~ 3.2 %
    kw = dict(batch_size=50, max_blocks=200_000, target_block_errors=200, seed=8, quiet=True)
    a = simulate(link, [0.0], max_batches_per_check=64, **kw)
    b = simulate(link, [0.0], max_batches_per_check=64, **kw)
    assert counts(a) == counts(b)
    pa = a.points[0]
    assert pa.stop_reason == "target_block_errors" and 200 <= pa.block_errors <= 260
    c = simulate(link, [0.0], max_batches_per_check=1, **kw)
    pc = c.points[0]
    # per-batch checks: one batch fewer would not have reached the target (a batch has <= 50 block errors)
    assert 200 <= pc.block_errors < 250
    # the two schedules draw the same stream: the shorter run's counts are a prefix of the longer one's
    assert pc.blocks <= pa.blocks
    d = simulate(link, [0.0], max_batches_per_check=1, **{**kw, "max_blocks": pa.blocks,
                                                             "target_block_errors": None})
    assert counts(d)[0][:4] == (pa.bit_errors, pa.bits, pa.block_errors, pa.blocks)


def test_nan_or_soft_decisions_are_reported_not_counted():
    import pytest as _pytest

    from metacomm import ConfigError
    from metacomm.sims.engine import simulate

    def nan_link(batch_size, ebno_db, generator):
        bits = torch.randint(0, 2, (batch_size, 8), generator=generator).float()
        return bits, torch.full_like(bits, float("nan"))

    def soft_link(batch_size, ebno_db, generator):
        bits = torch.randint(0, 2, (batch_size, 8), generator=generator).float()
        return bits, bits * 0.7

    for link, what in ((nan_link, "80 invalid decisions"), (soft_link, "40 invalid decisions")):
        with _pytest.raises(ConfigError, match=what):
            simulate(link, [0.0], batch_size=10, max_blocks=10, target_block_errors=None, seed=0, quiet=True)


def test_written_files_follow_the_umask(tmp_path):
    import os

    from metacomm._io import atomic_write_text
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "a.txt", "x")
        assert (os.stat(p).st_mode & 0o777) == 0o644
    finally:
        os.umask(old)


def test_invalid_hard_decisions_are_counted_exactly_for_every_dtype():
    """The one-product validity check (count_nonzero(bh (1 - bh))) against the definition: entries other than 0
    and 1 (NaN, +-inf, tiny, huge, near-1 values; integers that wrap) are counted, 0 and 1 never."""
    from metacomm.sims.engine import _invalid

    for dt in (torch.float16, torch.float32, torch.float64, torch.int8, torch.uint8, torch.int32, torch.int64):
        ok = torch.tensor([0, 1, 1, 0, 1], dtype=dt)
        assert int(_invalid(ok, False)) == 0, dt
        if dt.is_floating_point:
            bad = [2.0, -1.0, 0.5, 1 + 1e-3, 1e-30, 6e-8, float("nan"), float("inf"), -float("inf"), 1e30, -1e-40]
        else:
            bad = [2, -1, 127, 255, 2 ** 31 - 1, 2 ** 32, 2 ** 63 - 1]
        vals = []
        for x in bad:
            try:
                t = torch.tensor([x], dtype=dt)
            except (OverflowError, RuntimeError):
                continue
            if float(t[0]) not in (0.0, 1.0) or torch.isnan(t[0].float()):
                vals.append(t)
        t = torch.cat([ok, *vals])
        want = int((~((t == 0) | (t == 1))).sum())
        assert want == len(vals) and int(_invalid(t, False)) == want, (dt, t)
    assert int(_invalid(torch.tensor([True, False]), False)) == 0
    assert int(_invalid(torch.tensor([0.3, float("nan"), -2.0]), True)) == 1  # soft: only non-finite values
