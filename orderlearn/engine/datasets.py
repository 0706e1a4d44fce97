"""The torch datasets the training loop and the feature extractor read: images, pairs of
images, and the same over cached features or embeddings (the frozen-backbone modes).

Items are dicts: ``image`` (or ``image_a`` / ``image_b`` / ``label`` for pairs), ``index`` and
the per-image targets of :func:`~orderlearn.data.images.sample_targets`; decoding an image is
:func:`~orderlearn.data.images.load_image`'s job.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from orderlearn.data.images import load_image, sample_targets
from orderlearn.data.pairs import PairSet
from orderlearn.types import Pair, ScoredImage


class ImageDataset(Dataset):
    """Samples as ``{"image", "index", **targets}`` dicts, transformed by ``transform``."""

    def __init__(self, samples: Sequence[ScoredImage], transform: Callable[[Image.Image], torch.Tensor]):
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index]
        item = {"image": self.transform(load_image(sample.path)), "index": torch.tensor(index)}
        item.update(sample_targets(sample))
        return item


class PairDataset(Dataset):
    """Pairs of samples as ``{"image_a", "image_b", "label"}``; images decoded per access.

    Used when the backbone trains; with a frozen backbone use :class:`EmbeddingPairDataset`.
    """

    def __init__(
        self,
        samples: Sequence[ScoredImage],
        pairs: Sequence[Pair],
        transform: Callable[[Image.Image], torch.Tensor],
    ):
        self.samples = list(samples)
        self.pairs = list(pairs)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pair = self.pairs[index]
        return {
            "image_a": self.transform(load_image(self.samples[pair.a].path)),
            "image_b": self.transform(load_image(self.samples[pair.b].path)),
            "label": torch.tensor(int(pair.label)),
        }


class EmbeddingPairDataset(Dataset):
    """Pairs over precomputed embeddings: the frozen-backbone mode, where only the head trains."""

    def __init__(self, embeddings: torch.Tensor, pairs: Sequence[Pair]):
        self.embeddings = embeddings
        index = torch.tensor([(p.a, p.b, int(p.label)) for p in pairs], dtype=torch.long).reshape(-1, 3)
        self.a, self.b, self.labels = index.unbind(1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "image_a": self.embeddings[self.a[index]],
            "image_b": self.embeddings[self.b[index]],
            "label": self.labels[index],
        }


class FeatureImageDataset(Dataset):
    """Samples as precomputed features plus their targets (a head trained on cached features).

    ``features`` is ``[N, ...]`` (one view) or ``[N, V, ...]`` with ``views > 1``: then the
    dataset has N·V items, view-major, and each item's ``source`` names its face (so two views
    of one face are never paired in a batch); ``index`` is the item's position.
    """

    def __init__(self, features: torch.Tensor, samples: list, views: int = 1) -> None:
        if views > 1 and (features.dim() < 2 or features.shape[1] != views):
            raise ValueError(f"features of shape {tuple(features.shape)} do not hold {views} views on axis 1")
        self.features, self.views = features, views
        self.targets = [sample_targets(s) for s in samples]

    def __len__(self) -> int:
        return len(self.targets) * self.views

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        view, face = divmod(i, len(self.targets))
        x = self.features[face, view] if self.views > 1 else self.features[face]
        return {"image": x, "source": torch.tensor(face), "index": torch.tensor(i), **self.targets[face]}


class ViewPairDataset(Dataset):
    """Fixed pairs over cached features of several views: each pair shows one view of each face,
    drawn once per pair with the pair seed (so every face is seen in each of its views)."""

    def __init__(self, features: torch.Tensor, pairs: PairSet, seed: int) -> None:
        self.features = features
        rng = np.random.default_rng(seed)
        views = features.shape[1]
        self.a, self.b, self.labels = (torch.as_tensor(x, dtype=torch.long) for x in (pairs.a, pairs.b, pairs.labels))
        self.view_a = torch.as_tensor(rng.integers(0, views, len(pairs)), dtype=torch.long)
        self.view_b = torch.as_tensor(rng.integers(0, views, len(pairs)), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image_a": self.features[self.a[i], self.view_a[i]], "image_b": self.features[self.b[i], self.view_b[i]],
                "label": self.labels[i]}


class SourcedImageDataset(ImageDataset):
    """Images with their training augmentation; each item's face is its own ``source``."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = super().__getitem__(index)
        item["source"] = item["index"]
        return item
