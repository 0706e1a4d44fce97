"""Dual label distribution learning on MobileNetV2 (Liu et al., "Lightweight Facial Attractiveness
Prediction Using Dual Label Distribution"; official code github.com/enquan/2D_FAP).

Why two distributions: the mean score throws away how much raters disagreed. The
*attractiveness distribution* p spreads the score over 40 intervals of width Δl = 0.1 on [1, 5]
with a Laplace law whose spread is the raters' σ; the *rating distribution* r is the raters'
histogram itself. The network predicts p̂ (40 values), and both r̂ and ŷ are read off p̂, so one
output is supervised three ways.

Formulas (equation numbers of the paper):

- Laplace CDF (2): F(x|μ,b) = ½[1 + sgn(x−μ)(1 − exp(−|x−μ|/b))], μ = y, b = σ/√2.
- Intervals (3)-(4): s_k = y_min + kΔl, I_j = [s_j, s_{j+1}], k ∈ [0, 40], j ∈ [0, 39].
- Target (5): p_j = F(s_{j+1}) − F(s_j); then element-wise sigmoid and L1 normalisation
  (Sec. III-C, last paragraph). The official code also floors p_j at 1e-15 before the sigmoid.
  Note that sigmoid maps [0, 1] to [0.5, 0.73], so the target is a flattened copy of the
  Laplace mass: this is what the paper does, and why L_ad alone predicts poorly (Table III).
- Network output (Sec. IV-A, official ``models/MobileNetv2.py``): MobileNetV2 features ->
  global average pool -> Dropout(0.2) -> Linear(1280, 40) -> sigmoid -> L1 normalisation.
- Score (9): ŷ = Σ_j w_j p̂_j, w_j = ½(s_j + s_{j+1}) (interval midpoints 1.05 .. 4.95).
- Rating distribution (7), Table I: r̂_m = sum of p̂_j over the intervals rounding to rating m
  (j ∈ [0,4] -> 1, [10m−15, 10m−6] -> m = 2,3,4, [35,39] -> 5).
- Losses: L_ad = (1/n) Σ ||p̂ − p||₂ (6); L_rd = (1/n) Σ ||r̂ − r||₂ (8), r = counts / Σ counts;
  L_score = Σ_i [exp(|ŷ − y|) − 1] (10), a *sum* over the batch (as in the paper and the
  official ``loss3_option='sum'``); L = λ₁L_ad + λ₂L_rd + λ₃L_score (11), λ₁ = λ₂ = λ₃ = 1.

Scores are **not clipped**: ŷ is an expectation over the midpoints, so it always lies in
[y_min + Δl/2, y_max − Δl/2]; ``score_range`` defines the interval grid, not a clamp.

Missing labels (manifest data): the batch carries ``rating_counts`` zeros and ``std`` nan (or
≤ 0) when unknown. σ is taken from ``std``; if unknown, from the rating histogram (population
std of the ratings); if that is missing too, from ``default_std`` (``None``: a ValueError naming
the sample). L_rd is averaged over the samples that have a histogram only, and is 0 for a
batch without any; on fully labelled data this is exactly Eq. (8).

Training recipe (:data:`PAPER_RECIPE`, Sec. V-A): AdamW, β = (0.9, 0.999), ε = 1e-8, lr 1e-3
divided by 10 every 30 epochs, 90 epochs, batch 256; the official code also sets
``amsgrad=True`` and leaves weight decay at PyTorch's default 0.01. Only random horizontal
flips (p = 0.5). Inputs: SCUT-FBP5500 images resized to 256 and centre-cropped to 224
(``resize: 256``); aligned SCUT-FBP faces resized straight to 224 (``resize: null``).
ImageNet-pretrained backbone, ImageNet normalisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms as T

from comparators.backbone_options import BackboneOptions
from comparators.backbones import normalisation
from comparators.partial import top
from comparators.base import Batch, Regressor, RegressorOutput
from comparators.regressors.options import check_score_range, config_from_kwargs
from comparators.regressors.precision import float32_head
from comparators.transforms import make_transform
from comparators.registry import register_model
from comparators.regressors.split_backbone import SplitBackboneRegressor

PAPER_RECIPE: dict[str, Any] = {
    "optim": {
        "name": "adamw",
        "lr": 1e-3,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "weight_decay": 0.01,  # PyTorch's default: the paper and official code leave it unset
        "amsgrad": True,  # official code
    },
    "schedule": {"name": "step", "step_size": 30, "gamma": 0.1},
    "train": {"epochs": 90, "batch_size": 256},
    "augment": ["hflip"],
}

TARGET_FLOOR = 1e-15  # official code: interval masses below this are raised to it before the sigmoid
MIN_LAPLACE_SCALE = 1e-6  # b for σ = 0 (all raters agree): a (numerically) one-hot interval mass


@dataclass
class DualLabelDistributionConfig(BackboneOptions):
    """Model settings of the dual label distribution method (the shared backbone options, whose
    defaults are the paper's: MobileNetV2, ImageNet weights, 224 px, horizontal flips; then its own)."""

    score_range: tuple[float, float] = (1.0, 5.0)  # y_min, y_max of Eq. (3)
    interval: float = 0.1  # Δl of Eq. (3)
    dropout: float = 0.2  # MobileNetV2 classifier dropout, kept by the official code
    lambda_ad: float = 1.0  # λ₁ of Eq. (11)
    lambda_rd: float = 1.0  # λ₂
    lambda_score: float = 1.0  # λ₃
    score_reduction: str = "sum"  # Eq. (10) sums over the batch; "mean" makes it batch-size free
    default_std: Optional[float] = None  # σ for samples with neither std nor rating counts
    resize: Optional[int] = 256  # resize shorter side, then centre-crop image_size; None: resize to image_size

    def __post_init__(self) -> None:
        super().__post_init__()
        self.score_range = check_score_range(self.score_range)  # type: ignore[assignment]
        if self.score_range is None:
            raise ValueError("score_range is required: it defines the interval grid of Eq. (3)")
        if not self.interval > 0:
            raise ValueError(f"interval must be positive, got {self.interval}")
        bins = (self.score_range[1] - self.score_range[0]) / self.interval
        if abs(bins - round(bins)) > 1e-6:
            raise ValueError(f"score_range {self.score_range} is not a whole number of intervals of {self.interval}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.score_reduction not in ("sum", "mean"):
            raise ValueError(f"score_reduction must be 'sum' or 'mean', got {self.score_reduction!r}")
        if self.default_std is not None and not self.default_std >= 0:
            raise ValueError(f"default_std must be >= 0, got {self.default_std}")
        if self.resize is not None and self.resize < self.image_size:
            raise ValueError(f"resize ({self.resize}) must be >= image_size ({self.image_size})")

    @property
    def num_bins(self) -> int:
        return int(round((self.score_range[1] - self.score_range[0]) / self.interval))


def interval_edges(score_range: tuple[float, float], interval: float) -> torch.Tensor:
    """Endpoints s_k = y_min + kΔl, k = 0..K (Eq. 3), float64."""
    num = int(round((score_range[1] - score_range[0]) / interval))
    return score_range[0] + interval * torch.arange(num + 1, dtype=torch.float64)


def rating_assignment(edges: torch.Tensor) -> torch.Tensor:
    """One-hot matrix [J, M] mapping interval j to the rating its midpoint rounds to (Table I).

    Ratings are the integers inside the score range (1..5 on SCUT); the midpoint of [1.5, 1.6)
    is 1.55, which rounds to 2, so the rule reproduces Eq. (7) exactly and extends to other
    integer scales.
    """
    mids = (edges[:-1] + edges[1:]) / 2
    low, high = math.ceil(float(edges[0]) - 1e-9), math.floor(float(edges[-1]) + 1e-9)
    if high < low:
        raise ValueError(f"score range [{float(edges[0])}, {float(edges[-1])}] contains no integer rating")
    rating = torch.floor(mids + 0.5).clamp(low, high).long() - low
    return F.one_hot(rating, high - low + 1).to(torch.float64)


def laplace_cdf(x: torch.Tensor, mu: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """F(x|μ,b) of Eq. (2), broadcasting."""
    return 0.5 * (1 + torch.sign(x - mu) * (1 - torch.exp(-torch.abs(x - mu) / b)))


def attractiveness_distribution(score: torch.Tensor, sigma: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Target p [B, J]: Laplace interval masses (Eq. 5), floored, sigmoid, L1-normalised."""
    mu = score.to(edges.dtype).unsqueeze(1)
    b = (sigma.to(edges.dtype) / math.sqrt(2)).clamp_min(MIN_LAPLACE_SCALE).unsqueeze(1)
    cdf = laplace_cdf(edges.unsqueeze(0), mu, b)
    mass = (cdf[:, 1:] - cdf[:, :-1]).clamp_min(TARGET_FLOOR)
    return F.normalize(torch.sigmoid(mass), p=1, dim=1)


def rating_distribution(counts: torch.Tensor) -> torch.Tensor:
    """r: the rating histogram L1-normalised (Sec. III-B); all-zero rows stay zero."""
    return counts / counts.sum(dim=1, keepdim=True).clamp_min(1e-12)


def histogram_std(counts: torch.Tensor, low: int) -> torch.Tensor:
    """Population standard deviation of ratings low, low+1, ... given their counts [B, M]."""
    values = low + torch.arange(counts.shape[1], dtype=counts.dtype, device=counts.device)
    total = counts.sum(dim=1).clamp_min(1e-12)
    mean = (counts * values).sum(dim=1) / total
    return torch.sqrt((counts * (values - mean.unsqueeze(1)) ** 2).sum(dim=1) / total)


class DualLabelDistributionRegressor(SplitBackboneRegressor, Regressor):
    """MobileNetV2 (any timm backbone by name) predicting the 40-interval distribution p̂."""

    def __init__(self, config: DualLabelDistributionConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = config.build_backbone()
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(self.backbone.num_features, config.num_bins))
        edges = interval_edges(config.score_range, config.interval)
        self.rating_low = math.ceil(config.score_range[0] - 1e-9)
        # the targets use float64 edges made per call (tiny Laplace masses), so no .half() or
        # .to(dtype) can coarsen them; the forward's float32 buffers follow the module's device
        self.register_buffer("midpoints", ((edges[:-1] + edges[1:]) / 2).float(), persistent=False)
        self.register_buffer("assignment", rating_assignment(edges).float(), persistent=False)

    @property
    def num_ratings(self) -> int:
        return self.assignment.shape[1]

    def forward_head(self, features: torch.Tensor) -> RegressorOutput:
        features = top(self.backbone, features)
        logits = float32_head(self.head, features)
        # the read-outs too stay out of autocast: bfloat16 midpoints would quantise ŷ
        with torch.autocast(device_type=features.device.type, enabled=False):
            distribution = F.normalize(torch.sigmoid(logits), p=1, dim=1)  # p̂, Sec. IV-A
            score = distribution @ self.midpoints.to(distribution)  # Eq. (9)
            ratings = distribution @ self.assignment.to(distribution)  # Eq. (7)
        return RegressorOutput(score=score, extras={"distribution": distribution, "rating_distribution": ratings})

    def targets(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(p [B,J], r [B,M], has_ratings [B] bool) for a batch, with the documented fallbacks."""
        score = batch["score"].to(torch.float64)
        n = score.shape[0]
        counts = batch.get("rating_counts")
        if counts is None:
            counts = torch.zeros(n, self.num_ratings, dtype=torch.float64, device=score.device)
        counts = counts.to(device=score.device, dtype=torch.float64)
        if counts.shape != (n, self.num_ratings):
            raise ValueError(
                f"rating_counts has shape {tuple(counts.shape)}; expected ({n}, {self.num_ratings}) "
                f"for ratings {self.rating_low}..{self.rating_low + self.num_ratings - 1}"
            )
        has_ratings = counts.sum(dim=1) > 0
        std = batch.get("std")
        std = torch.full_like(score, float("nan")) if std is None else std.to(device=score.device, dtype=torch.float64)
        known = torch.isfinite(std) & (std > 0)
        sigma = torch.where(known, std, histogram_std(counts, self.rating_low))
        missing = ~known & ~has_ratings
        if missing.any():
            if self.config.default_std is None:
                first = int(missing.nonzero()[0])
                raise ValueError(
                    f"sample {first} of the batch has neither a std nor rating_counts; set default_std "
                    f"to give the Laplace spread σ of such samples"
                )
            sigma = torch.where(missing, torch.full_like(sigma, self.config.default_std), sigma)
        edges = interval_edges(self.config.score_range, self.config.interval).to(score.device)
        p = attractiveness_distribution(score, sigma, edges)
        return p, rating_distribution(counts), has_ratings

    def loss_terms(self, output: RegressorOutput, batch: Batch) -> dict[str, torch.Tensor]:
        """L_ad (6), L_rd (8) and L_score (10), unweighted."""
        p_hat = output.extras["distribution"]
        r_hat = output.extras["rating_distribution"]
        p, r, has_ratings = self.targets(batch)
        p, r = p.to(p_hat), r.to(r_hat)
        l_ad = torch.linalg.vector_norm(p_hat - p, dim=1).mean()
        rd = torch.linalg.vector_norm(r_hat - r, dim=1)
        mask = has_ratings.to(device=rd.device, dtype=rd.dtype)
        l_rd = (rd * mask).sum() / mask.sum().clamp_min(1.0)
        errors = torch.expm1(torch.abs(output.score - batch["score"].to(output.score)))
        l_score = errors.sum() if self.config.score_reduction == "sum" else errors.mean()
        return {"ad": l_ad, "rd": l_rd, "score": l_score}

    def loss(self, output: RegressorOutput, batch: Batch) -> torch.Tensor:
        """Joint loss L = λ₁L_ad + λ₂L_rd + λ₃L_score (Eq. 11)."""
        terms = self.loss_terms(output, batch)
        cfg = self.config
        return cfg.lambda_ad * terms["ad"] + cfg.lambda_rd * terms["rd"] + cfg.lambda_score * terms["score"]

    def _transform(self, train: bool) -> Callable[[Any], torch.Tensor]:
        mean, std = normalisation(self.config.backbone)
        tail = make_transform(self.config.image_size, mean, std, train=train, augment=self.config.augment)
        if self.config.resize is None:
            return tail
        # SCUT-FBP5500 protocol: Resize(256) + CenterCrop(224) in training and test alike
        return T.Compose([T.Resize(self.config.resize), T.CenterCrop(self.config.image_size), tail])

    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        return self._transform(train=False)

    def train_preprocess(self) -> Callable[[Any], torch.Tensor]:
        return self._transform(train=True)


@register_model("dual-label-distribution", kind="regressor", options=DualLabelDistributionConfig,
                paper="Liu et al., Lightweight Facial Attractiveness Prediction Using Dual Label Distribution")
def build(**kwargs: Any) -> DualLabelDistributionRegressor:
    """Factory for the registry: ``build(backbone=..., weights=..., ...)``."""
    return DualLabelDistributionRegressor(config_from_kwargs(DualLabelDistributionConfig, kwargs))
