"""The two model contracts of orderlearn: :class:`Comparator` and :class:`Regressor`.

A comparator maps two image batches to logits over :class:`~orderlearn.types.PairLabel`
(K = 3: FIRST, SECOND, SIMILAR; K = 2 for two-class comparators: FIRST, SECOND).
Where it can, it splits into ``embed`` (once per image) and ``compare`` (per pair), so a
test set of N images against a bank of R references costs N + R backbone passes.

A regressor maps one image batch to a :class:`RegressorOutput` with a ``score`` per
image and owns its loss, so one training loop serves every method of the literature.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

Batch = dict[str, Any]
"""A collated batch. Comparator batches: ``image_a``, ``image_b`` (float [B,3,H,W]) and
``label`` (long [B]). Regressor batches: ``image`` (float [B,3,H,W]), ``score`` (float [B]),
``rating_counts`` (float [B,5], zeros when unknown), ``std`` (float [B]), ``gender``
(long [B], 0 female / 1 male / -1 unknown), ``age`` (float [B], nan when unknown)."""


class Comparator(nn.Module):
    """Base class of every comparator: ``forward(a, b) -> logits[B, K]``.

    Subclasses that can split override :meth:`embed` and :meth:`compare` and set
    ``splits = True``; :meth:`forward` then composes them. Others override ``forward``.
    """

    num_classes: int = 3
    splits: bool = False

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not split into embed/compare")

    def compare(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not split into embed/compare")

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not self.splits:
            raise NotImplementedError(f"{type(self).__name__} must implement forward(a, b)")
        both = self.embed(torch.cat([a, b], dim=0))
        emb_a, emb_b = both.split([a.shape[0], b.shape[0]], dim=0)
        return self.compare(emb_a, emb_b)

    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        """PIL image -> tensor transform this comparator expects (evaluation mode)."""
        raise NotImplementedError

    def train_preprocess(self) -> Callable[[Any], torch.Tensor]:
        """PIL image -> tensor transform with training augmentation (defaults to eval)."""
        return self.preprocess()


@dataclass
class RegressorOutput:
    """What a regressor's forward returns: the score per image plus method-specific heads."""

    score: torch.Tensor  # [B]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


class Regressor(nn.Module):
    """Base class of direct methods: ``forward(images) -> RegressorOutput`` and ``loss``."""

    def forward(self, images: torch.Tensor) -> RegressorOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, output: RegressorOutput, batch: Batch) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        raise NotImplementedError

    def train_preprocess(self) -> Callable[[Any], torch.Tensor]:
        return self.preprocess()

    def parameter_groups(self) -> Optional[list[dict[str, Any]]]:
        """Optimizer parameter groups when a method needs them (e.g. per-stage); None = all."""
        return None
