"""What ``orderlearn active`` weighs: a finished run's test and validation images, embedded once
per checkpoint, and the comparator's answers for them against the run's bank.

The run is a :class:`~orderlearn.runs.loaded.LoadedRun` and its images are compared through its
own :class:`~orderlearn.bank.route.BankRoute`, so each checkpoint's view answers under that
checkpoint's weights, exactly as the run compared its test images; the data on disk are checked
against what the run recorded first. Also here: the truths every row is scored against and the
summary of one row's scores (PC, MAE, RMSE, Spearman, 95% coverage raw and validation-scaled).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from accelerate import Accelerator

import scorers
from scorers.intervals import interval_scale, widen

from orderlearn.bank.comparisons import Member, compare_members
from orderlearn.bank.references import ReferenceBank
from orderlearn.bank.scoring_recipe import ScoringRecipe, interval_coverage
from orderlearn.config import ExperimentConfig
from orderlearn.data.splits import load_test, load_training
from orderlearn.errors import DataError
from orderlearn.report.metrics import score_metrics
from orderlearn.report.scores_csv import read_scores_csv
from orderlearn.runs.loaded import LoadedRun
from orderlearn.types import ScoredImage

PC_TOLERANCE = 0.002
TARGET_BUDGET = 32
METRIC_COLUMNS = ("pc", "mae", "rmse", "spearman")


@dataclass
class ActiveEvidence:
    """A finished run (any method), ready to compare: each checkpoint's view with the test and the
    validation images embedded under it once."""

    loaded: LoadedRun
    test: list[ScoredImage]
    val: list[ScoredImage]
    members: dict[str, list[Member]]  # "test" / "val": one member per checkpoint

    @property
    def path(self) -> Path:
        return self.loaded.source

    @property
    def config(self) -> ExperimentConfig:
        return self.loaded.config

    @property
    def accelerator(self) -> Accelerator:
        return self.loaded.accelerator

    @property
    def bank(self) -> ReferenceBank:
        return self.loaded.bank

    @property
    def recipe(self) -> ScoringRecipe:
        return self.loaded.recipe

    @property
    def truth(self) -> list[float]:
        return [s.score for s in self.test]


def load_evidence(run: Path, accelerator: Optional[Accelerator] = None) -> ActiveEvidence:
    """Load ``run`` (:meth:`LoadedRun.from_run`), check its data are unchanged, and embed the test
    and the validation images once per checkpoint of its scoring recipe."""
    loaded = LoadedRun.from_run(run, accelerator)
    test = load_test(loaded.config.data)
    splits = load_training(loaded.config.data)
    check_unchanged(loaded.source, test, splits.train + splits.val, loaded.bank)
    members = {"test": loaded.route.members(test, "test"), "val": loaded.route.members(splits.val, "validation")}
    return ActiveEvidence(loaded, test, splits.val, members)


def check_unchanged(run: Path, test: Sequence[ScoredImage], training: Sequence[ScoredImage], bank: ReferenceBank,
                    tol: float = 2e-6) -> None:
    """Raise DataError when the dataset on disk is not the one the run was trained and scored on.

    Why: a dataset folder can be rewritten after a run (a regenerated synthetic set keeps its file
    names but not its faces or scores); the saved bank embeddings and checkpoint would then be
    compared with different images and every number would be silently wrong. The run's
    ``scores.csv`` (test paths and true scores, 6 decimals) and ``bank.json`` (reference scores)
    must agree with what the data readers return now.
    """
    recorded = run / "scores.csv"
    if recorded.is_file():
        table = read_scores_csv(recorded, require_truth=True)
        rows = [(Path(p).resolve(), float(t)) for p, t in zip(table.image_paths, table.truth)]
        now = [(s.path.resolve(), s.score) for s in test]
        if len(rows) != len(now):
            raise DataError(f"{run}: scores.csv lists {len(rows)} test images but the data now gives {len(now)}; "
                            "the dataset changed since the run")
        for (path_then, score_then), (path_now, score_now) in zip(rows, now):
            if path_then != path_now or abs(score_then - score_now) > tol:
                raise DataError(f"{run}: test image {path_now} (true score {score_now:.6f}) differs from the run's "
                                f"{path_then} ({score_then:.6f}); the dataset changed since the run")
    scores_now = {s.path.resolve(): s.score for s in training}
    for ref in bank.samples:
        now = scores_now.get(ref.path.resolve())
        if now is None or abs(now - ref.score) > 1e-9:
            raise DataError(f"{run}: bank reference {ref.path} has score {ref.score} in bank.json but "
                            f"{'is not in the training split' if now is None else now} now; the dataset changed since the run")


@dataclass
class FullBank:
    """Full-bank answers of the comparator for one image set: (image, ref) and (ref, image)
    probabilities [N, R, K]."""

    forward: torch.Tensor
    reverse: torch.Tensor  # already in the (image, ref) index order, not label-swapped
    seconds: float

    def probs(self, both_orders: bool) -> torch.Tensor:
        return (scorers.combine_orders(self.forward, self.reverse) if both_orders else self.forward).double()


def full_bank(evidence: ActiveEvidence, images: str = "test") -> FullBank:
    """Every image × reference comparison in both orders, averaged over the run's checkpoints."""
    started = time.perf_counter()
    forward, reverse = compare_members(evidence.members[images], evidence.accelerator, images, reverse=True)
    return FullBank(forward, reverse, time.perf_counter() - started)


@dataclass
class Truths:
    """What every row is scored against: true test and validation scores, the bank, the range."""

    test: torch.Tensor
    val: torch.Tensor
    refs: torch.Tensor  # the references' known scores
    low: float
    high: float
    places: Optional[torch.Tensor] = None  # where the base scorer places them (None: at refs)

    @property
    def scoring_refs(self) -> torch.Tensor:
        return self.refs if self.places is None else self.places


def truths_of(evidence: ActiveEvidence) -> Truths:
    config = evidence.config
    return Truths(torch.tensor(evidence.truth, dtype=torch.float64),
                  torch.tensor([s.score for s in evidence.val], dtype=torch.float64),
                  evidence.bank.scores, config.data.score_low, config.data.score_high)


def summary(scores: scorers.Scores, truth: torch.Tensor, val_scores: Optional[scorers.Scores] = None,
            val_truth: Optional[torch.Tensor] = None, low: float = 1.0, high: float = 5.0) -> dict[str, float]:
    """PC, MAE, RMSE, Spearman, 95% coverage and mean posterior std of ``scores``; with
    validation scores of the same scorer, also the validation-fitted std scale
    (:func:`scorers.intervals.interval_scale`) and the coverage of the intervals it widens."""
    metrics = score_metrics(scores.value.double().cpu().tolist(), truth.tolist())
    std = scores.std
    finite = std[torch.isfinite(std)] if std is not None else None
    out = {**{k: metrics[k] for k in METRIC_COLUMNS}, "coverage95": coverage(scores, truth),
           "mean_std": float(finite.mean()) if finite is not None and finite.numel() else math.nan,
           "std_scale": math.nan, "coverage95_scaled": math.nan}
    if val_scores is not None and val_truth is not None and std is not None:
        scale = interval_scale(val_scores, val_truth)
        out["std_scale"] = scale
        out["coverage95_scaled"] = coverage(widen(scores, scale, low, high), truth)
    return out


def coverage(scores: scorers.Scores, truth: torch.Tensor) -> float:
    """:func:`~orderlearn.bank.scoring_recipe.interval_coverage` as a table cell: NaN without intervals."""
    covered = interval_coverage(scores, truth)
    return math.nan if covered is None else covered


def random_mask(n: int, r: int, m: int, seed: int) -> torch.Tensor:
    """[n, r] bool with ``m`` seeded random references per row."""
    keys = torch.rand(n, r, generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(n, r, dtype=torch.bool)
    mask.scatter_(1, keys.argsort(1)[:, :m], True)
    return mask
