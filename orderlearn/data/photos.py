"""A user's image files and folders: which files they stand for, and which of them decode.

``orderlearn score --images``, ``orderlearn predict`` and :meth:`orderlearn.api.Model.predict`
take files and folders alike; this module is the one place that turns them into samples to
score, listing each file that cannot be scored with its reason instead of stopping at it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from orderlearn.data.images import load_image
from orderlearn.errors import DataError
from orderlearn.types import ScoredImage
from orderlearn.user_files import why_not_a_file

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class ImageInputs:
    """User images found under the given files and folders, and those that cannot be scored."""

    samples: list[ScoredImage] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason)


def image_files(given: Path) -> list[Path]:
    """The image files a named file or folder stands for (a folder: every image under it, sorted)."""
    if given.is_dir():
        return sorted(p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return [given]


def collect_images(inputs: Sequence[Path]) -> ImageInputs:
    """Every image file named or under a named folder (sorted), each decoded once to check it."""
    found = ImageInputs()
    for given in inputs:
        given = Path(given)
        if given.is_dir():
            files = image_files(given)
            if not files:
                found.failed.append((given, f"a folder with no images ({', '.join(sorted(IMAGE_SUFFIXES))})"))
        elif given.is_file():
            files = [given]
        else:
            why = why_not_a_file(given) or "not a regular file"
            found.failed.append((given, "no such file or folder" if why == "does not exist" else why.removeprefix("is ")))
            continue
        for path in files:
            try:
                load_image(path)
            except DataError as exc:
                found.failed.append((path, str(exc)))
                continue
            found.samples.append(ScoredImage(path=path, score=float("nan")))
    return found
