"""Deployment: export the (pruned, quantised) decoder of a learned codec to ONNX -- :class:`ExportConfig` ->
:func:`run_export`.

The exported graph is the receiver of the ``fading-ae`` autoencoder (Park et al.'s AE(k, n) with complex channel
uses): input ``y`` float32 ``[batch, 2, n]`` (row 0 the real parts, row 1 the imaginary parts of the ``n``
received complex samples), outputs ``block_logits`` float32 ``[batch, 2^k]`` and ``message`` int64 ``[batch]``
(the arg-max decision). The weights are the checkpoint's float weights pruned at ``sparsity`` and quantised to
``bits`` (:func:`metacomm.codecs.quantization.quantize_weight`: per-row symmetric grid, 1 bit = sign x mean |w|),
stored as float32 initialisers whose values lie on the grid (so the file is not smaller than a float32 model: the
deployable size is ``model_bytes``, which the command reports next to the file size); biases float32.

Accepted checkpoints: a ``fading-ae`` / ``fading-ae-quant`` meta-train checkpoint (its shipped initialisation),
or the ``codecs.pt`` of a ``metacomm pack compression`` run (``method`` picks one of its initialisations).
The exporter is torch's default (``torch.export``-based; needs ``onnxscript``) -- install ``metacomm[onnx]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from metacomm._validation import ConfigError, check_choice
from metacomm.experiments._common import check_out_file

__all__ = ["ExportConfig", "run_export", "quantized_decoder", "FORMATS", "load_export_codec"]

FORMATS = ("onnx",)


@dataclass
class ExportConfig:
    """``checkpoint``: meta-train checkpoint or a compression pack's ``codecs.pt``; ``bits``: 1-16 or 32 (float);
    ``sparsity`` in [0, 1); ``format``: ``onnx``; ``out``: the file written; ``method``: which initialisation of
    a ``codecs.pt`` (default: the first); ``quantize``: ``all``/``decoder`` (only the decoder is exported, so
    both give the same graph; kept for the byte count)."""

    checkpoint: str
    out: str
    bits: int = 8
    sparsity: float = 0.0
    format: str = "onnx"
    method: str | None = None

    def validate(self) -> ExportConfig:
        from metacomm.codecs.quantization import check_bits, check_sparsity
        self.bits = check_bits("bits", self.bits, allow_float=True)
        self.sparsity = check_sparsity("sparsity", self.sparsity)
        check_choice("format", self.format, FORMATS)
        check_out_file(self.out, example="codec.onnx")
        return self


def load_export_codec(path: str, method: str | None = None, device="cpu", field: str = "checkpoint"):
    """``(model, description)``: the float codec of a meta-train checkpoint or of a pack's ``codecs.pt``."""
    from metacomm.artefacts import load_checkpoint
    from metacomm.experiments.compression import CODECS_KIND, load_base
    from metacomm.scenarios import make_scenario
    ck = load_checkpoint(path, kinds=("metacomm-meta", CODECS_KIND), field=field)
    if "methods" in ck:
        methods = list(ck["methods"])
        method = methods[0] if method is None else method
        if method not in methods:
            raise ConfigError("method", f"{path} holds {', '.join(methods)}; got {method!r}")
        sc = make_scenario(ck["scenario"], device=device, **ck["scenario_config"])
        model = sc.build_model(0)
        model.load_state_dict(ck["methods"][method]["model"])
        return model, f"{method} initialisation of {path}"
    if method is not None:
        raise ConfigError("method", "--method picks an initialisation of a compression pack's codecs.pt; "
                                    f"{path} is a meta-train checkpoint")
    _, model, _, _ = load_base(path, device, field=field)
    return model, f"meta-trained initialisation of {path}"


class _QuantDecoder(nn.Module):
    """``y`` ``[B, 2, n]`` -> (block logits ``[B, 2^k]``, arg-max message ``[B]``) with fixed weights."""

    def __init__(self, net: nn.Sequential):
        super().__init__()
        self.net = net

    def forward(self, y):
        logits = self.net(y.flatten(1))
        return logits, logits.argmax(-1)


def quantized_decoder(model: nn.Module, bits: int, sparsity: float = 0.0) -> nn.Module:
    """A frozen copy of ``model.decoder``'s MLP with weights pruned at ``sparsity`` and quantised to ``bits``,
    wrapped to take ``y`` as ``[B, 2, n]`` reals (see the module docstring); eval mode, no grad."""
    import copy

    from metacomm.codecs.quantization import prune, quantize_weight
    dec = model.decoder
    if not hasattr(dec, "net") or getattr(dec, "real_uses", True):
        raise ConfigError("checkpoint", "export supports the fading-ae autoencoder (complex channel uses, plain MLP "
                                        "decoder)")
    net = copy.deepcopy(dec.net).eval()
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, nn.Linear):
                layer.weight.copy_(quantize_weight(prune(layer.weight, sparsity), bits))
    for p in net.parameters():
        p.requires_grad_(False)
    return _QuantDecoder(net).eval()


def _export_onnx(module: nn.Module, n: int, path: str) -> None:
    import warnings
    try:
        import onnxscript  # noqa: F401  (the torch.export-based exporter needs it)
    except ImportError:
        raise ConfigError("format", "ONNX export needs onnx and onnxscript: pip install 'metacomm[onnx]'") from None
    example = torch.zeros(2, 2, n)
    tmp = f"{path}.tmp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import contextlib
        import io
        with contextlib.redirect_stdout(io.StringIO()):
            torch.onnx.export(module, (example,), tmp, input_names=["y"], output_names=["block_logits", "message"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False)
    os.replace(tmp, path)


def run_export(cfg: ExportConfig, *, log: Callable[[str], None] = print) -> dict:
    """Export the decoder of ``cfg``; returns ``{"out", "bytes_file", "model_bytes_decoder", "bits", ...}``."""
    from metacomm.codecs.quantization import model_bytes
    cfg.validate()
    model, what = load_export_codec(cfg.checkpoint, cfg.method)
    dec = quantized_decoder(model, cfg.bits, cfg.sparsity)
    n = model.decoder.n_rx
    parent = os.path.dirname(os.path.abspath(cfg.out))
    os.makedirs(parent, exist_ok=True)
    _export_onnx(dec, n, cfg.out)
    params = {f"decoder.{k}": v for k, v in model.decoder.named_parameters()}
    info = {"out": cfg.out, "bytes_file": os.path.getsize(cfg.out), "bits": cfg.bits, "sparsity": cfg.sparsity,
            "model_bytes_decoder": model_bytes(params, cfg.bits, cfg.sparsity), "source": what,
            "input": f"y float32 [batch, 2, {n}] (Re; Im)", "outputs": "block_logits [batch, 2^k], message [batch]"}
    log(f"export: decoder of the {what} at {cfg.bits} bits, sparsity {cfg.sparsity:g} -> {cfg.out} "
        f"({info['bytes_file']} bytes ONNX; {info['model_bytes_decoder']} bytes as packed {cfg.bits}-bit weights "
        "+ scales + float32 biases)")
    return info
