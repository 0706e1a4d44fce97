"""ComboLoss on SEResNeXt50 (Xu & Xiang, "ComboLoss for Facial Attractiveness Analysis with
Squeeze-and-Excitation Networks"; official code github.com/lucasxlu/ComboLoss).

Why: a regression output alone ignores that scores fall into ordered levels. ComboLoss adds a
5-way classification output on the same pooled features (Fig. 1; the official ``ComboNet``:
two ``Linear`` heads, no hidden layer), supervises it with class-balanced cross entropy, and
ties it back to the score through the expectation of its softmax.

Formulas (equation numbers of the paper):

- Regression loss (2): L_reg = (1/N) Σ |ŝ_i − s_i|.
- Classes (Sec. 2.2): c = ⌈s − ½⌉ on the 1..5 scale, used as index c − 1 ∈ 0..4 (rounding half
  *down*: 2.5 -> 2; the official code uses Python's ``round(s) - 1``, which rounds half to even).
  Scores outside the scale are clamped to the first/last class.
- Class weights (6): w_c = max_m |m| / |c|, |c| the number of training samples in class c;
  :func:`class_weights_from_scores` computes them from the training scores (a class with no
  sample is counted as one, i.e. gets the largest weight; it never occurs as a target there).
- Classification loss (3): L_cls = −(1/N) Σ w_{c_i} log ĉ_{i,c_i}. ``ce_normalisation: "n"``
  divides by N as written; ``"weights"`` divides by Σ w_{c_i}, which is what the official code's
  ``nn.CrossEntropyLoss(weight=w)`` computes.
- Expectation (4): E_i = Σ_{k=1}^{C} ĉ_{i,k} · k (class values 1..5).
- Expectation loss (5): L_exp = (1/N) Σ |ŝ_i − E_i| as written (``expectation_target:
  "regression"``: the regression output against E). The prose ("minimize the gap between
  groundtruth beauty score and the expectation score") and the official ``ExpectationLoss``
  use the ground truth instead: ``expectation_target: "score"``.
- L_combo = α L_reg + β L_exp + γ L_cls with α = 2, β = 1, γ = 1.

The final score is the regression output ŝ (the official test code; its ``(2ŝ + E) / 3``
blend is commented out). Scores are **not clipped** by default (neither paper nor code clip);
``score_range: [lo, hi]`` clamps them at evaluation time only.

Training recipe (:data:`PAPER_RECIPE`, Sec. 3.2): SGD, momentum 0.9, lr 0.01 divided by 10
every 50 epochs, weight decay 1e-3, batch 64, 200 epochs; images resized and randomly cropped
to 224 × 224, colour jitter and random rotation; ImageNet-pretrained backbone. (The official
loaders use ``RandomRotation(30)`` and no flip; our shared ``rotation`` augmentation is ±10°.)
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from comparators.backbone_options import BackboneOptions
from comparators.partial import top
from orderlearn.types import ScoredImage
from comparators.base import Batch, Regressor, RegressorOutput
from comparators.regressors.options import check_score_range, config_from_kwargs
from comparators.regressors.precision import float32_head
from comparators.transforms import BackboneTransforms
from comparators.registry import register_model
from comparators.regressors.split_backbone import SplitBackboneRegressor

log = logging.getLogger(__name__)

PAPER_RECIPE: dict[str, Any] = {
    "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-3},
    "schedule": {"name": "step", "step_size": 50, "gamma": 0.1},
    "train": {"epochs": 200, "batch_size": 64},
    "augment": ["crop", "color_jitter", "rotation"],
}


def score_classes(scores: torch.Tensor, num_classes: int = 5, class_min: int = 1) -> torch.Tensor:
    """Class index ⌈s − ½⌉ − class_min, clamped to 0..num_classes−1 (Sec. 2.2), as long."""
    return (torch.ceil(scores - 0.5).long() - class_min).clamp(0, num_classes - 1)


def class_weights_from_scores(
    scores: Iterable[float], num_classes: int = 5, class_min: int = 1
) -> tuple[float, ...]:
    """Eq. (6): w_c = max_m |m| / |c| from the training set's scores.

    Pass the result as ``class_weights`` in the config or to
    :meth:`ComboLossRegressor.set_class_weights`. An empty class is counted as one sample.
    """
    values = torch.as_tensor(list(scores), dtype=torch.float64)
    if values.numel() == 0:
        raise ValueError("class_weights_from_scores needs at least one training score")
    if not torch.isfinite(values).all():
        raise ValueError("class_weights_from_scores got a non-finite score")
    counts = torch.bincount(score_classes(values, num_classes, class_min), minlength=num_classes)
    return tuple(float(counts.max()) / float(max(int(c), 1)) for c in counts)


@dataclass
class ComboLossConfig(BackboneOptions):
    """Model settings of ComboLoss (the shared backbone options, then its own; defaults: the paper's)."""

    backbone: str = "seresnext50_32x4d"
    augment: tuple[str, ...] = ("crop", "color_jitter", "rotation")
    num_classes: int = 5  # C
    class_min: int = 1  # the score of class index 0 (classes 1..5 on SCUT)
    class_weights: Optional[tuple[float, ...]] = None  # w_c of Eq. (6); see class_weights_from_scores
    alpha: float = 2.0  # weight of L_reg
    beta: float = 1.0  # weight of L_exp
    gamma: float = 1.0  # weight of L_cls
    expectation_target: str = "regression"  # Eq. (5) as written; "score": prose / official code
    ce_normalisation: str = "n"  # Eq. (3) as written; "weights": nn.CrossEntropyLoss(weight=w)
    score_range: Optional[tuple[float, float]] = None  # clamp at eval time; None = no clipping

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.class_weights is not None:
            self.class_weights = tuple(float(w) for w in self.class_weights)
            if len(self.class_weights) != self.num_classes:
                raise ValueError(
                    f"class_weights has {len(self.class_weights)} values; num_classes is {self.num_classes}"
                )
            if not all(math.isfinite(w) and w > 0 for w in self.class_weights):
                raise ValueError(f"class_weights must be finite and positive, got {self.class_weights}")
        if self.expectation_target not in ("regression", "score"):
            raise ValueError(f"expectation_target must be 'regression' or 'score', got {self.expectation_target!r}")
        if self.ce_normalisation not in ("n", "weights"):
            raise ValueError(f"ce_normalisation must be 'n' or 'weights', got {self.ce_normalisation!r}")
        self.score_range = check_score_range(self.score_range)


class ComboLossRegressor(SplitBackboneRegressor, BackboneTransforms, Regressor):
    """Backbone -> pooled features -> {Linear(F, 1) score, Linear(F, C) class logits}."""

    def __init__(self, config: ComboLossConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = config.build_backbone()
        features = self.backbone.num_features
        self.regression_head = nn.Linear(features, 1)
        self.classification_head = nn.Linear(features, config.num_classes)
        # persistent, so a checkpoint carries the training set's weights
        self.register_buffer("class_weights", torch.ones(config.num_classes))
        self.register_buffer(
            "class_values", config.class_min + torch.arange(config.num_classes, dtype=torch.float32), persistent=False
        )
        if config.class_weights is not None:
            self.set_class_weights(config.class_weights)
        else:
            log.warning(
                "ComboLoss: no class_weights given; the cross entropy is unweighted until "
                "set_class_weights(class_weights_from_scores(train_scores)) is called (Eq. 6)"
            )

    def setup_from_training(self, samples: Sequence[ScoredImage]) -> None:
        """Training-data hook of the shared pipeline: Eq. 6 weights from the training scores,
        unless the config fixed them."""
        if self.config.class_weights is None:
            c = self.config
            scores = torch.tensor([s.score for s in samples], dtype=torch.float64)
            self.set_class_weights(class_weights_from_scores(scores, c.num_classes, c.class_min))

    def set_class_weights(self, weights: Iterable[float]) -> None:
        """Install w_c (Eq. 6), e.g. ``class_weights_from_scores(train_scores)``."""
        values = torch.as_tensor(list(weights), dtype=torch.float32)
        if values.shape != self.class_weights.shape:
            raise ValueError(f"class weights have shape {tuple(values.shape)}; expected ({self.config.num_classes},)")
        if not (torch.isfinite(values).all() and (values > 0).all()):
            raise ValueError(f"class weights must be finite and positive, got {values.tolist()}")
        self.class_weights.copy_(values)

    def forward_head(self, features: torch.Tensor) -> RegressorOutput:
        features = top(self.backbone, features)
        score = float32_head(self.regression_head, features).squeeze(1)
        logits = float32_head(self.classification_head, features)
        expectation = torch.softmax(logits, dim=1) @ self.class_values.to(logits)  # Eq. (4)
        if self.config.score_range is not None and not self.training:
            score = score.clamp(*self.config.score_range)
        return RegressorOutput(score=score, extras={"class_logits": logits, "expectation": expectation})

    def loss_terms(self, output: RegressorOutput, batch: Batch) -> dict[str, torch.Tensor]:
        """L_reg (2), L_exp (5) and L_cls (3), unweighted."""
        score = output.score
        target = batch["score"].to(score)
        logits = output.extras["class_logits"]
        expectation = output.extras["expectation"]
        l_reg = F.l1_loss(score, target)
        reference = score if self.config.expectation_target == "regression" else target
        l_exp = F.l1_loss(expectation, reference)
        classes = score_classes(batch["score"].to(logits.device), self.config.num_classes, self.config.class_min)
        nll = F.cross_entropy(logits, classes, reduction="none")
        w = self.class_weights.to(nll)[classes]
        if self.config.ce_normalisation == "weights":
            l_cls = (w * nll).sum() / w.sum()
        else:
            l_cls = (w * nll).sum() / len(nll)
        return {"reg": l_reg, "exp": l_exp, "cls": l_cls}

    def loss(self, output: RegressorOutput, batch: Batch) -> torch.Tensor:
        """L_combo = α L_reg + β L_exp + γ L_cls (Sec. 2.1), α = 2, β = γ = 1."""
        t = self.loss_terms(output, batch)
        return self.config.alpha * t["reg"] + self.config.beta * t["exp"] + self.config.gamma * t["cls"]



@register_model("comboloss", kind="regressor", options=ComboLossConfig,
                paper="Xu & Xiang, ComboLoss for Facial Attractiveness Analysis with Squeeze-and-Excitation Networks")
def build(**kwargs: Any) -> ComboLossRegressor:
    """Factory for the registry: ``build(backbone=..., class_weights=[...], ...)``."""
    return ComboLossRegressor(config_from_kwargs(ComboLossConfig, kwargs))
