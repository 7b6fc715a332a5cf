"""Quantised adaptive drift schemes: meta-q8 matches the float meta scheme within intervals on the same draws,
meta-q4 runs, and the quantised codec decodes exactly as a decoder whose tensors were quantised by hand."""

from __future__ import annotations

import copy

import torch

from metacomm.codecs.quantization import quantize_weight
from metacomm.drift.registry import default_schemes, parse_schemes, scheme_names
from metacomm.drift.run import run_drift
from metacomm.drift.schemes.quantized import QuantizedAdaptiveCodec
from metacomm.experiments.drift import load_drift_codec
from metacomm.scenarios.drift_scenarios import load_scenario

CK = "metacomm/checkpoints/online_drift_k8n8.pt"


def _codec():
    import os
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return load_drift_codec(os.path.join(here, CK))


def test_registered_but_not_default():
    assert parse_schemes("meta,meta-q4,meta-q8")[0] == ["meta", "meta-q4", "meta-q8"]
    assert "meta-q4" not in default_schemes() and "meta-q4" in scheme_names("pack")


def test_eight_bit_matches_the_float_scheme_within_intervals():
    torch.set_num_threads(1)
    model, st, _ = _codec()
    res = run_drift(load_scenario("doppler-fast"), model, schemes=["meta", "meta-q8", "meta-q4"], frames=20,
                    pilots=16, links=8, payload=64, seed=1, lr=st.inner_lr, adapt=st.adapt, inner_loss=st.inner_loss)
    s = res.summary()
    f, q8, q4 = s["meta"], s["meta-q8"], s["meta-q4"]
    assert f["blocks"] == q8["blocks"] == q4["blocks"] == 20 * 8 * 64
    assert q8["bler_ci"][0] <= f["bler"] <= q8["bler_ci"][1] and f["bler_ci"][0] <= q8["bler"] <= f["bler_ci"][1]
    assert 0 <= q4["bler"] < 0.5


def test_decoding_equals_a_hand_quantised_decoder():
    model, st, _ = _codec()
    bits = 4
    ref_model = copy.deepcopy(model)
    with torch.no_grad():
        for p in ref_model.decoder.parameters():
            if p.numel() > 1:
                p.copy_(quantize_weight(p, bits))
    q = QuantizedAdaptiveCodec(model, bits=bits, num_links=2, adapt=st.adapt, steps=0, lr=0.1,
                               policy="every-frame", loss=st.inner_loss)
    y = torch.randn(2, 100, model.decoder.n, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = ref_model.decoder.block_logits(y.reshape(-1, y.shape[-1])).reshape(2, 100, -1)
    assert torch.allclose(q.block_logits(y), ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(q.decide_block(y), ref.argmax(-1))
