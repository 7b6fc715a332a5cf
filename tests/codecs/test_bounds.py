"""Sphere-packing bound (Shannon 1959) against closed forms where the cone is an exact decision region."""

import math

import pytest

from metacomm import ConfigError
from metacomm.codecs.bounds import cone_half_angle, sphere_packing_bound


def q(x):
    return 0.5 * math.erfc(x / math.sqrt(2))


@pytest.mark.parametrize("ebno_db", [-2.0, 0.0, 3.0, 6.0, 9.0, 12.0])
def test_n2_k2_equals_uncoded_qpsk(ebno_db):
    """4 points on a circle: the cone of half-angle pi/4 *is* QPSK's decision region, so the bound equals
    QPSK's block (symbol) error rate 1 - (1 - Q(sqrt(2 Eb/N0)))^2."""
    ref = 1 - (1 - q(math.sqrt(2 * 10 ** (ebno_db / 10)))) ** 2
    assert sphere_packing_bound(2, 2, ebno_db) == pytest.approx(ref, rel=1e-7)


@pytest.mark.parametrize("n", [2, 4, 7])
def test_two_codewords_equal_antipodal_bpsk(n):
    """M = 2: the cone is a half-space, the bound is the antipodal error rate Q(sqrt(2 Eb/N0)) for any n."""
    for eb in (0.0, 5.0):
        assert sphere_packing_bound(n, 1, eb) == pytest.approx(q(math.sqrt(2 * 10 ** (eb / 10))), rel=1e-7)


def test_cone_angles_and_monotonicity():
    assert cone_half_angle(2, 4) == pytest.approx(math.pi / 4, abs=1e-12)
    assert cone_half_angle(3, 2) == pytest.approx(math.pi / 2, abs=1e-9)
    # R^3: cap fraction (1 - cos theta)/2 = 1/M
    assert cone_half_angle(3, 16) == pytest.approx(math.acos(1 - 2 / 16), abs=1e-12)
    vals = [sphere_packing_bound(7, 4, eb) for eb in (0, 2, 4, 6, 8)]
    assert all(a > b for a, b in zip(vals, vals[1:], strict=False))
    # Hamming(7,4) soft ML measures BLER 1.21e-2 at 4 dB (4e5 blocks), so the bound must lie below it
    assert sphere_packing_bound(7, 4, 4.0) < 1.2e-2
    # more codewords in the same dimension -> a larger bound
    assert sphere_packing_bound(7, 5, 4.0) > sphere_packing_bound(7, 4, 4.0)


def test_bad_input():
    with pytest.raises(ConfigError):
        sphere_packing_bound(1, 1, 0.0)
    with pytest.raises(ConfigError):
        sphere_packing_bound(7, 0, 0.0)
    with pytest.raises(ConfigError):
        sphere_packing_bound(7, 4, float("nan"))
