"""Eb/N0 -> N0 with a code rate other than 1 (a rate-1/2 QPSK link at the wrong N0 is 3 dB off)."""

import math

import pytest
import torch

from metacomm.channels.units import ebnodb_to_no


@pytest.mark.parametrize("ebno_db", [-2.0, 0.0, 3.0, 7.5])
@pytest.mark.parametrize("bits, rate", [(2, 0.5), (1, 4 / 7), (4, 0.75), (6, 1 / 3), (2, 1.0), (3.5, 1.0)])
def test_no_is_one_over_ebno_times_information_bits_per_symbol(ebno_db, bits, rate):
    # Es = 1 per complex use carries rate * bits information bits: Eb = 1 / (rate * bits), N0 = Eb / (Eb/N0).
    want = 1.0 / (rate * bits * 10.0 ** (ebno_db / 10.0))
    got = ebnodb_to_no(ebno_db, bits, rate)
    assert math.isclose(got, want, rel_tol=1e-12)
    t = ebnodb_to_no(torch.tensor(ebno_db, dtype=torch.float64), bits, rate)
    assert math.isclose(float(t), want, rel_tol=1e-12)


def test_rate_half_qpsk_is_3db_below_uncoded_qpsk():
    assert math.isclose(ebnodb_to_no(4.0, 2, 0.5) / ebnodb_to_no(4.0, 2, 1.0), 2.0, rel_tol=1e-12)
