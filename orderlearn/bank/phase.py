"""The bank phase of a run, one owner for it: build the bank, fit the views, calibrate on
validation, then score the validation and the test images.

``orderlearn run`` calls :func:`bank_phase` after training; ``benchmarks/bank_selection.py``
calls it once per candidate bank and margin (a changed config) on a loaded run, so a setting
chosen there is scored exactly as a run with that setting would score it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from accelerate import Accelerator

import scorers
from comparators.base import Model

from orderlearn.bank.calibration import calibrate, fit_views
from orderlearn.bank.comparisons import EmbeddingMemo
from orderlearn.bank.references import ReferenceBank
from orderlearn.bank.route import BankRoute, Comparisons
from orderlearn.bank.scoring_recipe import ScoringRecipe
from orderlearn.config import ExperimentConfig
from orderlearn.data.splits import TrainingSplits
from orderlearn.engine.features import FeatureExtractor
from orderlearn.types import ScoredImage


@dataclass(frozen=True)
class BankPhase:
    """What the bank phase fitted: the bank, the route under the calibrated recipe, the recipe
    before calibration (views fitted), the calibration's report and, without a comparison
    budget, the validation images' comparisons with the whole bank, made once: calibration,
    the run's validation scores (``val_scores.csv``) and the fused route all read them, and a
    comparator as large as LLaVA should not answer them twice."""

    bank: ReferenceBank
    route: BankRoute
    uncalibrated: ScoringRecipe
    calibration: dict[str, Any]
    validation: Optional[Comparisons] = None

    @property
    def recipe(self) -> ScoringRecipe:
        return self.route.recipe

    def score(self, samples: Sequence[ScoredImage], name: str = "test") -> tuple[Comparisons, scorers.Scores]:
        """``samples`` compared with the bank and scored, as the recipe says."""
        comparisons = self.route.comparisons(samples, name)
        return comparisons, self.route.score(comparisons)

    def score_validation(self, samples: Sequence[ScoredImage]) -> scorers.Scores:
        """The validation ``samples`` scored as the test images are: from the comparisons kept in
        :attr:`validation` (they depend on the route's weights and views, not on what calibration
        fitted), or compared afresh under a budget, whose choice of references the recipe makes."""
        if self.validation is not None:
            return self.route.score(self.validation)
        return self.score(samples, "validation")[1]


def bank_phase(model: Model, config: ExperimentConfig, splits: TrainingSplits, weights_dir: Path,
               checkpoints: Sequence[str], features: FeatureExtractor, accelerator: Accelerator,
               bank: Optional[ReferenceBank] = None, memo: Optional[EmbeddingMemo] = None) -> BankPhase:
    """The bank (``config.bank`` over the training images, unless ``bank`` is given), the views fitted
    on validation × bank with ``config.pairs.margin``, the scorer calibrated as ``config.scorer``
    says; ``checkpoints``: relative to ``weights_dir``, averaged. Without a budget, the validation ×
    bank comparisons are made once here and kept (:class:`BankPhase`); ``memo``: the run's
    embeddings per checkpoint, which its direct route reads too."""
    if bank is None:
        bank = ReferenceBank.select(splits.train, config.bank.bin_width, config.bank.per_bin, config.bank.seed)
    route = BankRoute(model, ScoringRecipe.from_config(config, checkpoints), bank, weights_dir, features, accelerator,
                      config.train.eval_batch_size, memo=memo)
    route = route.with_recipe(fit_views(route, splits.val, config.pairs.margin))  # a regressor's view fits its link
    uncalibrated = route.recipe
    kept = None
    if route.recipe.budget is None:
        kept = route.comparisons(splits.val, "validation", full_bank=True)
    calibrated, report = calibrate(route, splits.val, config.scorer.calibrate_link, config.scorer.calibrate_intervals,
                                   config.scorer.calibrate_references, kept)
    return BankPhase(bank, route.with_recipe(calibrated), uncalibrated, report, kept)
