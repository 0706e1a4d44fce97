"""Every test image against every reference, from embeddings: probabilities ``[N, R, K]``.

Scoring N images against R references with a splitting comparator costs N + R feature passes
(see :mod:`orderlearn.engine.features`) and N·R head passes, through its ``compare_grid``
(which a comparator that can share work across one image's references overrides); images are
spread over accelerate's processes.

Each image is computed on its own: its embedding, and its row of comparisons with the bank (one
``compare_grid`` call per image, in either order). Kernels are chosen by the shape of a call, so
a face embedded or compared together with other faces gets numbers that depend, in the sixth
digit, on those faces, enough to flip a hard label; per image, a face scores the same alone,
beside others, and in every export.

:class:`ComparatorCalls` answers only chosen (image, reference) pairs, for active reference
selection (``scorer.budget``, ``orderlearn active``), counting the comparator calls.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn

import scorers
from accelerate import Accelerator
from tqdm.auto import tqdm

from comparators.base import Comparator

from orderlearn.engine.parallel import gather_in_order
from orderlearn.types import ScoredImage


@torch.no_grad()
def view_embeddings(view: Comparator, features: torch.Tensor, accelerator: Accelerator, batch_size: int) -> torch.Tensor:
    """What the view's ``compare`` reads, from cached ``forward_features`` output (CPU, float32),
    each image on its own (``batch_size`` images are moved to the device at a time)."""
    view.eval()
    out = []
    for start in range(0, len(features), batch_size):
        chunk = features[start:start + batch_size].to(accelerator.device)
        with accelerator.autocast():
            out += [view.embed_from_features(chunk[i:i + 1]).float().cpu() for i in range(len(chunk))]
    return torch.cat(out) if out else features


class EmbeddingMemo:
    """Per-face embeddings of a comparator view under one checkpoint, kept for a run's later phases.

    A run embeds the same faces under the same weights more than once: the bank phase fits the
    views and compares on the validation faces, and a regressor's direct route reads its view's
    embedding of every test and validation face as its score (a comparator's direct head reads the
    embeddings the bank route compares). Each face is embedded on its own (see the module), so
    these passes cost as much as scoring; computed once here, every phase reads the same numbers.

    Keyed by the checkpoint file and the faces' paths: a view's embeddings depend on the
    checkpoint's weights alone (:meth:`~comparators.base.Comparator.view_state` changes only
    ``compare``). Sets larger than ``max_bytes`` (a LLaVA's image tokens) are not kept, so the
    memo never holds what the run would otherwise have freed."""

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._kept: dict[tuple[str, tuple[str, ...]], torch.Tensor] = {}

    def get(self, checkpoint: Path, samples: Sequence[ScoredImage], compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The embeddings of ``samples`` under ``checkpoint``: kept ones, or ``compute()``'s."""
        key = (str(Path(checkpoint).resolve()), tuple(str(s.path) for s in samples))
        kept = self._kept.get(key)
        if kept is not None:
            return kept
        embeddings = compute()
        if embeddings.numel() * embeddings.element_size() <= self.max_bytes:
            self._kept[key] = embeddings
        return embeddings


@torch.no_grad()
def compare_all(view: Comparator, test: torch.Tensor, refs: torch.Tensor, accelerator: Accelerator,
                desc: str = "compare", reverse: bool = False) -> torch.Tensor:
    """Probabilities ``[N, R, K]`` of comparing every test embedding with every reference: the
    image first, or with ``reverse`` the reference first (not label-swapped). One call per
    image, so an image's row does not depend on the other images."""
    device = accelerator.device
    view.eval()
    refs = refs.to(device)
    with accelerator.split_between_processes(list(range(len(test)))) as mine:
        out = []
        for i in tqdm(mine, desc=desc, disable=not accelerator.is_local_main_process, leave=False):
            image = test[i:i + 1].to(device)
            with accelerator.autocast():
                logits = (view.compare_grid(refs, image).transpose(0, 1) if reverse else view.compare_grid(image, refs)).float()
            out.append(logits.softmax(-1).cpu())
        local = torch.cat(out) if out else torch.empty(0)
    return gather_in_order(local, accelerator)


@dataclass
class Member:
    """One checkpoint of the run as a comparator view, with one image set's embeddings and the
    bank's under it. ``activate`` puts this checkpoint's weights into the model the views share
    (None when the run has one checkpoint, whose weights stay loaded): a view's ``compare`` reads
    the model's weights when it is called, not when the view was made."""

    view: nn.Module
    images: torch.Tensor
    bank: torch.Tensor
    activate: Optional[Callable[[], None]] = None

    def ready(self) -> nn.Module:
        """The view, with this checkpoint's weights in the model."""
        if self.activate is not None:
            self.activate()
        return self.view


def compare_members(members: Sequence[Member], accelerator: Accelerator, name: str,
                    reverse: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Every image × every reference, averaged over the checkpoints: forward (image, ref)
    ``[N, R, K]`` and, when ``reverse``, (ref, image) in the forward index order (not label-swapped)."""
    forward, backward = [], []
    for member in members:
        view = member.ready()
        forward.append(compare_all(view, member.images, member.bank, accelerator, desc=f"{name} x bank"))
        if reverse:
            backward.append(compare_all(view, member.images, member.bank, accelerator, desc=f"bank x {name}", reverse=True))
    return torch.stack(forward).mean(0), torch.stack(backward).mean(0) if backward else None


class ComparatorCalls:
    """``compare_fn`` for :class:`scorers.ActiveScorer` backed by the run's comparator itself.

    Answers (image i, reference j) pairs with each checkpoint view's ``compare`` (under that
    checkpoint's weights) on the cached embeddings, in batches of the view's ``pair_batch_size``,
    averaging the checkpoints as the run does; with ``both_orders`` it also asks (reference,
    image) and merges the two with :func:`scorers.combine_orders`, which costs two calls. ``calls`` [N] counts comparator calls
    per image (per checkpoint); ``seconds`` the time spent in them.
    """

    def __init__(self, members: Sequence[Member], accelerator: Accelerator, both_orders: bool = False) -> None:
        self.members, self.accelerator, self.both_orders = list(members), accelerator, both_orders
        self.calls = torch.zeros(len(self.members[0].images), dtype=torch.long)
        self.seconds = 0.0

    @torch.no_grad()
    def _probs(self, view: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        device = self.accelerator.device
        with self.accelerator.autocast():
            return view.compare(a.to(device), b.to(device)).float().softmax(-1).cpu()

    def __call__(self, test_idx: torch.Tensor, ref_idx: torch.Tensor) -> torch.Tensor:
        started = time.perf_counter()
        test_idx, ref_idx = test_idx.cpu(), ref_idx.cpu()
        if test_idx.shape != ref_idx.shape or test_idx.dim() != 1:
            raise ValueError(f"test_idx {tuple(test_idx.shape)} and ref_idx {tuple(ref_idx.shape)} must be equal 1-D shapes")
        # each image's pairs in calls of their own (see the module): what an image is asked depends
        # only on its own answers so far, so its answers do not depend on the other images
        by_image = torch.argsort(test_idx, stable=True)
        rows = by_image.split(torch.unique_consecutive(test_idx[by_image], return_counts=True)[1].tolist())
        forward, reverse = [], []
        for member in self.members:
            view = member.ready()
            emb, batch = member.images, view.pair_batch_size
            chunks = [(pos, emb[test_idx[pos]], member.bank[ref_idx[pos]]) for own in rows for pos in own.split(batch)]
            order = torch.argsort(torch.cat([pos for pos, _, _ in chunks]))
            forward.append(torch.cat([self._probs(view, a, b) for _, a, b in chunks])[order])
            if self.both_orders:
                reverse.append(torch.cat([self._probs(view, b, a) for _, a, b in chunks])[order])
        p = torch.stack(forward).mean(0)
        if self.both_orders:
            p = scorers.combine_orders(p, torch.stack(reverse).mean(0))
        self.calls += torch.bincount(test_idx, minlength=len(self.calls)) * (2 if self.both_orders else 1)
        self.seconds += time.perf_counter() - started
        return p
