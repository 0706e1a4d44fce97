"""Every test image against every reference, from embeddings: probabilities ``[N, R, K]``.

Scoring N images against R references with a splitting comparator costs N + R feature passes
(see :mod:`orderlearn.features`) and N·R head passes, in chunks of the comparator's declared
``pair_batch_size``, through its ``compare_grid`` (which a comparator that can share work
across one image's references overrides); rows are spread over accelerate's processes.
"""
from __future__ import annotations

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from comparators.base import Comparator

from .parallel import gather_in_order


@torch.no_grad()
def view_embeddings(view: Comparator, features: torch.Tensor, accelerator: Accelerator, batch_size: int) -> torch.Tensor:
    """What the view's ``compare`` reads, from cached ``forward_features`` output (CPU, float32)."""
    view.eval()
    out = []
    for start in range(0, len(features), batch_size):
        with accelerator.autocast():
            out.append(view.embed_from_features(features[start:start + batch_size].to(accelerator.device)).float().cpu())
    return torch.cat(out) if out else features


@torch.no_grad()
def compare_all(view: Comparator, test: torch.Tensor, refs: torch.Tensor, accelerator: Accelerator,
                desc: str = "compare") -> torch.Tensor:
    """Probabilities ``[N, R, K]`` of comparing every test embedding (first) with every reference."""
    device = accelerator.device
    view.eval()
    refs = refs.to(device)
    with accelerator.split_between_processes(list(range(len(test)))) as mine:
        out = []
        per_chunk = max(1, view.pair_batch_size // max(len(refs), 1))
        for start in tqdm(range(0, len(mine), per_chunk), desc=desc, disable=not accelerator.is_local_main_process, leave=False):
            idx = mine[start:start + per_chunk]
            with accelerator.autocast():
                logits = view.compare_grid(test[idx].to(device), refs).float()
            out.append(logits.softmax(-1).cpu())
        local = torch.cat(out) if out else torch.empty(0)
    return gather_in_order(local, accelerator)
