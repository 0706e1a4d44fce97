"""ComboLoss regressor: discretisation (Sec. 2.2), class weights (Eq. 6), losses (Eqs. 2-5), training."""
from __future__ import annotations

import math

import pytest
import torch

from comparators.base import RegressorOutput
from comparators.regressors import comboloss as cl

from builders import TINY_BACKBONE as TINY

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only add contention


def test_classes_are_ceil_s_minus_half():
    scores = torch.tensor([1.0, 1.49, 1.5, 1.51, 2.5, 3.5, 4.49, 4.5, 5.0, 0.2, 5.7])
    # ⌈s − ½⌉ = 1,1,1,2,2,3,4,4,5 (half rounds down), minus 1; out-of-scale scores clamp to 0 / 4
    assert cl.score_classes(scores).tolist() == [0, 0, 0, 1, 1, 2, 3, 3, 4, 0, 4]


def test_class_weights_from_scores():
    scores = [1.2, 2.0, 2.2, 1.9, 2.4, 3.1, 2.8, 4.9]  # classes 0, 1,1,1,1, 2,2, 4 -> counts 1,4,2,0,1
    assert cl.class_weights_from_scores(scores) == pytest.approx((4.0, 1.0, 2.0, 4.0, 4.0))
    with pytest.raises(ValueError, match="at least one"):
        cl.class_weights_from_scores([])


def test_forward_heads_and_expectation():
    torch.manual_seed(0)
    model = cl.build(**TINY, class_weights=[1, 1, 1, 1, 1]).eval()
    out = model(torch.randn(2, 3, 32, 32))
    logits = out.extras["class_logits"]
    assert out.score.shape == (2,) and logits.shape == (2, 5)
    expected = (torch.softmax(logits, 1) * torch.tensor([1.0, 2, 3, 4, 5])).sum(1)  # Eq. (4)
    assert torch.allclose(out.extras["expectation"], expected)
    features = model.backbone(torch.zeros(1, 3, 32, 32))
    assert torch.allclose(model(torch.zeros(1, 3, 32, 32)).score, model.regression_head(features).squeeze(1))


def hand_output() -> tuple[RegressorOutput, dict]:
    # uniform softmax: E = 3; ŝ = (2, 4); s = (2.5, 3.0) -> classes 1, 2
    out = RegressorOutput(
        score=torch.tensor([2.0, 4.0]),
        extras={"class_logits": torch.zeros(2, 5), "expectation": torch.tensor([3.0, 3.0])},
    )
    return out, {"score": torch.tensor([2.5, 3.0])}


def test_loss_matches_hand_computation():
    out, batch = hand_output()
    weights = [1.0, 2.0, 3.0, 4.0, 5.0]
    model = cl.build(**TINY, class_weights=weights)
    terms = model.loss_terms(out, batch)
    assert float(terms["reg"]) == pytest.approx(0.75)  # (0.5 + 1) / 2
    assert float(terms["exp"]) == pytest.approx(1.0)  # Eq. (5): |2 − 3|, |4 − 3|
    assert float(terms["cls"]) == pytest.approx((2 + 3) * math.log(5) / 2, rel=1e-6)  # Eq. (3): / N
    assert float(model.loss(out, batch)) == pytest.approx(2 * 0.75 + 1.0 + 2.5 * math.log(5), rel=1e-6)

    official = cl.build(**TINY, class_weights=weights, expectation_target="score", ce_normalisation="weights")
    terms = official.loss_terms(out, batch)
    assert float(terms["exp"]) == pytest.approx(0.25)  # |2.5 − 3|, |3 − 3|
    assert float(terms["cls"]) == pytest.approx(math.log(5), rel=1e-6)  # weighted mean
    reference = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights))(torch.zeros(2, 5), torch.tensor([1, 2]))
    assert float(terms["cls"]) == pytest.approx(float(reference), rel=1e-6)


def test_class_weights_are_settable_and_saved():
    model = cl.build(**TINY)
    assert model.class_weights.tolist() == [1.0] * 5
    model.set_class_weights(cl.class_weights_from_scores([1.2, 2.0, 2.2, 1.9, 2.4, 3.1, 2.8, 4.9]))
    assert model.state_dict()["class_weights"].tolist() == [4.0, 1.0, 2.0, 4.0, 4.0]
    with pytest.raises(ValueError, match="shape"):
        model.set_class_weights([1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        model.set_class_weights([1.0, 0.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="num_classes"):
        cl.ComboLossConfig(class_weights=(1.0, 2.0))


def test_config_validation_and_recipe():
    with pytest.raises(ValueError, match="bogus"):
        cl.build(**TINY, bogus=True)
    with pytest.raises(ValueError, match="expectation_target"):
        cl.ComboLossConfig(expectation_target="mean")
    assert cl.ComboLossConfig().backbone == "seresnext50_32x4d"
    assert (cl.ComboLossConfig().alpha, cl.ComboLossConfig().beta, cl.ComboLossConfig().gamma) == (2.0, 1.0, 1.0)
    assert cl.PAPER_RECIPE["optim"] == {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-3}
    assert cl.PAPER_RECIPE["schedule"] == {"name": "step", "step_size": 50, "gamma": 0.1}
    assert cl.PAPER_RECIPE["train"] == {"epochs": 200, "batch_size": 64}


def test_score_range_clamps_only_in_eval():
    torch.manual_seed(0)
    model = cl.build(**TINY, class_weights=[1] * 5, score_range=[1, 5])
    with torch.no_grad():
        model.regression_head.bias.fill_(10.0)
        model.regression_head.weight.zero_()
        assert model.train()(torch.randn(2, 3, 32, 32)).score.tolist() == [10.0, 10.0]
        assert model.eval()(torch.randn(2, 3, 32, 32)).score.tolist() == [5.0, 5.0]


def test_a_few_steps_lower_the_loss(fit_fixed_batch):
    torch.manual_seed(0)
    model = cl.build(**TINY, class_weights=[2.0, 1.0, 1.0, 1.5, 3.0]).train()
    images = torch.randn(8, 3, 32, 32)
    batch = {"image": images, "score": torch.linspace(1.2, 4.8, 8)}
    losses = fit_fixed_batch(model, batch, 15)  # the wiring, not the recipe, is under test
    assert min(losses[-3:]) < 0.3 * losses[0]


def test_heads_run_in_float32_under_autocast():
    model = cl.build(**TINY, class_weights=[1] * 5).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 32, 32))
    assert out.score.dtype == torch.float32 and out.extras["class_logits"].dtype == torch.float32
