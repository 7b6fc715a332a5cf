r"""Drift detectors on the per-frame pilot loss, one independent detector per link (batched).

Both detectors watch a scalar statistic per link and frame, typically the pilot cross-entropy of the *current*
(not yet adapted) weights, :math:`x_t = \mathcal L_{\text{pilots}_t}(\phi_{t-1})` in nats, and say per link
whether the channel has drifted enough to act. ``update(x)`` takes float ``[B]`` and returns bool ``[B]``.

* :class:`ThresholdDetector` -- fires when :math:`x_t > \mu_{t-1} + \kappa\,\sigma_{t-1}` (and
  :math:`x_t > x_{\min}`), where :math:`\mu, \sigma^2` are exponentially weighted running mean and variance of
  the statistic, :math:`\mu_t = (1-\lambda)\mu_{t-1} + \lambda x_t`,
  :math:`\sigma^2_t = (1-\lambda)(\sigma^2_{t-1} + \lambda (x_t - \mu_{t-1})^2)` (West's EWMA variance).
  During the first ``warmup`` frames it always fires (no reference yet).
* :class:`CUSUMDetector` -- Page's one-sided CUSUM for an increase of the mean,
  :math:`S_t = \max(0,\ S_{t-1} + x_t - \mu_{t-1} - \delta)`, fires when :math:`S_t > h` and then restarts
  :math:`S_t = 0`; :math:`\mu` is the EWMA of the statistic (the in-control level), :math:`\delta \ge 0` the
  allowance (half the shift to detect), :math:`h > 0` the decision threshold, both in the statistic's units.

* :class:`NoiseFloorDetector` -- a goodness-of-fit test of the current channel belief against the noise: with the
  generative pilot-fit statistic :math:`x_t = \frac1{N}\sum_{i=1}^{N}|y_i - \hat y_i|^2` (``N = P n`` complex
  pilot samples) and a correct belief the residuals are the noise, so :math:`N x_t / N_0 \sim
  \mathrm{Gamma}(N, 1)` (a sum of ``N`` unit-mean exponentials); it fires when :math:`x_t > N_0\, q_N / N` with
  :math:`q_N` the :math:`1 - p_{fa}` quantile of :math:`\mathrm{Gamma}(N, 1)`. No running level, so it keeps
  firing under continuous drift (where the running-level detectors learn the drifted level as normal).

:func:`make_detector` builds one by name (``"threshold"``, ``"cusum"``, ``"noise-floor"``). All state is on the statistic's device;
:meth:`reset` forgets everything (e.g. at a known regime boundary); :meth:`Detector.state_dict` /
:meth:`Detector.load_state_dict` checkpoint the hyper-parameters and the running state.
"""

from __future__ import annotations

import torch

from metacomm._validation import (
    ConfigError,
    check_nonneg,
    check_nonneg_int,
    check_positive,
    check_positive_int,
)
from metacomm.channels.units import broadcast_no

__all__ = ["Detector", "ThresholdDetector", "CUSUMDetector", "NoiseFloorDetector", "DETECTORS", "make_detector"]

DETECTORS = ("threshold", "cusum", "noise-floor")


def _as_stat(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() != 1:
        raise ConfigError("statistic", f"expected a float tensor [links], got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        x = x.float()
    return x.detach()


def _clone(t):
    """A CPU copy for a state dict."""
    return None if t is None else t.detach().cpu().clone()


def _copy(t):
    """A copy of a loaded tensor on its own device (the caller moves the state where the statistic lives)."""
    return None if t is None else torch.as_tensor(t).detach().clone()


class Detector:
    """Base class: :meth:`update` (float ``[B]`` -> bool ``[B]``), :meth:`reset`, and :meth:`state_dict` /
    :meth:`load_state_dict` (hyper-parameters and running state; only tensors, numbers, strings and ``None``,
    so a checkpoint loads with ``torch.load(weights_only=True)``)."""

    kind = "detector"

    def update(self, x) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement state_dict()")

    def load_state_dict(self, state: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement load_state_dict()")

    def _check_kind(self, state) -> dict:
        if not isinstance(state, dict) or state.get("kind") != self.kind:
            got = state.get("kind") if isinstance(state, dict) else type(state).__name__
            raise ConfigError("detector", f"state of a {got!r} detector given to a {self.kind!r} detector")
        return state


class ThresholdDetector(Detector):
    r"""Pilot loss above a running threshold :math:`\mu + \kappa\sigma` (module docstring).

    :param kappa: threshold in running standard deviations (>= 0, default 3).
    :param smoothing: EWMA weight :math:`\lambda \in (0, 1]` of the running mean/variance (default 0.1).
    :param warmup: frames during which the detector always fires and only learns the level (default 5).
    :param min_loss: never fire below this value of the statistic (default 0: no floor).
    """

    def __init__(self, kappa: float = 3.0, smoothing: float = 0.1, warmup: int = 5, min_loss: float = 0.0):
        self.kappa = check_nonneg("kappa", kappa)
        self.smoothing = check_positive("smoothing", smoothing)
        if self.smoothing > 1:
            raise ConfigError("smoothing", f"must lie in (0, 1], got {smoothing}")
        self.warmup = check_nonneg_int("warmup", warmup)
        self.min_loss = check_nonneg("min_loss", min_loss)
        self.reset()

    kind = "threshold"

    def state_dict(self) -> dict:
        return {"kind": self.kind, "kappa": self.kappa, "smoothing": self.smoothing, "warmup": self.warmup,
                "min_loss": self.min_loss, "mean": _clone(self.mean), "var": _clone(self.var), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        st = self._check_kind(state)
        self.kappa, self.smoothing = float(st["kappa"]), float(st["smoothing"])
        self.warmup, self.min_loss = int(st["warmup"]), float(st["min_loss"])
        self.mean, self.var, self.count = _copy(st["mean"]), _copy(st["var"]), int(st["count"])

    def reset(self) -> None:
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None
        self.count = 0

    def update(self, x) -> torch.Tensor:
        x = _as_stat(x)
        lam = self.smoothing
        if self.mean is None or self.mean.shape != x.shape:
            self.mean, self.var, self.count = x.clone(), torch.zeros_like(x), 0
            fired = torch.ones_like(x, dtype=torch.bool)
        else:
            thr = self.mean + self.kappa * self.var.sqrt()
            fired = (x > thr) & (x > self.min_loss)
            if self.count < self.warmup:
                fired = torch.ones_like(fired)
            d = x - self.mean
            self.mean = self.mean + lam * d
            self.var = (1 - lam) * (self.var + lam * d * d)
        self.count += 1
        return fired


class CUSUMDetector(Detector):
    r"""Page's one-sided CUSUM on the statistic (module docstring).

    :param threshold: decision threshold :math:`h > 0` (statistic units, e.g. nats; default 1.0).
    :param drift: allowance :math:`\delta \ge 0` (default 0.1).
    :param smoothing: EWMA weight :math:`\lambda \in (0, 1]` of the in-control level :math:`\mu` (default 0.1).
    """

    def __init__(self, threshold: float = 1.0, drift: float = 0.1, smoothing: float = 0.1):
        self.threshold = check_positive("threshold", threshold)
        self.drift = check_nonneg("drift", drift)
        self.smoothing = check_positive("smoothing", smoothing)
        if self.smoothing > 1:
            raise ConfigError("smoothing", f"must lie in (0, 1], got {smoothing}")
        self.reset()

    kind = "cusum"

    def reset(self) -> None:
        self.mean: torch.Tensor | None = None
        self.stat: torch.Tensor | None = None

    def state_dict(self) -> dict:
        return {"kind": self.kind, "threshold": self.threshold, "drift": self.drift, "smoothing": self.smoothing,
                "mean": _clone(self.mean), "stat": _clone(self.stat)}

    def load_state_dict(self, state: dict) -> None:
        st = self._check_kind(state)
        self.threshold, self.drift, self.smoothing = float(st["threshold"]), float(st["drift"]), \
            float(st["smoothing"])
        self.mean, self.stat = _copy(st["mean"]), _copy(st["stat"])

    def update(self, x) -> torch.Tensor:
        x = _as_stat(x)
        if self.mean is None or self.mean.shape != x.shape:
            self.mean, self.stat = x.clone(), torch.zeros_like(x)
            return torch.ones_like(x, dtype=torch.bool)
        s = torch.clamp(self.stat + x - self.mean - self.drift, min=0.0)
        fired = s > self.threshold
        self.stat = torch.where(fired, torch.zeros_like(s), s)
        self.mean = self.mean + self.smoothing * (x - self.mean)
        return fired


class NoiseFloorDetector(Detector):
    r"""Fires when the pilot misfit of the current belief exceeds what noise alone explains (module docstring).

    :param pfa: false-alarm probability per link and frame when the belief is exact (in (0, 1), default 1e-3).

    ``update(x, no=N0, num_samples=N)``: ``x`` float ``[B]`` (mean squared pilot residual per complex sample, the
    ``pilot-fit`` loss), ``no`` N0 per complex sample (float or ``[B]``), ``N`` complex pilot samples. Stateless.
    """

    needs_noise = True

    def __init__(self, pfa: float = 1e-3):
        pfa = check_positive("pfa", pfa)
        if pfa >= 1:
            raise ConfigError("pfa", f"must lie in (0, 1), got {pfa}")
        self.pfa = float(pfa)

    kind = "noise-floor"

    def reset(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {"kind": self.kind, "pfa": self.pfa}

    def load_state_dict(self, state: dict) -> None:
        self.pfa = float(self._check_kind(state)["pfa"])

    def threshold(self, num_samples: int) -> float:
        """:math:`q_N / N`: the fire level of :math:`x / N_0` for ``N`` complex samples."""
        from scipy.special import gammainccinv

        N = check_positive_int("num_samples", num_samples)
        return float(gammainccinv(N, self.pfa)) / N

    def update(self, x, no=None, num_samples: int | None = None) -> torch.Tensor:
        x = _as_stat(x)
        if no is None or num_samples is None:
            raise ConfigError("detector", "the noise-floor detector needs N0 (no=) and the number of complex pilot "
                                          "samples (num_samples=)")
        return x > broadcast_no(no, x) * self.threshold(num_samples)


def make_detector(name: str, **kwargs) -> Detector:
    """``"threshold"`` -> :class:`ThresholdDetector`, ``"cusum"`` -> :class:`CUSUMDetector`, ``"noise-floor"`` ->
    :class:`NoiseFloorDetector` (kwargs passed)."""
    if name == "threshold":
        return ThresholdDetector(**kwargs)
    if name == "cusum":
        return CUSUMDetector(**kwargs)
    if name == "noise-floor":
        return NoiseFloorDetector(**kwargs)
    raise ConfigError("detector", f"unknown detector {name!r}; allowed: {', '.join(DETECTORS)}")
