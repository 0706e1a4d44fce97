"""What every regressor over one timm ``backbone`` shares: where its features end and its head
begins (``model.trainable_from``), what the feature cache keys on, and its comparator view (with
test-time flip averaging when ``model.test_flip``).

A mixin, listed before :class:`~comparators.regressor.Regressor` in the bases, for models whose
``config`` has ``backbone``, ``trainable_from`` and ``test_flip``; each model then writes only its
heads (``forward_head``) and its loss.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from comparators.backbone_options import BackboneOptions
from comparators.comparator import Comparator
from comparators.partial import feature_key_config, frozen_modules, trunk
from comparators.regression_comparator import RegressionComparator
from comparators.views import with_test_views


class SplitBackboneRegressor:
    splits = True
    backbone: nn.Module
    config: BackboneOptions

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features, or the frozen trunk's maps when partially fine-tuned."""
        return trunk(self.backbone, images)

    def feature_modules(self) -> list[nn.Module]:
        return frozen_modules(self.backbone)

    def feature_key_config(self) -> Any:
        return feature_key_config(self.backbone, self.config.backbone, self.config)

    def comparator_view(self) -> Comparator:
        return with_test_views(RegressionComparator(self), self.config.test_flip)
