"""Interval calibration: the conformal scale restores coverage on exchangeable data."""
from __future__ import annotations

import pytest
import torch

from scorers.base import Scores
from scorers.intervals import interval_scale, widen


def overconfident(n: int, seed: int) -> tuple[Scores, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    truth = 1 + 4 * torch.rand(n, generator=g, dtype=torch.float64)
    true_sd = 0.1 + 0.3 * torch.rand(n, generator=g, dtype=torch.float64)
    value = truth + true_sd * torch.randn(n, generator=g, dtype=torch.float64)
    return Scores(value, std=true_sd / 8), truth  # reports 8x too small a std, like correlated BT errors


def coverage(scores: Scores, truth: torch.Tensor) -> float:
    return float(((scores.lower <= truth) & (truth <= scores.upper)).double().mean())


def test_scale_recovers_the_missing_factor_and_coverage():
    val, val_truth = overconfident(2000, 0)
    test, test_truth = overconfident(2000, 1)
    scale = interval_scale(val, val_truth)
    assert scale == pytest.approx(8.0, rel=0.1)
    narrow = widen(test, 1.0, -10, 10)
    assert coverage(narrow, test_truth) < 0.3
    assert coverage(widen(test, scale, -10, 10), test_truth) == pytest.approx(0.95, abs=0.02)


def test_widen_clips_to_range_and_errors():
    scores = Scores(torch.tensor([1.05, 4.9]), std=torch.tensor([0.1, 0.1]))
    wide = widen(scores, 2.0, 1.0, 5.0)
    assert wide.lower[0] == 1.0 and wide.upper[1] == 5.0
    assert wide.std.tolist() == pytest.approx([0.2, 0.2])
    with pytest.raises(ValueError, match="reports no std"):
        widen(Scores(torch.tensor([1.0])), 2.0, 1, 5)
    with pytest.raises(ValueError, match="level must be in"):
        interval_scale(scores, torch.tensor([1.0, 5.0]), level=1.5)
