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

The model is serialised in memory and written through the one atomic writer (:func:`metacomm._io.atomic_write_bytes`:
a ``mkstemp`` temporary in the destination's directory, then :func:`os.replace`; a failure such as a full disk is one
``ConfigError("out", ...)`` line and leaves neither a temporary nor a damaged file). The file carries the metadata
entry ``metacomm_format = "metacomm-onnx/1"``: an existing ``out`` is replaced only when it carries that tag (a model
exported by metacomm) or ``overwrite`` is set -- never a foreign file (nor a link) by default.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from metacomm._log import info
from metacomm._validation import ConfigError, check_choice
from metacomm.experiments._common import check_out_file

__all__ = ["ExportConfig", "run_export", "quantized_decoder", "FORMATS", "load_export_codec", "ONNX_TAG",
           "is_metacomm_onnx"]

FORMATS = ("onnx",)

#: metadata entry (``ModelProto.metadata_props``) that marks an ONNX file written by ``metacomm export``
ONNX_TAG_KEY = "metacomm_format"
ONNX_TAG = "metacomm-onnx/1"
#: the tag as serialised in the file (StringStringEntryProto: key = field 1, value = field 2, both short strings)
_TAG_BYTES = (b"\x0a" + bytes([len(ONNX_TAG_KEY)]) + ONNX_TAG_KEY.encode() + b"\x12" + bytes([len(ONNX_TAG)])
              + ONNX_TAG.encode())
#: a file larger than this is not a decoder metacomm exported (the tag is not searched for)
_MAX_OURS_BYTES = 256 << 20


@dataclass
class ExportConfig:
    """``checkpoint``: meta-train checkpoint or a compression pack's ``codecs.pt``; ``bits``: 1-16 or 32 (float);
    ``sparsity`` in [0, 1); ``format``: ``onnx``; ``out``: the file written; ``method``: which initialisation of
    a ``codecs.pt`` (default: the first); ``quantize``: ``all``/``decoder`` (only the decoder is exported, so
    both give the same graph; kept for the byte count); ``overwrite``: replace an existing ``out`` that is not a
    model exported by metacomm."""

    checkpoint: str
    out: str
    bits: int = 8
    sparsity: float = 0.0
    format: str = "onnx"
    method: str | None = None
    overwrite: bool = False

    def validate(self) -> ExportConfig:
        from metacomm.codecs.quantization import check_bits, check_sparsity
        self.bits = check_bits("bits", self.bits, allow_float=True)
        self.sparsity = check_sparsity("sparsity", self.sparsity)
        check_choice("format", self.format, FORMATS)
        if not isinstance(self.out, str | os.PathLike) or not os.fspath(self.out).strip():
            raise ConfigError("out", f"give an output file such as codec.onnx, got {self.out!r}")
        check_out_file(self.out, example="codec.onnx")
        if not isinstance(self.overwrite, bool):
            raise ConfigError("overwrite", f"must be true or false, got {self.overwrite!r}")
        check_replaceable(self.out, overwrite=self.overwrite)
        return self


def is_metacomm_onnx(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file (not a link) holding an ONNX model written by ``metacomm export`` (it
    carries the :data:`ONNX_TAG` metadata entry). Needs no ``onnx`` package."""
    try:
        st = os.lstat(path)
        import stat
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_OURS_BYTES:
            return False
        with open(path, "rb") as f:
            data = f.read(_MAX_OURS_BYTES + 1)
    except OSError:
        return False
    return data[:1] == b"\x08" and _TAG_BYTES in data  # ModelProto starts with ir_version (field 1, varint)


def check_replaceable(path: str | os.PathLike, *, overwrite: bool, field: str = "out") -> None:
    """Raise ``ConfigError(field, ...)`` when ``path`` exists (or is a link) and is not a model exported by
    metacomm, unless ``overwrite``."""
    if overwrite or not os.path.lexists(path) or is_metacomm_onnx(path):
        return
    what = "a link" if os.path.islink(path) else "a file that is not an ONNX model exported by metacomm"
    raise ConfigError(field, f"{os.fspath(path)} exists and is {what}; refusing to replace it (choose another "
                             "output name or replace it with overwrite=True (--overwrite))")


def load_export_codec(path: str, method: str | None = None, device="cpu", field: str = "checkpoint"):
    """``(model, description)``: the float codec of a meta-train checkpoint or of a pack's ``codecs.pt``."""
    from metacomm.artefacts import load_checkpoint
    from metacomm.experiments.compression import CODECS_KIND, load_base
    from metacomm.scenarios import make_scenario, scenario_class
    ck = load_checkpoint(path, kinds=("metacomm-meta", CODECS_KIND), field=field)
    if "methods" in ck:
        from metacomm.experiments.compression import check_codecs_pair
        check_codecs_pair(ck, path, field=field)  # the weights the results beside them describe
        methods = list(ck["methods"])
        method = methods[0] if method is None else method
        if method not in methods:
            raise ConfigError("method", f"{path} holds {', '.join(methods)}; got {method!r}")
        scenario_class(ck["scenario"], field=field).check_stored_config(ck["scenario_config"], field=field)
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


class _DropTorchvisionNotice(logging.Filter):
    """Drops torch.onnx's "torchvision is not installed. Skipping torchvision::nms" notices (one per torchvision
    op it would register; metacomm's graphs use none of them). Every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return not str(record.getMessage()).startswith("torchvision is not installed")
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is not the notice
            return True


#: loggers that emit the notice (torch's exporter registry; onnxscript's own torch_lib registry)
_NOTICE_LOGGERS = ("torch.onnx._internal.exporter._registration", "onnxscript")


@contextlib.contextmanager
def _without_torchvision_notices():
    """Filter the torchvision notices on the loggers that emit them and on the handlers they reach."""
    notice = _DropTorchvisionNotice()
    targets = [logging.getLogger(n) for n in _NOTICE_LOGGERS]
    targets += [h for name in ("torch", "") for h in logging.getLogger(name or None).handlers]
    for t in targets:
        t.addFilter(notice)
    try:
        yield
    finally:
        for t in targets:
            t.removeFilter(notice)


def _export_onnx_bytes(module: nn.Module, n: int) -> bytes:
    """The ONNX file of ``module`` (input ``y`` ``[batch, 2, n]``), tagged :data:`ONNX_TAG`, serialised in memory
    (nothing is written to disk here)."""
    import io
    import warnings
    try:
        import onnxscript  # noqa: F401  (the torch.export-based exporter needs it)
    except ImportError:
        raise ConfigError("format", "ONNX export needs onnx and onnxscript: pip install 'metacomm[onnx]'") from None
    from metacomm import __version__
    example = torch.zeros(2, 2, n)
    with _without_torchvision_notices(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), None, input_names=["y"],
                                    output_names=["block_logits", "message"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True,
                                    external_data=False)
        proto = program.model_proto
    for key, value in ((ONNX_TAG_KEY, ONNX_TAG), ("metacomm_version", str(__version__))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def write_onnx(path: str | os.PathLike, data: bytes, *, overwrite: bool = False, field: str = "out") -> int:
    """Write the serialised model ``data`` to ``path`` through the atomic writer (missing parent directories are
    created); an existing foreign file is refused unless ``overwrite`` (checked again here: it may have appeared
    while the model was exported). Returns the number of bytes written."""
    from metacomm._io import atomic_write_bytes
    check_replaceable(path, overwrite=overwrite, field=field)
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise ConfigError(field, f"cannot create the directory {parent!r} ({e.strerror or e})") from None
    atomic_write_bytes(path, data, field=field)
    return len(data)


def run_export(cfg: ExportConfig, *, log: Callable[[str], None] = info) -> dict:
    """Export the decoder of ``cfg``; returns ``{"out", "bytes_file", "model_bytes_decoder", "bits", ...}``."""
    from metacomm.codecs.quantization import model_bytes
    cfg.validate()
    model, what = load_export_codec(cfg.checkpoint, cfg.method)
    dec = quantized_decoder(model, cfg.bits, cfg.sparsity)
    n = model.decoder.n_rx
    size = write_onnx(cfg.out, _export_onnx_bytes(dec, n), overwrite=cfg.overwrite)
    params = {f"decoder.{k}": v for k, v in model.decoder.named_parameters()}
    info = {"out": cfg.out, "bytes_file": size, "bits": cfg.bits, "sparsity": cfg.sparsity,
            "model_bytes_decoder": model_bytes(params, cfg.bits, cfg.sparsity), "source": what,
            "input": f"y float32 [batch, 2, {n}] (Re; Im)", "outputs": "block_logits [batch, 2^k], message [batch]"}
    log(f"export: decoder of the {what} at {cfg.bits} bits, sparsity {cfg.sparsity:g} -> {cfg.out} "
        f"({info['bytes_file']} bytes ONNX; {info['model_bytes_decoder']} bytes as packed {cfg.bits}-bit weights "
        "+ scales + float32 biases)")
    return info
