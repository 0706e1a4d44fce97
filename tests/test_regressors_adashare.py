"""Tests of the AdaShare + AFF multi-task regressor (Electronics 2024, 13, 179)."""
from __future__ import annotations

import math

import pytest
import timm
import torch

from orderlearn.report.metrics import classification_metrics

from comparators.backbones import WeightsNotFoundError
from comparators.base import RegressorOutput
from comparators.regressors.adashare_aff import (
    PAPER_RECIPE,
    AdaShareAFFRegressor,
    beauty_levels,
    build,
)
from comparators.regressors.adashare_blocks import AFF, MSCAM, TaskBatchNorm2d
from comparators.regressors.adashare_policy import sharing_loss, sparsity_loss, temperature_at
from comparators.regressors.adashare_weights import timm_key

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only add contention


TINY = dict(width=8, layers=(1, 1, 1, 1), dropout=0.0, image_size=32)


def tiny(**overrides) -> AdaShareAFFRegressor:
    torch.manual_seed(0)
    return build(**{**TINY, **overrides})


# ---------------------------------------------------------------------------- AFF / MS-CAM
def test_mscam_weights_lie_in_open_unit_interval_and_keep_shape():
    torch.manual_seed(0)
    cam = MSCAM(channels=8, ratio=4, num_tasks=2)
    c = 3.0 * torch.randn(2, 8, 5, 5)
    w = cam.weights(c, task=1)
    assert w.shape == c.shape
    assert bool((w > 0).all()) and bool((w < 1).all())
    assert torch.allclose(cam(c, task=1), c * w)  # Eq. 5


def test_aff_is_the_convex_mix_of_identity_and_residual():
    torch.manual_seed(0)
    aff = AFF(channels=8, ratio=4, num_tasks=2)
    b, r = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    z = aff(b, r, task=0)
    w = aff.mscam.weights(b + r, task=0)
    assert z.shape == b.shape
    assert torch.allclose(z, w * b + (1 - w) * r)  # Eq. 2
    assert bool((z <= torch.maximum(b, r) + 1e-6).all()) and bool((z >= torch.minimum(b, r) - 1e-6).all())
    assert torch.allclose(aff(b, b, task=0), b)
    with pytest.raises(ValueError, match="equal shapes"):
        aff(b, r[:, :, :2], task=0)


# ------------------------------------------------------------------------ task-specific BN
def test_task_batchnorm_keeps_separate_running_stats_per_task():
    bn = TaskBatchNorm2d(num_features=2, num_tasks=2).train()
    x0 = torch.full((4, 2, 3, 3), 2.0)
    x1 = torch.full((4, 2, 3, 3), -5.0)
    bn(x0, 0)
    bn(x1, 1)
    # momentum 0.1 from a zero start: running_mean = 0.1 * batch mean, per task
    assert torch.allclose(bn.bns[0].running_mean, torch.tensor([0.2, 0.2]))
    assert torch.allclose(bn.bns[1].running_mean, torch.tensor([-0.5, -0.5]))
    bn.eval()
    probe = torch.zeros(1, 2, 1, 1)
    assert not torch.allclose(bn(probe, 0), bn(probe, 1))
    with pytest.raises(ValueError, match="task index 2"):
        bn(probe, 2)


# ----------------------------------------------------------------------------- the policy
def test_policy_shape_is_tasks_by_blocks_by_two_and_one_hot_when_learning():
    model = tiny().train()
    model.set_stage("policy")
    out = model(torch.randn(2, 3, 32, 32))
    policy = out.extras["policy"]
    assert policy.shape == (2, 4, 2)
    assert torch.equal(policy.sum(dim=-1), torch.ones(2, 4))
    assert set(policy.detach().unique().tolist()) <= {0.0, 1.0}
    assert int(model.policy_steps) == 1


def test_warmup_executes_every_block_whatever_the_logits():
    model = tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model.policy_logits.copy_(torch.tensor([-10.0, 10.0]).expand_as(model.policy_logits))  # all "skip"
        model.set_stage("warmup")
        warm = model(x)
        assert torch.equal(warm.extras["policy"][..., 0], torch.ones(2, 4))
        model.set_stage("finetune")  # argmax of the logits: skip everything
        skipped = model(x)
        model.policy_logits.copy_(torch.tensor([10.0, -10.0]).expand_as(model.policy_logits))
        executed = model(x)
    assert torch.allclose(warm.score, executed.score)
    assert not torch.allclose(warm.extras["beauty_logits"], skipped.extras["beauty_logits"])


def test_skipped_blocks_pass_their_shortcut_and_both_paths_agree():
    model = tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    skip_all = torch.tensor([0.0, 1.0]).expand(4, 2)
    with torch.no_grad():
        h = model.stem(x, 1)
        for block in model.blocks:  # Eq. 1 with policy [0 1]: only the (projection) shortcut
            h = h if block.downsample is None else block.downsample(h, 1)
        expected = model.heads[1](h.mean(dim=(2, 3)))
        fast = model._task_forward(x, 1, skip_all)
    soft = model._task_forward(x, 1, skip_all.clone().requires_grad_(True))  # the gradient path
    assert torch.allclose(fast, expected, atol=1e-6)
    assert torch.allclose(soft, expected, atol=1e-6)


def test_eval_in_policy_stage_takes_the_argmax_policy():
    model = tiny().eval()
    model.set_stage("policy")
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 1.0]])
    with torch.no_grad():
        model.policy_logits.copy_(torch.stack([logits, logits.flip(-1)]))
    policy = model(torch.randn(2, 3, 32, 32)).extras["policy"]
    assert torch.equal(policy[0, :, 0], torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert torch.equal(policy[1, :, 0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert int(model.policy_steps) == 0


def test_temperature_schedule_and_regularisers_by_hand():
    assert temperature_at(250, 5.0, 0.965, 100) == pytest.approx(5.0 * 0.965**2)
    logits = torch.tensor([[[0.0, 0.0], [1.0, 0.0]], [[2.0, 0.0], [1.0, 0.0]]])  # 2 tasks, 2 blocks
    # CE towards "skip": log(2) and log(1 + e) per task -> per task mean, summed over tasks
    expected_sparsity = 0.5 * (math.log(2) + math.log(1 + math.e)) + 0.5 * (math.log(1 + math.e ** 2) + math.log(1 + math.e))
    assert sparsity_loss(logits).item() == pytest.approx(expected_sparsity, rel=1e-6)
    # weights (L - l)/L with L = 2: 0.5 for block 1, 0 for block 2; |0 - 2| * 0.5 = 1
    assert sharing_loss(logits).item() == pytest.approx(1.0)


# --------------------------------------------------------------------- stages and groups
def test_stage_switch_toggles_policy_requires_grad_and_groups_split():
    model = tiny()
    assert not model.policy_logits.requires_grad
    model.set_stage("policy")
    assert model.policy_logits.requires_grad
    model.set_stage("finetune")
    assert not model.policy_logits.requires_grad
    with pytest.raises(ValueError, match="unknown stage 'search'"):
        model.set_stage("search")
    groups = model.parameter_groups()
    weights, policy = groups
    assert policy["params"] == [model.policy_logits] and policy["lr"] == 0.01
    assert weights["lr"] == 1e-3 and all(p is not model.policy_logits for p in weights["params"])
    assert len(weights["params"]) + 1 == len(list(model.parameters()))
    restored = tiny()
    restored.load_state_dict(model.state_dict())
    assert restored.stage == "finetune" and not restored.policy_logits.requires_grad


def test_policy_logits_learn_only_in_the_policy_stage():
    model = tiny().train()
    opt = torch.optim.AdamW(model.parameter_groups())
    x = torch.randn(4, 3, 32, 32)
    batch = {"score": torch.tensor([1.0, 2.0, 4.0, 5.0]), "gender": torch.tensor([0, 1, 0, 1])}
    for stage, should_move in (("warmup", False), ("policy", True)):
        model.set_stage(stage)
        before = model.policy_logits.detach().clone()
        opt.zero_grad()
        model.loss(model(x), batch).backward()
        opt.step()
        assert (not torch.equal(before, model.policy_logits.detach())) == should_move, stage


# ---------------------------------------------------------------------------- loss, labels
def test_beauty_levels_mode_of_histogram_else_rounded_score():
    score = torch.tensor([1.49, 1.5, 0.2, 5.7, 3.0, 3.0])
    counts = torch.tensor([[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0],
                           [0, 10, 3, 0, 0], [1, 1, 5, 5, 0]], dtype=torch.float32)
    assert beauty_levels(score, counts).tolist() == [0, 1, 0, 4, 1, 2]  # ties -> lower grade
    assert beauty_levels(score, counts, "round").tolist() == [0, 1, 0, 4, 2, 2]


def test_loss_against_hand_computed_value_with_unknown_gender_ignored():
    model = tiny()
    beauty = torch.arange(5.0).expand(3, 5)
    gender = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    out = RegressorOutput(score=torch.zeros(3), extras={"beauty_logits": beauty, "gender_logits": gender})
    batch = {
        "score": torch.tensor([2.0, 3.5, 3.0]),
        "rating_counts": torch.tensor([[0, 10, 3, 0, 0], [0, 0, 0, 0, 0], [1, 1, 5, 5, 0]], dtype=torch.float32),
        "gender": torch.tensor([0, -1, 1]),
    }
    lse = math.log(sum(math.exp(k) for k in range(5)))
    beauty_ce = ((lse - 1) + (lse - 3) + (lse - 2)) / 3  # levels 1 (mode), 3 (3.5 rounds up), 2 (tie)
    gender_ce = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2  # sample 2 ignored
    assert model.loss(out, batch).item() == pytest.approx(beauty_ce + 0.6 * gender_ce, rel=1e-6)

    batch["gender"] = torch.tensor([-1, -1, -1])
    assert model.loss(out, batch).item() == pytest.approx(beauty_ce, rel=1e-6)
    for bad in ([0, 2, 1], [0, -2, 1]):
        batch["gender"] = torch.tensor(bad)
        with pytest.raises(ValueError, match="gender labels"):
            model.loss(out, batch)


def test_score_is_the_expected_level():
    model = tiny().eval()
    out = model(torch.randn(3, 3, 32, 32))
    expected = (out.extras["beauty_logits"].softmax(dim=1) * torch.arange(1.0, 6.0)).sum(dim=1)
    assert out.score.shape == (3,)
    assert torch.allclose(out.score, expected)
    assert out.extras["gender_logits"].shape == (3, 2)


def test_a_few_adamw_steps_lower_the_loss():
    model = tiny().train()
    torch.manual_seed(1)
    x = torch.randn(8, 3, 32, 32)
    batch = {
        "score": torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 3.0, 5.0]),
        "rating_counts": torch.zeros(8, 5),
        "gender": torch.tensor([0, 1, -1, 0, 1, 1, 0, -1]),
    }
    opt = torch.optim.AdamW(model.parameter_groups())
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = model.loss(model(x), batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


# -------------------------------------------------------------------------------- metrics
def test_classification_metrics_against_hand_values():
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 2, 0]), 3).float()
    targets = torch.tensor([0, 1, 2, 2, -1])
    m = classification_metrics(logits, targets)
    assert m["accuracy"] == pytest.approx(3 / 4)
    # F1 per class: 1, 2/3 (tp 1, fp 1), 2/3 (tp 1, fn 1)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    with pytest.raises(ValueError, match="no target"):
        classification_metrics(logits, torch.full((5,), -1))


# ------------------------------------------------------------------ weights, config, build
def test_timm_resnet18_weights_load_by_name_into_every_task_copy(tmp_path):
    torch.manual_seed(0)
    source = timm.create_model("resnet18", pretrained=False).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(source, path)
    model = build(weights=str(path))
    state = model.state_dict()
    for t in (0, 1):
        assert torch.equal(state[f"stem.bn.bns.{t}.weight"], source["bn1.weight"])
        assert torch.equal(state[f"layers.2.0.downsample.bn.bns.{t}.running_var"], source["layer3.0.downsample.1.running_var"])
    assert torch.equal(state["layers.3.1.conv2.weight"], source["layer4.1.conv2.weight"])
    assert timm_key("layers.1.0.aff.mscam.local_att.conv1.weight") is None
    assert timm_key("layers.0.1.bn2.bns.1.bias") == "layer1.1.bn2.bias"
    with pytest.raises(WeightsNotFoundError, match="does not fit"):
        build(width=8, weights=str(path))


def test_build_validates_options():
    with pytest.raises(ValueError, match=r"unknown AdaShareAFFConfig key\(s\) \['bogus'\]"):
        build(bogus=1)
    with pytest.raises(ValueError, match="dropout"):
        build(dropout=1.5)
    with pytest.raises(ValueError, match="level_from"):
        build(level_from="mean")
    assert PAPER_RECIPE["optim"]["lr"] == 1e-3 and PAPER_RECIPE["train"]["batch_size"] == 32


def test_beauty_alone_skips_the_gender_path_and_reports_only_beauty():
    """The single-task baseline (task_weights [1, 0]) runs one task path, not two."""
    torch.manual_seed(0)
    model = build(weights="random", layers=(1, 1, 1, 1), width=8, image_size=32, task_weights=(1.0, 0.0), learn_policy=False)
    model.on_epoch_start(5, 5)  # past the warm-up: without policy learning every block still runs
    assert model.stage == "warmup"
    batch = {"score": torch.tensor([1.0, 3.0, 5.0]), "rating_counts": torch.zeros(3, 5), "gender": torch.tensor([0, 1, 0]),
             "database": torch.zeros(3, dtype=torch.long)}
    output = model(torch.randn(3, 3, 32, 32))
    assert torch.equal(output.extras["gender_logits"], torch.zeros(3, 2))
    model.loss(output, batch).backward()
    assert model.heads[1][1].weight.grad is None and model.heads[0][1].weight.grad is not None
    assert set(model.classifications(output, batch)) == {"beauty_level"}
