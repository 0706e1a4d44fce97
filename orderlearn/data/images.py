"""Image decoding and the torch datasets that feed models (single images and pairs).

Decoding errors are re-raised as :class:`DataError` naming the file, so a corrupt JPEG
deep inside a DataLoader worker still says which file to fix.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from orderlearn.errors import DataError
from orderlearn.types import Pair, ScoredImage

GENDER_INDEX = {"female": 0, "male": 1}


def load_image(path: Path) -> Image.Image:
    """Decode ``path`` fully into an RGB PIL image, or raise DataError naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError as exc:
        raise DataError(f"image {path} does not exist") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"image {path} cannot be decoded ({exc}); re-export or remove it") from exc


def sample_targets(sample: ScoredImage) -> dict[str, torch.Tensor]:
    """The per-image targets every regressor may use (see ``comparators.base.Batch``)."""
    counts = sample.rating_counts or (0, 0, 0, 0, 0)
    return {
        "score": torch.tensor(sample.score, dtype=torch.float32),
        "rating_counts": torch.tensor(counts, dtype=torch.float32),
        "std": torch.tensor(sample.std if sample.std is not None else math.nan, dtype=torch.float32),
        "gender": torch.tensor(GENDER_INDEX.get(sample.gender or "", -1), dtype=torch.long),
        "age": torch.tensor(sample.age if sample.age is not None else math.nan, dtype=torch.float32),
        "database": torch.tensor(sample.database, dtype=torch.long),
    }


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


def optional_float(value: Optional[str]) -> Optional[float]:
    """Parse an optional numeric cell ('' / None / 'nan' -> None)."""
    if value is None or str(value).strip() in ("", "nan", "NaN", "None"):
        return None
    return float(value)
