"""Generic manifests (CSV or JSONL) and a bridge to HF ``datasets``.

A manifest needs two columns, ``path`` and ``score``; any of ``std``, ``gender``,
``ethnicity``, ``age``, ``group``, ``rating_1``..``rating_5`` (or ``rating_counts`` as a JSON
list), ``split`` (train/val/test) and ``fold`` (1..K) are understood, and every other column is
kept in ``ScoredImage.extras``. Relative paths are relative to the manifest's folder. So an
age set, HotOrNot or LSAFBD plugs in by writing a CSV, without code.

Every row is checked where it is read, so an error names the file and line: the score is a
finite number (inside the task's range when one is given), ``split`` is train/val/test,
``fold`` a positive integer, and no image is listed twice (by resolved path, whatever its
split: an image in two splits would leak the test set into training or the bank). The same
score and listed-once rules serve the SCUT-FBP5500 reader.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

from orderlearn.errors import DataError
from orderlearn.data.images import optional_float
from orderlearn.types import ScoredImage

KNOWN = {"path", "score", "std", "gender", "ethnicity", "age", "group", "rating_counts", "split", "fold"}
RATING_COLUMNS = [f"rating_{i}" for i in range(1, 6)]
SPLIT_VALUES = ("train", "val", "test")

ScoreRange = tuple[float, float]  # (data.score_low, data.score_high)
Located = tuple[str, ScoredImage]  # "file:line" and the sample read there


@dataclass
class ManifestSplits:
    """The manifest's rows by role; ``val`` is empty when the manifest marks no validation rows."""

    train: list[ScoredImage]
    val: list[ScoredImage]
    test: list[ScoredImage]


def parse_score(value: Any, where: str, score_range: Optional[ScoreRange] = None) -> float:
    """A score cell as a float: a finite number, inside ``score_range`` when one is given.

    NaN or inf would turn every metric into nan (test rows) or break pair labels (train
    rows); a score outside the task's range would become a reference no test image can match.
    """
    if isinstance(value, bool):
        raise DataError(f"{where}: score {value!r} is not a number")
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: score {value!r} is not a number") from None
    if not math.isfinite(score):
        raise DataError(f"{where}: score {value!r} is not a finite number")
    if score_range is not None and not score_range[0] <= score <= score_range[1]:
        low, high = score_range
        raise DataError(f"{where}: score {score} is outside data.score_low..data.score_high = {low}..{high}")
    return score


def check_listed_once(rows: Iterable[Located]) -> None:
    """Every image appears once over all rows (train, validation and test alike), by resolved path."""
    first: dict[Path, str] = {}
    for where, sample in rows:
        key = sample.path.resolve()
        if key in first:
            raise DataError(f"{where}: image {sample.path} is listed twice (first at {first[key]})")
        first[key] = where


def read_manifest(path: Union[str, Path], score_range: Optional[ScoreRange] = None) -> list[ScoredImage]:
    """Read every row of a CSV or JSONL manifest; each listed image must exist, once."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist")
    located = [(where, _sample(path, where, row, score_range)) for where, row in _rows(path)]
    if not located:
        raise DataError(f"manifest {path} has no rows")
    check_listed_once(located)
    return [sample for _, sample in located]


def split_manifest(samples: Sequence[ScoredImage], test_fold: Optional[int] = None) -> ManifestSplits:
    """Train / validation / test by the ``fold`` column (test = ``test_fold``, no validation rows)
    or by the ``split`` column (its ``val`` rows are the validation split)."""
    if test_fold is not None:
        if any("fold" not in s.extras for s in samples):
            raise DataError("test_fold given but the manifest has no 'fold' column on every row")
        parts = ManifestSplits([s for s in samples if s.extras["fold"] != test_fold], [],
                               [s for s in samples if s.extras["fold"] == test_fold])
    else:
        if any("split" not in s.extras for s in samples):
            raise DataError("the manifest needs a 'split' column (train/val/test) or a 'fold' column and test_fold")
        parts = ManifestSplits(*([s for s in samples if s.extras["split"] == value] for value in SPLIT_VALUES))
    for name, part in (("train", parts.train), ("test", parts.test)):
        if not part:
            raise DataError(f"the manifest's {name} split is empty (test_fold={test_fold})")
    return parts


def _rows(path: Path) -> Iterable[tuple[str, dict[str, Any]]]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for line_no, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    yield f"{path}:{line_no}", json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{line_no}: not valid JSON ({exc})") from None
        return
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "score"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing column(s) {sorted(missing)}; has {reader.fieldnames}")
        for line_no, row in enumerate(reader, start=2):
            yield f"{path}:{line_no}", row


def _sample(manifest: Path, where: str, row: dict[str, Any], score_range: Optional[ScoreRange] = None) -> ScoredImage:
    if "path" not in row or "score" not in row:
        raise DataError(f"{where}: needs 'path' and 'score', has {sorted(row)}")
    image = Path(str(row["path"]))
    image = image if image.is_absolute() else manifest.parent / image
    if not image.is_file():
        raise DataError(f"{where}: image {image} is listed but does not exist")
    score = parse_score(row["score"], where, score_range)
    roles = _roles(where, row)
    try:
        counts = _rating_counts(row)
        sample = ScoredImage(
            path=image,
            score=score,
            rating_counts=counts,
            std=optional_float(row.get("std")),
            group=row.get("group") or None,
            gender=_gender(row.get("gender")),
            ethnicity=row.get("ethnicity") or None,
            age=optional_float(row.get("age")),
            extras={k: v for k, v in row.items() if k not in KNOWN and k not in RATING_COLUMNS} | roles,
        )
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: {exc}") from None
    return sample


def _roles(where: str, row: dict[str, Any]) -> dict[str, Any]:
    """The row's ``split`` (train/val/test) and ``fold`` (an int >= 1), when it has them.

    A present but bad value is an error: a misspelt split would drop the row from every
    part, and a bad fold would move it between train and test.
    """
    roles: dict[str, Any] = {}
    if row.get("split") is not None:
        split = str(row["split"]).strip()
        if split not in SPLIT_VALUES:
            raise DataError(f"{where}: split {row['split']!r} is not one of {', '.join(SPLIT_VALUES)}")
        roles["split"] = split
    if row.get("fold") is not None:
        fold = row["fold"]
        text = str(fold).strip()
        if isinstance(fold, bool) or not text.isdigit() or int(text) < 1:
            raise DataError(f"{where}: fold {fold!r} is not a positive integer")
        roles["fold"] = int(text)
    return roles


def _gender(value: Any) -> Optional[str]:
    if value in (None, ""):
        return None
    text = str(value).strip().lower()
    aliases = {"f": "female", "female": "female", "woman": "female", "0": "female",
               "m": "male", "male": "male", "man": "male", "1": "male"}
    if text not in aliases:
        raise ValueError(f"gender {value!r} is not one of female/male (f/m)")
    return aliases[text]


def _rating_counts(row: dict[str, Any]) -> Optional[tuple[int, ...]]:
    if row.get("rating_counts") not in (None, ""):
        raw = row["rating_counts"]
        counts = tuple(int(c) for c in (json.loads(raw) if isinstance(raw, str) else raw))
    elif all(row.get(c) not in (None, "") for c in RATING_COLUMNS):
        counts = tuple(int(row[c]) for c in RATING_COLUMNS)
    else:
        return None
    if min(counts) < 0 or sum(counts) <= 0:
        raise ValueError(f"rating counts {counts} do not sum to a positive count")
    return counts


def from_hf_dataset(
    dataset: Any,
    cache_dir: Union[str, Path],
    image_column: str = "image",
    score_column: str = "score",
) -> list[ScoredImage]:
    """Samples from an HF ``datasets.Dataset`` whose image column holds PIL images or paths.

    PIL images are written once to ``cache_dir`` (PNG, named by content hash) so the rest of
    the pipeline, which decodes files, treats them like any other dataset.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    columns = set(dataset.column_names)
    for needed in (image_column, score_column):
        if needed not in columns:
            raise DataError(f"HF dataset has no column {needed!r}; columns: {sorted(columns)}")
    samples = []
    for index, row in enumerate(dataset):
        image = row[image_column]
        if isinstance(image, (str, Path)):
            path = Path(image)
        elif isinstance(image, dict) and image.get("path"):
            path = Path(image["path"])
        else:
            digest = hashlib.sha1(image.tobytes()).hexdigest()[:16]
            path = cache / f"{index:06d}-{digest}.png"
            if not path.exists():
                image.save(path)
        extras = {k: v for k, v in row.items() if k not in (image_column, score_column)}
        samples.append(
            _sample(cache / "hf.manifest", f"HF dataset row {index}", {"path": str(path), "score": row[score_column], **extras})
        )
    return samples


def to_hf_dataset(samples: list[ScoredImage]):
    """An HF ``datasets.Dataset`` (``image`` as an Image feature, ``score``, ``std``, ...)."""
    import datasets

    return datasets.Dataset.from_dict(
        {
            "image": [str(s.path) for s in samples],
            "score": [s.score for s in samples],
            "std": [s.std for s in samples],
            "gender": [s.gender for s in samples],
            "age": [s.age for s in samples],
        }
    ).cast_column("image", datasets.Image())
