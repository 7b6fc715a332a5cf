"""The channel protocol shared by every channel model in metacomm.

A channel is an :class:`torch.nn.Module` that maps complex baseband symbols to received samples::

    state = channel.sample_state(batch_size, num_symbols, generator=g, device=dev)   # optional
    y = channel(x, no, state=state, generator=g)

Conventions (see also :mod:`metacomm.channels.units`):

* ``x`` -- complex tensor ``[batch, n]`` (``complex64`` or ``complex128``) with unit *average* symbol energy
  ``E|x|^2 = Es = 1``.
* ``no`` -- the noise variance N0 per complex sample (N0/2 per real dimension), as a Python float or a tensor
  broadcastable to ``[batch]`` (one value per block) or ``[batch, n]``. With ``Es = 1`` this is
  ``N0 = 1 / (Es/N0)``; :func:`metacomm.channels.units.ebnodb_to_no` converts from Eb/N0 in dB. It must be
  finite and >= 0 (0: no noise); :func:`metacomm.channels.units.broadcast_no` checks it and raises
  :class:`~metacomm.ConfigError` otherwise.
* ``state`` -- the random *realisation* of the channel (fading taps, phases, impairment draws): a flat ``dict``
  of tensors whose first dimension is the batch, drawn by :meth:`Channel.sample_state` from an explicit
  :class:`torch.Generator`. Passing the same state again reuses the realisation (pilots and payload through
  the same channel); ``state=None`` draws a fresh one from ``generator``. Channels with no randomness other
  than noise return ``{}``.
* ``generator`` -- the :class:`torch.Generator` for the additive noise (and for the state when ``state`` is
  None). ``None`` falls back to torch's default generator; metacomm itself always passes one.
* ``noise`` -- optionally a pre-drawn unit-variance circular complex Gaussian tensor of the output's shape,
  used instead of drawing (useful inside ``torch.vmap``, where generators cannot be used).

Every operation is differentiable with respect to ``x`` (and to the channel's own parameters, if any).
"""

from __future__ import annotations

import torch
from torch import nn

from metacomm._validation import ConfigError
from metacomm.channels.units import broadcast_no

State = dict[str, torch.Tensor]

__all__ = ["Channel", "State", "complex_normal", "make_generator", "as_noise_variance", "check_symbols"]


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(int(seed))
    return g


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype in (torch.complex128, torch.float64) else torch.float32


def complex_normal(shape, *, generator: torch.Generator | None = None, dtype=torch.complex64,
                   device=None) -> torch.Tensor:
    """Circularly-symmetric complex Gaussian CN(0, 1): variance 1/2 per real dimension."""
    rdt = _real_dtype(dtype)
    if generator is not None and device is None:
        device = generator.device
    z = torch.randn((*shape, 2), generator=generator, dtype=rdt, device=device)
    return torch.complex(z[..., 0], z[..., 1]) * (0.5 ** 0.5)


def check_symbols(x: torch.Tensor, name: str = "x") -> None:
    if not torch.is_complex(x):
        raise ConfigError(name, f"expected a complex tensor [batch, n], got dtype {x.dtype}")
    if x.dim() < 1:
        raise ConfigError(name, "expected a complex tensor [batch, n], got a scalar")


def as_noise_variance(no, x: torch.Tensor) -> torch.Tensor:
    """N0 as a real tensor broadcastable against ``x`` ``[batch, n]``; N0 = 0 (no noise) allowed.

    A scalar applies to every sample; a ``[batch]`` tensor gives one N0 per block (trailing dims added).
    :func:`metacomm.channels.units.broadcast_no` with ``allow_zero=True`` (shapes, dtypes, validation there).
    """
    return broadcast_no(no, x, allow_zero=True)


class Channel(nn.Module):
    """Base class of all metacomm channels (see module docstring for the protocol).

    Subclasses implement :meth:`sample_state` (if they have a random realisation) and :meth:`apply`.
    ``adds_noise`` tells :class:`~metacomm.channels.Compose` which stage consumes the ``noise`` argument.
    """

    adds_noise: bool = False

    def sample_state(self, batch_size: int, num_symbols: int, *, generator: torch.Generator | None = None,
                     device: str | torch.device | None = None, dtype=torch.complex64) -> State:
        """Draw a channel realisation for ``batch_size`` blocks of ``num_symbols`` symbols (non-negative integers,
        :func:`~metacomm.channels._sampling.check_sample_args`, which every channel's draw goes through)."""
        from metacomm.channels._sampling import check_sample_args
        check_sample_args(batch_size, num_symbols)
        return {}

    def apply(self, x: torch.Tensor, no: torch.Tensor, state: State, generator: torch.Generator | None,
              noise: torch.Tensor | None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor, no=0.0, state: State | None = None, *,
                generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        check_symbols(x)
        if state is None:
            state = self.sample_state(x.shape[0], x.shape[-1], generator=generator, device=x.device,
                                      dtype=x.dtype)
        return self.apply(x, as_noise_variance(no, x), state, generator, noise)

    def output_length(self, num_symbols: int) -> int:
        """Number of received samples per block for ``num_symbols`` transmitted symbols."""
        return num_symbols


def add_noise(y: torch.Tensor, no: torch.Tensor, generator: torch.Generator | None,
              noise: torch.Tensor | None) -> torch.Tensor:
    """``y + sqrt(N0) * w`` with ``w ~ CN(0, 1)`` drawn from ``generator`` (or the given ``noise``)."""
    if noise is None:
        noise = complex_normal(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return y + torch.sqrt(no).to(y.dtype) * noise
