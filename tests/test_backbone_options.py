"""The backbone options the siamese comparator and four regressors share (BackboneOptions):
one set of checks, the same built modules as before they were shared, configs unchanged."""
from __future__ import annotations

import dataclasses
import hashlib

import pytest
import timm
import torch

import comparators
from comparators.backbone_options import BackboneOptions
from comparators.partial import PartialBackbone
from comparators.regressors.comboloss import ComboLossConfig
from comparators.regressors.dual_label_distribution import DualLabelDistributionConfig
from comparators.regressors.plain import PlainConfig
from comparators.regressors.relative_position import RelativePositionConfig
from comparators.siamese import SiameseConfig
from orderlearn.config import config_from_dict
from orderlearn.errors import ConfigError

from builders import TINY_BACKBONE, TINY_IR50 as IR50_KWARGS

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TINY_BACKBONE
TINY_IR50 = dict(backbone="ir50", weights="random", backbone_kwargs=IR50_KWARGS)
OPTIONS = {"siamese": SiameseConfig, "plain": PlainConfig, "comboloss": ComboLossConfig,
           "dual-label-distribution": DualLabelDistributionConfig, "relative-position": RelativePositionConfig}

# sha256 of each model's state dict and of the next three draws of the global generator, after
# torch.manual_seed(0) and building it, recorded from the models as they were before their
# backbone options were shared (torch 2.14, timm 1.0.31): sharing must not change one parameter
# value or the order in which initialisation draws random numbers
BUILT_BEFORE = {
    "siamese": (dict(TINY, image_size=48),
        "52386942f283d762146f78df80c00e5b44730f5446038738c3dcb0ffaf9d7e9f"),
    "siamese-split": (dict(TINY, image_size=48, trainable_from="blocks.5"),
        "52386942f283d762146f78df80c00e5b44730f5446038738c3dcb0ffaf9d7e9f"),
    "plain": (dict(TINY),
        "c2a380ed22e2ce386701422c910a26b563af73047102092e138ee06e51a68afd"),
    "plain-split": (dict(TINY, trainable_from="blocks.5", head_bias="train-mean", score_range=[1, 5]),
        "c2a380ed22e2ce386701422c910a26b563af73047102092e138ee06e51a68afd"),
    "comboloss": (dict(TINY),
        "8061285222d593abc37798e3a3b0ec4ae021d4d1f16e0c199af6adf11854e7dc"),
    "dual-label-distribution": (dict(TINY, resize=None, image_size=64),
        "b1a94c8fedd27453eb1a668ac0b0175184900c55b227c7068dc009379ed84654"),
    "relative-position": (dict(TINY_IR50, label_min=0, label_max=2, label_step=1),
        "166bd5733d7b2e62d29eb074ad52d263f1c8d4d455c27bd0f84aea7b90605e07"),
    "relative-position-split": (dict(TINY, trainable_from="blocks.5", image_size=64),
        "5dd75643172c0536404a60fb90b7a58883f53240f44757df7bed72a5d2657e5d"),
}
RECORDED_WITH = ("2.14", "1.0.31")


def fingerprint(name: str, kwargs: dict) -> str:
    """sha256 of the built model's state dict (names, dtypes, shapes, bytes) and the RNG after it."""
    torch.manual_seed(0)
    model = comparators.create(name, **kwargs)
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(torch.rand(3).numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.skipif((".".join(torch.__version__.split(".")[:2]), timm.__version__) != RECORDED_WITH,
                    reason=f"fingerprints recorded with torch/timm {RECORDED_WITH}")
@pytest.mark.parametrize("case", sorted(BUILT_BEFORE))
def test_models_build_the_same_parameters_as_before_the_options_were_shared(case):
    kwargs, expected = BUILT_BEFORE[case]
    name = case.removesuffix("-split")
    assert fingerprint(name, kwargs) == expected


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_every_backbone_model_declares_backbone_options(name):
    assert comparators.options_of(name) is OPTIONS[name]
    assert issubclass(OPTIONS[name], BackboneOptions)
    shared = [f.name for f in dataclasses.fields(BackboneOptions)]
    assert [f.name for f in dataclasses.fields(OPTIONS[name])][:len(shared)] == shared


@pytest.mark.parametrize("name", sorted(OPTIONS))
@pytest.mark.parametrize("bad, message", [
    (dict(image_size=0), "image_size: must be positive, got 0"),
    (dict(augment=["hflip", "mixup"]), r"augment: unknown augmentation\(s\) \['mixup'\]"),
    (dict(trainable_from=""), "trainable_from: expected a unit name"),
    (dict(backbone="no_such_net_v9"), "no_such_net_v9"),
])
def test_shared_checks_say_the_same_for_every_model(name, bad, message):
    with pytest.raises(ValueError, match=message):
        OPTIONS[name](**{"weights": "random", **bad})


@pytest.mark.parametrize("name, defaults", [
    ("siamese", dict(backbone="mobilenetv2_100", weights="imagenet", image_size=224, augment=("hflip",))),
    ("plain", dict(backbone="seresnext50_32x4d", weights="imagenet", image_size=224,
                   augment=("crop", "color_jitter", "rotation"))),
    ("comboloss", dict(backbone="seresnext50_32x4d", weights="imagenet", image_size=224,
                       augment=("crop", "color_jitter", "rotation"))),
    ("dual-label-distribution", dict(backbone="mobilenetv2_100", weights="imagenet", image_size=224, augment=("hflip",))),
    ("relative-position", dict(backbone="ir50_poster", weights=None, image_size=112, augment=("hflip", "rotation"))),
])
def test_each_model_keeps_its_own_defaults(name, defaults):
    fields = {f.name: f.default for f in dataclasses.fields(OPTIONS[name])}
    assert {k: fields[k] for k in defaults} == defaults
    assert (fields["trainable_from"], fields["test_flip"]) == (None, False)


def test_augment_from_a_yaml_list_becomes_a_tuple():
    assert SiameseConfig(augment=["hflip", "rotation"]).augment == ("hflip", "rotation")


def test_build_backbone_splits_at_trainable_from():
    whole = BackboneOptions(**TINY).build_backbone()
    split = BackboneOptions(**TINY, trainable_from="blocks.5", image_size=64).build_backbone()
    assert not isinstance(whole, PartialBackbone) and isinstance(split, PartialBackbone)
    assert split.num_features == whole.num_features


def test_build_backbone_hands_timm_keywords_on():
    backbone = BackboneOptions(backbone="ir50", weights="random").build_backbone(widths=(4, 4, 4, 2), depths=(1, 1, 1, 1))
    assert backbone.num_features == 2


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_configs_still_write_the_shared_options_flat_under_model(name):
    raw = {"task": "comparator" if name == "siamese" else "regressor",
           "model": {"name": name, "weights": "random", "image_size": 64, "augment": ["hflip"],
                     "trainable_from": "blocks.5", "test_flip": True, "backbone": "mobilenetv2_035"}}
    config = config_from_dict(raw)
    assert config.model.args["trainable_from"] == "blocks.5"
    model = comparators.create(name, **config.model.args)
    assert model.config.augment == ("hflip",) and model.config.test_flip is True
    assert isinstance(model.backbone, PartialBackbone)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_weights_must_be_named(name):
    """Only the relative-position model defaults to no weights, and it says which to give."""
    raw = {"task": "comparator" if name == "siamese" else "regressor", "model": {"name": name, "weights": None}}
    message = "model.weights: the paper fine-tunes" if name == "relative-position" else "model.weights: expected str, got None"
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)
