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


def test_hidden_head_is_an_mlp_on_pooled_features():
    """head_hidden: Linear -> ReLU -> Dropout -> Linear on the pooled features (checked by hand),
    trainable, and train-mean sets its output layer's bias; the default stays one Linear."""
    from pathlib import Path

    from orderlearn.types import ScoredImage

    torch.manual_seed(0)
    model = plain.build(**TINY, head_hidden=5, head_dropout=0.5).eval()
    images = torch.randn(3, 3, 32, 32)
    features = model.backbone(images)
    first, last = model.head[0], model.head[-1]
    assert first.out_features == 5 and last.in_features == 5
    expected = torch.relu(features @ first.weight.T + first.bias) @ last.weight[0] + last.bias[0]
    assert torch.allclose(model(images).score, expected, atol=1e-5)
    model = plain.build(**TINY, head_hidden=5, head_bias="train-mean")
    model.setup_from_training([ScoredImage(path=Path(f"{i}.jpg"), score=s) for i, s in enumerate((2.0, 4.0))])
    assert model.head[-1].bias.item() == 3.0
    assert isinstance(plain.build(**TINY).head, torch.nn.Linear)  # the baselines' checkpoint keys


@pytest.mark.parametrize("options, match", [({"head_hidden": 0}, "head_hidden"), ({"head_hidden": 2.5}, "head_hidden"),
                                            ({"head_hidden": True}, "head_hidden"), ({"head_dropout": 1.0}, "head_dropout")])
def test_hidden_head_options_are_checked(options, match):
    with pytest.raises(ValueError, match=match):
        plain.PlainConfig(**options)


def test_a_trunk_frozen_whole_keeps_its_feature_key_when_only_head_options_change():
    """The feature cache keys an unsplit model on its options less those only the head reads:
    a new head width reuses the descriptors; a change the trunk sees does not."""
    from orderlearn.engine.features import model_key

    def key(**options) -> str:
        torch.manual_seed(0)  # the same random trunk weights for every model
        model = plain.build(**{**TINY, **options})
        return model_key(model, model.preprocess())

    base = key()
    assert key(head_hidden=64, head_dropout=0.1, head_bias="train-mean", loss="mse", score_range=(1.0, 5.0)) == base
    assert key(image_size=64) != base
    assert key(backbone="mobilenetv2_050") != base
