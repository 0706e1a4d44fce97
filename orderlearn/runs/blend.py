"""Two finished runs blended: per route, their scores averaged with a weight chosen on validation.

Why: two trunks that see different things (an ImageNet CNN fine-tuned on the task, dlib's
face-recognition network) make errors that partly cancel. Trained jointly behind one head
(``comparators.fusion``), the branch that fits the training faces best takes the residual and
the other is barely used; two runs trained apart keep their errors apart, and a weighted mean of
their scores keeps what each sees. This is late fusion, the ensemble of the literature's
strongest facial beauty systems, with its one parameter chosen where nothing is tested.

Per route both runs have (``direct``: a regressor's own score or a comparator's direct head;
``order_learned``: the run's bank route), each run scores its validation images and the test
images as it scored its test set (its selected checkpoint and scoring recipe). Both runs must
have read the same data: the same test images and the same validation images carved from the
training files, or the blend is refused naming what differs. The weight w of the first run is
chosen on the validation images among 0, 0.05, ..., 1 (``select``: PC, or MAE; a tie keeps the
weight nearer 0.5), and each test image scores w·a + (1 − w)·b. Nothing else is fitted.

The output folder is a table folder for ``orderlearn compare`` (``config.yaml``, ``results.json``,
``scores.csv``, ``report.md``): the method is named after both runs and its minutes are both runs'
(what the method costs); it is not a model, so photos are scored with each run and blended alike.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import yaml

import scorers

from orderlearn.data.splits import load_test, load_training
from orderlearn.errors import DataError
from orderlearn.files import atomic_write_json, atomic_write_text
from orderlearn.report.markdown import markdown_table
from orderlearn.report.metrics import score_metrics
from orderlearn.runs.loaded import LoadedRun
from orderlearn.runs.new_scale import direct_scores
from orderlearn.runs.outputs import write_scores_csv
from orderlearn.types import ScoredImage

WEIGHTS = tuple(round(0.05 * k, 2) for k in range(21))
SELECTS = {"val_pc": ("pc", True), "val_mae": ("mae", False)}
ROUTES = ("direct", "order_learned")


@dataclass(frozen=True)
class RouteScores:
    """One run's scores of one route: validation and test images, in the data's order."""

    val: torch.Tensor
    test: torch.Tensor


def same_images(a: LoadedRun, b: LoadedRun) -> tuple[list[ScoredImage], list[ScoredImage]]:
    """The validation and test images both runs read (DataError naming the difference otherwise)."""
    parts = {}
    for name, read in (("validation", lambda run: load_training(run.config.data).val),
                       ("test", lambda run: load_test(run.config.data))):
        first, second = read(a), read(b)
        if [s.path.resolve() for s in first] != [s.path.resolve() for s in second] or \
                [s.score for s in first] != [s.score for s in second]:
            raise DataError(f"blend: {a.source} and {b.source} read different {name} images "
                            f"({len(first)} and {len(second)}); blend runs of the same data, split and val_fraction")
        parts[name] = first
    return parts["validation"], parts["test"]


def route_scores(run: LoadedRun, route: str, val: Sequence[ScoredImage],
                 test: Sequence[ScoredImage]) -> Optional[RouteScores]:
    """``run``'s scores of ``route`` on the validation and test images, or None where it has no such route."""
    if route == "direct":
        val_scores = direct_scores(run, val, "validation")
        return None if val_scores is None else RouteScores(val_scores, direct_scores(run, test, "test"))
    return RouteScores(run.score(val, "validation")[1].value.double().cpu(), run.score(test, "test")[1].value.double().cpu())


def choose_weight(a: torch.Tensor, b: torch.Tensor, truth: Sequence[float], select: str = "val_pc") -> tuple[float, list[dict[str, float]]]:
    """The weight of ``a`` among :data:`WEIGHTS` with the best validation ``select`` metric, and
    every weight's validation metrics (a tie keeps the weight nearer 0.5)."""
    metric, higher = SELECTS[select]
    table = [{"weight": w, **score_metrics((w * a + (1 - w) * b).tolist(), list(truth))} for w in WEIGHTS]
    best = max(table, key=lambda row: ((row[metric] if higher else -row[metric]), -abs(row["weight"] - 0.5)))
    return float(best["weight"]), table


def blend_runs(first: Path, second: Path, out: Path, select: str = "val_pc", command: Optional[str] = None) -> dict[str, Any]:
    """Blend the finished runs ``first`` and ``second`` into the table folder ``out`` (module
    docstring); returns its results.json."""
    if select not in SELECTS:
        raise DataError(f"blend: --select {select!r}: choose from {list(SELECTS)}")
    started = time.time()
    a, b = LoadedRun.from_run(Path(first)), LoadedRun.from_run(Path(second))
    if a.is_bundle or b.is_bundle:
        raise DataError("blend: give two run folders (a bundle has no validation split or direct route)")
    val, test = same_images(a, b)
    val_truth, truth = [s.score for s in val], [s.score for s in test]
    results: dict[str, Any] = {"blend": {"runs": [str(a.source), str(b.source)], "select": select, "weights": {}}}
    blended: dict[str, torch.Tensor] = {}
    for route in ROUTES:
        scores_a, scores_b = route_scores(a, route, val, test), route_scores(b, route, val, test)
        if scores_a is None or scores_b is None:
            continue
        weight, table = choose_weight(scores_a.val, scores_b.val, val_truth, select)
        blended[route] = weight * scores_a.test + (1 - weight) * scores_b.test
        results[route] = score_metrics(blended[route].tolist(), truth, a.config.cs_thresholds)
        results["blend"]["weights"][route] = {"first": weight, "validation": table,
                                              "members_test": {"first": score_metrics(scores_a.test.tolist(), truth),
                                                               "second": score_metrics(scores_b.test.tolist(), truth)}}
    if "order_learned" not in blended:
        raise DataError("blend: the runs share no route to blend")
    seconds = [float((run.results or {}).get("seconds", np.nan)) for run in (a, b)]
    results.update({"name": f"blend-{a.config.name}-{b.config.name}", "method": "blend", "task": "regressor",
                    "seconds": sum(seconds) + time.time() - started, "command": command or ""})
    write_blend_folder(Path(out), a, b, test, blended, results)
    return results


def write_blend_folder(out: Path, a: LoadedRun, b: LoadedRun, test: Sequence[ScoredImage],
                       blended: dict[str, torch.Tensor], results: dict[str, Any]) -> None:
    """config.yaml (the first run's data section, the blend as the model: its members by method
    name, so the folds of one blend agree), results.json, scores.csv and report.md in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    config = {"name": results["name"], "task": "regressor", "data": a.config.to_dict()["data"],
              "model": {"name": "blend", "members": [a.config.name, b.config.name]}}
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    write_scores_csv(out / "scores.csv", test, scorers.Scores(blended["order_learned"]), blended.get("direct"))
    atomic_write_json(out / "results.json", results, default=float)
    weights = results["blend"]["weights"]
    rows = [{"route": route.replace("_", "-"), "weight of first": weights[route]["first"],
             **{f"first {m}": weights[route]["members_test"]["first"][m] for m in ("pc", "mae")},
             **{f"second {m}": weights[route]["members_test"]["second"][m] for m in ("pc", "mae")},
             **{m: results[route][m] for m in ("pc", "mae", "rmse")}} for route in ROUTES if route in results]
    columns = ["route", "weight of first", "first pc", "first mae", "second pc", "second mae", "pc", "mae", "rmse"]
    atomic_write_text(out / "report.md", f"# {results['name']}\n\nfirst: {a.source}\nsecond: {b.source}\n"
                      f"weights chosen on validation {results['blend']['select']}\n\n{markdown_table(rows, columns)}\n")
