"""Plain regression: one linear output on a backbone's pooled features, trained with L1 or MSE.

This is the baseline every method of the literature is measured against (ComboLoss, Table 4:
"L1 Loss" and "MSE Loss" rows, SEResNeXt50 under the ComboLoss recipe), and the simplest
:class:`~comparators.base.Regressor`: ``score = w·features + b``.

Scores are **not clipped** by default (neither the baselines nor the methods compared clip);
set ``score_range: [lo, hi]`` to clamp scores to the rating scale at evaluation time only
(in training a clamp would zero the gradient of every out-of-range prediction).

Training recipe (:data:`PAPER_RECIPE`; the ComboLoss paper's setting, Sec. 3.2, under which its
L1/MSE baselines were trained): SGD, lr 0.01, momentum 0.9, weight decay 1e-3; lr divided by 10
every 50 epochs; 200 epochs; batch 64; 224 px random crop, colour jitter and rotation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from comparators.backbone_options import BackboneOptions
from comparators.partial import top
from comparators.base import Batch, Regressor, RegressorOutput
from comparators.regressors.options import check_score_range, config_from_kwargs
from comparators.regressors.precision import float32_head
from comparators.transforms import BackboneTransforms
from comparators.registry import register_model
from comparators.regressors.split_backbone import SplitBackboneRegressor
from orderlearn.types import ScoredImage

PAPER_RECIPE: dict[str, Any] = {
    "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-3},
    "schedule": {"name": "step", "step_size": 50, "gamma": 0.1},
    "train": {"epochs": 200, "batch_size": 64},
    "augment": ["crop", "color_jitter", "rotation"],
}

LOSSES = ("l1", "mse")


@dataclass
class PlainConfig(BackboneOptions):
    """Model settings of the plain regressor (the shared backbone options, then its own);
    training settings live in :data:`PAPER_RECIPE`."""

    backbone: str = "seresnext50_32x4d"
    augment: tuple[str, ...] = ("crop", "color_jitter", "rotation")
    loss: str = "l1"  # "l1" | "mse"
    score_range: Optional[tuple[float, float]] = None  # clamp at eval time; None = no clipping
    # the head's bias at the start: "default" (PyTorch's Linear init, near 0), or "train-mean" (the
    # training scores' mean). Ages of 2..80 start 35 years away from 0, which an L1 loss (a step
    # of about lr per update) would spend the run walking; beauty 1..5 barely cares (SCUT: default)
    head_bias: str = "default"
    # the head: None, one Linear on the pooled features (the baselines'); an int, a hidden layer of
    # that width with ReLU and ``head_dropout`` before the output, for a trunk frozen whole, whose
    # fixed features (dlib's 128-d face descriptor) a linear map reads poorly
    head_hidden: Optional[int] = None
    head_dropout: float = 0.0  # head_hidden only: dropout between the hidden layer and the output
    # read by the head and the loss alone, never by the backbone: a trunk frozen whole keeps its
    # cached features when they change (comparators.partial.feature_key_config)
    head_options: ClassVar[tuple[str, ...]] = ("loss", "score_range", "head_bias", "head_hidden", "head_dropout")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head_hidden is not None and (isinstance(self.head_hidden, bool) or not isinstance(self.head_hidden, int)
                                             or self.head_hidden < 1):
            raise ValueError(f"head_hidden must be a positive integer or null, got {self.head_hidden!r}")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout!r}")
        if self.head_bias not in ("default", "train-mean"):
            raise ValueError(f"head_bias must be 'default' or 'train-mean', got {self.head_bias!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got {self.loss!r}")
        self.score_range = check_score_range(self.score_range)


class PlainRegressor(SplitBackboneRegressor, BackboneTransforms, Regressor):
    """Backbone -> pooled features -> Linear(num_features, 1) -> score (or, with ``head_hidden``,
    Linear -> ReLU -> Dropout -> Linear)."""

    def __init__(self, config: PlainConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = config.build_backbone()
        self.head = build_head(self.backbone.num_features, config.head_hidden, config.head_dropout)

    def setup_from_training(self, samples: Sequence[ScoredImage]) -> None:
        if self.config.head_bias == "train-mean":
            with torch.no_grad():
                output_layer(self.head).bias.fill_(sum(s.score for s in samples) / len(samples))

    def forward_head(self, features: torch.Tensor) -> RegressorOutput:
        features = top(self.backbone, features)
        score = float32_head(self.head, features).squeeze(1)
        if self.config.score_range is not None and not self.training:
            score = score.clamp(*self.config.score_range)
        return RegressorOutput(score=score)

    def loss(self, output: RegressorOutput, batch: Batch) -> torch.Tensor:
        """Mean absolute (``l1``) or mean squared (``mse``) error against ``batch["score"]``."""
        target = batch["score"].to(output.score)
        if self.config.loss == "l1":
            return F.l1_loss(output.score, target)
        return F.mse_loss(output.score, target)


def build_head(num_features: int, hidden: Optional[int], dropout: float) -> nn.Module:
    """The score head: a Linear (its state dict keys ``head.weight``/``head.bias``, as the
    baselines' checkpoints have them), or a one-hidden-layer MLP."""
    if hidden is None:
        return nn.Linear(num_features, 1)
    return nn.Sequential(nn.Linear(num_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))


def output_layer(head: nn.Module) -> nn.Linear:
    """The Linear that gives the score (the head itself, or the MLP's last layer)."""
    return head if isinstance(head, nn.Linear) else head[-1]


@register_model("plain", kind="regressor", options=PlainConfig,
                paper="the L1 / MSE regression baselines of ComboLoss (Xu & Xiang, Table 4)")
def build(**kwargs: Any) -> PlainRegressor:
    """Factory for the registry: ``build(backbone=..., loss="mse", ...)``."""
    return PlainRegressor(config_from_kwargs(PlainConfig, kwargs))
