"""``orderlearn score``: score a run's test split, or a user's image files and folders, against
the run's bank, exactly as the run scored its test set (its
:class:`~orderlearn.bank.scoring_recipe.ScoringRecipe`).

Writes a CSV with the score, its posterior std and 95% interval (the run's calibrated width).
Over user files the good images are scored and the bad ones (unreadable, not an image) are
listed with their reasons; the command then exits non-zero, so a script notices.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

from orderlearn.data.splits import load_test
from orderlearn.errors import ConfigError, DataError
from orderlearn.data.photos import collect_images, image_files
from orderlearn.runs.loaded import LoadedRun
from orderlearn.runs.outputs import write_scores_csv
from orderlearn.types import ScoredImage

if TYPE_CHECKING:  # pragma: no cover
    import argparse

    import torch

    import scorers


def check_scorer_option(name: Optional[str], option: str = "--scorer") -> None:
    """A one-line ConfigError naming ``option`` for a scorer name that is not registered (None:
    the run's own scorer), before any run is read."""
    import scorers

    if name is not None and name not in scorers.available():
        raise ConfigError(f"{option}: unknown scorer {name!r}; registered: {', '.join(scorers.available())}")


def refuse_outputs_over_inputs(outputs: Mapping[str, Optional[Path]], inputs: Sequence[Path]) -> None:
    """A ConfigError naming the option when an output file (``{option: path}``, None = not asked
    for) is one of the photos to score, checked before anything is read or written: writing the
    table there would replace the photo."""
    photos = {os.path.realpath(p) for given in inputs for p in image_files(Path(given))}  # realpath: a link loop too
    for option, path in outputs.items():
        if path is not None and os.path.realpath(path) in photos:
            raise ConfigError(f"{option}: {path} is one of the photos to score; write the table to another file")


def score_run(run: Path, images: Optional[Sequence[Path]] = None, out: Optional[Path] = None,
              scorer_name: Optional[str] = None, plot: int = 0,
              plot_dir: Optional[Path] = None, references: Optional[Path] = None) -> tuple[Path, list[tuple[Path, str]]]:
    """Score ``images`` (default: the run's test split); returns the CSV and the failed files.
    ``plot``: pictures of the decision for the first ``plot`` images, into ``plot_dir``
    (default ``RUN/plots``). ``references``: a manifest of your own references; the images are
    scored on their scale (:mod:`orderlearn.runs.new_scale`), the CSV's ``direct_score`` is then
    the run's direct score mapped onto it (empty where the run has no direct route)."""
    from orderlearn.bank.own_references import read_references
    from orderlearn.runs.predictions import require_bank_route

    if references is not None and scorer_name is not None:
        raise ConfigError("--scorer: not with --references (the self-calibrated recipe scores with the run's scorer)")
    bank = read_references(references) if references is not None else None
    loaded = LoadedRun.from_run(run)
    if bank is not None:
        require_bank_route(loaded)
    failed: list[tuple[Path, str]] = []
    if images:
        inputs = collect_images(images)
        samples, failed = inputs.samples, inputs.failed
        if not samples:
            raise DataError("no image could be scored: " + "; ".join(f"{p}: {why}" for p, why in failed))
    else:
        samples = load_test(loaded.config.data)
    direct = None
    if bank is None:
        comparisons, scores = loaded.score(samples, "images", scorer_name)
    else:
        from orderlearn.runs.new_scale import score_on_new_scale

        new = score_on_new_scale(loaded, bank, samples)
        loaded, comparisons, scores, direct = new.loaded, new.comparisons, new.order_learned, new.direct_mapped
    out = Path(out) if out else Path(run) / "scored.csv"
    if loaded.accelerator.is_main_process:
        write_scores_csv(out, samples, scores, direct)
        if plot:
            plot_scored(loaded, samples[:plot], comparisons.for_scoring, scores, Path(plot_dir or Path(run) / "plots"))
    return out, failed


def plot_scored(loaded: LoadedRun, samples: Sequence[ScoredImage], for_scoring: "torch.Tensor", scores: "scorers.Scores",
                out_dir: Path) -> list[Path]:
    """Decision pictures of the first ``len(samples)`` scored images (true scores marked where known)."""
    from orderlearn.report.decision_plots import decisions_for, plot_decisions

    paths = [s.path for s in samples]
    decisions = decisions_for([p.name for p in paths], paths, for_scoring, scores, loaded.bank.scores, [s.score for s in samples])
    return plot_decisions(out_dir, decisions, loaded.recipe, loaded.references.get)


def main(args: "argparse.Namespace") -> int:
    """The command: write the CSV, list the images that could not be scored (exit status 1 then)."""
    import sys

    check_scorer_option(args.scorer)
    refuse_outputs_over_inputs({"--out": args.out}, args.images or [])
    out, failed = score_run(args.run, args.images, args.out, args.scorer, args.plot, args.plot_dir, args.references)
    print(f"wrote {out}")
    for path, why in failed:
        print(f"error: not scored: {path}: {why}", file=sys.stderr)
    return 1 if failed else 0
