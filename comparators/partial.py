"""Partial fine-tuning: a timm backbone split into a frozen trunk and a trainable top.

Full fine-tuning of MobileNetV2 on a CPU costs a backbone pass and its backward per image and
step; the top stages alone cost a few percent of that. ``trainable_from`` (a model option)
names where the trainable part starts: a unit of :func:`backbone_units` (``blocks.4``,
``layer4``, ``conv_head`` ...), or its position in that list. The model then splits there:

* ``forward_features`` = the **trunk** (every unit before the split), frozen. Its output (for
  MobileNetV2 from ``blocks.4``: the 64 × 14 × 14 maps of block 3) is what the per-image
  feature cache stores, once per image and per cached view (identity, horizontal flip);
* ``forward_head`` = the **top** (the units from the split on, through the global pool) and the
  method's own head: what trains, on cached trunk maps, through the ordinary head-only path.

Batch-norm: the trunk's layers always run in evaluation mode (ImageNet running statistics,
never updated, so cached maps stay valid); the top's follow the module's mode (batch
statistics while training, running statistics in evaluation).

A timm model's pooled forward is the composition of its children in registration order for
the families used here (MobileNet / EfficientNet: ``conv_stem, bn1, blocks, conv_head, bn2,
global_pool``; ResNet / SE-ResNeXt: ``conv1 ... layer4, global_pool``); containers
(``blocks``, ``layer3``) are opened one level so a split may fall between their stages. That
composition is checked on a probe image when the split is made, so a backbone whose forward
does something else fails with an error instead of training a different network.
"""
from __future__ import annotations

from typing import Iterator, Optional, Union

import torch
from torch import nn

TrainableFrom = Optional[Union[str, int]]


def backbone_units(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    """The backbone's units in forward order: its children, with ``nn.Sequential`` children
    opened one level (``blocks.0``, ``blocks.1`` ...). Identity children (a reset classifier)
    are left out."""
    units: list[tuple[str, nn.Module]] = []
    for name, child in backbone.named_children():
        if isinstance(child, nn.Identity):
            continue
        if isinstance(child, nn.Sequential) and len(child) > 0:
            units.extend((f"{name}.{i}", grandchild) for i, grandchild in enumerate(child))
        else:
            units.append((name, child))
    return units


def split_index(units: list[tuple[str, nn.Module]], trainable_from: Union[str, int]) -> int:
    """Position of the first trainable unit: a unit's name, a container's name (its first
    unit), or an index into the units (negative counts from the end)."""
    names = [name for name, _ in units]
    if isinstance(trainable_from, int) and not isinstance(trainable_from, bool):
        if not -len(names) <= trainable_from < len(names):
            raise ValueError(f"trainable_from: index {trainable_from} outside 0..{len(names) - 1}; units: {names}")
        return trainable_from % len(names)
    if isinstance(trainable_from, str):
        if trainable_from in names:
            return names.index(trainable_from)
        inside = [i for i, name in enumerate(names) if name.startswith(trainable_from + ".")]
        if inside:
            return inside[0]
    raise ValueError(f"trainable_from: {trainable_from!r} is not a unit of this backbone; units: {names}")


class PartialBackbone(nn.Module):
    """A timm backbone with a frozen trunk and a trainable top (see the module docstring).

    It holds the backbone's own children under their own names, so its state dict has exactly
    the keys of the timm model it wraps (checkpoints and ImageNet weights load either way).
    """

    def __init__(self, backbone: nn.Module, trainable_from: Union[str, int], probe_size: int = 224) -> None:
        super().__init__()
        units = backbone_units(backbone)
        self.split = split_index(units, trainable_from)
        if self.split == 0:
            raise ValueError(f"trainable_from: {trainable_from!r} is the first unit: nothing would be frozen; "
                             "train the whole backbone with train.frozen_backbone: false and no trainable_from")
        for name, child in backbone.named_children():
            self.add_module(name, child)
        self.unit_names = [name for name, _ in units]
        self.num_features = backbone.num_features
        for module in self.trunk_modules():
            module.requires_grad_(False)
        self._check_composition(backbone, probe_size)

    def _units(self) -> Iterator[nn.Module]:
        for name in self.unit_names:
            yield self.get_submodule(name)

    def trunk_modules(self) -> list[nn.Module]:
        """The frozen units (what ``forward_trunk`` runs; hashed into the feature-cache key)."""
        return list(self._units())[: self.split]

    def top_modules(self) -> list[nn.Module]:
        return list(self._units())[self.split:]

    @property
    def trainable_from(self) -> str:
        return self.unit_names[self.split]

    def forward_trunk(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        for module in self.trunk_modules():
            x = module(x)
        return x

    def forward_top(self, trunk_output: torch.Tensor) -> torch.Tensor:
        x = trunk_output
        for module in self.top_modules():
            x = module(x)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_top(self.forward_trunk(images))

    def train(self, mode: bool = True) -> "PartialBackbone":
        """The top follows ``mode``; the frozen trunk stays in evaluation mode."""
        super().train(mode)
        for module in self.trunk_modules():
            module.eval()
        return self

    @torch.no_grad()
    def _check_composition(self, backbone: nn.Module, size: int) -> None:
        """The units in order must compute what the backbone computes (on a seeded probe image,
        in evaluation mode, without touching the global random state)."""
        was_training = backbone.training
        backbone.eval()
        probe = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        try:
            expected = backbone(probe)
            got = self.forward(probe)
        finally:
            backbone.train(was_training)
            self.train(was_training)
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
            raise ValueError(f"trainable_from: backbone {type(backbone).__name__} cannot be split: its forward is not "
                             f"the composition of its units {self.unit_names}")


def split_backbone(backbone: nn.Module, trainable_from: TrainableFrom, probe_size: int = 224) -> nn.Module:
    """``backbone`` unchanged when ``trainable_from`` is None, else its :class:`PartialBackbone`."""
    return backbone if trainable_from is None else PartialBackbone(backbone, trainable_from, probe_size)


def trunk(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The per-image features a split model caches: the trunk's output, or the whole backbone's
    pooled features when nothing is split off."""
    return backbone.forward_trunk(images) if isinstance(backbone, PartialBackbone) else backbone(images)


def top(backbone: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Pooled features from :func:`trunk`'s output (the identity when nothing is split off)."""
    return backbone.forward_top(features) if isinstance(backbone, PartialBackbone) else features


def frozen_modules(backbone: nn.Module) -> list[nn.Module]:
    """What :meth:`~comparators.base.Model.feature_modules` returns for a model over ``backbone``."""
    return backbone.trunk_modules() if isinstance(backbone, PartialBackbone) else [backbone]


def feature_key_config(backbone: nn.Module, name: str, config: object) -> object:
    """What determines a split model's cached features besides the trunk's weights and the
    transform: the backbone's name and the split (the method's other options do not touch the
    trunk); an unsplit model's whole ``config``."""
    if isinstance(backbone, PartialBackbone):
        return f"PartialBackbone(backbone={name!r}, trainable_from={backbone.trainable_from!r})"
    return config


def check_trainable_from(value: TrainableFrom) -> TrainableFrom:
    """Options-level check (the backbone's units are checked when the model is built)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and value.strip():
        return value
    raise ValueError(f"trainable_from: expected a unit name (e.g. 'blocks.4') or an index, got {value!r}")
