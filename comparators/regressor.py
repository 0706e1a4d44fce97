"""The regressor contract: ``forward(images) -> RegressorOutput`` and its own ``loss``."""
from __future__ import annotations

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

    def forward(self, images: torch.Tensor) -> RegressorOutput:
        return self.forward_head(self.forward_features(images))

    def classifications(self, output: RegressorOutput, batch: Batch) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The classification tasks a method also predicts, by name: ``(logits [B, K], targets
        [B])`` with target -1 where it is unknown or belongs to another database than the task's.
        The run reports each on the test set(s) as ``<name>_accuracy`` / ``<name>_macro_f1``
        (e.g. ``gender`` for relative age position learning). Default: none."""
        return {}

    def forward_head(self, features: torch.Tensor) -> RegressorOutput:  # type: ignore[override]
        raise NotImplementedError(f"{type(self).__name__} does not split into features and head")

    def loss(self, output: RegressorOutput, batch: Batch) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def comparator_view(self) -> Comparator:
        """The degenerate comparator: two images compared through their predicted scores."""
        return RegressionComparator(self)
