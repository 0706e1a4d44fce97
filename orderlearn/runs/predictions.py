"""The score of your own photos: the one function behind ``orderlearn predict``, ``orderlearn
serve`` and :meth:`orderlearn.api.Model.predict`.

Each photo is (optionally) aligned into the training faces' frame (:mod:`orderlearn.data.alignment`),
then scored exactly as the model's run scored its test set: the same bank route, the same
:class:`~orderlearn.bank.scoring_recipe.ScoringRecipe`. An aligned crop is written as a lossless PNG
into a working folder and scored from there, so it goes through the very preprocessing and
feature cache a training image went through; with ``align="none"`` the file itself is scored,
which gives the run's own ``scores.csv`` numbers for its test images.

Files that cannot be scored (unreadable, no face, several faces with ``one_face``) are listed
with their reason while the rest are scored. The table, CSV and JSON the command writes are
made here too, so every caller shows the same columns.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

import scorers

from orderlearn.bank.references import ReferenceBank
from orderlearn.bank.route import Comparisons
from orderlearn.data.alignment import FaceAligner
from orderlearn.data.photos import collect_images
from orderlearn.errors import ConfigError, DataError
from orderlearn.files import atomic_write_json, atomic_write_text
from orderlearn.runs.loaded import LoadedRun
from orderlearn.runs.new_scale import has_bank_route, score_on_new_scale
from orderlearn.types import ScoredImage

ALIGN_CHOICES = ("mtcnn", "none")
COLUMNS = ["file", "score", "std", "lower95", "upper95", "percentile", "faces_found"]
DIRECT_COLUMNS = ["direct_score", "direct_mapped"]  # with --references, where the run has a direct route


@dataclass(frozen=True)
class Prediction:
    """One photo's score: value, posterior std, 95% interval, and its percentile among the bank's
    reference scores (the share of references scored lower, ties counted half)."""

    file: str
    score: float
    std: Optional[float]
    lower95: Optional[float]
    upper95: Optional[float]
    percentile: float
    faces_found: Optional[int]  # None when not aligned
    direct_score: Optional[float] = None  # the run's direct route, in the run's units (with references)
    direct_mapped: Optional[float] = None  # the direct route mapped onto the references' scale


@dataclass
class Predictions:
    items: list[Prediction] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    scored: list[ScoredImage] = field(default_factory=list)  # what was scored: the crops, or the files
    comparisons: Optional[Comparisons] = None
    scores: Optional[scorers.Scores] = None
    model: Optional[LoadedRun] = None  # the run that scored: with references, the one with the new bank
    calibration: Optional[dict] = None  # with references: what was fitted on them


def check_align(align: str, option: str = "--align") -> None:
    """A one-line ConfigError naming ``option`` when ``align`` is not one of :data:`ALIGN_CHOICES`."""
    if align not in ALIGN_CHOICES:
        raise ConfigError(f"{option}: {align!r} is not one of {list(ALIGN_CHOICES)}")


def predict(model: LoadedRun, inputs: Sequence[Path], work_dir: Path, align: str = "mtcnn",
            one_face: bool = False, all_or_none: bool = False,
            references: Optional[ReferenceBank] = None) -> Predictions:
    """Score every image file named or under a named folder; aligned crops go into ``work_dir``.
    ``all_or_none``: a photo that cannot be scored is a one-line DataError naming every such
    photo, raised before anything is scored (else they are listed in ``failed``).

    ``references``: score on their scale instead of the run's (:mod:`orderlearn.runs.new_scale`):
    they go through the photos' alignment, the bank is self-calibrated on them, and where the
    run has a direct route its score is reported as is and mapped onto the new scale."""
    check_align(align)
    if references is not None:
        require_bank_route(model)
    found = collect_images(inputs)
    result = Predictions(failed=list(found.failed))
    originals, scored, faces = prepare(model, found.samples, Path(work_dir), align, one_face, result.failed)
    if all_or_none and result.failed:
        raise DataError("not scored: " + "; ".join(f"{path}: {why}" for path, why in result.failed))
    if not scored:
        return result
    direct = mapped = None
    if references is None:
        comparisons, scores = model.score(scored, "photos")
    else:
        new = score_on_new_scale(model, aligned_references(model, references, Path(work_dir), align), scored, "photos")
        model, comparisons, scores, direct, mapped = new.loaded, new.comparisons, new.order_learned, new.direct, new.direct_mapped
        result.calibration = new.calibration
    bank_scores = model.bank.scores
    for i, sample in enumerate(originals):
        result.items.append(Prediction(
            file=str(sample.path), score=float(scores.value[i]), std=_value(scores.std, i), lower95=_value(scores.lower, i),
            upper95=_value(scores.upper, i), percentile=percentile(float(scores.value[i]), bank_scores), faces_found=faces[i],
            direct_score=_value(direct, i), direct_mapped=_value(mapped, i)))
    result.scored, result.comparisons, result.scores, result.model = scored, comparisons, scores, model
    return result


def require_bank_route(model: LoadedRun, option: str = "--references") -> None:
    """A one-line ConfigError naming ``option`` for a run whose bank route cannot take another scale."""
    if not has_bank_route(model):
        raise ConfigError(f"{option}: {model.source} is a regressor run: its bank route compares its own score (in the "
                          "run's units) with the references' known scores, so it cannot score on their scale")


def aligned_references(model: LoadedRun, references: ReferenceBank, work_dir: Path, align: str) -> ReferenceBank:
    """The references as the photos are scored: aligned crops (each keeping its score), or the
    files as they are; a reference that cannot be aligned is a one-line DataError naming it."""
    failed: list[tuple[Path, str]] = []
    originals, crops, _ = prepare(model, references.samples, work_dir / "references", align, False, failed)
    if failed:
        raise DataError("references not scored: " + "; ".join(f"{path}: {why}" for path, why in failed))
    samples = [dataclasses.replace(original, path=crop.path) for original, crop in zip(originals, crops)]
    return dataclasses.replace(references, samples=samples)


def prepare(model: LoadedRun, samples: list[ScoredImage], work_dir: Path, align: str, one_face: bool,
            failed: list[tuple[Path, str]]) -> tuple[list[ScoredImage], list[ScoredImage], list[Optional[int]]]:
    """(the photos that will be scored, what is scored for each, faces found); failures appended."""
    if align == "none":
        return samples, samples, [None] * len(samples)
    aligner = FaceAligner(model.alignment_template(), one_face=one_face)
    work_dir.mkdir(parents=True, exist_ok=True)
    originals, crops, faces = [], [], []
    for i, sample in enumerate(samples):
        try:
            aligned = aligner.align_file(sample.path)
        except DataError as exc:
            failed.append((sample.path, str(exc).removeprefix(f"{sample.path}: ")))
            continue
        crop = work_dir / f"{i:05d}_{sample.path.stem}.png"
        aligned.crop.save(crop, format="PNG")
        originals.append(sample)
        crops.append(ScoredImage(path=crop, score=float("nan")))
        faces.append(aligned.faces_found)
    return originals, crops, faces


def percentile(score: float, ref_scores: torch.Tensor) -> float:
    below = float((ref_scores < score).double().sum()) + 0.5 * float((ref_scores == score).double().sum())
    return 100.0 * below / max(len(ref_scores), 1)


def _value(values: Optional[torch.Tensor], i: int) -> Optional[float]:
    return None if values is None else float(values[i])


# ---------------------------------------------------------------------------- output
def format_table(items: Sequence[Prediction]) -> str:
    """A plain-text table: file, score, 95% interval, percentile."""
    rows = [("file", "score", "95% interval", "percentile")]
    for p in items:
        interval = "" if p.lower95 is None else f"{p.lower95:.2f} – {p.upper95:.2f}"
        rows.append((p.file, f"{p.score:.3f}", interval, f"{p.percentile:.0f}"))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    return "\n".join("  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths)))
                     for r in rows)


def columns(items: Sequence[Prediction]) -> list[str]:
    """:data:`COLUMNS`, and :data:`DIRECT_COLUMNS` when a prediction has a direct score."""
    return COLUMNS + (DIRECT_COLUMNS if any(p.direct_score is not None for p in items) else [])


def write_csv(path: Path, items: Sequence[Prediction]) -> Path:
    buffer = io.StringIO()
    names = columns(items)
    writer = csv.DictWriter(buffer, fieldnames=names)
    writer.writeheader()
    for p in items:
        writer.writerow({k: _cell(v) for k, v in asdict(p).items() if k in names})
    return atomic_write_text(Path(path), buffer.getvalue())


def json_payload(result: Predictions) -> dict:
    """What ``--json`` writes: the predictions (every field of :class:`Prediction`, as the Python API
    gives them; ``direct_score`` and ``direct_mapped`` null without references), the failures and,
    with references, what was fitted on them."""
    payload = {"predictions": [asdict(p) for p in result.items],
               "failed": [{"file": str(f), "reason": why} for f, why in result.failed]}
    if result.calibration is not None:
        payload["references"] = result.calibration
    return payload


def write_json(path: Path, result: Predictions) -> Path:
    return atomic_write_json(Path(path), json_payload(result), default=None)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6f}"
    return str(value)
