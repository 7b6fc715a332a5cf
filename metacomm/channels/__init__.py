"""Differentiable channel models (see :mod:`metacomm.channels.base` for the protocol)."""

from metacomm.channels.awgn import AWGN
from metacomm.channels.base import Channel, State, complex_normal, make_generator
from metacomm.channels.compose import Compose
from metacomm.channels.units import ebnodb_to_esnodb, ebnodb_to_no, esnodb_to_ebnodb, esnodb_to_no

__all__ = [
    "AWGN",
    "Channel",
    "Compose",
    "State",
    "complex_normal",
    "ebnodb_to_esnodb",
    "ebnodb_to_no",
    "esnodb_to_ebnodb",
    "esnodb_to_no",
    "make_generator",
]
