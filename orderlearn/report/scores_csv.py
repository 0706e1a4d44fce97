"""The one reader of a scores CSV: ``scores.csv`` of ``orderlearn run`` and ``scored.csv`` of
``orderlearn score`` (columns ``path, true_score, score, std, lower95, upper95`` and, for a run,
``direct_score``).

Used by ``orderlearn evaluate`` and ``orderlearn compare``, so both read the same file the same
way and a bad cell is one error naming the file, its line and the column. Rules:

* ``score`` (order-learned) is a finite number on every row;
* ``true_score`` is a finite number on every row, or empty on every row (images scored
  without a known score, as ``score --images`` writes them); the second is refused when the
  truth is required;
* ``direct_score`` is optional: absent or empty on every row means the run had no direct
  route; filled on some rows but not on others is an error;
* an image (its ``path``) is listed once: a second row of it would count it twice in every
  metric, so it is refused, naming the path and both lines.

A name that is not a readable text file (a folder, a link loop, a photo) is one error saying
which (:mod:`orderlearn.user_files`).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from orderlearn.errors import DataError
from orderlearn.user_files import not_text, why_not_a_file

TRUTH, SCORE, DIRECT, FUSED = "true_score", "score", "direct_score", "fused_score"


@dataclass(frozen=True)
class ScoresTable:
    """The numeric columns of a scores CSV, one entry per image, in file order."""

    path: Path
    image_paths: list[str]
    scores: np.ndarray  # order-learned
    truth: Optional[np.ndarray]  # None: no true scores in the file (only when not required)
    direct: Optional[np.ndarray]  # None: no direct route
    fused: Optional[np.ndarray] = None  # None: no fused route (scorer.direct_prior)

    def __len__(self) -> int:
        return len(self.image_paths)

    def column(self, name: str) -> Optional[np.ndarray]:
        """A prediction column by its CSV name (``score``, ``direct_score`` or ``fused_score``)."""
        columns = {SCORE: self.scores, DIRECT: self.direct, FUSED: self.fused}
        if name not in columns:
            raise KeyError(f"{name!r} is not a prediction column of a scores CSV ({', '.join(columns)})")
        return columns[name]


def read_scores_csv(path: Union[str, Path], require_truth: bool = True) -> ScoresTable:
    """Read ``path``; any missing column, bad or missing cell is a DataError naming file, line, column."""
    path = Path(path)
    why = why_not_a_file(path)
    if why is not None:
        raise DataError(f"scores file {path} {why}")
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            needed = [c for c in (TRUTH, SCORE) if c not in columns]
            if needed:
                raise DataError(f"{path}: missing column(s) {', '.join(needed)} (has {', '.join(columns) or 'none'}); "
                                "a scores CSV as written by `orderlearn run` or `orderlearn score` has true_score and score")
            lines, rows = [], []
            for row in reader:
                lines.append(reader.line_num)
                rows.append(row)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(not_text(path, exc)) from None
    if not rows:
        raise DataError(f"{path} has a header but no rows")
    _refuse_repeated_paths(path, rows, lines)
    truth = _column(path, rows, lines, TRUTH, optional=True)
    if truth is None and require_truth:
        raise DataError(f"{path}: true_score is empty on every row (images scored without a known score, as "
                        "`orderlearn score --images` writes them); metrics need the true score of every image")
    return ScoresTable(
        path=path,
        image_paths=[row.get("path") or "" for row in rows],
        scores=_column(path, rows, lines, SCORE, optional=False),
        truth=truth,
        direct=_column(path, rows, lines, DIRECT, optional=True),
        fused=_column(path, rows, lines, FUSED, optional=True),
    )


def _refuse_repeated_paths(path: Path, rows: list[dict], lines: list[int]) -> None:
    """A DataError naming the first image listed twice (rows without a path are not compared)."""
    first: dict[str, int] = {}
    for row, line in zip(rows, lines):
        name = (row.get("path") or "").strip()
        if not name:
            continue
        if name in first:
            raise DataError(f"{path}:{line}: path {name!r} is listed twice (first on line {first[name]})")
        first[name] = line


def _column(path: Path, rows: list[dict], lines: list[int], column: str, optional: bool) -> Optional[np.ndarray]:
    """The column as floats; None when ``optional`` and empty (or absent) on every row."""
    cells = [(row.get(column) or "").strip() for row in rows]
    filled = [i for i, cell in enumerate(cells) if cell]
    if optional and not filled:
        return None
    if len(filled) < len(cells):
        empty = next(i for i, cell in enumerate(cells) if not cell)
        also = f", but filled on line {lines[filled[0]]}" if filled else ""
        raise DataError(f"{path}:{lines[empty]}: {column} is empty{also}")
    values = np.empty(len(cells), dtype=np.float64)
    for i, cell in enumerate(cells):
        values[i] = _number(cell, f"{path}:{lines[i]}", column)
    return values


def _number(cell: str, where: str, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"{where}: {column} {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: {column} {cell!r} is not a finite number")
    return value
