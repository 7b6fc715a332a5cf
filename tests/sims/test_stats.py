"""Confidence intervals against scipy's binomtest and exact coverage computations."""

import math

import numpy as np
import pytest
from scipy import stats as st

from metacomm import ConfigError
from metacomm.sims import stats


@pytest.mark.parametrize("x,n", [(0, 10), (1, 10), (5, 10), (10, 10), (0, 1000), (3, 1000), (250, 1000),
                                 (17, 123456), (999, 1000)])
@pytest.mark.parametrize("conf", [0.95, 0.999])
def test_intervals_match_scipy_binomtest(x, n, conf):
    ref = st.binomtest(x, n).proportion_ci(confidence_level=conf, method="exact")
    lo, hi = stats.clopper_pearson(x, n, alpha=1 - conf)
    assert lo == pytest.approx(ref.low, rel=1e-9, abs=1e-15)
    assert hi == pytest.approx(ref.high, rel=1e-9, abs=1e-15)
    ref_w = st.binomtest(x, n).proportion_ci(confidence_level=conf, method="wilson")
    lo_w, hi_w = stats.wilson(x, n, alpha=1 - conf)
    assert lo_w == pytest.approx(ref_w.low, rel=1e-9, abs=1e-12)
    assert hi_w == pytest.approx(ref_w.high, rel=1e-9, abs=1e-12)


def test_known_values():
    # Rule of three: zero errors in n trials -> 95% CP upper bound ~ 3/n (exactly 1 - 0.025^(1/n)).
    n = 10_000
    assert stats.clopper_pearson(0, n)[1] == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-9)
    assert stats.clopper_pearson(n, n)[0] == pytest.approx(0.025 ** (1 / n), rel=1e-9)
    # Wilson for x = n/2: symmetric around 1/2.
    lo, hi = stats.wilson(50, 100)
    assert lo + hi == pytest.approx(1.0, abs=1e-12)
    z = st.norm.ppf(0.975)
    assert hi - 0.5 == pytest.approx(z * math.sqrt(0.25 / 100 + z * z / 40000) / (1 + z * z / 100), rel=1e-12)
    assert stats.clopper_pearson(0, 0) == (0.0, 1.0)


def _coverage(method, p, n, alpha):
    xs = np.arange(n + 1)
    pmf = st.binom.pmf(xs, n, p)
    cover = 0.0
    for x in xs:
        lo, hi = stats.binomial_ci(int(x), n, alpha, method)
        if lo <= p <= hi:
            cover += pmf[x]
    return cover


@pytest.mark.parametrize("p", [0.003, 0.02, 0.1, 0.37, 0.5, 0.9])
@pytest.mark.parametrize("n", [20, 200])
def test_clopper_pearson_coverage_is_at_least_nominal(p, n):
    # exact coverage (sum of binomial pmf over x whose interval contains p)
    assert _coverage("clopper-pearson", p, n, 0.05) >= 0.95 - 1e-12


@pytest.mark.parametrize("p", [0.02, 0.1, 0.37, 0.5])
def test_wilson_coverage_close_to_nominal(p):
    # Wilson is approximate: coverage near 95 % (known minimum ~ 0.92 for moderate n); and never above CP's
    c = _coverage("wilson", p, 200, 0.05)
    assert 0.92 <= c <= _coverage("clopper-pearson", p, 200, 0.05) + 1e-12


def test_design_effect_independent_and_fully_correlated():
    rng = np.random.default_rng(1)
    k, N, p = 50, 4000, 0.05
    e = rng.binomial(k, p, size=N)  # independent bits within blocks -> d ~ 1
    d = stats.design_effect(e.sum(), (e * e).sum(), N, k)
    assert 0.9 < d < 1.1
    e2 = k * (rng.random(N) < p)  # all bits of a block err together -> d ~ k
    d2 = stats.design_effect(e2.sum(), (e2 * e2).sum(), N, k)
    assert d2 == pytest.approx(k * (1 - p) / (1 - p), rel=0.05)
    # block CI of the fully correlated case equals the BLER-type interval over N blocks
    lo, hi = stats.ber_block_ci(e2.sum(), (e2 * e2).sum(), N, k)
    lo_b, hi_b = stats.clopper_pearson(e2.sum() / k, N)
    assert lo == pytest.approx(lo_b, rel=0.05) and hi == pytest.approx(hi_b, rel=0.05)
    # and is wider than the (wrong) bit-level interval
    lo_i, hi_i = stats.clopper_pearson(e2.sum(), N * k)
    assert hi - lo > 3 * (hi_i - lo_i)


def test_block_ci_coverage_for_correlated_bits():
    # Monte-Carlo coverage of the block interval when errors are bursty (beta-binomial per block):
    # the bit-level interval undercovers badly, the block-level one is near nominal.
    rng = np.random.default_rng(7)
    k, N, reps = 32, 500, 300
    a, b = 0.2, 3.8  # per-block error probability ~ Beta(a, b), mean 0.05
    p_true = a / (a + b)
    cov_blk = cov_bit = 0
    for _ in range(reps):
        e = rng.binomial(k, rng.beta(a, b, size=N))
        lo, hi = stats.ber_block_ci(e.sum(), (e * e).sum(), N, k)
        cov_blk += lo <= p_true <= hi
        lo, hi = stats.clopper_pearson(e.sum(), N * k)
        cov_bit += lo <= p_true <= hi
    assert cov_blk / reps > 0.90
    assert cov_bit / reps < 0.70


@pytest.mark.parametrize("bad", [(-1, 10), (11, 10), (float("nan"), 10)])
def test_bad_counts(bad):
    with pytest.raises(ConfigError):
        stats.clopper_pearson(*bad)


def test_bad_alpha_and_method():
    with pytest.raises(ConfigError, match="alpha"):
        stats.wilson(1, 10, alpha=1.5)
    with pytest.raises(ConfigError, match="ci_method"):
        stats.binomial_ci(1, 10, method="jeffreys")


def test_block_level_ber_interval_at_small_n_is_the_exact_interval_over_blocks():
    """N = 5 blocks of 8 bits, 2 of them entirely wrong: all information is in the 5 blocks, so the block-level
    interval must be the exact binomial interval of 2 errors in 5 trials (scipy.stats.binomtest)."""
    from scipy.stats import binomtest

    from metacomm.sims.stats import ber_block_ci
    ref = binomtest(2, 5).proportion_ci(confidence_level=0.95, method="exact")
    lo, hi = ber_block_ci(16, 2 * 8 ** 2, 5, 8)
    assert abs(lo - ref.low) < 1e-9 and abs(hi - ref.high) < 1e-9
