"""The options every model over one timm backbone shares, and their checks, in one place.

A model's options dataclass inherits :class:`BackboneOptions` and adds its own fields (heads,
losses); it redeclares a shared field only to give it its paper's default. Configs keep
writing the shared options flat under ``model:`` (``backbone: mobilenetv2_100``,
``trainable_from: blocks.5``; a fused backbone's ``trainable_from: [blocks.4, blocks.4]``), so
inheriting changes no config.

The model builds its backbone with :meth:`BackboneOptions.build_backbone`: the timm network
named ``backbone`` with ``weights``, split at ``trainable_from`` for partial fine-tuning.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from .backbones import check_backbone_name, create_backbone
from .fusion import fusion_branches
from .fusion_partial import PartialFusedBackbone
from .partial import PartialBackbone, TrainableFrom, check_trainable_from
from .transforms import AUGMENTATIONS


@dataclass
class BackboneOptions:
    """Which backbone, its weights, the input size and training augmentation, where
    fine-tuning starts, and test-time flip averaging."""

    backbone: str = "mobilenetv2_100"  # a timm model name (or one registered in comparators.backbones)
    weights: str = "imagenet"  # "imagenet" | "random" | path to a checkpoint
    image_size: int = 224  # input side in px (faces are resized to it)
    augment: tuple[str, ...] = ("hflip",)  # training augmentations, comparators.transforms.AUGMENTATIONS
    # partial fine-tuning: first trainable backbone unit (comparators.partial); for a fused backbone
    # a list, one per branch in order, null for a branch frozen whole (comparators.fusion_partial)
    trainable_from: TrainableFrom = None
    test_flip: bool = False  # score or embed a face as the mean over it and its mirror image

    def __post_init__(self) -> None:
        """The shared checks; a subclass calls this first, then checks its own fields."""
        check_backbone_name(self.backbone)
        self.trainable_from = check_trainable_from(self.trainable_from, fusion_branches(self.backbone))
        if self.image_size <= 0:
            raise ValueError(f"image_size: must be positive, got {self.image_size}")
        self.augment = tuple(self.augment)
        unknown = sorted(set(self.augment) - set(AUGMENTATIONS))
        if unknown:
            raise ValueError(f"augment: unknown augmentation(s) {unknown}; choose from {list(AUGMENTATIONS)}")

    def build_backbone(self, **timm_kwargs: Any) -> nn.Module:
        """The backbone these options describe: pooled features, split at ``trainable_from``
        (probed at ``image_size``) when given; ``timm_kwargs`` go to the timm constructor."""
        network = create_backbone(self.backbone, weights=self.weights, **timm_kwargs)
        return split_backbone(network, self.trainable_from, self.image_size)


def split_backbone(backbone: nn.Module, trainable_from: TrainableFrom, probe_size: int = 224) -> nn.Module:
    """``backbone`` unchanged when ``trainable_from`` is None, else its :class:`SplitBackbone`:
    per branch for a fused backbone (a list), else a :class:`PartialBackbone`."""
    if trainable_from is None:
        return backbone
    if isinstance(trainable_from, tuple):
        return PartialFusedBackbone(backbone, trainable_from, probe_size)
    return PartialBackbone(backbone, trainable_from, probe_size)
