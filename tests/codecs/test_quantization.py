"""Fake quantisation and pruning: values on the b-bit grid, STE gradients by definition, exact sparsity,
vmap over mixed bit-widths == per-task loop, an independent cross-check against torchao, property tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metacomm import ConfigError
from metacomm.codecs.quantization import (
    check_bits,
    check_sparsity,
    fake_quant_adc,
    fake_quant_uniform,
    fake_quant_weight,
    magnitude_mask,
    model_bytes,
    quantize_adc,
    quantize_params,
    quantize_uniform,
    quantize_weight,
)


def _grid_ok(w: np.ndarray, q: np.ndarray, bits: int) -> bool:
    """Independent numpy check: every row of q is an integer multiple k*s of s = max|w_row| / (2^(b-1)-1), with
    |k| <= 2^(b-1)-1, and the nearest such multiple of w (up to ties)."""
    lv = 2 ** (bits - 1) - 1
    for wr, qr in zip(w, q, strict=True):
        s = np.abs(wr).max() / lv
        k = qr / s
        if not np.allclose(k, np.round(k), atol=1e-3) or np.abs(np.round(k)).max() > lv:
            return False
        if np.abs(qr - wr).max() > s / 2 * (1 + 1e-4):  # nearest level
            return False
        if len(np.unique(np.round(k))) > 2 * lv + 1:
            return False
    return True


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8, 12, 16])
def test_forward_values_lie_exactly_on_the_b_bit_grid(bits):
    w = torch.randn(16, 24, generator=torch.Generator().manual_seed(bits), dtype=torch.float64)
    q = quantize_weight(w, bits)
    assert _grid_ok(w.numpy(), q.numpy(), bits)
    # the row maximum is representable exactly (it is the top level)
    assert torch.allclose(q.abs().amax(1), w.abs().amax(1))


def test_one_bit_is_sign_times_mean_absolute_value():
    w = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    w[0, 3] = 0.0
    q = quantize_weight(w, 1)
    alpha = w.abs().mean(1, keepdim=True)
    ref = torch.where(w >= 0, alpha, -alpha)
    assert torch.equal(q, ref)
    # the XNOR-Net scale is the L2-optimal one: no other per-row scale gets closer to w with these signs
    sgn = torch.where(w >= 0, 1.0, -1.0)
    for a in (0.9, 1.1):
        assert ((w - a * alpha * sgn) ** 2).sum() > ((w - q) ** 2).sum()


def test_float_bits_and_adc_off_are_the_identity():
    w = torch.randn(4, 3)
    assert torch.equal(quantize_weight(w, 32), w)
    y = torch.randn(6, dtype=torch.complex64)
    assert torch.equal(quantize_adc(y, 0, 2.0), y)
    assert torch.equal(quantize_uniform(w, 0, 1.0), w)


def test_adc_is_mid_rise_with_2_to_the_b_levels_in_the_clip_range():
    x = torch.linspace(-5, 5, 10001)
    for b in (1, 2, 3, 4):
        q = quantize_adc(x, b, 2.0)
        d = 4.0 / 2 ** b
        expect = np.arange(-2 + d / 2, 2, d)
        assert np.allclose(np.unique(q.numpy()), expect, atol=1e-6)
    assert torch.equal(quantize_adc(torch.tensor([0.3, -0.3]), 1, 2.0), torch.tensor([1.0, -1.0]))
    y = torch.complex(torch.tensor([0.3]), torch.tensor([-3.0]))
    assert torch.equal(quantize_adc(y, 1, 2.0), torch.complex(torch.tensor([1.0]), torch.tensor([-1.0])))


def test_ste_gradient_equals_its_definition():
    w = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    c = torch.randn(6, 5, dtype=torch.float64)
    # weights: d/dw sum(c * Q(w)) = c (identity: the per-row max range clips nothing)
    g, = torch.autograd.grad((c * fake_quant_weight(w, 4)).sum(), w)
    assert torch.equal(g, c)
    # with pruning: the gradient is the mask
    g, = torch.autograd.grad((c * fake_quant_weight(w, 4, 0.5)).sum(), w)
    assert torch.equal(g, c * magnitude_mask(w, 0.5))
    # clipped STE for activations / ADC: 1 inside [-clip, clip], 0 outside
    x = torch.tensor([-3.0, -0.5, 0.2, 1.9, 2.5], dtype=torch.float64, requires_grad=True)
    for fq in (lambda t: fake_quant_uniform(t, 4, 2.0), lambda t: fake_quant_adc(t, 3, 2.0)):
        g, = torch.autograd.grad(fq(x).sum(), x)
        assert g.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    g, = torch.autograd.grad(fake_quant_adc(x, 0, 2.0).sum(), x)  # ADC off: identity everywhere
    assert g.tolist() == [1.0] * 5


@pytest.mark.parametrize("s", [0.0, 0.25, 0.5, 0.75, 0.9])
def test_pruning_sparsity_is_exact_and_removes_the_smallest(s):
    w = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    m = magnitude_mask(w, s)
    assert int((m == 0).sum()) == math.floor(s * w.numel())
    if 0 < s:
        assert w.abs()[m == 0].max() <= w.abs()[m == 1].min()
    q = fake_quant_weight(w, 8, s)
    assert int((q == 0).sum()) >= math.floor(s * w.numel())


def test_vmap_over_mixed_bit_widths_equals_the_per_task_loop():
    w = torch.randn(8, 6, generator=torch.Generator().manual_seed(2))
    bits = torch.tensor([8.0, 6.0, 4.0, 1.0, 32.0])
    sp = torch.tensor([0.0, 0.5, 0.25, 0.0, 0.75])
    out = torch.vmap(lambda b, s: fake_quant_weight(w, b, s))(bits, sp)
    for i in range(len(bits)):
        assert torch.equal(out[i], fake_quant_weight(w, int(bits[i]), float(sp[i])))
    # per-task weights too (the engine stacks weights on the task axis)
    ws = torch.randn(5, 8, 6, generator=torch.Generator().manual_seed(3))
    out = torch.vmap(fake_quant_weight)(ws, bits, sp)
    for i in range(len(bits)):
        assert torch.equal(out[i], fake_quant_weight(ws[i], int(bits[i]), float(sp[i])))
    y = torch.randn(5, 4, dtype=torch.complex64)
    ab = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    out = torch.vmap(lambda yy, b: quantize_adc(yy, b, 2.0))(y, ab)
    for i in range(5):
        assert torch.equal(out[i], quantize_adc(y[i], int(ab[i]), 2.0))


def test_quantize_params_touches_weights_only_and_model_bytes_counts():
    params = {"decoder.net.0.weight": torch.randn(16, 8), "decoder.net.0.bias": torch.randn(16),
              "encoder.net.0.weight": torch.randn(16, 16)}
    q = quantize_params(params, 4, scope="decoder")
    assert torch.equal(q["decoder.net.0.bias"], params["decoder.net.0.bias"])
    assert torch.equal(q["encoder.net.0.weight"], params["encoder.net.0.weight"])
    assert not torch.equal(q["decoder.net.0.weight"], params["decoder.net.0.weight"])
    dec = {k: v for k, v in params.items() if k.startswith("decoder")}
    assert model_bytes(dec, 32) == 4 * (128 + 16)
    assert model_bytes(dec, 4) == 128 * 4 // 8 + 4 * 16 + 4 * 16  # values + per-row scales + float biases
    assert model_bytes(dec, 4, 0.5) == 64 * 4 // 8 + 128 // 8 + 4 * 16 + 4 * 16


def test_bad_bits_and_sparsity_are_config_errors():
    for b in (0, 17, 2.5, True, "8"):
        with pytest.raises(ConfigError, match="bits"):
            check_bits("bits", b)
    assert check_bits("bits", 32, allow_float=True) == 32
    for s in (-0.1, 1.0, float("nan")):
        with pytest.raises(ConfigError, match="sparsity"):
            check_sparsity("sparsity", s)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 9), bits=st.integers(1, 16),
       sparsity=st.sampled_from([0.0, 0.3, 0.5, 0.9]), seed=st.integers(0, 10_000),
       scale=st.sampled_from([1e-6, 1e-2, 1.0, 1e3]))
def test_property_shapes_grid_and_finite_outputs(rows, cols, bits, sparsity, seed, scale):
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    q = fake_quant_weight(w, bits, sparsity)
    assert q.shape == w.shape and q.dtype == w.dtype and torch.isfinite(q).all()
    wp = w * magnitude_mask(w, sparsity)
    if bits >= 2:
        nz = wp.abs().amax(1) > 0
        if nz.all():
            assert _grid_ok(wp.numpy(), q.detach().numpy(), bits)
    else:
        assert torch.allclose(q.abs(), wp.abs().mean(1, keepdim=True).expand_as(q), rtol=1e-12, atol=0)
    # quantising twice changes nothing for the uniform grid (idempotent)
    if bits >= 2:
        assert torch.allclose(quantize_weight(q, bits), q, rtol=1e-9, atol=0)
    zero = torch.zeros(rows, cols, dtype=torch.float64)
    assert torch.isfinite(fake_quant_weight(zero, bits, sparsity)).all()


def test_forward_values_match_torchao():
    pytest.importorskip("torchao")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchao.quantization.quant_primitives import (
            MappingType,
            choose_qparams_affine,
            dequantize_affine,
            quantize_affine,
        )
    w = torch.randn(16, 8, generator=torch.Generator().manual_seed(5))
    for bits in (2, 4, 6, 8):
        lv = 2 ** (bits - 1) - 1
        block = (1, w.shape[1])  # per output row
        scale, zp = choose_qparams_affine(w, MappingType.SYMMETRIC, block, torch.int8, quant_min=-lv, quant_max=lv)
        ref = dequantize_affine(quantize_affine(w, block, scale, zp, torch.int8, -lv, lv), block, scale, zp,
                                torch.int8, -lv, lv)
        assert torch.allclose(quantize_weight(w, bits), ref, rtol=1e-6, atol=1e-7), bits
