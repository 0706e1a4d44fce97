"""Pair labels, pair-set recipes (exact counts, no self-pairs, small-data fill) and the bank."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from orderlearn.bank.references import ReferenceBank
from orderlearn.data.pairs import class_targets, pair_labels, sample_pairs
from orderlearn.types import PairLabel, ScoredImage, label_from_delta


def test_label_convention_and_margin_edge():
    assert label_from_delta(0.5) == PairLabel.FIRST
    assert label_from_delta(-0.5) == PairLabel.SECOND
    assert label_from_delta(2.883333 - 2.683333) == PairLabel.SIMILAR  # Δ = 0.2 exactly is within θ
    assert label_from_delta(0.21) == PairLabel.FIRST
    assert PairLabel.FIRST.reversed() == PairLabel.SECOND and PairLabel.SIMILAR.reversed() == PairLabel.SIMILAR
    np.testing.assert_array_equal(pair_labels(np.array([3.0, 1.0, 2.0]), np.array([2.0, 2.0, 2.1])), [0, 1, 2])


@pytest.mark.parametrize("recipe,expected", [("balanced-3", (300, 300, 300)), ("balanced-2", (450, 450, 0)), ("imbalanced-4-4-2", (360, 360, 180))])
def test_recipes_give_exact_distinct_pairs(recipe, expected):
    scores = np.random.default_rng(0).uniform(1, 5, 200)
    pairs = sample_pairs(scores, recipe, total=900, seed=4)
    assert tuple(pairs.class_counts().values()) == expected
    assert (pairs.a != pairs.b).all()
    assert len(set(zip(pairs.a.tolist(), pairs.b.tolist()))) == len(pairs)
    np.testing.assert_array_equal(pair_labels(scores[pairs.a], scores[pairs.b]), pairs.labels)
    both_orders = set(zip(pairs.a.tolist(), pairs.b.tolist())) & set(zip(pairs.b.tolist(), pairs.a.tolist()))
    assert both_orders, "both orders of a pair are allowed"


def test_recipes_are_seeded():
    scores = np.linspace(1, 5, 100)
    a, b = sample_pairs(scores, total=600, seed=1), sample_pairs(scores, total=600, seed=1)
    np.testing.assert_array_equal(a.a, b.a)
    assert not np.array_equal(a.a, sample_pairs(scores, total=600, seed=2).a)


def test_small_data_fills_what_exists_and_warns(caplog):
    scores = [1.0, 1.1, 1.15, 3.0, 3.05]
    with caplog.at_level(logging.WARNING):
        pairs = sample_pairs(scores, total=3000)
    assert pairs.class_counts() == {"FIRST": 6, "SECOND": 6, "SIMILAR": 8}  # every ordered pair, once
    assert "only 8 exist" in caplog.text


def test_class_targets_and_errors():
    assert class_targets("balanced-3", 90_000) == (30_000, 30_000, 30_000)
    assert class_targets("imbalanced-4-4-2", 90_000) == (36_000, 36_000, 18_000)
    with pytest.raises(ValueError, match="unknown pair recipe"):
        class_targets("balanced-4", 10)
    with pytest.raises(ValueError, match="at least two images"):
        sample_pairs([1.0])


def samples_with(scores, tmp_path):
    image = tmp_path / "x.jpg"
    image.write_bytes(b"")
    return [ScoredImage(path=image, score=float(s)) for s in scores]


def test_bank_bins_cap_and_round_trip(tmp_path):
    scores = np.concatenate([np.full(50, 3.02), np.linspace(1.0, 4.95, 80)])
    samples = samples_with(scores, tmp_path)
    bank = ReferenceBank.select(samples, bin_width=0.1, per_bin=10, seed=0)
    bins = np.floor(bank.scores.numpy() / 0.1 + 1e-9)
    assert np.bincount(bins.astype(int)).max() <= 10
    assert (bank.scores.numpy() == 3.02).sum() <= 10
    assert np.all(np.diff(bank.scores.numpy()) >= 0)
    assert ReferenceBank.select(samples, seed=0).scores.tolist() == bank.scores.tolist()
    path = bank.save(tmp_path / "bank.json")
    loaded = ReferenceBank.load(path)
    assert loaded.scores.tolist() == bank.scores.tolist() and loaded.per_bin == 10
