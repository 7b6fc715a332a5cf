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
