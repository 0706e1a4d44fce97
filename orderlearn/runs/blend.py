"""Finished runs blended: per route, their scores averaged with weights chosen on validation.

Why: two trunks that see different things (an ImageNet CNN fine-tuned on the task, dlib's
face-recognition network) make errors that partly cancel. Trained jointly behind one head
(``comparators.fusion``), the branch that fits the training faces best takes the residual and
the other is barely used; runs trained apart keep their errors apart, and a weighted mean of
their scores keeps what each sees. This is late fusion, the ensemble of the literature's
strongest facial beauty systems, with its weights chosen where nothing is tested.

Per route every run has (``direct``: a regressor's own score or a comparator's direct head;
``order_learned``: the run's bank route), the blend reads the scores the run wrote for its
validation images (``val_scores.csv``) and its test images (``scores.csv``), so a blend costs
seconds; a run made before runs wrote ``val_scores.csv`` is loaded and scores both sets again, as
it scored its test set (its selected checkpoint and scoring recipe). All runs must have read the
same data: the same test images and the same validation images carved from the training files,
or the blend is refused naming what differs. The weights (one per run, each a
multiple of 0.05, summing to 1: :func:`weight_grid`) are chosen on the validation images
(``select``: PC, or MAE; a tie keeps the weights nearest the plain mean), and each test image
scores the weighted mean of the runs' test scores. Nothing else is fitted.

The output folder is a table folder for ``orderlearn compare`` (``config.yaml``, ``results.json``,
``scores.csv``, ``report.md``): the method is named after its runs and its minutes are all runs'
(what the method costs); it is not a model, so photos are scored with each run and blended alike.
"""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import yaml

import scorers

from orderlearn.config import ExperimentConfig, load_config
from orderlearn.data.splits import load_test, load_training
from orderlearn.errors import DataError
from orderlearn.files import atomic_write_json, atomic_write_text
from orderlearn.report.markdown import markdown_table
from orderlearn.report.metrics import score_metrics
from orderlearn.report.scores_csv import DIRECT, SCORE, ScoresTable, read_scores_csv
from orderlearn.runs.bundle_format import MANIFEST_FILE
from orderlearn.runs.loaded import LoadedRun
from orderlearn.runs.new_scale import direct_scores
from orderlearn.runs.outputs import VAL_SCORES_FILE, write_scores_csv
from orderlearn.types import ScoredImage

STEPS = 20  # weights are multiples of 1 / STEPS
MAX_RUNS = 5  # the grid has C(STEPS + n - 1, n - 1) points: 10,626 for five runs
SELECTS = {"val_pc": ("pc", True), "val_mae": ("mae", False)}
ROUTES = ("direct", "order_learned")


@dataclass(frozen=True)
class RouteScores:
    """One run's scores of one route: validation and test images, in the data's order."""

    val: torch.Tensor
    test: torch.Tensor


@dataclass
class Member:
    """One run of the blend: its folder, config and results.json; loaded (its model built) only
    when it has no saved validation scores to read."""

    source: Path
    config: ExperimentConfig
    results: dict[str, Any]
    _loaded: Optional[LoadedRun] = None
    _saved: Optional[tuple[ScoresTable, ScoresTable]] = None  # read once, for both routes

    @classmethod
    def open(cls, source: Path) -> "Member":
        """A run folder (a DataError for a bundle, which has no validation split or direct route,
        and for a folder that is no run)."""
        if (source / MANIFEST_FILE).is_file():
            raise DataError(f"blend: {source} is a bundle; give run folders (a bundle has no validation split or "
                            "direct route)")
        if not (source / "config.yaml").is_file():
            raise DataError(f"blend: {source} is not an `orderlearn run` folder (no config.yaml)")
        results_file = source / "results.json"
        results = json.loads(results_file.read_text()) if results_file.is_file() else {}
        return cls(source, load_config(source / "config.yaml"), results)

    def loaded(self) -> LoadedRun:
        if self._loaded is None:
            self._loaded = LoadedRun.from_run(self.source)
        return self._loaded

    def saved(self, val: Sequence[ScoredImage], test: Sequence[ScoredImage]) -> Optional[tuple[ScoresTable, ScoresTable]]:
        """The run's ``val_scores.csv`` and ``scores.csv`` (None when it wrote no validation scores),
        checked to list ``val`` and ``test`` in order (a DataError naming the file otherwise)."""
        if self._saved is not None:
            return self._saved
        if not (self.source / VAL_SCORES_FILE).is_file():
            return None
        tables = []
        for name, samples in ((VAL_SCORES_FILE, val), ("scores.csv", test)):
            table = read_scores_csv(self.source / name)
            if [Path(p).resolve() for p in table.image_paths] != [s.path.resolve() for s in samples]:
                raise DataError(f"blend: {self.source / name} does not list the {len(samples)} images its config reads "
                                f"({len(table)} rows); was the data changed after the run?")
            tables.append(table)
        self._saved = tables[0], tables[1]
        return self._saved


def same_images(runs: Sequence[Member]) -> tuple[list[ScoredImage], list[ScoredImage]]:
    """The validation and test images all ``runs`` read (DataError naming the difference otherwise)."""
    parts = {}
    for name, read in (("validation", lambda run: load_training(run.config.data).val),
                       ("test", lambda run: load_test(run.config.data))):
        first = read(runs[0])
        for other in runs[1:]:
            images = read(other)
            if [s.path.resolve() for s in first] != [s.path.resolve() for s in images] or \
                    [s.score for s in first] != [s.score for s in images]:
                raise DataError(f"blend: {runs[0].source} and {other.source} read different {name} images "
                                f"({len(first)} and {len(images)}); blend runs of the same data, split and val_fraction")
        parts[name] = first
    return parts["validation"], parts["test"]


def route_scores(run: Member, route: str, val: Sequence[ScoredImage],
                 test: Sequence[ScoredImage]) -> Optional[RouteScores]:
    """``run``'s scores of ``route`` on the validation and test images (saved by the run, or scored
    again), or None where it has no such route."""
    saved = run.saved(val, test)
    if saved is not None:
        column = DIRECT if route == "direct" else SCORE
        on_val, on_test = saved[0].column(column), saved[1].column(column)
        if on_val is None or on_test is None:
            return None
        return RouteScores(torch.from_numpy(on_val).double(), torch.from_numpy(on_test).double())
    loaded = run.loaded()
    if route == "direct":
        val_scores = direct_scores(loaded, val, "validation")
        return None if val_scores is None else RouteScores(val_scores, direct_scores(loaded, test, "test"))
    return RouteScores(loaded.score(val, "validation")[1].value.double().cpu(),
                       loaded.score(test, "test")[1].value.double().cpu())


def weight_grid(n: int) -> list[tuple[float, ...]]:
    """Every weighting of ``n`` runs whose weights are multiples of 1 / :data:`STEPS` summing to 1
    (for two runs: (0, 1), (0.05, 0.95), ..., (1, 0))."""
    grid = []
    for cuts in itertools.combinations(range(STEPS + n - 1), n - 1):  # stars and bars
        bounds = (-1, *cuts, STEPS + n - 1)
        grid.append(tuple(round((bounds[i + 1] - bounds[i] - 1) / STEPS, 2) for i in range(n)))
    return grid


def choose_weights(members: Sequence[torch.Tensor], truth: Sequence[float],
                   select: str = "val_pc") -> tuple[tuple[float, ...], list[dict[str, Any]]]:
    """The weights of ``members`` on :func:`weight_grid` with the best validation ``select``
    metric, and every weighting's validation metrics (a tie keeps the weights nearest the plain
    mean, so identical runs get equal weights)."""
    metric, higher = SELECTS[select]
    grid = weight_grid(len(members))
    blends = torch.tensor(grid, dtype=torch.float64) @ torch.stack([m.double() for m in members])  # one row per weighting
    truth = list(truth)
    table = [{"weights": list(w), **score_metrics(row.tolist(), truth)} for w, row in zip(grid, blends)]
    mean = 1.0 / len(members)
    # metrics equal to 1e-9 tie: weightings that give the same scores differ only in rounding
    best = max(table, key=lambda row: (round(row[metric] if higher else -row[metric], 9),
                                       -sum((w - mean) ** 2 for w in row["weights"])))
    return tuple(best["weights"]), table


def blend_runs(runs: Sequence[Path], out: Path, select: str = "val_pc", command: Optional[str] = None) -> dict[str, Any]:
    """Blend the finished ``runs`` into the table folder ``out`` (module docstring); returns its results.json."""
    if select not in SELECTS:
        raise DataError(f"blend: --select {select!r}: choose from {list(SELECTS)}")
    if not 2 <= len(runs) <= MAX_RUNS:
        raise DataError(f"blend: give 2 to {MAX_RUNS} run folders, got {len(runs)}")
    started = time.time()
    loaded = [Member.open(Path(run)) for run in runs]
    val, test = same_images(loaded)
    val_truth, truth = [s.score for s in val], [s.score for s in test]
    results: dict[str, Any] = {"blend": {"runs": [str(run.source) for run in loaded], "select": select, "weights": {}}}
    blended: dict[str, torch.Tensor] = {}
    for route in ROUTES:
        scores = []
        for run in loaded:  # a run without the route ends it before the others score their faces
            run_scores = route_scores(run, route, val, test)
            if run_scores is None:
                break
            scores.append(run_scores)
        if len(scores) < len(loaded):
            continue
        weights, table = choose_weights([s.val for s in scores], val_truth, select)
        blended[route] = sum(w * s.test for w, s in zip(weights, scores))
        results[route] = score_metrics(blended[route].tolist(), truth, loaded[0].config.cs_thresholds)
        results["blend"]["weights"][route] = {"members": list(weights), "validation": table,
                                              "members_test": [score_metrics(s.test.tolist(), truth) for s in scores]}
    if "order_learned" not in blended:
        raise DataError("blend: the runs share no route to blend")
    seconds = [float(run.results.get("seconds", np.nan)) for run in loaded]
    results.update({"name": "blend-" + "-".join(run.config.name for run in loaded), "method": "blend", "task": "regressor",
                    "seconds": sum(seconds) + time.time() - started, "command": command or ""})
    write_blend_folder(Path(out), loaded, test, blended, results)
    return results


def write_blend_folder(out: Path, runs: Sequence[Member], test: Sequence[ScoredImage],
                       blended: dict[str, torch.Tensor], results: dict[str, Any]) -> None:
    """config.yaml (the first run's data section, the blend as the model: its members by method
    name, so the folds of one blend agree), results.json, scores.csv and report.md in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    config = {"name": results["name"], "task": "regressor", "data": runs[0].config.to_dict()["data"],
              "model": {"name": "blend", "members": [run.config.name for run in runs]}}
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    write_scores_csv(out / "scores.csv", test, scorers.Scores(blended["order_learned"]), blended.get("direct"))
    atomic_write_json(out / "results.json", results, default=float)
    rows = []
    for route in ROUTES:
        if route not in results:
            continue
        chosen = results["blend"]["weights"][route]
        row: dict[str, Any] = {"route": route.replace("_", "-")}
        for k, (weight, member) in enumerate(zip(chosen["members"], chosen["members_test"]), start=1):
            row.update({f"w{k}": weight, f"run {k} pc": member["pc"], f"run {k} mae": member["mae"]})
        rows.append({**row, **{m: results[route][m] for m in ("pc", "mae", "rmse")}})
    members = "".join(f"run {k}: {run.source}\n" for k, run in enumerate(runs, start=1))
    atomic_write_text(out / "report.md", f"# {results['name']}\n\n{members}"
                      f"weights (w1, w2, ...) chosen on validation {results['blend']['select']}\n\n"
                      f"{markdown_table(rows, list(rows[0]))}\n")
