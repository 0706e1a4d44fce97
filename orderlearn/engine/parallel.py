"""Work split over accelerate's processes and gathered back in the original order."""
from __future__ import annotations

import torch
from accelerate import Accelerator


def gather_in_order(local: torch.Tensor, accelerator: Accelerator) -> torch.Tensor:
    """Concatenate each process's contiguous share (from ``split_between_processes``) in order."""
    if accelerator.num_processes == 1:
        return local
    from accelerate.utils import gather_object

    return torch.cat([t for t in gather_object([local]) if t.numel()])
