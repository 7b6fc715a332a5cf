"""Sionna blocks on the right device: the one helper every metacomm module that wraps a Sionna block uses.

How Sionna 2.x handles devices (``sionna.phy.Object`` / ``Block``, read in sionna-no-rt 2.2):

* a block is bound to one device when it is built (``device="cpu"``, ``"cuda:0"``, ...; ``None`` means
  ``sionna.phy.config.device``, which is ``"cuda:0"`` whenever CUDA is available). Its constants are created
  there, some as plain attributes (``Constellation`` points, ``Mapper`` bit weights), some as buffers (LDPC
  index tables);
* ``Module.to()`` moves only the buffers: ``block.device`` and the plain attributes stay, so a moved block
  mixes devices;
* ``Block.__call__`` silently copies every tensor input to ``block.device`` (float/complex ones also to its
  precision): a CPU block fed CUDA tensors computes on the CPU and returns CPU tensors (a host round trip per
  call, and a device mismatch further down);
* ``Object.__setattr__`` refuses a Sionna sub-object (e.g. a ``Constellation``) built on another device.

Rule in metacomm: a Sionna block is never moved. It is built for the device of the tensors it processes by a
:class:`SionnaBlocks` cache (one instance per device and key, built on first use and kept). The owning module
holds the cache as a plain attribute, not a registered sub-module, so Sionna blocks stay out of
``state_dict()``, ``parameters()``, ``Module.to()`` and :func:`torch.func.functional_call`. They hold constants
only: a trainable tensor (e.g. learned constellation points) is owned by a metacomm module and assigned to the
block at every call.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import torch

from metacomm._validation import ConfigError

__all__ = ["SionnaBlocks", "device_string", "sionna_device"]

T = TypeVar("T")


def sionna_device(device=None, *, field: str = "device") -> str:
    """The device string Sionna's blocks accept (``"cpu"``, ``"cuda:0"``, ...) for a user's device spec.

    ``None`` means CPU (metacomm never picks an accelerator implicitly); ``"cuda"`` means the current CUDA
    device. Raises :class:`ConfigError` (``field``) for an unknown, unavailable or unsupported device.
    """
    if device is None:
        return "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(field, f"unknown device {device!r}; allowed: cpu, cuda, cuda:N") from None
    if dev.type == "cpu":
        return "cpu"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(field, f"{device!r} requested but CUDA is not available; allowed: cpu")
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ConfigError(field, f"{device!r}: only {torch.cuda.device_count()} CUDA device(s)")
        return f"cuda:{index}"
    raise ConfigError(field, f"unsupported device type {dev.type!r}; allowed: cpu, cuda")


def device_string(device: torch.device | str) -> str:
    """Sionna's spelling of a device a tensor already lives on (no validation): ``"cpu"``, ``"cuda:<i>"``."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(dev)


class SionnaBlocks(Generic[T]):
    """Sionna blocks built lazily, one per device (and optional key), by ``factory(*key, device=<str>)``.

    Args:
        factory: builds one block (or a tuple of blocks) on the given Sionna device string. Give a
            module-level function or a :func:`functools.partial` of one over plain config values, so that the
            owner stays picklable and deep copies do not refer back to the original owner.
        device: build the default-key block eagerly on this device (a user spec, validated with
            :func:`sionna_device`; construction errors surface at once); ``None``: build nothing yet.

    :meth:`get` returns the block for ``device`` (a torch device, a device string, or ``None`` for the eager
    device, CPU when there is none); blocks are kept for the owner's lifetime. Not an ``nn.Module``: the
    blocks are invisible to ``state_dict()``, ``parameters()``, ``.to()`` and ``functional_call``.
    """

    def __init__(self, factory: Callable[..., T], *, device=None):
        self._factory = factory
        self._blocks: dict[tuple, T] = {}
        self.default_device = sionna_device(device)
        if device is not None:
            self.get(self.default_device)

    def get(self, device: torch.device | str | None = None, *key: Hashable) -> T:
        dev = self.default_device if device is None else device_string(device)
        k = (dev, *key)
        block = self._blocks.get(k)
        if block is None:
            block = self._blocks[k] = self._factory(*key, device=dev)
        return block

    def devices(self) -> list[str]:
        """The devices blocks have been built on so far (in build order)."""
        return list(dict.fromkeys(k[0] for k in self._blocks))

    def __repr__(self) -> str:
        name = getattr(self._factory, "__name__", None) or getattr(getattr(self._factory, "func", None),
                                                                   "__name__", "factory")
        return f"SionnaBlocks({name}, built on {self.devices()})"
