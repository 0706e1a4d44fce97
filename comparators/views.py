"""Deterministic views of an image batch, and test-time averaging over them.

A **view** is a fixed, deterministic transform of a preprocessed (normalised) image batch.
Being deterministic is what lets a view's features be cached once per image like the plain
image's (the cache key names the view); random augmentations cannot be cached that way, so a
cached trunk trains on a fixed set of views instead, one drawn per face per epoch
(``train.views_per_epoch: one``): the paper's random flips and rotations as a fixed menu.

Names: ``identity``, ``hflip`` (mirror), ``rotate<degrees>`` (``rotate10``, ``rotate-10``:
counter-clockwise for positive angles, corners filled with 0, i.e. the normalised mean
colour), ``zoom<percent>`` (``zoom115``: the central 1/1.15 of the image resized back to full
size), ``sharpen`` (PIL's sharpness enhancement at factor 2; it is linear, so applying it after
the per-channel normalisation equals applying it before), and compositions joined by ``+``,
applied left to right (``hflip+rotate10`` mirrors, then rotates).

:class:`ViewAveraged` is a comparator view that embeds an image as the mean of its views'
embeddings: for a siamese comparator the mean pooled embedding of the face and its mirror,
for a regressor's degenerate comparator the mean of the two predicted scores (so the direct
score and the bank route both get test-time flip averaging). Its features are the inner
view's per-view features stacked on axis 1 (``[N, V, ...]``); the feature extractor fills them
from the same per-view cache entries as training does.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .comparator import Comparator

View = Callable[[torch.Tensor], torch.Tensor]  # [B, C, H, W] -> [B, C, H, W]

# PIL's ImageFilter.SMOOTH kernel, which ImageEnhance.Sharpness blends away from
_SMOOTH = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0


def _rotate(degrees: float) -> View:
    return lambda images: TF.rotate(images, degrees, interpolation=InterpolationMode.BILINEAR, fill=0.0)


def _zoom(percent: int) -> View:
    def zoom(images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        ch, cw = round(h * 100 / percent), round(w * 100 / percent)
        top, left = (h - ch) // 2, (w - cw) // 2
        crop = images[..., top:top + ch, left:left + cw]
        return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
    return zoom


def _sharpen(images: torch.Tensor, factor: float = 2.0) -> torch.Tensor:
    """PIL ``ImageEnhance.Sharpness(factor)``: ``smooth + factor * (image - smooth)``, border
    pixels kept as they are (as PIL does), without PIL's clamp to the 8-bit range."""
    c = images.shape[1]
    kernel = _SMOOTH.to(images)[None, None].expand(c, 1, 3, 3)
    smooth = F.conv2d(images, kernel, groups=c)
    inner = images[..., 1:-1, 1:-1]
    out = images.clone()
    out[..., 1:-1, 1:-1] = smooth + factor * (inner - smooth)
    return out


BASE_VIEWS: dict[str, View] = {
    "identity": lambda images: images,
    "hflip": lambda images: images.flip(-1),  # [B, C, H, W]: mirror the width axis
    "sharpen": _sharpen,
}
_ROTATE, _ZOOM = re.compile(r"rotate(-?[1-9][0-9]?)"), re.compile(r"zoom(1[0-9]{2})")


def _base_view(token: str) -> Optional[View]:
    if token in BASE_VIEWS:
        return BASE_VIEWS[token]
    if (m := _ROTATE.fullmatch(token)) and abs(int(m[1])) < 90:
        return _rotate(float(m[1]))
    if (m := _ZOOM.fullmatch(token)) and int(m[1]) > 100:
        return _zoom(int(m[1]))
    return None


def parse_view(name: str) -> Optional[View]:
    """The transform a view name stands for (see the module docstring), or None if it names none."""
    steps = [_base_view(token) for token in name.split("+")]
    if not steps or any(step is None for step in steps):
        return None

    def view(images: torch.Tensor) -> torch.Tensor:
        for step in steps:
            images = step(images)
        return images
    return view


VIEW_NAMES_HELP = "identity, hflip, sharpen, rotate<degrees> (-89..89), zoom<percent> (101..199), joined by +"


def check_views(views: Sequence[str], key: str = "views") -> tuple[str, ...]:
    """A non-empty list of distinct known view names, as a tuple."""
    views = tuple(views)
    unknown = [v for v in views if not isinstance(v, str) or parse_view(v) is None]
    if unknown or not views or len(set(views)) != len(views):
        raise ValueError(f"{key}: expected distinct views ({VIEW_NAMES_HELP}), got {list(views)}")
    return views


def view_transform(name: str) -> View:
    """The transform ``name`` stands for; parse it once, then apply it batch after batch."""
    view = parse_view(name)
    if view is None:
        raise ValueError(f"unknown view {name!r} ({VIEW_NAMES_HELP})")
    return view


def apply_view(name: str, images: torch.Tensor) -> torch.Tensor:
    return view_transform(name)(images)


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
