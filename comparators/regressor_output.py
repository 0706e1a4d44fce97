"""What a regressor's forward returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class RegressorOutput:
    """What a regressor's forward returns: the score per image plus method-specific heads."""

    score: torch.Tensor  # [B]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
