"""What every scorer returns (:class:`Scores`) and the interface it implements (:class:`Scorer`).

A scorer turns the comparator's probabilities for N test images against R scored references,
``probs [N, R, K]`` (K = 3: FIRST, SECOND, SIMILAR for the pair (test, reference), FIRST = test
better; K = 2 without SIMILAR), into one score per test image, plus an uncertainty where it has
one, so reports can show intervals and the active scorer can stop early.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from .link import Link


@dataclass
class Scores:
    """Scores of N test images: ``value`` [N] and, where the scorer has them, ``std`` [N] and a
    95% interval [``lower``, ``upper``] (each [N])."""

    value: torch.Tensor
    std: Optional[torch.Tensor] = None
    lower: Optional[torch.Tensor] = None
    upper: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        n = self.value.shape
        for name in ("std", "lower", "upper"):
            t = getattr(self, name)
            if t is not None and t.shape != n:
                raise ValueError(f"Scores.{name} has shape {tuple(t.shape)}, expected {tuple(n)} like value")

    def __len__(self) -> int:
        return int(self.value.shape[0])

    def to_dict(self) -> dict[str, list[float]]:
        """Column name -> list of floats, omitting the columns this scorer does not produce."""
        out = {"value": self.value.detach().cpu().tolist()}
        for name in ("std", "lower", "upper"):
            t = getattr(self, name)
            if t is not None:
                out[name] = t.detach().cpu().tolist()
        return out

    def as_rows(self, names: Optional[Sequence[str]] = None, **columns: Sequence[Any]) -> list[dict[str, Any]]:
        """One dict per image (for ``csv.DictWriter``): optional ``name``, extra columns, then scores."""
        cols = self.to_dict()
        n = len(self)
        if names is not None and len(names) != n:
            raise ValueError(f"as_rows: got {len(names)} names for {n} scores")
        for key, values in columns.items():
            if len(values) != n:
                raise ValueError(f"as_rows: column {key!r} has {len(values)} values for {n} scores")
        rows = []
        for i in range(n):
            row: dict[str, Any] = {}
            if names is not None:
                row["name"] = names[i]
            for key, values in columns.items():
                row[key] = values[i]
            for key, values in cols.items():
                row[key] = values[i]
            rows.append(row)
        return rows


@dataclass(frozen=True)
class GaussianPrior:
    """A Gaussian prior on each image's score: ``mean`` [N], one per image (a regressor's opinion
    of that face), and one ``std`` for all (how far that opinion is off, measured on validation).

    Passed to :meth:`Scorer.score` (and :meth:`ActiveScorer.score`), it makes the estimate a
    posterior mode: with few comparisons the score stays near the prior mean, with many the
    comparisons decide. It replaces the scorer's own fixed prior (``prior_std``), if any."""

    mean: torch.Tensor
    std: float

    def __post_init__(self) -> None:
        if not (isinstance(self.std, (int, float)) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"GaussianPrior: std must be a finite number > 0, got {self.std!r}")
        if self.mean.dim() != 1 or not bool(torch.isfinite(self.mean).all()):
            raise ValueError(f"GaussianPrior: mean must be a finite 1-D tensor, got shape {tuple(self.mean.shape)}")

    @property
    def precision(self) -> float:
        return 1.0 / self.std ** 2

    def take(self, rows: torch.Tensor | slice) -> "GaussianPrior":
        """The prior of the images ``rows``."""
        return GaussianPrior(self.mean[rows], self.std)

    def log_density(self, grid: torch.Tensor) -> torch.Tensor:
        """Log-density (up to a constant) of every image's prior on ``grid`` [G]: [N, G] float64."""
        mean = self.mean.to(device=grid.device, dtype=torch.float64)
        return -0.5 * ((grid[None, :].double() - mean[:, None]) / self.std) ** 2

    def check(self, num_images: int) -> None:
        if self.mean.shape[0] != num_images:
            raise ValueError(f"GaussianPrior: {self.mean.shape[0]} prior means for {num_images} images")


class Scorer(abc.ABC):
    """``score(probs [N, R, K], ref_scores [R], mask [N, R] | None) -> Scores``.

    ``mask`` marks which comparisons were made (the active scorer asks for only a few per
    image); unmarked entries of ``probs`` are ignored. Every BT scorer has a ``link`` (the
    likelihood of a label given the score gap: what the active scorer ranks references by),
    reads hard or ``soft`` labels, and may have a Gaussian prior (``prior_std``, ``prior_mean``;
    None: a flat prior, and a mean of None means the bank's mean score). ``score`` also takes a
    per-image :class:`GaussianPrior`, which replaces that fixed one; :meth:`effective_prior` turns
    either into the one form the arithmetic reads.
    """

    low: float
    high: float
    link: "Link"
    soft: bool = False
    prior_std: Optional[float] = None
    prior_mean: Optional[float] = None
    per_image_refs: bool = False  # True when score() also accepts ref_scores [N, R]

    @abc.abstractmethod
    def score(self, probs: torch.Tensor, ref_scores: torch.Tensor,
              mask: Optional[torch.Tensor] = None, prior: Optional[GaussianPrior] = None) -> Scores:
        raise NotImplementedError

    def effective_prior(self, ref_scores: torch.Tensor, num_images: int,
                        given: Optional[GaussianPrior] = None) -> Optional[GaussianPrior]:
        """The prior ``num_images`` images are scored under, as a :class:`GaussianPrior`: ``given``,
        else the scorer's fixed one (``prior_std`` around ``prior_mean``, or around the mean of
        ``ref_scores``: the bank the scores are placed among) with the same mean for every image,
        else None (flat). One form for both, so the scorers and the active loop have a single
        prior path; a subset of the bank (the active scorer's) keeps the prior resolved on the
        whole bank by passing it on as ``given``."""
        if given is not None:
            given.check(num_images)
            return given
        if self.prior_std is None:
            return None
        mean = self.prior_mean if self.prior_mean is not None else float(ref_scores.mean())
        return GaussianPrior(torch.full((num_images,), mean, dtype=torch.float64, device=ref_scores.device),
                             self.prior_std)
