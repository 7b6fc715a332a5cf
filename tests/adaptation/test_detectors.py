import pytest
import torch

from metacomm import ConfigError
from metacomm.adaptation.detectors import CUSUMDetector, ThresholdDetector, make_detector


def test_cusum_matches_hand_recursion():
    det = CUSUMDetector(threshold=1.0, drift=0.1, smoothing=0.1)
    xs = [0.2, 0.2, 0.25, 0.9, 0.9, 0.2]
    fired = [bool(det.update(torch.tensor([x]))[0]) for x in xs]
    # hand computation: mu0 = 0.2 (first frame fires: no reference), S = max(0, S + x - mu - 0.1)
    mu, S, ref = 0.2, 0.0, [True]
    for x in xs[1:]:
        S = max(0.0, S + x - mu - 0.1)
        f = S > 1.0
        S = 0.0 if f else S
        mu = mu + 0.1 * (x - mu)
        ref.append(f)
    assert fired == ref
    assert fired[4] and not fired[3]  # needs two large frames to cross h = 1


def test_threshold_detector_fires_on_jump_only_per_link():
    det = ThresholdDetector(kappa=3.0, smoothing=0.2, warmup=3)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        f = det.update(0.5 + 0.01 * torch.randn(2, generator=g))
    assert not f.any()
    f = det.update(torch.tensor([0.5, 3.0]))
    assert f.tolist() == [False, True]


def test_bad_detector_settings():
    with pytest.raises(ConfigError, match="detector"):
        make_detector("nope")
    with pytest.raises(ConfigError, match="smoothing"):
        ThresholdDetector(smoothing=2.0)
    with pytest.raises(ConfigError, match="threshold"):
        CUSUMDetector(threshold=0.0)


def test_noise_floor_false_alarm_rate_matches_gamma_tail():
    """Exact belief: the residuals are CN(0, N0) noise. The fire rate over many links must match the Gamma(N, 1)
    tail (scipy.stats, independent of the detector's scipy.special quantile) within 4 binomial sigmas."""
    from scipy import stats

    from metacomm.adaptation.detectors import NoiseFloorDetector
    det = NoiseFloorDetector(pfa=0.05)
    N, links, no = 32, 20000, 0.3
    g = torch.Generator().manual_seed(3)
    w = torch.complex(torch.randn(links, N, generator=g), torch.randn(links, N, generator=g)) * (no / 2) ** 0.5
    x = w.abs().square().mean(-1)
    rate = float(det.update(x, no=no, num_samples=N).float().mean())
    assert det.threshold(N) == pytest.approx(stats.gamma.isf(0.05, a=N) / N, rel=1e-6)
    assert abs(rate - 0.05) < 4 * (0.05 * 0.95 / links) ** 0.5
    # a misfit as large as the noise power (mean statistic 2 N0, std N0/sqrt(32)) is detected on ~every link
    assert bool(det.update(x + no, no=no, num_samples=N).float().mean() > 0.99)
    with pytest.raises(ConfigError, match="pfa"):
        NoiseFloorDetector(pfa=1.0)
    with pytest.raises(ConfigError, match="detector"):
        det.update(x)
    assert isinstance(make_detector("noise-floor"), NoiseFloorDetector)
