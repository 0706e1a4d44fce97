"""In-batch pair training (``pairs.recipe: in-batch``): pairs drawn inside each batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import comparators
from comparators.losses import ComparatorLoss
from orderlearn.config import config_from_dict
from orderlearn.errors import ConfigError
from orderlearn.engine.heads import InBatchComparator
from orderlearn.engine.objectives import InBatchObjective, batch_pairs
from orderlearn.data.pairs import sample_pairs
from orderlearn.types import PairLabel, labels_from_delta

from builders import TINY_IMAGE as TINY, small_run


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def batch(n: int = 40, seed: int = 0, views: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    scores = torch.from_numpy(np.random.default_rng(seed).uniform(1, 5, n)).float()
    return scores.repeat(views), torch.arange(n).repeat(views)


@pytest.mark.parametrize("mix,shares", [("balanced-3", (1, 1, 1)), ("imbalanced-4-4-2", (2, 2, 1)), ("balanced-2", (1, 1, 0))])
def test_pairs_follow_the_label_rule_and_the_class_mix(mix, shares):
    scores, sources = batch(views=2)
    a, b, labels = batch_pairs(scores, sources, 0.2, mix, torch.Generator().manual_seed(0))
    expected = labels_from_delta((scores[a] - scores[b]).double().numpy(), 0.2)
    assert np.array_equal(labels.numpy(), expected)  # the fixed recipes' rule and margin
    assert not (sources[a] == sources[b]).any()  # a face and its mirror never pair
    counts = [int((labels == int(c)).sum()) for c in PairLabel]
    unit = counts[int(np.argmax(shares))] / max(shares)
    assert all(abs(c - s * unit) <= 1 for c, s in zip(counts, shares)) and sum(counts) > 0
    assert len({(int(x), int(y)) for x, y in zip(a, b)}) == len(a)  # distinct ordered pairs


def test_all_pairs_are_every_ordered_pair_of_distinct_faces():
    scores, sources = batch(n=10, views=2)
    a, b, _ = batch_pairs(scores, sources, 0.2, "all")
    assert len(a) == 20 * 19 - 20  # 20 items, minus the 10 face/mirror pairs in both orders


def test_a_batch_without_some_class_of_the_mix_gives_no_pairs():
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0])  # no two within the margin: no SIMILAR pair
    a, _, _ = batch_pairs(scores, torch.arange(4), 0.2, "balanced-3")
    assert len(a) == 0
    assert len(batch_pairs(scores, torch.arange(4), 0.2, "balanced-2")[0]) == 12


def test_ce_kl_scores_the_reversed_pairs_of_the_same_step():
    torch.manual_seed(0)
    model = comparators.create("siamese", **TINY, symmetric=False, trainable_from="blocks.4")
    module = InBatchComparator(model, from_features=True)
    scores, sources = batch(n=16)
    features = model.forward_features(torch.randn(16, 3, 48, 48)).detach()
    step = {"image": features, "score": scores, "source": sources}
    val = sample_pairs(scores.tolist(), "balanced-3", 30, 0.2, 0)
    plain = InBatchObjective(ComparatorLoss("ce"), 0.2, "balanced-3", val, seed=1)
    with_kl = InBatchObjective(ComparatorLoss("ce+kl", kl_weight=1.0), 0.2, "balanced-3", val, seed=1)
    assert with_kl.loss(module, step).item() > plain.loss(module, step).item()  # + a KL term ≥ 0, > 0 when asymmetric
    assert with_kl.pairs_seen == plain.pairs_seen > 0


def test_in_batch_validation_equals_the_fixed_recipe_validation_on_the_same_pairs():
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from orderlearn.engine.datasets import EmbeddingPairDataset, FeatureImageDataset
    from orderlearn.engine.heads import HeadOnly
    from orderlearn.engine.objectives import ComparatorObjective
    from orderlearn.types import ScoredImage

    torch.manual_seed(0)
    model = comparators.create("siamese", **TINY, trainable_from="blocks.4").eval()
    features = model.forward_features(torch.randn(30, 3, 48, 48)).detach()
    samples = [ScoredImage(path=f"x{i}.jpg", score=float(s)) for i, s in enumerate(np.linspace(1, 5, 30))]
    pairs = sample_pairs([s.score for s in samples], "balanced-3", 60, 0.2, 0)
    accelerator = Accelerator(cpu=True)
    fixed = ComparatorObjective(ComparatorLoss("ce")).evaluate(HeadOnly(model).eval(), DataLoader(EmbeddingPairDataset(features, pairs), batch_size=7), accelerator)
    ours = InBatchObjective(ComparatorLoss("ce"), 0.2, "balanced-3", pairs).evaluate(
        InBatchComparator(model, from_features=True).eval(), DataLoader(FeatureImageDataset(features, samples), batch_size=7), accelerator)
    assert ours["val_accuracy"] == pytest.approx(fixed["val_accuracy"])
    assert ours["val_loss"] == pytest.approx(fixed["val_loss"], rel=1e-5)


@pytest.mark.slow  # a fine-tuning run, ~4 s
def test_an_in_batch_run_end_to_end_and_its_checkpoint_loads_into_the_bare_comparator(synthetic_root, tmp_path):
    from orderlearn.runs.recipe import run_experiment
    from orderlearn.engine.checkpoints import load_weights

    raw = small_run(synthetic_root, tmp_path / "run", {"name": "siamese", **TINY, "trainable_from": "blocks.4", "test_flip": True},
                    name="in-batch", task=None, train={"feature_views": ["identity", "hflip"]},
                    pairs={"recipe": "in-batch", "val_total": 300}, loss={"name": "ce+kl"})
    results = run_experiment(config_from_dict(raw))
    assert [h["epoch"] for h in results["train"]["history"]] == [1, 2]
    assert {"direct", "order_learned"} <= set(results) and results["order_learned"]["n"] == 40
    checkpoint = tmp_path / "run" / "comparator" / "checkpoints" / "epoch_002" / "model.safetensors"
    load_weights(comparators.create("siamese", **TINY, trainable_from="blocks.4"), checkpoint)  # strict


def test_in_batch_options_are_checked(synthetic_root, tmp_path):
    from orderlearn.runs.recipe import run_experiment

    base = {"data": {"kind": "scut", "root": str(synthetic_root)}, "model": {"name": "siamese", **TINY}}
    with pytest.raises(ConfigError, match="pairs.in_batch_mix"):
        config_from_dict({**base, "pairs": {"recipe": "in-batch", "in_batch_mix": "balanced-4"}})
    with pytest.raises(ConfigError, match="pairs.recipe"):
        config_from_dict({**base, "pairs": {"recipe": "inbatch"}})
    two_class = config_from_dict({**base, "output_dir": str(tmp_path / "r"), "model": {**base["model"], "num_classes": 2},
                                  "pairs": {"recipe": "in-batch"}, "train": {"epochs": 1, "frozen_backbone": True, "tracker": "none"}})
    with pytest.raises(ConfigError, match="balanced-2"):
        run_experiment(two_class)


def test_the_results_table_names_the_trainable_part_and_the_pair_recipe():
    from orderlearn.report.run_folders import pair_recipe, trainable_part

    partial = {"task": "comparator", "model": {"trainable_from": "blocks.4"}, "train": {"frozen_backbone": True},
               "pairs": {"recipe": "in-batch", "in_batch_mix": "imbalanced-4-4-2"}}
    assert (trainable_part(partial), pair_recipe(partial)) == ("from blocks.4", "in-batch (imbalanced-4-4-2)")
    frozen = {"task": "comparator", "train": {"frozen_backbone": True}, "pairs": {"recipe": "balanced-3"}}
    assert (trainable_part(frozen), pair_recipe(frozen)) == ("head", "balanced-3")
    saved = {"task": "regressor", "model": {"name": "plain", "args": {"trainable_from": "blocks.4"}}}  # as config.yaml holds it
    assert trainable_part(saved) == "from blocks.4"
    assert (trainable_part({"task": "regressor"}), pair_recipe({"task": "regressor"})) == ("whole network", "-")
