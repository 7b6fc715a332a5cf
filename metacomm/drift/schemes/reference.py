r"""The reference receivers of a drift run (kind ``"reference"``): the genie, which knows the frame's true channel
and N0, and its dB-offset yardsticks (``genie-1dB``: "scheme X is within 1 dB of the genie" reads
BLER(X) <= BLER(genie-1dB))."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from metacomm._validation import ConfigError, check_finite
from metacomm.codecs.detection import min_distance_decide, noiseless_images
from metacomm.drift.links import score_workspace
from metacomm.drift.protocol import Decision, DriftScheme, FrameSignals, genie_name
from metacomm.drift.registry import register_scheme

__all__ = ["GenieScheme"]


class GenieScheme(DriftScheme):
    r"""ML detection over the codec's own codebook with perfect knowledge of the frame's channel and N0,
    :math:`\hat m = \arg\min_m \|y - \mathcal C_t(c_m)\|^2` (:math:`\mathcal C_t` the noiseless channel of frame
    ``t``): the best any decoder for this encoder can do. With ``offset_db = d``: the same genie on the *same*
    noise draw scaled to Eb/N0 + d dB (d < 0: a worse channel), row ``genie{d}dB``; the plain genie brings one such row per ``offsets_db`` entry (setting; default -1 dB) along
    (:meth:`companions`). Latency ``None``."""

    kind = "reference"
    state_attrs = ()

    def __init__(self, name: str, *, offsets_db: Sequence[float] = (-1.0,), offset_db: float | None = None):
        super().__init__(name)
        self.offset_db = None if offset_db is None else check_finite("offset_db", offset_db)
        if isinstance(offsets_db, str | bytes) or not isinstance(offsets_db, Sequence):
            raise ConfigError("genie_offsets_db", f"expected a list of dB offsets, got {offsets_db!r}")
        self.offsets_db = [check_finite("genie_offsets_db", d) for d in offsets_db]

    def settings(self) -> dict:
        return {"offset_db": self.offset_db} if self.offset_db is not None else {"offsets_db": self.offsets_db}

    def companions(self) -> list[DriftScheme]:
        if self.offset_db is not None:
            return []
        return [GenieScheme(genie_name(d), offset_db=d) for d in self.offsets_db]

    def _images(self, sig: FrameSignals) -> torch.Tensor:
        ctx = self.ctx

        def fn():
            with torch.no_grad():
                book = ctx.codebook.expand(ctx.links, ctx.num_messages, ctx.n).contiguous()
                return noiseless_images(sig.frame.channel, book, sig.frame.state)

        return sig.memo("genie.images", fn)

    def decide(self, sig: FrameSignals) -> Decision:
        images = self._images(sig)
        with torch.no_grad():
            if self.offset_db is None:
                y = sig.y_d
            else:
                clean = sig.clean_d
                y = clean + (sig.no * 10 ** (-self.offset_db / 10)).sqrt()[:, None, None].to(clean.dtype) * sig.w_d
            return Decision(min_distance_decide(y, images, expanded=True, workspace=score_workspace(self.ctx)), None)


register_scheme("genie", default=True)(GenieScheme)
