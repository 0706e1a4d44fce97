"""Embed each image once, and compare every test image with every reference from embeddings.

Scoring N test images against R references with a splitting comparator costs N + R backbone
passes and N·R cheap head passes; work is spread over accelerate's processes and gathered.
Frozen-backbone embeddings are cached on disk by a key of (model spec, files), so repeated
runs on the same data skip the backbone entirely.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .images import ImageDataset
from .types import ScoredImage

log = logging.getLogger(__name__)


def cache_key(spec: dict, samples: Sequence[ScoredImage]) -> str:
    """Hash of the model spec and of each file's path, size and modification time."""
    h = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    for s in samples:
        st = s.path.stat()
        h.update(f"{s.path.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


@torch.no_grad()
def embed_samples(
    embed: Callable[[torch.Tensor], torch.Tensor],
    samples: Sequence[ScoredImage],
    transform: Callable,
    accelerator: Accelerator,
    batch_size: int = 64,
    num_workers: int = 0,
    cache_file: Optional[Path] = None,
    desc: str = "embed",
) -> torch.Tensor:
    """``embed`` applied to every sample (eval transform), in sample order, on every process."""
    if cache_file is not None and cache_file.is_file():
        cached = torch.load(cache_file, weights_only=True)
        if len(cached) == len(samples):
            log.info("embeddings from cache %s", cache_file)
            return cached
    indices = list(range(len(samples)))
    with accelerator.split_between_processes(indices) as mine:
        loader = DataLoader(ImageDataset([samples[i] for i in mine], transform), batch_size=batch_size, num_workers=num_workers)
        parts = []
        for batch in tqdm(loader, desc=desc, disable=not accelerator.is_local_main_process, leave=False):
            with accelerator.autocast():
                parts.append(embed(batch["image"].to(accelerator.device)).float().cpu())
        local = torch.cat(parts) if parts else torch.empty(0)
    embeddings = _gather_in_order(local, accelerator)
    if cache_file is not None and accelerator.is_main_process:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(cache_file.name + ".tmp")
        torch.save(embeddings, tmp)
        tmp.replace(cache_file)
    return embeddings


@torch.no_grad()
def compare_all(
    model: nn.Module,
    test: torch.Tensor,
    refs: torch.Tensor,
    accelerator: Accelerator,
    pair_batch: int = 8192,
    desc: str = "compare",
) -> torch.Tensor:
    """Probabilities ``[N, R, K]`` of comparing every test embedding with every reference.

    A comparator with its own ``compare_grid`` (the LLaVA one shares the first image's prompt
    prefix across references) is asked for each test image's row of logits directly.
    """
    device = accelerator.device
    grid = getattr(model, "compare_grid", None)
    refs = refs.to(device)
    rows = list(range(len(test)))
    with accelerator.split_between_processes(rows) as mine:
        out = []
        per_chunk = max(1, pair_batch // len(refs))
        for start in tqdm(range(0, len(mine), per_chunk), desc=desc, disable=not accelerator.is_local_main_process, leave=False):
            idx = mine[start : start + per_chunk]
            a = test[idx].to(device)
            with accelerator.autocast():
                if grid is not None:
                    logits = grid(a, refs).float()
                else:
                    emb_a = a.repeat_interleave(len(refs), dim=0)
                    emb_b = refs.repeat(len(idx), *([1] * (refs.dim() - 1)))
                    logits = model.compare(emb_a, emb_b).float()
            out.append(logits.softmax(-1).reshape(len(idx), len(refs), -1).cpu())
        local = torch.cat(out) if out else torch.empty(0)
    return _gather_in_order(local, accelerator)


def _gather_in_order(local: torch.Tensor, accelerator: Accelerator) -> torch.Tensor:
    """Concatenate each process's contiguous share back into the original order."""
    if accelerator.num_processes == 1:
        return local
    from accelerate.utils import gather_object

    return torch.cat([t for t in gather_object([local]) if t.numel()])
