"""Building blocks of the AdaShare + AFF multi-task ResNet (Electronics 2024, 13, 179).

Three pieces, each gated or made task-aware so the network can be shared across tasks:

* :class:`TaskBatchNorm2d` - the *dataset-aware block* (DAB, Sec. 2.2 / Fig. 4): the
  convolutions are shared, but every task keeps its own BatchNorm (affine parameters and
  running statistics), because each database has its own feature mean/variance and a
  shared BN "tends to exhibit poor network performance".
* :class:`MSCAM` / :class:`AFF` - attentional feature fusion (Sec. 2.3, Eqs. 2-5, after
  Dai et al., WACV 2021 [15]): the identity mapping ``b`` and residual ``r`` of a block are
  fused as ``z = w * b + (1 - w) * r`` with a learned, per-element weight ``w`` in (0, 1).
* :class:`GatedBasicBlock` - ResNet's BasicBlock (Fig. 4: Conv, BN_t, ReLU, Conv, BN_t,
  AFF, ReLU) returning both the executed output ``x'`` and the shortcut, so the caller can
  apply a task's execute/skip policy (Eq. 1).
"""
from __future__ import annotations

import torch
from torch import nn


class TaskBatchNorm2d(nn.Module):
    """One ``BatchNorm2d`` per task; ``forward(x, task)`` normalises with task ``task``'s BN.

    Separate running statistics matter at test time: each task's path through the
    shared convolutions sees its own database, so one pooled estimate would fit neither.
    """

    def __init__(self, num_features: int, num_tasks: int) -> None:
        super().__init__()
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        self.bns = nn.ModuleList(nn.BatchNorm2d(num_features) for _ in range(num_tasks))

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        if not 0 <= task < len(self.bns):
            raise ValueError(f"task index {task} out of range for {len(self.bns)} tasks")
        return self.bns[task](x)


class _PointwiseBottleneck(nn.Module):
    """``B(PWConv2(δ(B(PWConv1(·)))))``: the shared body of Eqs. 3 and 4, with task BNs."""

    def __init__(self, channels: int, inter: int, num_tasks: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, inter, kernel_size=1)
        self.bn1 = TaskBatchNorm2d(inter, num_tasks)
        self.conv2 = nn.Conv2d(inter, channels, kernel_size=1)
        self.bn2 = TaskBatchNorm2d(channels, num_tasks)

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x), task))
        return self.bn2(self.conv2(x), task)


class MSCAM(nn.Module):
    """Multi-scale channel attention module (Sec. 2.3, Eqs. 3-5).

    ``L(c)`` (Eq. 3) keeps the spatial map (local context, point-wise convolutions);
    ``G(c)`` (Eq. 4) first global-average-pools (global context). :meth:`weights` returns
    ``σ(L(c) ⊕ G(c))`` - the fusion weight ``c'`` of Eq. 2, a real number in (0, 1) per
    element, as the paper states; :meth:`forward` returns Eq. 5's refined feature
    ``c ⊗ σ(L(c) ⊕ G(c))``. (Eq. 5 as printed calls that product ``c'`` too, which would
    not lie in (0, 1); AFF [15] uses the sigmoid term itself as the weight, so we do.)

    ``ratio`` is the channel-scaling ratio ``r`` (channels reduced to C/r); the paper
    gives no value, so the default 4 is AFF's [15]. The BNs ``B`` are task-specific like
    every BN of this network (the DAB rule "different tasks will use different BN layers").
    """

    def __init__(self, channels: int, ratio: int = 4, num_tasks: int = 1) -> None:
        super().__init__()
        if channels < 1 or ratio < 1:
            raise ValueError(f"MSCAM needs channels >= 1 and ratio >= 1, got {channels}, {ratio}")
        inter = max(1, channels // ratio)
        self.local_att = _PointwiseBottleneck(channels, inter, num_tasks)
        self.global_att = _PointwiseBottleneck(channels, inter, num_tasks)

    def weights(self, c: torch.Tensor, task: int = 0) -> torch.Tensor:
        """Fusion weight σ(L(c) ⊕ G(c)) in (0, 1), shape of ``c`` (G broadcasts over H, W)."""
        local = self.local_att(c, task)  # Eq. 3
        global_ = self.global_att(c.mean(dim=(2, 3), keepdim=True), task)  # Eq. 4, A(c) = GAP
        return torch.sigmoid(local + global_)

    def forward(self, c: torch.Tensor, task: int = 0) -> torch.Tensor:
        return c * self.weights(c, task)  # Eq. 5


class AFF(nn.Module):
    """Attentional feature fusion, Eq. 2: ``z = c' ⊗ b ⊕ (1 − c') ⊗ r`` with ``c = b ⊕ r``.

    ``b`` is the block's identity mapping (shortcut) and ``r`` its residual branch, so the
    block learns a soft, input-dependent mix instead of ResNet's fixed ``b + r``. (AFF's
    reference code scales both terms by 2; the paper's Eq. 2 does not, and neither do we.)
    """

    def __init__(self, channels: int, ratio: int = 4, num_tasks: int = 1) -> None:
        super().__init__()
        self.mscam = MSCAM(channels, ratio, num_tasks)

    def forward(self, b: torch.Tensor, r: torch.Tensor, task: int = 0) -> torch.Tensor:
        if b.shape != r.shape:
            raise ValueError(f"AFF needs equal shapes, got identity {tuple(b.shape)} and residual {tuple(r.shape)}")
        w = self.mscam.weights(b + r, task)
        return w * b + (1.0 - w) * r


class Shortcut(nn.Module):
    """ResNet's projection shortcut (1x1 conv, stride s, task BN) for blocks that change shape."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, num_tasks: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)
        self.bn = TaskBatchNorm2d(out_ch, num_tasks)

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        return self.bn(self.conv(x), task)


class GatedBasicBlock(nn.Module):
    """ResNet BasicBlock with task BNs and (optionally) AFF on its short skip connection.

    :meth:`forward` returns ``(x', shortcut)``: ``x'`` is the executed block (Fig. 4) and
    ``shortcut`` is what a *skipped* block passes on. Eq. 1 passes the input ``x`` itself;
    a block that changes resolution/width (the first of stages 2-4) cannot, so it passes
    its projection shortcut, as AdaShare's reference implementation does.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, num_tasks: int, use_aff: bool, aff_ratio: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = TaskBatchNorm2d(out_ch, num_tasks)
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1, bias=False)
        self.bn2 = TaskBatchNorm2d(out_ch, num_tasks)
        needs_projection = stride != 1 or in_ch != out_ch
        self.downsample = Shortcut(in_ch, out_ch, stride, num_tasks) if needs_projection else None
        self.aff = AFF(out_ch, aff_ratio, num_tasks) if use_aff else None

    def forward(self, x: torch.Tensor, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        identity = x if self.downsample is None else self.downsample(x, task)
        residual = torch.relu(self.bn1(self.conv1(x), task))
        residual = self.bn2(self.conv2(residual), task)
        fused = self.aff(identity, residual, task) if self.aff is not None else identity + residual
        return torch.relu(fused), identity


class Stem(nn.Module):
    """Shared 7x7/2 conv, task BN, ReLU, 3x3/2 max-pool (Fig. 2: Conv, BN1/BN2, ReLU, MaxPool)."""

    def __init__(self, width: int, num_tasks: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn = TaskBatchNorm2d(width, num_tasks)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        return self.pool(torch.relu(self.bn(self.conv(x), task)))
