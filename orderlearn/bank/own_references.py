"""A user's own references: scored faces on the user's scale, to re-anchor a trained comparator.

A comparator's judgments carry no scale; the scale lives in the references. A bank read here
(a manifest ``path,score[,std]``, CSV or JSONL, or a folder holding one) replaces the run's own
bank, and :mod:`.self_calibration` fits what depends on the scale on these references alone.

Every problem is one line naming the file and the row (the manifest reader's checks: a missing
or non-finite score, a missing image, an image listed twice), plus here: at least
:data:`MIN_REFERENCES` references, and not all of one score (no scale to anchor).
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from orderlearn.bank.references import ReferenceBank
from orderlearn.data.manifest import read_manifest
from orderlearn.errors import DataError

MIN_REFERENCES = 2
MANIFEST_NAMES = ("references.csv", "references.jsonl", "manifest.csv", "manifest.jsonl")


def references_file(path: Union[str, Path]) -> Path:
    """The manifest ``path`` names: the file itself, or the one of :data:`MANIFEST_NAMES` in a folder."""
    path = Path(path)
    if path.is_dir():
        found = [path / name for name in MANIFEST_NAMES if (path / name).is_file()]
        if not found:
            raise DataError(f"--references {path}: a folder without a manifest ({', '.join(MANIFEST_NAMES)}: "
                            "columns path,score[,std])")
        return found[0]
    if not path.is_file():
        raise DataError(f"--references {path}: no such manifest file or folder")
    return path


def read_references(path: Union[str, Path]) -> ReferenceBank:
    """The bank of a user's references (see the module docstring); each row's image must exist."""
    file = references_file(path)
    samples = read_manifest(file)
    if len(samples) < MIN_REFERENCES:
        raise DataError(f"{file}: {len(samples)} reference(s); a new scale needs at least {MIN_REFERENCES}")
    if len({s.score for s in samples}) < 2:
        raise DataError(f"{file}: every reference has the score {samples[0].score}; a scale needs two different scores")
    span = max(s.score for s in samples) - min(s.score for s in samples)
    # one bin holding every reference: all of them are kept, none was selected
    return ReferenceBank(sorted(samples, key=lambda s: s.score), bin_width=span, per_bin=len(samples), seed=0)
