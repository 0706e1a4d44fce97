"""Feature fusion of backbones: one backbone name whose pooled features are the concatenation of
several timm backbones' pooled features.

A fused backbone is declared in one line, :func:`~comparators.backbones.register_fusion` (name, branches in order):
``register_fusion("mobilenetv2_100_lite0_fusion", ["mobilenetv2_100", "tf_efficientnet_lite0"])``
(in :mod:`comparators.backbones`) = ImageNet MobileNetV2 (1280-d) ‖ ImageNet EfficientNet-Lite0
(1280-d), both with offline weights: any comparator or regressor that names it as its
``backbone`` compares or regresses over the 2560-d concatenated embedding, with the rest of the
pipeline (frozen features through the cache, the bank route, the direct head) unchanged.

Input: the ImageNet-normalised image every backbone of this project gets by default; each
branch re-normalises it to what its own weights expect (EfficientNet-Lite0: (x − 0.5) / 0.5 on
[0, 1] pixels) with a fixed affine map, so one preprocessing serves both.

Partial fine-tuning of a fused backbone, one trainable part per branch, is
:mod:`comparators.fusion_partial`.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

FUSIONS: dict[str, tuple[str, ...]] = {}
"""Every fused backbone registered by :func:`comparators.backbones.register_fusion`: its name -> its branches' names, in order."""


class Renormalise(nn.Module):
    """ImageNet-normalised pixels -> pixels normalised by ``mean``/``std`` (a fixed affine map)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        in_mean, in_std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET)
        out_mean, out_std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
        self.register_buffer("scale", in_std / out_std, persistent=False)
        self.register_buffer("shift", (in_mean - out_mean) / out_std, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images * self.scale + self.shift


class FusedBackbone(nn.Module):
    """Pooled features of several backbones, concatenated: ``[B, Σ num_features]``."""

    def __init__(self, branches: Sequence[nn.Module], normalisations: Sequence[tuple[Sequence[float], Sequence[float]]],
                 names: Optional[Sequence[str]] = None) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.names = tuple(names) if names is not None else tuple(type(b).__name__ for b in branches)
        self.inputs = nn.ModuleList(Renormalise(mean, std) for mean, std in normalisations)
        self.num_features = sum(b.num_features for b in self.branches)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(adapt(images)) for branch, adapt in zip(self.branches, self.inputs)], dim=-1)

    def reset_classifier(self, num_classes: int = 0, *args: Any) -> None:
        if num_classes != 0:
            raise ValueError("a fused backbone is a feature extractor: reset_classifier(0) only")


def fusion_branches(name: str) -> Optional[tuple[str, ...]]:
    """The branches of fused backbone ``name`` in order, or None when ``name`` is not a fusion."""
    return FUSIONS.get(name)
