"""Turn command-line choices into a Link for :func:`metacomm.sims.engine.simulate`.

:func:`build_link` takes any object with the attributes of ``metacomm ber``'s arguments (an
:class:`argparse.Namespace`, a :class:`types.SimpleNamespace`, or a ``dict``):

* ``codec`` -- classical ``bpsk, qpsk, qam16, qam64, hamming74, ldpc5g`` (built by
  :func:`metacomm.codecs.registry.make_link`) or learned ``ae, constellation, neural-rx`` (loaded from
  ``checkpoint`` by :func:`metacomm.codecs.checkpoint.load_codec` and wrapped in
  :class:`~metacomm.codecs.base.CodecLink`); when ``channel`` is the one in the checkpoint's metadata, its
  ``meta["channel_kwargs"]`` are used (explicit ``channel_kwargs`` override them, see
  :func:`learned_channel_kwargs`), and a channel whose frame/taps do not fit the receiver is refused;
* ``decoder`` -- classical decoder/demapper choice (``app, maxlog, ml, hard, bp``) or ``None`` for the default;
* ``channel`` -- a name of :func:`metacomm.channels.registry.make_channel`; ``channel_kwargs`` (optional dict)
  are passed on to it;
* ``block_length`` -- information bits per block, or ``None`` for the codec's default;
* ``csi`` -- receiver channel knowledge on block-fading channels: ``"ls"`` (least-squares estimate from
  ``num_pilots`` pilot symbols per block, default) or ``"perfect"`` (genie); ignored on channels without fading;
* ``checkpoint`` -- path of a learned codec; ``device`` -- ``cpu``/``cuda``;
* ``link`` -- instead of ``codec``/``channel``: a coded OFDM link, a built-in preset name (:func:`ofdm_link_presets`,
  e.g. ``sionna-nrx-tutorial``) or a TOML file of :class:`metacomm.codecs.ofdm_config.OFDMLinkConfig` keys, built
  as :class:`metacomm.codecs.ofdm.OFDMLink` with ``receiver`` (:func:`ofdm_receivers`: ``ls-nn`` by default,
  ``ls-lin``, ``lmmse-cov``, ``perfect-csi``); ``codec``, ``channel``, ``decoder``, ``checkpoint``,
  ``block_length`` and ``num_pilots`` must then be absent (the link file describes all of it).

The registries and the checkpoint loader are imported lazily, so the engine itself has no dependency on them.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from metacomm._validation import ConfigError, check_choice, check_positive_int

__all__ = ["CLASSICAL_CODECS", "LEARNED_CODECS", "CODECS", "DECODERS", "CSI_CHOICES", "OFDM_DEFAULT_RECEIVER",
           "build_link", "build_ofdm_link", "link_info", "learned_channel_kwargs", "check_learned_channel",
           "ofdm_receivers", "ofdm_link_presets", "load_ofdm_link_config", "LINK_EXCLUSIVE"]

CLASSICAL_CODECS = ("bpsk", "qpsk", "qam16", "qam64", "hamming74", "ldpc5g")
LEARNED_CODECS = ("ae", "constellation", "neural-rx")
CODECS = CLASSICAL_CODECS + LEARNED_CODECS
#: ``--codec`` name of a learned codec -> the codec class its checkpoint must hold.
LEARNED_CLASSES = {"ae": "Autoencoder", "constellation": "TrainableConstellation", "neural-rx": "NeuralReceiver"}
DECODERS = ("app", "maxlog", "ml", "hard", "bp")
CSI_CHOICES = ("ls", "perfect")
OFDM_DEFAULT_RECEIVER = "ls-nn"
#: keys that describe a codec link and must not be given together with ``link``
#: codec-link keys that cannot be combined with ``link`` (``checkpoint`` may: the adaptive OFDM receiver's prior bank)
LINK_EXCLUSIVE = ("codec", "channel", "decoder", "block_length", "num_pilots")


def ofdm_receivers() -> tuple[str, ...]:
    """The receivers of an OFDM link (``--receiver``): :data:`metacomm.codecs.ofdm_receivers.RECEIVERS`."""
    from metacomm.codecs.ofdm_receivers import RECEIVERS
    return RECEIVERS


def ofdm_link_presets() -> tuple[str, ...]:
    """The built-in OFDM link presets (``--link NAME``)."""
    from metacomm.codecs.ofdm_config import preset_names
    return preset_names()


def load_ofdm_link_config(spec):
    """The validated :class:`~metacomm.codecs.ofdm_config.OFDMLinkConfig` of ``--link`` ``spec`` (preset name or
    TOML path); ConfigError ``link`` otherwise. Cheap (reads and checks the file, builds nothing)."""
    from metacomm.codecs.ofdm_config import load_link_config
    return load_link_config(spec)


def _get(cfg: Any, name: str, default=None):
    if isinstance(cfg, dict):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


def build_link(cfg: Any) -> Callable:
    """A Link ``(batch_size, ebno_db, generator) -> (bits, bits_hat)`` for the choices in ``cfg``.

    Raises :class:`~metacomm.ConfigError` naming the config key (``codec``, ``decoder``, ``checkpoint``, ...) for
    unknown names, a learned codec without ``checkpoint``, a ``decoder`` given to a learned codec, etc. (the CLI
    shows the key as its flag). Errors about block lengths and decoders of classical codecs come from
    :func:`metacomm.codecs.registry.make_link`.
    """
    if isinstance(cfg, dict):
        cfg = SimpleNamespace(**cfg)
    if _get(cfg, "link") is not None:
        return build_ofdm_link(cfg)
    if _get(cfg, "receiver") is not None:
        raise ConfigError("receiver", "selects the receiver of an OFDM link and needs --link NAME (a preset: "
                                      f"{', '.join(ofdm_link_presets())}, or a TOML file)")
    codec = check_choice("codec", _get(cfg, "codec"), CODECS)
    decoder = _get(cfg, "decoder")
    if decoder is not None:
        check_choice("decoder", decoder, DECODERS)
    device = _get(cfg, "device", "cpu") or "cpu"
    channel_name = _get(cfg, "channel")
    channel_kwargs = dict(_get(cfg, "channel_kwargs", None) or {})
    checkpoint = _get(cfg, "checkpoint")
    block_length = _get(cfg, "block_length")

    from metacomm.channels.registry import make_channel

    channel = make_channel(channel_name, **channel_kwargs)  # validates the name and kwargs first
    if hasattr(channel, "to"):
        channel = channel.to(device)

    if codec in LEARNED_CODECS:
        if not checkpoint:
            raise ConfigError("checkpoint", f"--codec {codec} is a learned codec and needs --checkpoint PATH "
                                              "(a file written by metacomm train / save_codec)")
        if decoder is not None:
            raise ConfigError("decoder", f"applies to classical codecs only ({', '.join(CLASSICAL_CODECS)}); "
                                           f"--codec {codec} uses its learned decoder")
        if block_length is not None:
            raise ConfigError("block_length", f"is fixed by the checkpoint for --codec {codec}; omit it")
        from metacomm.codecs.base import CodecLink
        from metacomm.codecs.checkpoint import load_codec

        model, meta = load_codec(checkpoint, expect=LEARNED_CLASSES[codec], device=device)
        model = model.to(device).eval()
        channel = make_channel(channel_name, **learned_channel_kwargs(channel_name, channel_kwargs, meta))
        if hasattr(channel, "to"):
            channel = channel.to(device)
        check_learned_channel(model, channel)
        return CodecLink(model, channel)

    if checkpoint:
        raise ConfigError("checkpoint", f"only for learned codecs ({', '.join(LEARNED_CODECS)}), not "
                                          f"--codec {codec}")
    from metacomm.codecs.registry import make_link

    csi = _get(cfg, "csi", None) or "ls"
    check_choice("csi", csi, CSI_CHOICES)
    kwargs: dict[str, Any] = {"device": device, "estimator": csi}
    num_pilots = _get(cfg, "num_pilots", None)
    if num_pilots is not None:
        kwargs["num_pilots"] = check_positive_int("num_pilots", num_pilots)
    if decoder is not None:
        kwargs["decoder"] = decoder
    if block_length is not None:
        kwargs["block_length"] = block_length
    return make_link(codec, channel, **kwargs)


def build_ofdm_link(cfg: Any):
    """The :class:`~metacomm.codecs.ofdm.OFDMLink` of ``cfg.link`` (preset name or TOML path) with
    ``cfg.receiver`` (default :data:`OFDM_DEFAULT_RECEIVER`) on ``cfg.device``. Any of :data:`LINK_EXCLUSIVE`
    given as well -> ConfigError naming it."""
    if isinstance(cfg, dict):
        cfg = SimpleNamespace(**cfg)
    for key in LINK_EXCLUSIVE:
        if _get(cfg, key) not in (None, ""):
            raise ConfigError(key, "cannot be combined with --link: the link preset or TOML file describes the "
                                   "whole link (code, grid, channel); give either --link or --codec/--channel")
    receiver = _get(cfg, "receiver") or OFDM_DEFAULT_RECEIVER
    check_choice("receiver", receiver, ofdm_receivers())
    from metacomm.codecs.ofdm import OFDMLink

    link_cfg = load_ofdm_link_config(_get(cfg, "link"))
    device = _get(cfg, "device", "cpu") or "cpu"
    if getattr(link_cfg, "kind", "ofdm") == "nr-pusch":  # Sionna's PUSCHTransmitter / PUSCHReceiver
        from metacomm.codecs.nr_pusch import PUSCHLink
        return PUSCHLink(link_cfg, _get(cfg, "receiver") or "ls-lin", device=device)
    return OFDMLink(link_cfg, receiver, device=device, receiver_checkpoint=_get(cfg, "checkpoint"))


def link_info(link: Any) -> dict[str, Any]:
    """Descriptive numbers of a link for ``results.json`` (information bits per block, rate), where known."""
    describe = getattr(link, "describe", None)
    if callable(describe):
        return dict(describe())
    info: dict[str, Any] = {}
    codec = getattr(link, "codec", None)
    k = getattr(link, "num_info_bits", None) or getattr(codec, "num_info_bits", None)
    if k is not None:
        info["block_length_bits"] = int(k)
    rate = getattr(codec, "rate", None)
    if rate is not None:
        info["rate_bits_per_channel_use"] = float(rate)
    n_c = getattr(codec, "num_channel_uses", None)
    if n_c is not None:
        info["channel_uses_per_block"] = float(n_c)
    return info


def learned_channel_kwargs(channel_name, channel_kwargs: dict, meta: dict | None) -> dict:
    """Channel keyword arguments for simulating a learned codec loaded with checkpoint metadata ``meta``.

    When the requested channel is the one the codec was trained on (``meta["channel"]``, case-insensitive),
    the checkpoint's ``meta["channel_kwargs"]`` are the defaults (so e.g. a neural receiver trained on a 3-tap
    ``full``-mode multipath channel is simulated on that channel, not on the registry's defaults) and explicit
    ``channel_kwargs`` override them. Another channel name gets only the explicit ``channel_kwargs`` (the
    training kwargs belong to another channel class).
    """
    meta = meta or {}
    trained_on = meta.get("channel")
    trained_kwargs = meta.get("channel_kwargs") or {}
    if not isinstance(trained_kwargs, dict):
        raise ConfigError("checkpoint", f"checkpoint metadata 'channel_kwargs' must be a dict, got "
                                          f"{type(trained_kwargs).__name__}")
    if trained_on is not None and str(trained_on).strip().lower() == str(channel_name).strip().lower():
        return {**trained_kwargs, **channel_kwargs}
    return dict(channel_kwargs)


def check_learned_channel(model, channel) -> None:
    """Raise :class:`ConfigError` (field ``channel``) when a learned codec cannot run on ``channel``.

    Checked for receivers with a fixed frame (``NeuralReceiver``): the channel must produce the
    ``decoder.frame_rx`` samples the receiver expects for its ``frame_length``, and a multipath channel must
    have the number of taps the receiver estimates (``num_taps`` of its configuration).
    """
    frame = getattr(model, "frame_length", None)
    dec = getattr(model, "decoder", None)
    expected = getattr(dec, "frame_rx", None)
    if frame is None or expected is None:
        return
    cfg = model.config() if hasattr(model, "config") else {}
    taps = getattr(channel, "num_taps", None)
    if taps is not None and "num_taps" in cfg and int(taps) != int(cfg["num_taps"]):
        raise ConfigError("channel", f"the checkpoint's receiver estimates {cfg['num_taps']} taps, but the "
                                       f"channel has {taps}; use the channel it was trained on "
                                       f"(num_taps={cfg['num_taps']}, mode={cfg.get('channel_mode')!r})")
    got = channel.output_length(frame) if hasattr(channel, "output_length") else frame
    if got != expected:
        raise ConfigError("channel", f"the checkpoint's receiver expects {expected} received samples per "
                                       f"frame of {frame} symbols, the channel gives {got}; use the channel it "
                                       f"was trained on (mode={cfg.get('channel_mode')!r})")
