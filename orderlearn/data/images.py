"""Image decoding and the per-image targets (the datasets that feed models are
:mod:`orderlearn.engine.datasets`).

:func:`load_image` is the one decoder: training images, a user's photos and the alignment path
all go through it, so a photo reads the same wherever it enters. Decoding errors are re-raised
as :class:`DataError` naming the file, so a corrupt JPEG deep inside a DataLoader worker still
says which file to fix.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from orderlearn.errors import DataError
from orderlearn.types import ScoredImage

GENDER_INDEX = {"female": 0, "male": 1}


def within_side(path: Path, max_side: int, folder: Path) -> Path:
    """``path`` itself when its longer side is at most ``max_side`` pixels; else a lossless PNG
    in ``folder`` of the photo, upright, shrunk to that side (a JPEG decoded at a reduced scale
    first, so an 8000 px photo costs a fraction of its full decode). Used by the web page, whose
    one queue a single huge upload would otherwise hold for the length of its alignment; a
    photo that fits is scored from its own file, so its score is the one ``predict`` gives."""
    path = Path(path)
    with _decoding(path):
        with Image.open(path) as image:
            if max(image.size) <= max_side:
                return path
            image.draft("RGB", (max_side, max_side))  # JPEG only: decode at 1/2, 1/4 or 1/8 scale, still >= max_side
            picture = to_rgb(ImageOps.exif_transpose(image))
        picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = Path(folder) / f"{path.stem}.png"
    picture.save(out, format="PNG")
    return out


def load_image(path: Path) -> Image.Image:
    """Decode ``path`` fully into an upright RGB PIL image, or raise DataError naming it.

    Upright: as its EXIF orientation says (phones store photos sideways with a tag). Deep
    greyscale (16-bit PNG, PIL's modes ``I;16*`` and ``I``) is scaled to 8 bits (÷257), where
    PIL's own ``convert("RGB")`` would clip every value above 255 to white.

    A picture over PIL's decompression-bomb limit (twice ``Image.MAX_IMAGE_PIXELS``, about 179
    million pixels; or over the limit itself where its warning is turned into an error) is one
    unreadable file like a corrupt one, so a caller that skips unreadable photos skips it too."""
    with _decoding(path):
        with Image.open(path) as image:
            return to_rgb(ImageOps.exif_transpose(image))


@contextmanager
def _decoding(path: Path) -> Iterator[None]:
    """Decoding errors of ``path`` as one DataError naming it (the rules of :func:`load_image`)."""
    try:
        yield
    except FileNotFoundError as exc:
        raise DataError(f"image {path} does not exist") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"image {path} is too large to decode safely ({exc}); downscale it") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"image {path} cannot be decoded ({exc}); re-export or remove it") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB; 16-bit greyscale is scaled, not clipped."""
    if image.mode.startswith("I;16") or image.mode == "I":
        deep = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.round(deep / 257.0), 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


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
