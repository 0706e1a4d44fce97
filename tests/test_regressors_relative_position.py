"""Relative age position learning (IR-50 + EVR + RAPL + GP): each equation against hand values."""
from __future__ import annotations

import math

import pytest
import torch

from comparators.regressors.relative_position import (
    PAPER_RECIPE,
    RelativePositionConfig,
    RelativePositionRegressor,
    build,
)
from comparators.regressors.relative_position_heads import (
    AgeReweighting,
    ExpectedValueHead,
    RelativePositionHead,
)
from comparators.regressors.relative_position_labels import LabelSpace
from comparators.regressors.relative_position_references import ReferenceSelector

from builders import TINY_IR50  # c = 2 pooled features

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only add contention



def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _tiny(**overrides) -> RelativePositionRegressor:
    torch.manual_seed(0)
    kwargs = dict(backbone="ir50", weights="random", backbone_kwargs=TINY_IR50, label_min=0, label_max=2, label_step=1)
    kwargs.update(overrides)
    return build(**kwargs)


# --- labels and positions ------------------------------------------------------------------
def test_label_space_beauty_default_and_nearest_position():
    labels = RelativePositionConfig(weights="random").label_space()
    assert len(labels) == 41
    assert labels.values[0].item() == 1.0 and labels.values[-1].item() == 5.0
    assert labels.values[23].item() == pytest.approx(3.3)
    pos = labels.position_of(torch.tensor([1.0, 3.27, 3.33, 5.0, 0.2, 7.0]))
    assert pos.tolist() == [0, 23, 23, 40, 0, 40]


def test_label_space_ages_positions_are_ranks_and_ties_go_down():
    ages = LabelSpace.from_range(15, 72, 1)  # AFAD: 58 ages 15..72
    assert len(ages) == 58
    assert ages.position_of(torch.tensor([15.0, 16.0, 72.0, 16.5])).tolist() == [0, 1, 57, 1]
    sparse = LabelSpace([1, 2, 5, 9])  # a dataset's own label list (Fig. 2): position = rank
    assert sparse.position_of(torch.tensor([5.0, 9.0, 3.4])).tolist() == [2, 3, 1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(label_values=(1, 2), label_min=1), "either label_values"),
        (dict(label_min=1, label_max=5), "missing"),
        (dict(label_min=1, label_max=2, label_step=0.3), "whole number"),
        (dict(label_values=(1, 3, 2)), "strictly increasing"),
        (dict(label_values=(1,)), "at least 2"),
    ],
)
def test_label_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RelativePositionConfig(weights="random", **kwargs).label_space()


def test_position_of_rejects_nan():
    with pytest.raises(ValueError, match="finite"):
        LabelSpace([1, 2]).position_of(torch.tensor([float("nan")]))


# --- Eq. 1: expected value refinement --------------------------------------------------------
def test_expected_value_against_hand_values():
    head = ExpectedValueHead(2, torch.tensor([1.0, 2.0, 3.0]))
    with torch.no_grad():
        head.fc.weight.zero_()
        head.fc.bias.copy_(torch.log(torch.tensor([1.0, 2.0, 3.0])))  # softmax = (1, 2, 3) / 6
    score, logits = head(torch.randn(4, 2))
    assert logits.shape == (4, 3)
    torch.testing.assert_close(score, torch.full((4,), (1 * 1 + 2 * 2 + 3 * 3) / 6))


# --- Algorithm 1: reference selection ----------------------------------------------------------
def test_reference_selection_takes_the_min_error_sample_not_the_first():
    sel = ReferenceSelector(num_labels=3, feature_dim=2)
    feats = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
    sel.observe(feats, torch.tensor([1, 1, 1, 0]), torch.tensor([0.5, 0.2, 0.9, 0.7]))
    # a later batch: label 1 not beaten (0.3 > 0.2), label 0 beaten (0.1 < 0.7)
    sel.observe(torch.tensor([[5.0, 5.0], [6.0, 6.0]]), torch.tensor([1, 0]), torch.tensor([0.3, 0.1]))
    assert not sel.has_references  # nothing is fixed before the epoch ends
    assert sel.commit() == 2
    torch.testing.assert_close(sel.references[1], torch.tensor([2.0, 2.0]))  # error 0.2, the 2nd sample
    torch.testing.assert_close(sel.references[0], torch.tensor([6.0, 6.0]))
    torch.testing.assert_close(sel.references[2], torch.zeros(2))  # label 2 never seen
    assert sel.reference_valid.tolist() == [True, True, False]
    torch.testing.assert_close(sel.reference_errors[:2], torch.tensor([0.1, 0.2]))
    # next epoch: label 1 absent keeps its old reference; label 0 gets this epoch's best even if worse
    third = torch.tensor([[7.0, 7.0], [8.0, 8.0], [9.0, 9.0]])
    sel.observe(third, torch.tensor([0, 2, 2]), torch.tensor([0.8, 0.4, 0.4]))
    sel.commit()
    torch.testing.assert_close(sel.references[0], torch.tensor([7.0, 7.0]))
    torch.testing.assert_close(sel.references[1], torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(sel.references[2], torch.tensor([8.0, 8.0]))  # tie: first seen
    assert sel.reference_valid.all()


def test_reference_selector_validates_inputs_and_state_dict_keeps_only_references():
    sel = ReferenceSelector(3, 2)
    with pytest.raises(ValueError, match="positions must lie"):
        sel.observe(torch.zeros(1, 2), torch.tensor([3]), torch.tensor([0.1]))
    with pytest.raises(ValueError, match="features must be"):
        sel.observe(torch.zeros(1, 5), torch.tensor([0]), torch.tensor([0.1]))
    assert set(sel.state_dict()) == {"references", "reference_valid", "reference_errors"}


# --- Eqs. 4-6: age-based reweighting ----------------------------------------------------------
def test_reweighting_gates_in_unit_interval_with_hand_values():
    module = AgeReweighting(num_labels=3)
    with torch.no_grad():
        module.p.copy_(torch.tensor([1.0, 2.0, 0.5]))
    refs = torch.tensor([[0.0, 1.0], [1.0, -1.0], [2.0, 4.0]])  # R: n = 3 labels x c = 2 channels
    w = module.gates(refs)
    assert w.shape == (2, 3)  # c x n
    expected = [[_sigmoid(0.0), _sigmoid(2.0), _sigmoid(1.0)], [_sigmoid(1.0), _sigmoid(-2.0), _sigmoid(2.0)]]
    torch.testing.assert_close(w, torch.tensor(expected))
    assert ((w > 0) & (w < 1)).all()
    x = torch.tensor([[1.0, 2.0], [-3.0, 0.5], [0.0, 1.0], [2.0, 2.0]])
    out = module(x, refs)
    assert out.shape == (4, 2, 3)
    torch.testing.assert_close(out[1, 0, 2], torch.tensor(-3.0 * _sigmoid(1.0)))
    torch.testing.assert_close(out[3, 1, 1], torch.tensor(2.0 * _sigmoid(-2.0)))
    with pytest.raises(ValueError, match="references must be"):
        module.gates(torch.zeros(4, 2))


def test_relative_position_head_shapes_and_values():
    head = RelativePositionHead(feature_dim=2, num_labels=3)
    with torch.no_grad():
        head.per_channel.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
        head.per_channel.bias.fill_(0.5)
        head.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        head.classifier.bias.zero_()
    xhat = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])  # [b=1, c=2, n=3]
    logits = head(xhat)
    assert logits.shape == (1, 3)
    # per channel: [1 + 0.5, 2 + 3 + 0.5] = [1.5, 5.5]
    torch.testing.assert_close(logits, torch.tensor([[1.5, 5.5, 7.0]]))


# --- Eq. 8 on a hand-checked tiny batch -------------------------------------------------------
def _set_hand_weights(model: RelativePositionRegressor) -> None:
    ln2 = math.log(2.0)
    with torch.no_grad():
        model.evr.fc.weight.copy_(torch.tensor([[0.0, 0.0], [ln2, 0.0], [0.0, ln2]]))
        model.evr.fc.bias.zero_()
        model.gender_head.weight.zero_()
        model.gender_head.bias.copy_(torch.tensor([0.0, math.log(3.0)]))
        model.reweighting.p.copy_(torch.tensor([1.0, 1.0, 0.5]))
        model.position_head.per_channel.weight.fill_(1.0)
        model.position_head.per_channel.bias.zero_()
        model.position_head.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        model.position_head.classifier.bias.zero_()
        model.selector.references.copy_(torch.tensor([[0.0, 0.0], [1.0, -1.0], [2.0, 2.0]]))
        model.selector.reference_valid.fill_(True)


def test_total_loss_on_a_hand_checked_batch():
    model = _tiny(lambda_gender=0.5, mu_position=2.0).eval()
    _set_hand_weights(model)
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = model.forward_head(features)
    # Eq. 1 with labels (0, 1, 2): softmax (1, 2, 1)/4 -> 1.0 ; (1, 1, 2)/4 -> 1.25
    torch.testing.assert_close(out.score, torch.tensor([1.0, 1.25]))
    batch = {"score": torch.tensor([2.0, 0.0]), "gender": torch.tensor([1, -1])}
    loss = model.loss(out, batch)
    l_age = (abs(2 - 1.0) + abs(0 - 1.25)) / 2  # Eq. 2
    l_gender = -math.log(3 / 4)  # Eq. 3, the one known gender (male = class 1)
    # Eqs. 4-6: z = R^T * P -> channel 0: (0, 1, 1), channel 1: (0, -1, 1); FC n->1 sums the gates
    s0 = _sigmoid(0) + 2 * _sigmoid(1)
    s1 = _sigmoid(0) + _sigmoid(-1) + _sigmoid(1)
    # logits: sample 1 (x = (1, 0)) -> (s0, 0, 0); sample 2 (x = (0, 1)) -> (0, s1, 0); positions (2, 0)
    l_pos = (math.log(math.exp(s0) + 2) + math.log(2 + math.exp(s1))) / 2  # Eq. 7
    expected = l_age + 0.5 * l_gender + 2.0 * l_pos  # Eq. 8
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert model.last_loss_terms["position"].item() == pytest.approx(l_pos, rel=1e-5)
    # position -> label: argmax (position 0 -> label 0, position 1 -> label 1)
    torch.testing.assert_close(out.extras["position_score"], torch.tensor([0.0, 1.0]))


def test_first_epoch_has_no_position_term_and_hooks_select_references():
    model = _tiny().train()
    _set_hand_weights(model)
    model.selector.reference_valid.fill_(False)
    model.selector.references.zero_()
    model.on_epoch_start(0)
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], requires_grad=True)
    out = model.forward_head(feats)
    assert "position_logits" not in out.extras
    batch = {"score": torch.tensor([2.0, 1.0, 1.0]), "gender": torch.tensor([-1, -1, -1])}
    loss = model.loss(out, batch)
    scores = out.score.detach()
    assert loss.item() == pytest.approx((batch["score"] - scores).abs().mean().item(), rel=1e-6)
    loss.backward()  # position parameters get exact-zero gradients (data-parallel safe)
    assert torch.equal(model.reweighting.p.grad, torch.zeros(3))
    # label 1 has two samples: errors |1 - score| decide, not order
    errors = (batch["score"] - scores).abs()
    best = 1 if errors[1] < errors[2] else 2
    model.on_epoch_end(0)
    assert model.selector.reference_valid.tolist() == [False, True, True]
    torch.testing.assert_close(model.selector.references[1], feats[best].detach())
    assert "position_logits" in model.forward_head(feats).extras


def test_eval_mode_loss_does_not_touch_the_references():
    model = _tiny().eval()
    out = model(torch.randn(2, 3, 32, 32))
    model.loss(out, {"score": torch.tensor([0.0, 2.0]), "gender": torch.tensor([0, 1])})
    model.on_epoch_end(0)
    assert not model.selector.has_references


def test_inference_without_and_with_stored_references():
    model = _tiny().eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = model(images)
    assert out.score.shape == (3,) and "position_logits" not in out.extras
    assert ((out.score >= 0) & (out.score <= 2)).all()  # an expectation over labels 0..2
    _set_hand_weights(model)
    restored = _tiny().eval()
    restored.load_state_dict(model.state_dict())
    with torch.no_grad():
        again = restored(images)
    torch.testing.assert_close(again.score, model(images).score)
    assert again.extras["position_logits"].shape == (3, 3)


def test_ablations_drop_their_heads():
    model = _tiny(use_gender=False, use_position=False).train()
    out = model(torch.randn(2, 3, 32, 32))
    assert set(out.extras) == {"features", "label_logits"}
    batch = {"score": torch.tensor([0.0, 2.0]), "gender": torch.tensor([0, 1])}
    torch.testing.assert_close(model.loss(out, batch), (out.score - batch["score"]).abs().mean())
    model.on_epoch_end(0)  # no selector: a no-op


def test_loss_rejects_bad_batches():
    model = _tiny().eval()
    out = model(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="nan"):
        model.loss(out, {"score": torch.tensor([1.0, float("nan")]), "gender": torch.tensor([0, 1])})
    with pytest.raises(ValueError, match="gender"):
        model.loss(out, {"score": torch.tensor([1.0, 1.0]), "gender": torch.tensor([0, 2])})


# --- build, config, preprocessing -------------------------------------------------------------
def test_build_validates_and_defaults_follow_the_paper():
    with pytest.raises(ValueError, match="bogus"):
        build(weights="random", bogus=1)
    with pytest.raises(ValueError, match="weights"):
        build()
    cfg = RelativePositionConfig(weights="random")
    assert (cfg.backbone, cfg.lambda_gender, cfg.mu_position, cfg.image_size) == ("ir50_poster", 1.0, 1.0, 112)
    assert PAPER_RECIPE["optim"] == {"name": "adam", "lr": 1e-5, "weight_decay": 1e-2}
    assert PAPER_RECIPE["schedule"] == {"name": "step", "step_size": 10, "gamma": 0.1}
    assert PAPER_RECIPE["train"] == {"epochs": 30, "batch_size": 64}
    with pytest.raises(ValueError, match="mu_position"):
        RelativePositionConfig(weights="random", mu_position=-1)


def test_paper_backbone_has_256_channels():
    with torch.device("meta"):
        model = build(weights="random")
    assert model.backbone.num_features == 256
    assert model.evr.fc.weight.shape == (41, 256)
    assert model.position_head.classifier.weight.shape == (41, 256)
    assert model.selector.references.shape == (41, 256)


def test_preprocess_gives_112px_arcface_normalised_tensors():
    from PIL import Image

    model = _tiny()
    image = Image.new("RGB", (150, 130), (255, 0, 128))
    x = model.preprocess()(image)
    assert x.shape == (3, 112, 112)
    torch.testing.assert_close(x[:, 50, 50], torch.tensor([1.0, -1.0, 128 / 255 * 2 - 1]), atol=1e-4, rtol=0)
    assert model.train_preprocess()(image).shape == (3, 112, 112)


# --- optimisation ---------------------------------------------------------------------------
def test_a_few_adam_steps_lower_the_total_loss():
    torch.manual_seed(0)
    model = build(
        backbone="ir50", weights="random", backbone_kwargs={"widths": (8, 8, 8, 8), "depths": (1, 1, 1, 1)},
        label_min=0, label_max=4, label_step=1,
    ).train()
    images = torch.randn(8, 3, 24, 24)
    batch = {
        "image": images,
        "score": torch.tensor([0.0, 1, 2, 3, 4, 1, 2, 3]),
        "gender": torch.tensor([0, 1, 0, 1, -1, 0, 1, 1]),
    }
    # epoch 1: no references, only score and gender learn; then references are fixed
    model.on_epoch_start(0)
    model.loss(model(images), batch)
    model.on_epoch_end(0)
    assert model.selector.reference_valid.all()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = model.loss(model(images), batch)
        assert "position" in model.last_loss_terms
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses
