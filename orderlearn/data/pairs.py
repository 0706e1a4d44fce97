"""Pair sets: which (a, b) pairs a comparator trains on, drawn by a seeded recipe.

Recipes of the LMOL paper (90k pairs from the 4400 training images):

* ``balanced-3``  FIRST : SECOND : SIMILAR = 1 : 1 : 1 (30k / 30k / 30k)
* ``balanced-2``  SIMILAR dropped, FIRST : SECOND = 1 : 1 (45k / 45k) — two-class comparators
* ``imbalanced-4-4-2``  4 : 4 : 2 (36k / 36k / 18k)

Pairs are ordered (both orders of two images may appear, never a self-pair) and distinct.
Sampling is exact and never loops: the pairs of each class are enumerated implicitly on the
score-sorted order (for image i, the partners of each class form contiguous index ranges),
so k distinct pairs are k distinct integers drawn from [0, available). When a class has
fewer pairs than asked for (small data), every one of them is taken and a warning says so.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from orderlearn.types import DEFAULT_MARGIN, MARGIN_TOLERANCE, Pair, PairLabel, labels_from_delta

log = logging.getLogger(__name__)

RECIPES: dict[str, tuple[float, float, float]] = {
    "balanced-3": (1 / 3, 1 / 3, 1 / 3),
    "balanced-2": (1 / 2, 1 / 2, 0.0),
    "imbalanced-4-4-2": (0.4, 0.4, 0.2),
}


@dataclass
class PairSet:
    """Pairs as parallel arrays (index of a, index of b, label) into one sample list."""

    a: np.ndarray
    b: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Pair:
        return Pair(int(self.a[i]), int(self.b[i]), PairLabel(int(self.labels[i])))

    def __iter__(self) -> Iterator[Pair]:
        return (self[i] for i in range(len(self)))

    def class_counts(self) -> dict[str, int]:
        return {label.name: int((self.labels == label).sum()) for label in PairLabel}


def pair_labels(scores_a: np.ndarray, scores_b: np.ndarray, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Labels of pairs (a, b) by the project's one rule, :func:`orderlearn.types.labels_from_delta`."""
    return labels_from_delta(np.asarray(scores_a, dtype=np.float64) - np.asarray(scores_b, dtype=np.float64), margin)


def class_targets(recipe: str, total: int) -> tuple[int, int, int]:
    """Number of FIRST, SECOND, SIMILAR pairs a recipe asks for out of ``total``."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown pair recipe {recipe!r}; choose from {sorted(RECIPES)}")
    if total <= 0:
        raise ValueError(f"pair total must be positive, got {total}")
    shares = RECIPES[recipe]
    counts = [int(round(total * s)) for s in shares]
    counts[0] += total - sum(counts)  # rounding remainder goes to FIRST
    return counts[0], counts[1], counts[2]


def sample_pairs(
    scores: Sequence[float],
    recipe: str = "balanced-3",
    total: int = 90_000,
    margin: float = DEFAULT_MARGIN,
    seed: int = 0,
) -> PairSet:
    """Draw ``total`` distinct ordered pairs with the class proportions of ``recipe``."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < 2:
        raise ValueError(f"need at least two images to make pairs, got {len(scores)}")
    _require_finite(scores)
    rng = np.random.default_rng(seed)
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranges = _class_ranges(sorted_scores, margin)
    parts = []
    for label, wanted in zip(PairLabel, class_targets(recipe, total)):
        if wanted == 0:
            continue
        starts, lengths = ranges[label]
        available = int(lengths.sum())
        if available < wanted:
            log.warning(
                "pair recipe %s asks for %d %s pairs but only %d exist (margin %.3g, %d images); taking all of them",
                recipe, wanted, label.name, available, margin, len(scores),
            )
            wanted = available
        flat = rng.choice(available, size=wanted, replace=False) if wanted else np.empty(0, dtype=np.int64)
        a_sorted, b_sorted = _unflatten(flat, starts, lengths, skip_self=label == PairLabel.SIMILAR)
        parts.append((order[a_sorted], order[b_sorted], np.full(wanted, int(label), dtype=np.int64)))
    a, b, labels = (np.concatenate(x) for x in zip(*parts))
    shuffle = rng.permutation(len(labels))
    pairs = PairSet(a[shuffle], b[shuffle], labels[shuffle])
    assert np.array_equal(pair_labels(scores[pairs.a], scores[pairs.b], margin), pairs.labels)
    return pairs


def _require_finite(scores: np.ndarray) -> None:
    """NaN has no place in the score order (every comparison with it is false), so its pairs
    would get labels that contradict their scores; the data readers stop such scores first."""
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(f"{bad.size} of {scores.size} scores are not finite (first at index {bad[0]}: {scores[bad[0]]}); "
                         "pairs need a finite score for every image")


def _class_ranges(sorted_scores: np.ndarray, margin: float) -> dict[PairLabel, tuple[np.ndarray, np.ndarray]]:
    """For each sorted image i: the start and length of each class's partner range.

    FIRST partners score below s_i − θ (a prefix), SECOND partners above s_i + θ (a suffix),
    SIMILAR partners lie within θ (the middle, minus i itself, handled in _unflatten).
    """
    n = len(sorted_scores)
    low = np.searchsorted(sorted_scores, sorted_scores - margin - MARGIN_TOLERANCE, side="left")
    high = np.searchsorted(sorted_scores, sorted_scores + margin + MARGIN_TOLERANCE, side="right")
    zeros = np.zeros(n, dtype=np.int64)
    return {
        PairLabel.FIRST: (zeros, low.astype(np.int64)),
        PairLabel.SECOND: (high.astype(np.int64), (n - high).astype(np.int64)),
        # the similar range [low, high) contains i itself: one fewer partner, skipped on unflatten
        PairLabel.SIMILAR: (low.astype(np.int64), (high - low - 1).astype(np.int64)),
    }


def _unflatten(
    flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray, skip_self: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Map flat pair numbers to (row i, partner j) in sorted order; ``skip_self`` jumps over j = i."""
    ends = np.cumsum(lengths)
    rows = np.searchsorted(ends, flat, side="right")
    partner = starts[rows] + flat - (ends[rows] - lengths[rows])
    if skip_self:
        partner = partner + (partner >= rows)
    return rows, partner
