"""Image decoding and the per-image targets (the datasets that feed models are
:mod:`orderlearn.engine.datasets`).

Decoding errors are re-raised as :class:`DataError` naming the file, so a corrupt JPEG
deep inside a DataLoader worker still says which file to fix.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
from PIL import Image, UnidentifiedImageError

from orderlearn.errors import DataError
from orderlearn.types import ScoredImage

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


def optional_float(value: Optional[str]) -> Optional[float]:
    """Parse an optional numeric cell ('' / None / 'nan' -> None)."""
    if value is None or str(value).strip() in ("", "nan", "NaN", "None"):
        return None
    return float(value)
