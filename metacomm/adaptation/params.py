"""Parameter dictionaries and adapted-subset selection.

The meta-engine works on *parameter dictionaries* ``{name: tensor}`` keyed by the names of
``model.named_parameters()`` (``"encoder.net.0.weight"``, ...), so that any :class:`torch.nn.Module` can be
evaluated with other weights through :func:`torch.func.functional_call` without being modified.

Which parameters an inner loop adapts is chosen by an *adapt spec*:

* ``None`` or ``"all"`` -- every trainable parameter (encoder + decoder for a codec);
* a preset name: ``"encoder"``, ``"decoder"``, ``"encoder+decoder"`` (same as ``"all"`` for a codec),
  ``"head"`` (the parameters owned by the last module that owns parameters, i.e. the output layer -- ANIL);
* a glob pattern or a list of glob patterns matched against parameter names (``"decoder.*"``,
  ``["decoder.net.2.*", "rtn.*"]``);
* a callable ``name -> bool``.

Every function of the engine that takes ``adapt=`` (:func:`~metacomm.adaptation.algorithms.meta_gradients`,
:func:`~metacomm.adaptation.algorithms.adapt_and_score`, the ``inner_adapt*`` loops, ...) accepts any adapt
spec and resolves it with :func:`resolve_adapt`; a list of exact parameter names is used as given.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable

import torch
from torch import nn

from metacomm._validation import ConfigError

__all__ = ["PRESETS", "AdaptSpec", "head_names", "select_names", "resolve_adapt", "params_of", "detach_params",
           "clone_params"]

AdaptSpec = str | Iterable[str] | Callable[[str], bool] | None

PRESETS: dict[str, tuple[str, ...]] = {
    "all": ("*",),
    "encoder": ("encoder.*",),
    "decoder": ("decoder.*",),
    "encoder+decoder": ("encoder.*", "decoder.*"),
}


def params_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters of ``model`` as an ordered ``{name: Parameter}`` dict (the tensors themselves)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def detach_params(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in params.items()}


def clone_params(params: dict[str, torch.Tensor], requires_grad: bool = False) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone().requires_grad_(requires_grad) for n, p in params.items()}


def head_names(model: nn.Module) -> list[str]:
    """Names of the trainable parameters directly owned by the *last* module (in registration order) that
    owns any: the output layer of an MLP, the decoder's output layer of an encoder/decoder codec."""
    last: list[str] = []
    for mod_name, mod in model.named_modules():
        own = [n for n, p in mod.named_parameters(recurse=False) if p.requires_grad]
        if own:
            last = [f"{mod_name}.{n}" if mod_name else n for n in own]
    return last


def select_names(model: nn.Module, spec: AdaptSpec, *, field: str = "adapt") -> list[str]:
    """Resolve an adapt spec (module docstring) to the list of parameter names, in ``named_parameters`` order.

    Raises :class:`~metacomm.ConfigError` (naming ``field``) for an unknown preset, a bad type, or a spec
    that matches no trainable parameter.
    """
    names = list(params_of(model))
    if spec is None:
        spec = "all"
    if callable(spec):
        chosen = [n for n in names if spec(n)]
    else:
        if isinstance(spec, str):
            if spec == "head":
                chosen = head_names(model)
                if not chosen:
                    raise ConfigError(field, "'head': the model has no trainable parameters")
                return chosen
            patterns = PRESETS.get(spec, (spec,))
            if spec not in PRESETS and not any(ch in spec for ch in "*?[") and spec not in names:
                allowed = ", ".join([*PRESETS, "head"])
                raise ConfigError(field, f"unknown preset or parameter {spec!r}; allowed: {allowed}, a glob "
                                         "pattern over parameter names, or a list of them")
        else:
            try:
                patterns = tuple(spec)
            except TypeError:
                raise ConfigError(field, f"expected a preset name, glob pattern(s) or a callable, got "
                                         f"{type(spec).__name__}") from None
            if not all(isinstance(p, str) for p in patterns):
                raise ConfigError(field, "glob patterns must be strings")
        chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        raise ConfigError(field, f"{spec!r} matches no trainable parameter; parameters are: "
                                 f"{', '.join(names) if names else '(none)'}")
    return chosen


def resolve_adapt(model: nn.Module, params, spec: AdaptSpec, *, field: str = "adapt") -> list[str]:
    """The adapted names for an engine call: ``spec`` resolved against ``model`` (:func:`select_names`), kept
    to the names present in ``params``. ``None`` means every name of ``params``; a list/tuple of exact names
    of ``params`` is returned as given (order kept). Raises :class:`~metacomm.ConfigError` naming ``field``
    when nothing of ``params`` is selected."""
    keys = list(params)
    if spec is None:
        return keys
    if isinstance(spec, (list, tuple)) and all(isinstance(n, str) for n in spec) and all(n in params for n in spec):
        if not spec:
            raise ConfigError(field, "empty list of parameters to adapt")
        return list(spec)
    if isinstance(spec, str) and spec in params and not any(ch in spec for ch in "*?["):
        return [spec]
    chosen = [n for n in select_names(model, spec, field=field) if n in params]
    if not chosen:
        raise ConfigError(field, f"{spec!r} selects none of the given parameters ({', '.join(keys)})")
    return chosen
