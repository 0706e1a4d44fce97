"""The shared vocabulary of orderlearn: one name per thing, everywhere.

Every reader produces :class:`ScoredImage`; every pair carries a :class:`PairLabel`.
Keeping these tiny and dependency-free lets comparators, scorers and readers agree
without importing each other.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

DEFAULT_MARGIN = 0.2  # θ of the LMOL paper: |Δ| <= θ is SIMILAR
MARGIN_TOLERANCE = 1e-6  # scores are means of ratings (k/60): Δ = 0.2 must stay SIMILAR despite rounding


class PairLabel(enum.IntEnum):
    """Outcome of comparing image a with image b (the class index of a comparator's logits)."""

    FIRST = 0  # a is better (higher score) by more than θ
    SECOND = 1  # b is better by more than θ
    SIMILAR = 2  # |score_a - score_b| <= θ

    def reversed(self) -> "PairLabel":
        """The label of the same pair with its two images swapped."""
        return {PairLabel.FIRST: PairLabel.SECOND, PairLabel.SECOND: PairLabel.FIRST}.get(self, self)


def label_from_delta(delta: float, margin: float = DEFAULT_MARGIN) -> PairLabel:
    """Label of a pair from Δ = score_a − score_b: FIRST if Δ > θ, SECOND if Δ < −θ, else SIMILAR."""
    if delta > margin + MARGIN_TOLERANCE:
        return PairLabel.FIRST
    if delta < -margin - MARGIN_TOLERANCE:
        return PairLabel.SECOND
    return PairLabel.SIMILAR


@dataclass(frozen=True)
class ScoredImage:
    """One sample: an image file and its ordinal score, plus whatever else the dataset gives.

    ``rating_counts`` is the histogram of individual ratings (index i = rating i+1 on SCUT's
    1..5 scale); ``group`` is SCUT's file-name group (AF/AM/CF/CM); ``extras`` holds any
    other column a manifest provides.
    """

    path: Path
    score: float
    rating_counts: Optional[tuple[int, ...]] = None
    std: Optional[float] = None
    group: Optional[str] = None
    gender: Optional[str] = None  # "female" / "male"
    ethnicity: Optional[str] = None  # "asian" / "caucasian" / free text
    age: Optional[float] = None
    extras: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Pair:
    """Two samples (by index into a sample list) and their label."""

    a: int
    b: int
    label: PairLabel
