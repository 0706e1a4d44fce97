"""The direct baseline of any splitting comparator: a regression head on its embeddings.

Sharing the comparator's (frozen or fine-tuned) embeddings makes "direct vs order-learned"
a comparison of the scoring route, not of the features.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Regressor, RegressorOutput
from .registry import register_model


class EmbeddingRegressor(Regressor):
    """MLP from an embedding to a score, trained with L1 (or MSE) on the score."""

    def __init__(self, embedding_dim: int, hidden: int = 256, dropout: float = 0.1, loss: str = "l1", score_mean: float = 3.0):
        super().__init__()
        if loss not in ("l1", "mse"):
            raise ValueError(f"loss must be l1 or mse, got {loss!r}")
        self.loss_name = loss
        self.net = nn.Sequential(
            nn.LayerNorm(embedding_dim), nn.Linear(embedding_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )
        nn.init.constant_(self.net[-1].bias, score_mean)  # start at the data's mean score, not at 0

    def forward(self, images: torch.Tensor) -> RegressorOutput:
        # token embeddings (e.g. LLaVA's [B, P, H]) are mean-pooled; feature maps are flattened
        embeddings = images.mean(dim=1) if images.dim() == 3 else images.flatten(1)
        return RegressorOutput(score=self.net(embeddings.float()).squeeze(-1))

    def loss(self, output: RegressorOutput, batch: Batch) -> torch.Tensor:
        target = batch["score"].to(output.score.dtype)
        return F.l1_loss(output.score, target) if self.loss_name == "l1" else F.mse_loss(output.score, target)


@register_model("embedding-regressor", kind="regressor", backbone="a comparator's embeddings (the direct baseline's head)")
def build(**kwargs: Any) -> EmbeddingRegressor:
    return EmbeddingRegressor(**kwargs)
