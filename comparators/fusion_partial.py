"""Partial fine-tuning of a fused backbone: each branch with its own frozen trunk and trainable top.

``model.trainable_from`` for a fused backbone (:mod:`comparators.fusion`) is a list in branch
order, e.g. ``[blocks.4, blocks.4]`` for ``mobilenetv2_100_lite0_fusion``: each entry splits its
branch as :class:`~comparators.partial.PartialBackbone` splits one network; ``null`` freezes that
branch whole (its pooled features are what is cached, and nothing of it trains).

* ``forward_trunk`` = every branch's input re-normalisation and frozen trunk, their outputs
  **packed into one tensor per image**: each flattened (``[B, C·H·W]``, or ``[B, C]`` for a branch
  frozen whole) and concatenated in branch order, ``[B, Σ sizes]``;
* ``forward_top`` = the packed tensor cut back into the branches' maps (by the shapes measured
  on the probe image at build time), each branch's trainable units and global pool, and the
  pooled features concatenated: ``[B, Σ num_features]``, what the model's head reads.

Why one packed tensor and not a tuple of maps: everything downstream of ``forward_features``
(the per-image feature cache in :mod:`orderlearn.engine.features`, its ``.npy`` entries, the
stacking of cached views ``[N, V, ...]``, head-only batching, the bank route, test-time view
averaging) handles one tensor per image and view. Packing keeps all of that unchanged, and the
unpacking is a view and a reshape per branch, free next to the top's convolutions. The shapes
depend on the input size, which is fixed per model (``image_size``); a packed tensor of another
width is an error, not a silent mis-cut.

Batch-norm as in :mod:`comparators.partial`: every trunk (and a branch frozen whole) always runs
in evaluation mode; the tops follow the module's mode. The state dict keeps the fused
backbone's keys (``branches.0.conv_stem.weight`` ...), so checkpoints load either way.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from comparators.fusion import FusedBackbone
from comparators.partial import BranchTrainableFrom, PartialBackbone, SplitBackbone


class PartialFusedBackbone(SplitBackbone):
    """A :class:`~comparators.fusion.FusedBackbone` split per branch (see the module docstring)."""

    def __init__(self, fused: nn.Module, trainable_from: Sequence[BranchTrainableFrom], probe_size: int = 224) -> None:
        super().__init__()
        if not isinstance(fused, FusedBackbone):
            raise ValueError(f"trainable_from: a list splits a fused backbone per branch; {type(fused).__name__} is one "
                             "network: give one unit (e.g. 'blocks.4') or an index")
        if len(trainable_from) != len(fused.branches):
            raise ValueError(f"trainable_from: expected {len(fused.branches)} entries, one per branch {list(fused.names)}, "
                             f"got {list(trainable_from)!r}")
        if all(t is None for t in trainable_from):
            raise ValueError("trainable_from: every branch is frozen whole; leave trainable_from out and set "
                             "train.frozen_backbone: true")
        self.branches = nn.ModuleList(self._split(i, branch, fused.names[i], unit, probe_size)
                                      for i, (branch, unit) in enumerate(zip(fused.branches, trainable_from)))
        self.inputs = fused.inputs
        self.names = fused.names
        self.num_features = fused.num_features
        for branch in self.branches:
            if not isinstance(branch, PartialBackbone):
                branch.requires_grad_(False)
        self.shapes = self._trunk_shapes(probe_size)
        self.sizes = [int(torch.Size(shape).numel()) for shape in self.shapes]
        self._check_composition(fused, probe_size)

    @staticmethod
    def _split(index: int, branch: nn.Module, name: str, unit: BranchTrainableFrom, probe_size: int) -> nn.Module:
        if unit is None:
            return branch
        try:
            return PartialBackbone(branch, unit, probe_size)
        except ValueError as error:  # "trainable_from: ..." of one network: say which branch
            raise ValueError(f"trainable_from: entry {index} ({name}): {str(error).removeprefix('trainable_from: ')}") from None

    @property
    def trainable_from(self) -> tuple[BranchTrainableFrom, ...]:
        return tuple(b.trainable_from if isinstance(b, PartialBackbone) else None for b in self.branches)

    def trunk_modules(self) -> list[nn.Module]:
        """Each branch's frozen units, or the whole branch when it is frozen whole, in branch order."""
        return [m for b in self.branches for m in (b.trunk_modules() if isinstance(b, PartialBackbone) else [b])]

    def top_modules(self) -> list[nn.Module]:
        return [m for b in self.branches if isinstance(b, PartialBackbone) for m in b.top_modules()]

    def branch_trunks(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Each branch's trunk output (its pooled features when frozen whole), unpacked."""
        outputs = []
        for branch, adapt in zip(self.branches, self.inputs):
            x = adapt(images)
            outputs.append(branch.forward_trunk(x) if isinstance(branch, PartialBackbone) else branch(x))
        return outputs

    def forward_trunk(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, Σ sizes]``: every branch's trunk output flattened, concatenated in branch order."""
        return torch.cat([out.flatten(1) for out in self.branch_trunks(images)], dim=1)

    def forward_top(self, trunk_output: torch.Tensor) -> torch.Tensor:
        if trunk_output.dim() != 2 or trunk_output.shape[1] != sum(self.sizes):
            raise ValueError(f"trainable_from: packed trunk features of shape {tuple(trunk_output.shape)} do not fit the "
                             f"branches' trunk shapes {self.shapes} (measured at the model's image_size)")
        pooled = []
        for branch, piece, shape in zip(self.branches, trunk_output.split(self.sizes, dim=1), self.shapes):
            maps = piece.reshape(piece.shape[0], *shape)
            pooled.append(branch.forward_top(maps) if isinstance(branch, PartialBackbone) else maps)
        return torch.cat(pooled, dim=-1)

    @torch.no_grad()
    def _trunk_shapes(self, size: int) -> list[tuple[int, ...]]:
        was_training = self.training
        self.eval()
        try:
            probe = torch.zeros(1, 3, size, size)
            return [tuple(out.shape[1:]) for out in self.branch_trunks(probe)]
        finally:
            self.train(was_training)

    @torch.no_grad()
    def _check_composition(self, fused: nn.Module, size: int) -> None:
        """Unpacking must give back what the fused backbone computes (seeded probe, evaluation mode)."""
        was_training = self.training
        self.eval()
        probe = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
        try:
            expected, got = fused(probe), self.forward(probe)
        finally:
            self.train(was_training)
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
            raise ValueError(f"trainable_from: the split branches {list(self.names)} do not compute the fused backbone")
