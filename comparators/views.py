"""Deterministic views of an image batch, and test-time averaging over them.

A **view** is a fixed, deterministic transform of a preprocessed image batch: ``identity`` or
``hflip`` (mirror). Being deterministic is what lets a view's features be cached once per
image like the plain image's (the cache key names the view); random augmentations (crops,
colour jitter, rotations) cannot be cached that way, except as a fixed set of drawn copies.

:class:`ViewAveraged` is a comparator view that embeds an image as the mean of its views'
embeddings: for a siamese comparator the mean pooled embedding of the face and its mirror,
for a regressor's degenerate comparator the mean of the two predicted scores (so the direct
score and the bank route both get test-time flip averaging). Its features are the inner
view's per-view features stacked on axis 1 (``[N, V, ...]``); the feature extractor fills them
from the same per-view cache entries as training does.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn

from .comparator import Comparator

VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda images: images,
    "hflip": lambda images: images.flip(-1),  # [B, C, H, W]: mirror the width axis
}


def check_views(views: Sequence[str], key: str = "views") -> tuple[str, ...]:
    """A non-empty list of distinct known view names, as a tuple."""
    views = tuple(views)
    unknown = sorted(set(views) - set(VIEWS))
    if unknown or not views or len(set(views)) != len(views):
        raise ValueError(f"{key}: expected distinct views from {list(VIEWS)}, got {list(views)}")
    return views


def apply_view(name: str, images: torch.Tensor) -> torch.Tensor:
    return VIEWS[name](images)


class ViewAveraged(Comparator):
    """``inner`` embedding each image as the mean of its ``views``' embeddings (see the module
    docstring). Everything else (compare, link, view state, references) is the inner view's."""

    splits = True

    def __init__(self, inner: Comparator, views: Sequence[str] = ("identity", "hflip")) -> None:
        super().__init__()
        self.inner = inner
        self.views = check_views(views)
        self.config = inner.config  # same features as the inner view: the same cache entries
        self.num_classes, self.pair_batch_size = inner.num_classes, inner.pair_batch_size

    def feature_views(self) -> tuple[str, ...]:
        return self.views

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner.forward_features(images)

    def feature_modules(self) -> list[nn.Module]:
        return self.inner.feature_modules()

    def feature_key_config(self) -> Any:
        return self.inner.feature_key_config()

    def embed_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """``features [n, V, ...]`` -> the mean over views of the inner view's embeddings."""
        if features.shape[1] != len(self.views):
            raise ValueError(f"expected features of {len(self.views)} views on axis 1, got shape {tuple(features.shape)}")
        return torch.stack([self.inner.embed_from_features(features[:, v]) for v in range(len(self.views))]).mean(0)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed_from_features(torch.stack([self.forward_features(apply_view(v, images)) for v in self.views], 1))

    def compare(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
        return self.inner.compare(emb_a, emb_b)

    def compare_grid(self, emb_test: torch.Tensor, emb_refs: torch.Tensor) -> torch.Tensor:
        return self.inner.compare_grid(emb_test, emb_refs)

    def embed_references(self, features: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self.inner.embed_references(features, scores)

    def natural_link(self) -> Optional[Any]:
        return self.inner.natural_link()

    def view_state(self) -> dict[str, Any]:
        return self.inner.view_state()

    def load_view_state(self, state: Mapping[str, Any]) -> None:
        self.inner.load_view_state(state)

    def fit_view(self, features: torch.Tensor, scores: torch.Tensor, ref_features: torch.Tensor,
                 ref_scores: torch.Tensor, margin: float) -> None:
        self.inner.fit_view(features, scores, ref_features, ref_scores, margin)

    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        return self.inner.preprocess()


def with_test_views(view: Comparator, test_flip: bool) -> Comparator:
    """``view`` flip-averaged when ``test_flip`` is set, else ``view`` itself."""
    return ViewAveraged(view, ("identity", "hflip")) if test_flip else view
