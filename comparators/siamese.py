"""The siamese CNN comparator: a timm backbone embeds each face once, a small head compares.

``embed`` runs the backbone (pooled features); ``compare`` projects both embeddings and
classifies [p_a, p_b, p_a − p_b, p_a ⊙ p_b] into FIRST / SECOND / SIMILAR. With
``symmetric=True`` the logits are averaged with the label-reversed logits of the swapped pair,
so the comparator is forward/reverse consistent by construction at the cost of one extra
head pass (the backbone is not run again).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .backbone_options import BackboneOptions
from .base import Comparator
from .partial import feature_key_config, frozen_modules, top, trunk
from .views import with_test_views
from orderlearn.types import swap_first_second
from .transforms import BackboneTransforms
from .registry import register_model


@dataclass
class SiameseConfig(BackboneOptions):
    """The shared backbone options (defaults: MobileNetV2, ImageNet weights, 224 px, horizontal
    flips), then the comparison head's."""

    projection: int = 256  # width of the projection of each embedding
    hidden: int = 256  # hidden width of the comparison MLP
    dropout: float = 0.1  # dropout in the comparison MLP
    num_classes: int = 3  # 3: FIRST/SECOND/SIMILAR; 2: FIRST/SECOND
    symmetric: bool = True  # average the logits with those of the swapped pair (forward/reverse consistent)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes not in (2, 3):
            raise ValueError(f"num_classes: must be 2 or 3, got {self.num_classes}")
        for key in ("projection", "hidden"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key}: must be positive, got {getattr(self, key)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout}")


class SiameseComparator(BackboneTransforms, Comparator):
    splits = True

    def __init__(self, config: SiameseConfig):
        super().__init__()
        self.config = config
        self.num_classes = config.num_classes
        self.backbone = config.build_backbone()
        self.project = nn.Sequential(nn.Linear(self.backbone.num_features, config.projection), nn.LayerNorm(config.projection))
        self.head = nn.Sequential(
            nn.Linear(4 * config.projection, config.hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.num_classes),
        )

    @property
    def embedding_dim(self) -> int:
        return self.backbone.num_features

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen part's output: the trunk's maps when partially fine-tuned, else the
        pooled embedding."""
        return trunk(self.backbone, images)

    def embed_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return top(self.backbone, features)

    def forward_head(self, features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.compare(self.embed_from_features(features_a), self.embed_from_features(features_b))

    def compare(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
        p_a, p_b = self.project(emb_a), self.project(emb_b)
        logits = self.head(torch.cat([p_a, p_b, p_a - p_b, p_a * p_b], dim=-1))
        if self.config.symmetric:
            swapped = self.head(torch.cat([p_b, p_a, p_b - p_a, p_a * p_b], dim=-1))
            logits = 0.5 * (logits + swap_first_second(swapped))
        return logits

    def feature_modules(self) -> list[nn.Module]:
        return frozen_modules(self.backbone)

    def feature_key_config(self) -> Any:
        return feature_key_config(self.backbone, self.config.backbone, self.config)

    def comparator_view(self) -> Comparator:
        return with_test_views(self, self.config.test_flip)


@register_model("siamese", kind="comparator", options=SiameseConfig)
def build(**kwargs: Any) -> SiameseComparator:
    return SiameseComparator(SiameseConfig(**kwargs))
