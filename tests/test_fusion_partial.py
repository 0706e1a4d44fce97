"""Partial fine-tuning of a fused backbone, one trainable part per branch (``trainable_from`` a
list in branch order), on packed trunk maps through the unchanged feature cache."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

import comparators
from comparators.backbones import create_backbone
from comparators.backbones import register_fusion
from comparators.fusion import FUSIONS, FusedBackbone
from comparators.fusion_partial import PartialFusedBackbone
from comparators.partial import PartialBackbone, frozen_modules
from orderlearn.config import config_from_dict
from orderlearn.errors import ConfigError

from builders import small_run, tiny_config

TINY_FUSION = "mobilenetv2_035_resnet18_fusion"
register_fusion(TINY_FUSION, ["mobilenetv2_035", "resnet18"])  # a new fused pair is this one line
FUSED = {"backbone": TINY_FUSION, "weights": "random", "image_size": 48}
SPLIT = ["blocks.4", "layer4"]


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def fused_and_split(trainable_from, size=48):
    torch.manual_seed(0)
    fused = create_backbone(TINY_FUSION, "random").eval()
    expected_keys = list(fused.state_dict())
    return fused, expected_keys, PartialFusedBackbone(fused, trainable_from, size)


def test_register_fusion_declares_a_backbone_by_its_branches():
    assert FUSIONS["mobilenetv2_100_lite0_fusion"] == ("mobilenetv2_100", "tf_efficientnet_lite0")
    fused = create_backbone(TINY_FUSION, "random")
    assert isinstance(fused, FusedBackbone) and fused.names == ("mobilenetv2_035", "resnet18")
    assert fused.num_features == 1280 + 512
    with pytest.raises(ValueError, match="two branches"):
        register_fusion("one_branch_fusion", ["resnet18"])


@pytest.mark.parametrize("trainable_from", [SPLIT, ["blocks.4", None], [None, "layer4"]])
def test_the_split_fused_backbone_computes_the_fused_one_and_keeps_its_checkpoint_keys(trainable_from):
    fused, keys, split = fused_and_split(trainable_from)
    split.eval()
    x = torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        expected = fused(x)
        packed = split.forward_trunk(x)
        assert packed.shape == (3, sum(split.sizes)) and packed.dim() == 2  # one tensor per image
        assert torch.allclose(split.forward_top(packed), expected, rtol=1e-4, atol=1e-5)
        maps = split.branch_trunks(x)
    whole = [i for i, unit in enumerate(trainable_from) if unit is None]
    for i, shape in enumerate(split.shapes):
        assert maps[i].shape[1:] == shape
        assert (len(shape) == 1) == (i in whole)  # a branch frozen whole is cached as pooled features
    assert list(split.state_dict()) == keys
    resolved = {"layer4": "layer4.0"}  # a container names its first unit
    assert split.trainable_from == tuple(resolved.get(u, u) for u in trainable_from)


def test_only_each_branch_top_trains_and_every_trunk_stays_in_evaluation_mode():
    _, _, split = fused_and_split(["blocks.4", None])
    split.train()
    frozen = [m for unit in split.trunk_modules() for m in unit.modules()]
    assert split.branches[1] in split.trunk_modules()  # the branch frozen whole
    assert frozen and not any(m.training for m in frozen)
    assert all(m.training for unit in split.top_modules() for m in unit.modules())
    trunk_bn = split.branches[0].bn1
    before = trunk_bn.running_mean.clone(), split.branches[1].bn1.running_mean.clone()
    x = torch.randn(4, 3, 48, 48)
    split.forward_top(split.forward_trunk(x)).sum().backward()
    assert torch.equal(trunk_bn.running_mean, before[0]) and torch.equal(split.branches[1].bn1.running_mean, before[1])
    grads = {name: p.grad is not None for name, p in split.named_parameters()}
    top = {n for n, _ in split.named_parameters() if n.startswith(("branches.0.blocks.4", "branches.0.blocks.5",
                                                                    "branches.0.blocks.6", "branches.0.conv_head", "branches.0.bn2"))}
    assert top and all(grads[n] for n in top)
    assert not any(grads[n] for n in grads if n not in top)  # branch 0's trunk and branch 1 whole: no gradient

    _, _, both = fused_and_split(SPLIT)
    both.train()
    both.forward_top(both.forward_trunk(x)).sum().backward()
    trained = {n for n, p in both.named_parameters() if p.grad is not None}
    assert any(n.startswith("branches.1.layer4") for n in trained) and any(n.startswith("branches.0.blocks.6") for n in trained)
    assert not any(n.startswith(("branches.0.blocks.3", "branches.1.layer3", "branches.1.conv1")) for n in trained)


def test_a_packed_tensor_of_another_width_is_an_error_not_a_mis_cut():
    _, _, split = fused_and_split(SPLIT)
    with pytest.raises(ValueError, match="trainable_from: packed trunk features"):
        split.forward_top(torch.zeros(2, sum(split.sizes) + 1))


@pytest.mark.parametrize("name", ["plain", "siamese"])
def test_models_over_the_split_fused_backbone_cache_trunks_and_train_tops_and_heads(name):
    torch.manual_seed(0)
    model = comparators.create(name, **FUSED, trainable_from=SPLIT).eval()
    assert isinstance(model.backbone, PartialFusedBackbone)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, sum(model.backbone.sizes))
        if name == "siamese":
            assert torch.allclose(model.forward_head(features, features.flip(0)), model(x, x.flip(0)), atol=1e-5)
        else:
            assert torch.allclose(model.forward_head(features).score, model(x).score, atol=1e-5)
    frozen = {id(p) for m in model.feature_modules() for p in m.parameters()}
    head = {id(p) for p in model.head_parameters()}
    top = {id(p) for unit in model.backbone.top_modules() for p in unit.parameters()}
    assert top and top <= head and not (frozen & head)
    assert model.feature_modules() == frozen_modules(model.backbone)
    assert "trainable_from=('blocks.4', 'layer4.0')" in model.feature_key_config()


def test_a_single_network_still_splits_as_before():
    model = comparators.create("plain", backbone="mobilenetv2_035", weights="random", image_size=48, trainable_from="blocks.4")
    assert type(model.backbone) is PartialBackbone
    assert model.feature_key_config() == "PartialBackbone(backbone='mobilenetv2_035', trainable_from='blocks.4')"


@pytest.mark.parametrize("trainable_from,message", [
    ("blocks.4", r"fuses 2 branches \['mobilenetv2_035', 'resnet18'\]: give a list"),
    (["blocks.4"], "expected 2 entries, one per branch"),
    ([None, None], "every branch is frozen whole"),
    (["blocks.4", 1.5], r"\[1\]: expected str"),
    (["blocks.4", ""], "entry 1 expected a unit name"),
])
def test_bad_per_branch_splits_are_one_line_errors_at_load(synthetic_root, trainable_from, message):
    raw = {"data": {"kind": "scut", "root": str(synthetic_root)}, "task": "regressor",
           "model": {"name": "plain", **FUSED, "trainable_from": trainable_from}}
    with pytest.raises(ConfigError, match=rf"^model\.trainable_from.*{message}") as error:
        config_from_dict(raw)
    assert "\n" not in str(error.value)


def test_a_list_for_one_network_and_a_unit_a_branch_lacks_name_model_trainable_from(synthetic_root, tmp_path):
    from orderlearn.runs.recipe import build_model

    with pytest.raises(ConfigError, match=r"^model\.trainable_from: a list is for a fused backbone"):
        config_from_dict({"model": {"name": "siamese", "backbone": "mobilenetv2_035", "trainable_from": ["blocks.4"]}})
    raw = tiny_config(synthetic_root, tmp_path / "out")
    raw["model"].update(FUSED, trainable_from=["blocks.4", "blocks.4"])
    with pytest.raises(ConfigError, match=r"^model\.trainable_from: entry 1 \(resnet18\): 'blocks.4' is not a unit"):
        build_model(config_from_dict(raw))


def run_cli(tmp_path, raw, *overrides):
    """``orderlearn run`` on ``raw`` written as a config file, with ``-o`` overrides."""
    from orderlearn.cli import main

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    argv = ["run", "--config", str(config)]
    for override in overrides:
        argv += ["-o", override]
    assert main(argv) == 0


@pytest.mark.slow  # a short run on cached packed maps, 10-25 s each on a shared 2-core CPU
@pytest.mark.parametrize("task", ["regressor", "comparator"])
def test_a_run_over_a_split_fused_backbone_trains_both_tops_on_cached_packed_maps(synthetic_root, tmp_path,
                                                                                   feature_cache_dir, task):
    from safetensors.torch import load_file

    model = ({"name": "plain", "backbone": "mobilenetv2_035", "weights": "random", "augment": []} if task == "regressor"
             else {"name": "siamese", "backbone": "mobilenetv2_035", "weights": "random", "projection": 16, "hidden": 16})
    raw = small_run(synthetic_root, tmp_path / "run", model, name=f"fused-{task}", task=task,
                    train={"select_metric": "val_pc" if task == "regressor" else "val_loss"}, **({"pairs": {"total": 200, "val_total": 100}} if task == "comparator" else {}))
    run_cli(tmp_path, raw, f"model.backbone={TINY_FUSION}", "model.image_size=48", "model.trainable_from=[blocks.4, layer4]",
            "model.test_flip=true", "train.feature_views=[identity, hflip]")
    from orderlearn.config import load_config
    from orderlearn.report.run_folders import trainable_part

    saved = load_config(tmp_path / "run" / "config.yaml")  # the saved config reads back, its split per branch
    assert saved.model.args["trainable_from"] == SPLIT
    assert trainable_part(saved.to_dict()) == "from blocks.4 ‖ layer4"
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {"direct", "order_learned"} <= set(results) and results["order_learned"]["n"] == 40
    assert len(list(feature_cache_dir.glob("*/*.npy"))) == 2 * 200  # every image, both views, once: one packed entry each
    torch.manual_seed(0)
    options = {k: v for k, v in model.items() if k != "name"}
    initial = comparators.create(model["name"], **{**options, **FUSED, "trainable_from": SPLIT}).state_dict()
    folder = "regressor" if task == "regressor" else "comparator"
    trained = load_file(str(tmp_path / "run" / folder / "checkpoints" / "epoch_002" / "model.safetensors"))
    trunk = [k for k in trained if k.startswith(("backbone.branches.0.blocks.3", "backbone.branches.0.bn1",
                                                 "backbone.branches.1.layer3", "backbone.branches.1.bn1"))]
    assert trunk and all(torch.equal(trained[k], initial[k]) for k in trunk)  # weights and batch-norm statistics
    for top in ("backbone.branches.0.blocks.5", "backbone.branches.1.layer4"):
        weights = [k for k in trained if k.startswith(top) and k.endswith("weight")]
        assert weights and any(not torch.equal(trained[k], initial[k]) for k in weights)
