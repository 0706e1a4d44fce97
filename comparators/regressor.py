"""The regressor contract: ``forward(images) -> RegressorOutput`` and its own ``loss``."""
from __future__ import annotations

from typing import Optional

import torch

from .comparator import Comparator
from .model import Batch, Model
from .regression_comparator import RegressionComparator
from .regressor_output import RegressorOutput


class Regressor(Model):
    """Base class of direct methods: ``forward(images) -> RegressorOutput`` and ``loss``.

    Methods with one backbone define ``forward_features`` (pooled features) and
    ``forward_head`` (features -> RegressorOutput) and inherit ``forward``; others (e.g. a
    multi-task net with task-specific blocks) override ``forward``.
    """

    predicts_gender: bool = False  # True when gender_logits gives a female/male prediction

    def forward(self, images: torch.Tensor) -> RegressorOutput:
        return self.forward_head(self.forward_features(images))

    def gender_logits(self, output: RegressorOutput) -> Optional[torch.Tensor]:
        """Logits ``[B, 2]`` (female, male) of a method that also predicts gender (reported as
        the direct route's ``gender_accuracy``); None for the rest."""
        return None

    def forward_head(self, features: torch.Tensor) -> RegressorOutput:  # type: ignore[override]
        raise NotImplementedError(f"{type(self).__name__} does not split into features and head")

    def loss(self, output: RegressorOutput, batch: Batch) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def comparator_view(self) -> Comparator:
        """The degenerate comparator: two images compared through their predicted scores."""
        return RegressionComparator(self)
