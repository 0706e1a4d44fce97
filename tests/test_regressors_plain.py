"""Plain L1 / MSE regressor: linear head on pooled features, losses, clipping, training."""
from __future__ import annotations

import pytest
import torch

from comparators.base import RegressorOutput
from comparators.regressors import plain

from builders import TINY_BACKBONE as TINY

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only add contention


def test_score_is_a_linear_head_on_pooled_features():
    torch.manual_seed(0)
    model = plain.build(**TINY).eval()
    images = torch.randn(3, 3, 32, 32)
    out = model(images)
    assert out.score.shape == (3,) and out.extras == {}
    features = model.backbone(images)
    assert features.shape == (3, model.backbone.num_features)
    expected = features @ model.head.weight[0] + model.head.bias[0]
    assert torch.allclose(out.score, expected, atol=1e-5)


@pytest.mark.parametrize("loss, expected", [("l1", (0.5 + 1.0 + 0.0) / 3), ("mse", (0.25 + 1.0 + 0.0) / 3)])
def test_losses_match_hand_values(loss, expected):
    model = plain.build(**TINY, loss=loss)
    out = RegressorOutput(score=torch.tensor([2.0, 4.0, 3.0]))
    assert float(model.loss(out, {"score": torch.tensor([2.5, 3.0, 3.0])})) == pytest.approx(expected)


def test_config_validation():
    with pytest.raises(ValueError, match="loss"):
        plain.PlainConfig(loss="huber")
    with pytest.raises(ValueError, match="colour"):
        plain.build(**TINY, colour=1)
    with pytest.raises(ValueError, match="score_range"):
        plain.PlainConfig(score_range=(5.0, 1.0))
    assert plain.PlainConfig(score_range=[1, 5]).score_range == (1.0, 5.0)
    assert plain.PlainConfig().score_range is None  # no clipping unless asked


def test_score_range_clamps_only_in_eval():
    model = plain.build(**TINY, score_range=(1.0, 5.0))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-3.0)
        assert model.train()(torch.randn(2, 3, 32, 32)).score.tolist() == [-3.0, -3.0]
        assert model.eval()(torch.randn(2, 3, 32, 32)).score.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("loss", ["l1", "mse"])
def test_a_few_steps_lower_the_loss(loss, fit_fixed_batch):
    torch.manual_seed(0)
    model = plain.build(**TINY, loss=loss).train()
    images = torch.randn(8, 3, 32, 32)
    batch = {"image": images, "score": torch.linspace(1.2, 4.8, 8)}
    losses = fit_fixed_batch(model, batch, 12)
    assert min(losses[-3:]) < 0.5 * losses[0]


def test_head_runs_in_float32_under_autocast():
    model = plain.build(**TINY).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(2, 3, 32, 32)).score.dtype == torch.float32


def test_head_bias_starts_at_the_training_mean_when_asked():
    """Ages start 35 years from a zero bias; train-mean starts the head at the data's mean."""
    from pathlib import Path

    import comparators
    from orderlearn.types import ScoredImage

    samples = [ScoredImage(path=Path(f"{i}.jpg"), score=float(age)) for i, age in enumerate((20, 30, 55))]
    model = comparators.create("plain", **TINY)
    before = model.head.bias.item()
    model.setup_from_training(samples)
    assert model.head.bias.item() == before and abs(before) < 1  # default: PyTorch's init, untouched
    model = comparators.create("plain", **TINY, head_bias="train-mean")
    model.setup_from_training(samples)
    assert model.head.bias.item() == 35.0
    with pytest.raises(ValueError, match="head_bias"):
        comparators.create("plain", **TINY, head_bias="mean")
