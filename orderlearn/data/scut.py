"""Reader of SCUT-FBP5500 in its official layout.

::

    root/Images/AF1.jpg ...                       5500 faces (AF, AM, CF, CM groups)
    root/train_test_files/All_labels.txt          "name score" per line
    root/train_test_files/split_of_60%training and 40%testing/{train,test}.txt
    root/train_test_files/5_folders_cross_validations_files/cross_validation_k/{train_k,test_k}.txt
    root/ratings/rating_distribution.csv          filename,1,2,3,4,5 (counts per rating)
    root/ratings/All_Ratings.xlsx                 Rater, Filename, Rating (one row per rating)

Scores come from the split files (the benchmark's ground truth); rating histograms come
from whichever ratings file is there (the per-rater spreadsheet or the per-image counts) and
give each sample its rating distribution and standard deviation. The file-name group gives
gender and ethnicity.

Each line is checked where it is read, with the manifest reader's rules (a finite score, inside
the task's range when one is given, and no image listed twice over the train and test files of
a split), so an error names the list file and line.
"""
from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Optional, Union

from orderlearn.errors import ConfigError, DataError
from orderlearn.data.manifest import Located, ScoreRange, check_listed_once, parse_score
from orderlearn.types import ScoredImage

SPLITS = ("60-40", "fold1", "fold2", "fold3", "fold4", "fold5")
# the file-name prefix of each face and the (gender, ethnicity) it stands for; the synthetic
# generator names its faces with the same codes
GROUPS: dict[str, tuple[str, str]] = {
    "AF": ("female", "asian"),
    "AM": ("male", "asian"),
    "CF": ("female", "caucasian"),
    "CM": ("male", "caucasian"),
}
RATING_LEVELS = 5
SPLIT_DIR = "split_of_60%training and 40%testing"  # under train_test_files/
CV_DIR = "5_folders_cross_validations_files"

PathLike = Union[str, Path]


def split_files(root: PathLike, split: str) -> tuple[Path, Path]:
    """The (train, test) list files of ``split`` ('60-40' or 'fold1'..'fold5')."""
    files = Path(root) / "train_test_files"
    if split == "60-40":
        folder = files / SPLIT_DIR
        return folder / "train.txt", folder / "test.txt"
    if split in SPLITS:
        k = split.removeprefix("fold")
        folder = files / CV_DIR / f"cross_validation_{k}"
        return folder / f"train_{k}.txt", folder / f"test_{k}.txt"
    raise ConfigError(f"data.split: {split!r} is not a SCUT-FBP5500 split; choose from {list(SPLITS)}")


def read_split(
    root: PathLike, split: str, ratings: Optional[PathLike] = "auto", score_range: Optional[ScoreRange] = None
) -> tuple[list[ScoredImage], list[ScoredImage]]:
    """Read the train and test samples of ``split``; no image may be in both (or twice in one).

    ``ratings``: 'auto' (the per-image counts CSV, else ``All_Ratings.xlsx``, else none),
    a path to either kind of file, or None to skip rating histograms. ``score_range``:
    (data.score_low, data.score_high) every score must lie in, or None.
    """
    root = Path(root)
    if not (root / "Images").is_dir():
        raise DataError(f"{root} is not a SCUT-FBP5500 folder: {root / 'Images'} is missing")
    counts = read_ratings(resolve_ratings(root, ratings)) if ratings is not None else {}
    train_file, test_file = split_files(root, split)
    train, test = read_located(root, train_file, counts, score_range), read_located(root, test_file, counts, score_range)
    check_listed_once(train + test)
    return [sample for _, sample in train], [sample for _, sample in test]


def resolve_ratings(root: Path, ratings: Optional[PathLike]) -> Optional[Path]:
    if ratings is None:
        return None
    if ratings != "auto":
        path = Path(ratings)
        if not path.is_file():
            raise DataError(f"ratings file {path} does not exist")
        return path
    for candidate in ("rating_distribution.csv", "All_Ratings.xlsx", "All_Ratings.xls"):
        if (root / "ratings" / candidate).is_file():
            return root / "ratings" / candidate
    return None


def read_list(
    root: Path, list_file: Path, counts: dict[str, tuple[int, ...]], score_range: Optional[ScoreRange] = None
) -> list[ScoredImage]:
    """Samples of one split file ("name score" per line); every listed image must exist, once."""
    located = read_located(root, list_file, counts, score_range)
    check_listed_once(located)
    return [sample for _, sample in located]


def read_located(
    root: Path, list_file: Path, counts: dict[str, tuple[int, ...]], score_range: Optional[ScoreRange] = None
) -> list[Located]:
    """(``file:line``, sample) for each line of a split file, so later checks can name the line."""
    if not list_file.is_file():
        raise DataError(f"split file {list_file} does not exist")
    samples = []
    for line_no, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{list_file}:{line_no}: expected 'name score', got {line!r}")
        name, score_text = parts
        where = f"{list_file}:{line_no}"
        score = parse_score(score_text, where, score_range)
        path = root / "Images" / name
        if not path.is_file():
            raise DataError(f"{where}: image {path} is listed but does not exist")
        samples.append((where, make_sample(path, score, counts.get(name))))
    if not samples:
        raise DataError(f"split file {list_file} lists no images")
    return samples


def make_sample(path: Path, score: float, counts: Optional[tuple[int, ...]]) -> ScoredImage:
    gender, ethnicity = GROUPS.get(path.name[:2], (None, None))
    return ScoredImage(
        path=path,
        score=score,
        rating_counts=counts,
        std=rating_std(counts) if counts else None,
        group=path.name[:2] if gender else None,
        gender=gender,
        ethnicity=ethnicity,
    )


def rating_std(counts: tuple[int, ...]) -> float:
    """Population standard deviation of the ratings 1..5 given their histogram."""
    total = sum(counts)
    mean = sum((i + 1) * c for i, c in enumerate(counts)) / total
    return math.sqrt(sum(c * (i + 1 - mean) ** 2 for i, c in enumerate(counts)) / total)


def read_ratings(path: Optional[Path]) -> dict[str, tuple[int, ...]]:
    """Rating histograms per file name from a counts CSV or a per-rater spreadsheet."""
    if path is None:
        return {}
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return read_rater_spreadsheet(path)
    return read_rating_counts(path)


def read_rating_counts(path: Path) -> dict[str, tuple[int, ...]]:
    """``filename,1,2,3,4,5`` rows of rating counts; every row must sum to a positive count."""
    counts: dict[str, tuple[int, ...]] = {}
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        expected = ["filename"] + [str(i) for i in range(1, RATING_LEVELS + 1)]
        if header is None or [h.strip() for h in header] != expected:
            raise DataError(f"{path}: header must be {','.join(expected)}, got {header}")
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != RATING_LEVELS + 1:
                raise DataError(f"{path}:{line_no}: expected {RATING_LEVELS + 1} columns, got {len(row)}")
            try:
                values = tuple(int(v) for v in row[1:])
            except ValueError:
                raise DataError(f"{path}:{line_no}: rating counts must be integers, got {row[1:]}") from None
            if min(values) < 0 or sum(values) <= 0:
                raise DataError(f"{path}:{line_no}: counts {values} of {row[0]} do not sum to a positive count")
            counts[row[0].strip()] = values
    return counts


def read_rater_spreadsheet(path: Path) -> dict[str, tuple[int, ...]]:
    """The official per-rater ``All_Ratings.xlsx`` (columns Rater, Filename, Rating)."""
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        header = [str(h).strip() if h is not None else "" for h in next(rows, ())]
        try:
            name_col, rating_col = header.index("Filename"), header.index("Rating")
        except ValueError:
            raise DataError(f"{path}: needs columns 'Filename' and 'Rating', has {header}") from None
        histograms: dict[str, list[int]] = defaultdict(lambda: [0] * RATING_LEVELS)
        for row_no, row in enumerate(rows, start=2):
            name, rating = row[name_col], row[rating_col]
            if name is None and rating is None:
                continue
            if not isinstance(rating, (int, float)) or rating != int(rating) or not 1 <= rating <= RATING_LEVELS:
                raise DataError(f"{path}: row {row_no}: rating {rating!r} of {name} is not an integer in 1..5")
            histograms[str(name).strip()][int(rating) - 1] += 1
    finally:
        workbook.close()
    return {name: tuple(h) for name, h in histograms.items()}
