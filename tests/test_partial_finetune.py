"""Partial fine-tuning with a cached trunk (``model.trainable_from``) and cached views."""
from __future__ import annotations

import json

import pytest
import torch

import comparators
from comparators.partial import PartialBackbone, backbone_units, split_index
from comparators.views import ViewAveraged
from orderlearn.config import config_from_dict
from orderlearn.errors import ConfigError

from builders import TINY_IMAGE as TINY, small_run


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def test_bank_references_are_embedded_once_from_their_features():
    """The bank route passes embeddings (``embed_from_features`` already applied) to
    ``embed_references``; applying the top a second time crashed a partially fine-tuned
    siamese comparator (conv2d on [R, 1280])."""
    model = comparators.create("siamese", **TINY, trainable_from="blocks.4").eval()
    images = torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        embeddings = model.embed_from_features(model.forward_features(images))
        refs = model.embed_references(embeddings, torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(refs, embeddings)


def tiny_backbone():
    from comparators.backbones import create_backbone

    return create_backbone("mobilenetv2_035", "random")


def test_units_and_split_points_by_name_container_and_index():
    backbone = tiny_backbone()
    names = [n for n, _ in backbone_units(backbone)]
    assert names[:4] == ["conv_stem", "bn1", "blocks.0", "blocks.1"] and names[-1] == "global_pool"
    assert split_index(backbone_units(backbone), "blocks.4") == names.index("blocks.4")
    assert split_index(backbone_units(backbone), "blocks") == names.index("blocks.0")  # a container: its first unit
    assert split_index(backbone_units(backbone), -2) == len(names) - 2
    with pytest.raises(ValueError, match="not a unit of this backbone.*blocks.4"):
        split_index(backbone_units(backbone), "layer4")
    with pytest.raises(ValueError, match="nothing would be frozen"):
        PartialBackbone(tiny_backbone(), "conv_stem", 48)


def test_split_backbone_computes_the_same_and_keeps_the_checkpoint_keys():
    backbone = tiny_backbone().eval()
    keys = list(backbone.state_dict())
    partial = PartialBackbone(backbone, "blocks.4", 48).eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(partial(x), backbone(x), atol=1e-6)
        assert partial.forward_trunk(x).shape[1:] == (24, 3, 3)  # block 3's output (64 channels x 0.35, rounded to 8; 48 px / 16)
    assert list(partial.state_dict()) == keys


def test_trunk_is_frozen_in_eval_mode_and_the_top_trains_in_training_mode():
    partial = PartialBackbone(tiny_backbone(), "blocks.4", 48)
    partial.train()
    trunk_bn = [m for unit in partial.trunk_modules() for m in unit.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not m.training for unit in partial.trunk_modules() for m in unit.modules())
    assert all(m.training for unit in partial.top_modules() for m in unit.modules())
    assert not any(p.requires_grad for unit in partial.trunk_modules() for p in unit.parameters())
    assert all(p.requires_grad for unit in partial.top_modules() for p in unit.parameters())
    assert trunk_bn  # there is batch-norm in the trunk to keep frozen
    before = {k: v.clone() for k, v in partial.blocks[0].state_dict().items()}
    partial(torch.randn(4, 3, 48, 48)).sum().backward()  # a training-mode pass
    assert all(torch.equal(before[k], v) for k, v in partial.blocks[0].state_dict().items())  # running stats untouched


@pytest.mark.parametrize("name,extra", [("siamese", {}), ("plain", {}), ("comboloss", {"class_weights": [1, 1, 1, 1, 1]}),
                                        ("dual-label-distribution", {"resize": None}),
                                        ("relative-position", {"label_min": 1, "label_max": 5, "label_step": 0.5})])
def test_every_timm_method_splits_at_trainable_from(name, extra):
    torch.manual_seed(0)
    model = comparators.create(name, **TINY, **extra, trainable_from="blocks.4").eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.dim() == 4  # trunk maps, not pooled features
        if name == "siamese":
            assert torch.allclose(model.forward_head(features, features.flip(0)), model(x, x.flip(0)), atol=1e-5)
        else:
            assert torch.allclose(model.forward_head(features).score, model(x).score, atol=1e-5)
    frozen = {id(p) for m in model.feature_modules() for p in m.parameters()}
    head = {id(p) for p in model.head_parameters()}
    top = {id(p) for unit in model.backbone.top_modules() for p in unit.parameters()}
    assert top <= head and not (frozen & head)


def test_flip_view_is_cached_apart_and_averaged_at_test_time(synthetic_root, feature_cache_dir):
    from accelerate import Accelerator

    from orderlearn.data.splits import load_training
    from orderlearn.engine.features import FeatureCache, FeatureExtractor

    splits = load_training(config_from_dict({"data": {"kind": "scut", "root": str(synthetic_root), "split": "fold1"}}).data)
    samples = splits.train[:5]
    torch.manual_seed(0)
    model = comparators.create("plain", **TINY, augment=[], trainable_from="blocks.4", test_flip=True)
    extractor = FeatureExtractor(Accelerator(cpu=True), 4, cache=FeatureCache(feature_cache_dir))
    both = extractor(model, samples, views=("identity", "hflip"))
    assert both.shape[:2] == (5, 2)
    assert len(list(feature_cache_dir.glob("*/*.npy"))) == 10  # one entry per image and view
    images = torch.stack([model.preprocess()(__import__("PIL.Image").Image.open(s.path)) for s in samples])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(both[:, 1], model.forward_features(images.flip(-1)), atol=1e-5)
        view = model.comparator_view()
        assert isinstance(view, ViewAveraged)
        stacked = extractor(view, samples)  # the view asks for both views: both come from the cache
        assert torch.equal(stacked, both)
        scores = view.embed_from_features(stacked).reshape(-1)
        expected = 0.5 * (model(images).score + model(images.flip(-1)).score)
    assert torch.allclose(scores, expected, atol=1e-5)
    assert len(list(feature_cache_dir.glob("*/*.npy"))) == 10


def test_view_and_split_options_are_checked_at_load(synthetic_root):
    base = {"data": {"kind": "scut", "root": str(synthetic_root)}, "model": {"name": "siamese", **TINY}}
    with pytest.raises(ConfigError, match="train.feature_views"):
        config_from_dict({**base, "train": {"feature_views": ["identity", "hflip"]}})  # no frozen_backbone
    with pytest.raises(ConfigError, match="train.feature_views"):
        config_from_dict({**base, "train": {"frozen_backbone": True, "feature_views": ["mirror"]}})
    with pytest.raises(ConfigError, match="train.views_per_epoch"):  # one view of a single view
        config_from_dict({**base, "train": {"frozen_backbone": True, "views_per_epoch": "one"}})
    with pytest.raises(ConfigError, match="train.views_per_epoch.*pairs.recipe"):  # fixed pairs draw their views once
        config_from_dict({**base, "train": {"frozen_backbone": True, "feature_views": ["identity", "hflip"],
                                            "views_per_epoch": "one"}})
    with pytest.raises(ConfigError, match="train.views_per_epoch"):
        config_from_dict({**base, "train": {"frozen_backbone": True, "feature_views": ["identity", "hflip"],
                                            "views_per_epoch": "some"}})
    with pytest.raises(ConfigError, match="trainable_from"):
        config_from_dict({**base, "model": {**base["model"], "trainable_from": 1.5}})
    assert config_from_dict({**base, "model": {**base["model"], "trainable_from": 6}}).model.args["trainable_from"] == 6


@pytest.mark.slow  # a partial fine-tuning run, ~2 s
def test_a_partial_run_trains_only_the_top_and_caches_each_image_and_view_once(synthetic_root, tmp_path, feature_cache_dir):
    from safetensors.torch import load_file

    from orderlearn.runs.recipe import run_experiment

    raw = small_run(synthetic_root, tmp_path / "run",
                    {"name": "plain", **TINY, "augment": [], "trainable_from": "blocks.4", "test_flip": True}, name="partial",
                    train={"select_metric": "val_pc", "feature_views": ["identity", "hflip"]})
    results = run_experiment(config_from_dict(raw))
    assert {"direct", "order_learned"} <= set(results)
    assert len(list(feature_cache_dir.glob("*/*.npy"))) == 2 * 200  # every synthetic image, both views, once
    torch.manual_seed(0)
    initial = comparators.create("plain", **TINY, augment=[], trainable_from="blocks.4").state_dict()
    trained = load_file(str(tmp_path / "run" / "regressor" / "checkpoints" / "epoch_002" / "model.safetensors"))
    trunk = [k for k in trained if k.startswith(("backbone.conv_stem", "backbone.bn1", "backbone.blocks.0", "backbone.blocks.3"))]
    top = [k for k in trained if k.startswith("backbone.blocks.5") and k.endswith("weight")]
    assert trunk and all(torch.equal(trained[k], initial[k]) for k in trunk)  # weights and batch-norm statistics
    assert top and any(not torch.equal(trained[k], initial[k]) for k in top)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["direct"]["n"] == 40


def test_methods_over_the_same_trunk_share_cached_features_and_other_splits_do_not(synthetic_root, feature_cache_dir):
    from accelerate import Accelerator

    from orderlearn.data.splits import load_training
    from orderlearn.engine.features import FeatureCache, FeatureExtractor

    splits = load_training(config_from_dict({"data": {"kind": "scut", "root": str(synthetic_root), "split": "fold1"}}).data)
    extractor = FeatureExtractor(Accelerator(cpu=True), 4, cache=FeatureCache(feature_cache_dir))
    torch.manual_seed(0)  # the backbone is built first: both get the same random trunk
    siamese = comparators.create("siamese", **TINY, trainable_from="blocks.4", projection=8)
    torch.manual_seed(0)
    plain = comparators.create("plain", **TINY, trainable_from="blocks.4", loss="mse", test_flip=True)
    first = extractor(siamese, splits.train[:3])
    second = extractor(plain.comparator_view(), splits.train[:3], views=("identity",))
    assert torch.equal(first, second)
    assert len(list(feature_cache_dir.glob("*/*.npy"))) == 3  # one trunk, one entry per image
    torch.manual_seed(0)
    extractor(comparators.create("plain", **TINY, trainable_from="blocks.5"), splits.train[:3])
    assert len(list(feature_cache_dir.glob("*/*.npy"))) == 6


def test_cross_group_protocol_trains_on_some_groups_and_tests_on_others(synthetic_root):
    from orderlearn.data.splits import load_test, load_training

    data = {"kind": "scut", "root": str(synthetic_root), "split": "fold1", "val_fraction": 0.2}
    everything = load_training(config_from_dict({"data": data}).data)
    asian = config_from_dict({"data": {**data, "train_groups": ["AF", "AM"], "test_groups": ["CF", "CM"]}}).data
    splits, test = load_training(asian), load_test(asian)
    assert {s.group for s in splits.train + splits.val} == {"AF", "AM"}
    assert {s.group for s in test} == {"CF", "CM"}
    assert len(splits.train) + len(splits.val) < len(everything.train) + len(everything.val)
    with pytest.raises(ConfigError, match=r"data.test_groups: no image of group \[.XX.\]"):
        load_test(config_from_dict({"data": {**data, "test_groups": ["XX"]}}).data)


def test_features_of_another_precision_are_not_taken_from_the_cache(synthetic_root, feature_cache_dir):
    """A bf16 run must not read float32 features cached by an earlier run (nor the reverse): the
    same config and seed give the same numbers whatever is in the cache."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from orderlearn.data.splits import load_training
    from orderlearn.engine.features import FeatureCache, FeatureExtractor

    splits = load_training(config_from_dict({"data": {"kind": "scut", "root": str(synthetic_root), "split": "fold1"}}).data)
    samples = splits.train[:3]
    torch.manual_seed(0)
    model = comparators.create("plain", **TINY, augment=[], trainable_from="blocks.4")
    try:
        AcceleratorState._reset_state(True)
        full = FeatureExtractor(Accelerator(cpu=True, mixed_precision="no"), 4, cache=FeatureCache(feature_cache_dir))(model, samples)
        AcceleratorState._reset_state(True)
        fresh_cache = feature_cache_dir / "bf16-alone"
        alone = FeatureExtractor(Accelerator(cpu=True, mixed_precision="bf16"), 4, cache=FeatureCache(fresh_cache))(model, samples)
        AcceleratorState._reset_state(True)
        shared = FeatureExtractor(Accelerator(cpu=True, mixed_precision="bf16"), 4, cache=FeatureCache(feature_cache_dir))(model, samples)
    finally:
        AcceleratorState._reset_state(True)
    assert not torch.equal(full, alone)  # bf16 features differ from float32 ones
    assert torch.equal(shared, alone)  # and the cache holding float32 features did not change them
    assert len(list(feature_cache_dir.glob("*/*.npy"))) == 6  # one entry per image and precision


@pytest.mark.slow  # two runs, ~2-3 s
def test_a_channels_last_run_gives_the_numbers_of_a_contiguous_one_and_caches_apart(synthetic_root, tmp_path,
                                                                                   feature_cache_dir, monkeypatch):
    """train.channels_last converts the model (its conv weights, so every conv's output follows)
    and the images; its features equal float32's to rounding, yet are cached under their own key
    so a run's numbers never depend on which format filled the cache."""
    import orderlearn.runs.recipe as run
    import orderlearn.runs.loaded as loaded_run

    built = []

    def keep(config):
        built.append(build_model(config))
        return built[-1]

    build_model = run.build_model
    monkeypatch.setattr(run, "build_model", keep)
    monkeypatch.setattr(loaded_run, "build_model", keep)
    results = {}
    for channels_last in (False, True):
        raw = small_run(synthetic_root, tmp_path / f"run_{channels_last}",
                        {"name": "plain", **TINY, "augment": [], "trainable_from": "blocks.4"}, name="partial",
                        train={"select_metric": "val_mae", "channels_last": channels_last})
        results[channels_last] = run.run_experiment(config_from_dict(raw))
    loaded_run.LoadedRun.load(tmp_path / "run_True")  # scoring a saved run computes its features as the run did
    assert len(built) == 3
    convs = [[m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)] for model in built]
    assert all(w.is_contiguous() for w in convs[0])
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs[1] + convs[2])
    assert any(not w.is_contiguous() for w in convs[1])  # a 3x3 conv over several channels: the two formats differ
    assert len(list(feature_cache_dir.glob("*/*.npy"))) == 2 * 200  # each format's features of every image, once
    for route in ("direct", "order_learned"):
        # features equal to 1e-5; two epochs of training carry that into the fourth digit
        assert results[True][route]["mae"] == pytest.approx(results[False][route]["mae"], abs=2e-3)


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_bf16_arithmetic_warns_that_it_is_slower(tmp_path, monkeypatch, caplog, native):
    from accelerate.state import AcceleratorState

    import orderlearn.engine.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    config = config_from_dict({"train": {"mixed_precision": "bf16", "tracker": "none"}})
    try:
        AcceleratorState._reset_state(True)
        with caplog.at_level("WARNING", logger="orderlearn.engine.runtime"):
            runtime.make_accelerator(config, tmp_path)
    finally:
        AcceleratorState._reset_state(True)
    warned = [r.getMessage() for r in caplog.records if "train.mixed_precision" in r.getMessage()]
    assert bool(warned) is not native
    if warned:
        assert "train.channels_last" in warned[0]


def test_one_view_per_epoch_halves_the_steps_of_two_cached_views(synthetic_root, tmp_path, feature_cache_dir):
    """train.views_per_epoch: one trains each epoch on every face once, in a view drawn per
    epoch (the paper's random flip), instead of on both cached views: half the steps."""
    from orderlearn.data.splits import load_training
    from orderlearn.runs.recipe import run_experiment

    raw = small_run(synthetic_root, tmp_path / "run", {"name": "plain", **TINY, "augment": [], "trainable_from": "blocks.4"},
                    name="one-view", train={"batch_size": 16, "select_metric": "val_mae",
                                            "feature_views": ["identity", "hflip"], "views_per_epoch": "one"})
    config = config_from_dict(raw)
    faces = len(load_training(config.data).for_the_model().train)
    run_experiment(config)
    state = json.loads((tmp_path / "run" / "regressor" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 * (faces // 16)
    assert len(list(feature_cache_dir.glob("*/*.npy"))) >= 2 * faces  # both views cached all the same
