"""`metacomm export`: the ONNX decoder makes the same decisions in onnxruntime as the quantised torch codec
(the pack's objective path) on 10^4 blocks; its weights lie on the grid; bad input exits 2 naming the flag."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metacomm.cli.main import main


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    torch.set_num_threads(1)
    ck = tmp_path_factory.mktemp("exp") / "fading.pt"
    assert main(["meta-train", "--scenario", "fading-ae", "--meta-steps", "40", "--joint-steps", "0", "--val-every",
                 "0", "--quiet", "--set", "num_train_channels=8", "--out", str(ck)]) == 0
    return ck


@pytest.mark.parametrize("bits,sparsity", [(4, 0.0), (2, 0.5), (1, 0.0)])
def test_onnxruntime_decisions_equal_the_quantised_torch_codec(base, tmp_path, bits, sparsity):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from metacomm.adaptation.functional import call
    from metacomm.experiments.compression import load_base
    out = tmp_path / "codec.onnx"
    assert main(["export", "--checkpoint", str(base), "--bits", str(bits), "--sparsity", str(sparsity),
                 "--format", "onnx", "--out", str(out)]) == 0
    sc, model, _, _ = load_base(str(base), "cpu")
    g = torch.Generator().manual_seed(0)
    with sc.using(bits=bits, sparsity=sparsity):
        b = sc._batch(sc.test_taps[:1], 10_000, g, balanced=False)
    batch = {k: v[0] for k, v in b.items()}
    # independent torch route: the pack's quantised objective (quantize_params + STE forward) on the same y
    msg = batch["msg"]
    x = model.encoder.forward_index(msg)
    y = sc.channel(x, batch["no"], state={"taps": batch["taps"].expand(len(msg), -1)}, noise=batch["noise"]).detach()

    def logits_fn(m, yy):
        return sc.objective._block_logits(m, yy, batch["act_bits"])

    with torch.no_grad():
        qp = sc.objective.quantized(model, batch)
        ref = call(model, qp, logits_fn, y).argmax(-1).numpy()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feed = torch.stack([y.real, y.imag], dim=1).numpy().astype(np.float32)
    logits, dec = sess.run(None, {"y": feed})
    assert dec.shape == (10_000,) and (dec == ref).all()
    assert (logits.argmax(-1) == ref).all()
    # the graph's weights are the b-bit values: per row at most 2^b - 1 distinct levels (2 at 1 bit)
    import onnx
    from onnx import numpy_helper
    mats = [numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer]
    mats = [m for m in mats if m.ndim == 2]
    assert mats
    for m in mats:
        for row in m:
            levels = np.unique(row[row != 0]) if sparsity else np.unique(row)
            assert len(levels) <= (2 if bits == 1 else 2 ** bits - 1)


def test_bad_export_input_exits_2(base, tmp_path, capsys):
    for argv, flag in ((["--bits", "0"], "--bits"), (["--bits", "20"], "--bits"), (["--sparsity", "1"], "--sparsity"),
                       (["--format", "tflite"], "--format"), (["--method", "ptq"], "--method")):
        rc = main(["export", "--checkpoint", str(base), *argv, "--out", str(tmp_path / "c.onnx")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith(f"metacomm export: error: {flag}: "), err
    rc = main(["export", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "c.onnx")])
    assert rc == 2 and "--checkpoint" in capsys.readouterr().err
