"""Chaining channel stages."""

from __future__ import annotations

import torch
from torch import nn

from metacomm._validation import ConfigError
from metacomm.channels._sampling import check_sample_args
from metacomm.channels.base import Channel, State

__all__ = ["Compose"]


class Compose(Channel):
    """Apply channel stages in order, e.g. ``Compose(RappPA(p=2), IQImbalance(0.1, 5.0), AWGN())``.

    Every stage receives the same ``no``; stages that do not add noise ignore it. The composed state is a flat
    dict whose keys are ``"<stage index>.<key>"``. A pre-drawn ``noise`` tensor goes to the single stage that
    adds noise (an error if there are several).
    """

    def __init__(self, *stages: Channel):
        super().__init__()
        if not stages:
            raise ConfigError("stages", "Compose needs at least one channel stage")
        for s in stages:
            if not isinstance(s, Channel):
                raise ConfigError("stages", f"every stage must be a metacomm Channel, got {type(s).__name__}")
        self.stages = nn.ModuleList(stages)
        self.adds_noise = any(s.adds_noise for s in stages)

    def sample_state(self, batch_size, num_symbols, *, generator=None, device=None, dtype=torch.complex64):
        batch_size, num_symbols = check_sample_args(batch_size, num_symbols)
        out: State = {}
        n = num_symbols
        for i, s in enumerate(self.stages):
            for k, v in s.sample_state(batch_size, n, generator=generator, device=device, dtype=dtype).items():
                out[f"{i}.{k}"] = v
            n = s.output_length(n)
        return out

    def _sub_state(self, state: State, i: int) -> State:
        prefix = f"{i}."
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    def apply(self, x, no, state, generator, noise):
        noisy = [i for i, s in enumerate(self.stages) if s.adds_noise]
        if noise is not None and len(noisy) > 1:
            raise ConfigError("noise", "a pre-drawn noise tensor needs exactly one noise-adding stage")
        y = x
        for i, s in enumerate(self.stages):
            y = s.apply(y, no, self._sub_state(state, i), generator, noise if s.adds_noise else None)
        return y

    def output_length(self, num_symbols: int) -> int:
        for s in self.stages:
            num_symbols = s.output_length(num_symbols)
        return num_symbols
