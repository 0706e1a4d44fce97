"""Output heads in float32 under mixed precision: the scores' resolution must beat the metrics'."""
from __future__ import annotations

import torch
from torch import nn


def float32_head(head: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Run a small output head in float32 even under autocast.

    A score near 4 in bfloat16 has a resolution of 1/32, coarser than the MAE differences the
    papers report; the head costs nothing, so it runs in its parameters' precision.
    """
    dtype = next(head.parameters()).dtype  # float32 unless the whole module was cast on purpose
    with torch.autocast(device_type=features.device.type, enabled=False):
        return head(features.to(dtype))
