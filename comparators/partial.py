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

A fused backbone (:mod:`comparators.fusion`) splits per branch: ``trainable_from`` is then a list
in branch order (:mod:`comparators.fusion_partial`). Both kinds of split are a
:class:`SplitBackbone`, the contract the helpers below and the models rely on.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Optional, Sequence, Union

import torch
from torch import nn

BranchTrainableFrom = Optional[Union[str, int]]
"""Where one network's trainable part starts (None: not split)."""
TrainableFrom = Optional[Union[str, int, tuple[BranchTrainableFrom, ...]]]
"""``model.trainable_from``: one unit, or for a fused backbone one per branch in branch order
(None for a branch frozen whole)."""


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


class SplitBackbone(nn.Module):
    """A backbone split into a frozen trunk (whose output the feature cache stores, one tensor
    per image) and a trainable top (pooled features from that output).

    Contract: ``forward(images) == forward_top(forward_trunk(images))``; ``trunk_modules()`` are
    frozen (no gradients, evaluation mode whatever the module's mode) and hashed into the cache
    key; ``top_modules()`` train; ``trainable_from`` says where the split is (in the cache key).
    """

    num_features: int

    def forward_trunk(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_top(self, trunk_output: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def trunk_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def top_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    @property
    def trainable_from(self) -> object:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_top(self.forward_trunk(images))

    def train(self, mode: bool = True) -> "SplitBackbone":
        """The top follows ``mode``; the frozen trunk stays in evaluation mode."""
        super().train(mode)
        for module in self.trunk_modules():
            module.eval()
        return self


class PartialBackbone(SplitBackbone):
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


def trunk(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The per-image features a split model caches: the trunk's output, or the whole backbone's
    pooled features when nothing is split off."""
    return backbone.forward_trunk(images) if isinstance(backbone, SplitBackbone) else backbone(images)


def top(backbone: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Pooled features from :func:`trunk`'s output (the identity when nothing is split off)."""
    return backbone.forward_top(features) if isinstance(backbone, SplitBackbone) else features


def frozen_modules(backbone: nn.Module) -> list[nn.Module]:
    """What :meth:`~comparators.base.Model.feature_modules` returns for a model over ``backbone``."""
    return backbone.trunk_modules() if isinstance(backbone, SplitBackbone) else [backbone]


def feature_key_config(backbone: nn.Module, name: str, config: object) -> object:
    """What determines a split model's cached features besides the trunk's weights and the
    transform: the backbone's name and the split (the method's other options do not touch the
    trunk); an unsplit model's ``config`` with the options only its head reads (the options
    class's ``head_options``) put back to their defaults, so a trunk frozen whole keeps its
    cached features while a head is tried in several widths. An option missing from
    ``head_options`` costs a recomputation, never a wrong feature."""
    if isinstance(backbone, SplitBackbone):
        return f"{type(backbone).__name__}(backbone={name!r}, trainable_from={backbone.trainable_from!r})"
    head_only = getattr(config, "head_options", ())
    if not head_only or not dataclasses.is_dataclass(config):
        return config
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
                for f in dataclasses.fields(config) if f.name in head_only}
    return dataclasses.replace(config, **defaults)


def check_trainable_from(value: object, branches: Optional[Sequence[str]] = None) -> TrainableFrom:
    """Options-level check (the backbone's units are checked when the model is built):
    ``branches`` are the fused backbone's branch names (None for a single network). A fused
    backbone takes a list, one entry per branch in order (a unit, an index, or None for a branch
    frozen whole; at least one branch split); a single network one unit or index."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if branches is None:
            raise ValueError(f"trainable_from: a list is for a fused backbone (one unit per branch); this backbone is one "
                             f"network: give one unit (e.g. 'blocks.4') or an index, got {list(value)!r}")
        if len(value) != len(branches):
            raise ValueError(f"trainable_from: expected {len(branches)} entries, one per branch {list(branches)}, "
                             f"got {list(value)!r}")
        entries = tuple(None if v is None else _check_unit(v, i) for i, v in enumerate(value))
        if all(v is None for v in entries):
            raise ValueError("trainable_from: every branch is frozen whole; leave trainable_from out and set "
                             "train.frozen_backbone: true to train the head on the fused pooled features")
        return entries
    if branches is not None:
        raise ValueError(f"trainable_from: this backbone fuses {len(branches)} branches {list(branches)}: give a list, "
                         f"one unit per branch in that order (null for a branch frozen whole), got {value!r}")
    return _check_unit(value)


def _check_unit(value: object, branch: Optional[int] = None) -> Union[str, int]:
    """A unit name or an index (``branch``: the entry's position in a fused backbone's list)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip():
        return value
    if branch is None:
        raise ValueError(f"trainable_from: expected a unit name (e.g. 'blocks.4') or an index, got {value!r}")
    raise ValueError(f"trainable_from: entry {branch} expected a unit name (e.g. 'blocks.4'), an index or null, got {value!r}")
