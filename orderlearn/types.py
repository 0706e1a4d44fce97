"""The shared vocabulary of orderlearn: one name per thing, everywhere.

Every reader produces :class:`ScoredImage`; every pair carries a :class:`PairLabel`.
Keeping these tiny and dependency-free lets comparators, scorers and readers agree
without importing each other.
"""
from __future__ import annotations

import difflib
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import numpy as np

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


def labels_from_delta(delta: Any, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Labels of pairs from Δ = score_a − score_b (any array shape): FIRST if Δ > θ, SECOND if
    Δ < −θ, else SIMILAR, with :data:`MARGIN_TOLERANCE` so a Δ of exactly θ stays SIMILAR.

    The one owner of the label rule: pair recipes, link fitting, comparator metrics and
    benchmarks all call it (or :func:`label_from_delta` for one pair).
    """
    delta = np.asarray(delta, dtype=np.float64)
    labels = np.full(delta.shape, int(PairLabel.SIMILAR), dtype=np.int64)
    labels[delta > margin + MARGIN_TOLERANCE] = int(PairLabel.FIRST)
    labels[delta < -margin - MARGIN_TOLERANCE] = int(PairLabel.SECOND)
    return labels


def label_from_delta(delta: float, margin: float = DEFAULT_MARGIN) -> PairLabel:
    """Label of one pair from Δ = score_a − score_b (see :func:`labels_from_delta`)."""
    return PairLabel(int(labels_from_delta(delta, margin)))


def swap_first_second(values: Any) -> Any:
    """Columns of the swapped pair: FIRST and SECOND exchanged on the last dim, SIMILAR kept.

    Works on torch tensors and numpy arrays of logits or probabilities with K = 2 or 3
    columns; the one owner of "what (b, a) says, in (a, b)'s frame".
    """
    k = values.shape[-1]
    if k not in (2, 3):
        raise ValueError(f"expected K = 2 or 3 label columns on the last dim, got {k}")
    order = [int(PairLabel(c).reversed()) for c in range(k)]
    return values[..., order]


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
    database: int = 0  # 0: the run's dataset; 1: its second database (``data.second``, multi-database training)
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


T = TypeVar("T")


class Registry:
    """Components by name, registered with one decorator: ``@MODELS.register("siamese", kind=...)``.

    One mechanism serves models (comparators and regressors) and scorers (each package owns one
    ``Registry``; backbones live in timm's own registry). ``metadata`` keyword arguments are kept with the entry (e.g. a model's
    ``kind`` and its options dataclass, so a config can be validated before anything is built).
    Optional heavy dependencies stay optional because registered modules import them inside
    their functions, not at module level.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}

    def register(self, name: str, **metadata: Any) -> Callable[[T], T]:
        """Decorator registering a class or factory function under ``name`` (a taken name is an error)."""

        def deco(obj: T) -> T:
            taken = self._entries.get(name)
            if taken is not None and taken[0] is not obj:
                raise ValueError(f"{self.what} name {name!r} is already registered to {taken[0].__qualname__}")
            self._entries[name] = (obj, dict(metadata))
            return obj

        return deco

    def names(self, **metadata: Any) -> list[str]:
        """Registered names (sorted), optionally only those whose metadata match."""
        return sorted(n for n, (_, meta) in self._entries.items() if all(meta.get(k) == v for k, v in metadata.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def check(self, name: str, key: str) -> None:
        """Raise ValueError naming ``key`` and suggesting the closest name when ``name`` is unknown."""
        if name in self._entries:
            return
        close = difflib.get_close_matches(str(name), list(self._entries), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"registered: {', '.join(self.names())}"
        raise ValueError(f"{key}: unknown {self.what} {name!r}; {hint}")

    def get(self, name: str, key: Optional[str] = None) -> Callable[..., Any]:
        self.check(name, key or self.what)
        return self._entries[name][0]

    def metadata(self, name: str, key: Optional[str] = None) -> dict[str, Any]:
        self.check(name, key or self.what)
        return dict(self._entries[name][1])

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build the component ``name`` with ``kwargs`` (the registered object is called)."""
        return self.get(name)(**kwargs)
