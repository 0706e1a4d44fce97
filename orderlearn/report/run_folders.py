"""Reading the folder of a trained run for ``orderlearn compare`` (:mod:`.tables`), and grouping
runs into methods: which method and fold a run is, what defines its experiment, and its
recorded metrics checked against its per-image scores.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import yaml

from orderlearn.errors import DataError
from orderlearn.report.metrics import EXTRA_METRIC, score_metrics
from orderlearn.report.scores_csv import read_scores_csv

METRICS = ("pc", "mae", "rmse", "spearman")
CHECKED = ("pc", "mae", "rmse")  # spearman can move with the CSV's rounding (ties)
TOLERANCE = 1e-4
FOLD_SUFFIX = re.compile(r"[-_](fold\d+)$")
DATASET_KEYS = ("kind", "root", "score_low", "score_high")
SYNTHETIC_KEYS = ("synthetic_images", "synthetic_image_size")  # with root unset, they name the generated set
ABSENT = "<absent>"


@dataclass(frozen=True)
class Route:
    key: str  # results.json key
    label: str  # what the table shows
    column: str  # scores.csv column


ROUTES = (Route("direct", "direct", "direct_score"), Route("order_learned", "order-learned", "score"),
          Route("fused", "fused", "fused_score"))  # fused: scorer.direct_prior (runs/fused.py)


@dataclass
class Run:
    """One trained run: where it is, which method and fold, its metrics and per-image scores."""

    path: Path
    method: str
    fold: str
    model: str
    task: str
    scorer: str
    experiment: dict[str, Any]  # flattened "key.sub" -> value: what must agree between folds of one method
    metrics: dict[str, dict[str, float]]  # route key -> results.json metrics
    truth: np.ndarray
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # route key -> scores
    trainable: str = "?"  # what trained: the whole network, the head only, or the backbone from a unit on
    pairs: str = "-"  # a comparator's pair recipe
    minutes: float = math.nan  # the run's wall time (training + scoring), from results.json
    command: str = ""  # the command line that made the run (results.json; older runs lack it)


def method_and_fold(name: str, split: str, where: Path) -> tuple[str, str]:
    """(method, fold): ``name`` minus a ``-foldK`` suffix, and the split that was run."""
    match = FOLD_SUFFIX.search(name)
    if match is None:
        return name, split
    if match.group(1) != split:
        raise DataError(f"{where}: config name {name!r} says {match.group(1)} but data.split is {split!r}")
    return name[: match.start()], split


def read_run(path: Path) -> Run:
    """Read a run folder; a missing file or results/scores that disagree is a DataError."""
    path = Path(path)
    files = {f: path / f for f in ("config.yaml", "results.json", "scores.csv")}
    missing = [f for f, p in files.items() if not p.is_file()]
    if missing:
        raise DataError(f"{path} is not a finished `orderlearn run` folder: missing {', '.join(missing)}")
    config = yaml.safe_load(files["config.yaml"].read_text()) or {}
    results = json.loads(files["results.json"].read_text())
    try:
        name, split = str(config["name"]), str(config["data"]["split"])
        model, task = str(config["model"]["name"]), str(config.get("task", "comparator"))
    except (KeyError, TypeError) as exc:
        raise DataError(f"{files['config.yaml']}: missing key {exc}") from None
    scorer = str((config.get("scorer") or {}).get("name", "?"))
    method, fold = method_and_fold(name, split, path)
    table = read_scores_csv(files["scores.csv"], require_truth=True)
    run = Run(path, method, fold, model, task, scorer, experiment_of(config), {}, table.truth,
              trainable=trainable_part(config), pairs=pair_recipe(config), minutes=float(results.get("seconds", math.nan)) / 60,
              command=str(results.get("command", "")))
    for route in ROUTES:
        if route.key not in results:
            continue
        predicted = table.column(route.column)
        if predicted is None:
            raise DataError(f"{path}: results.json has {route.key!r} metrics but scores.csv has no {route.column} values")
        _check_agreement(results[route.key], score_metrics(predicted, table.truth), path, route.key)
        run.metrics[route.key] = {m: float(v) for m, v in results[route.key].items() if m in METRICS or EXTRA_METRIC.match(m)}
        run.predictions[route.key] = predicted
    if not run.metrics:
        raise DataError(f"{files['results.json']} has neither 'direct' nor 'order_learned' metrics")
    return run


def trainable_part(config: dict[str, Any]) -> str:
    """What a run trained: ``whole network``, ``head`` (frozen features) or ``from <unit>``."""
    model = config.get("model") or {}
    if model.get("name") == "blend":  # runs/blend.py: nothing trained, its runs' scores weighted
        return "each run's own"
    unit = model.get("trainable_from", (model.get("args") or {}).get("trainable_from"))  # a saved config nests options in args
    if isinstance(unit, (list, tuple)):  # a fused backbone's split per branch; null: that branch frozen whole
        return "from " + " ‖ ".join("frozen" if u is None else str(u) for u in unit)
    if unit is not None:
        return f"from {unit}"
    return "head" if (config.get("train") or {}).get("frozen_backbone") else "whole network"


def pair_recipe(config: dict[str, Any]) -> str:
    if config.get("task", "comparator") != "comparator":
        return "-"
    pairs = config.get("pairs") or {}
    recipe = str(pairs.get("recipe", "balanced-3"))
    return f"in-batch ({pairs.get('in_batch_mix', 'balanced-3')})" if recipe == "in-batch" else recipe


def experiment_of(config: dict[str, Any]) -> dict[str, Any]:
    """What defines a run's experiment apart from its fold, as flat ``key.sub`` -> value."""
    data = config.get("data") or {}
    keys = DATASET_KEYS + (SYNTHETIC_KEYS if data.get("kind") == "synthetic" else ())
    flat: dict[str, Any] = {"task": config.get("task", "comparator")}
    flat.update({f"data.{k}": data.get(k, ABSENT) for k in keys})
    for section in ("model", "scorer"):
        flat.update(_flatten(config.get(section) or {}, section))
    return flat


def _flatten(tree: dict[str, Any], prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):  # an empty section adds nothing, so {} and a missing one agree
            flat.update(_flatten(value, f"{prefix}.{key}"))
        else:
            flat[f"{prefix}.{key}"] = value
    return flat


def first_difference(a: dict[str, Any], b: dict[str, Any]) -> Optional[str]:
    """The first key (in ``a``'s order, then ``b``'s) whose value differs, or None.

    A scorer option one run's saved config lacks counts as its default (the run was saved before
    the option existed, and ran as the default does); a model option has no such default here,
    so its absence still differs."""
    defaults = scorer_defaults()
    for key in list(a) + [k for k in b if k not in a]:
        if a.get(key, defaults.get(key, ABSENT)) != b.get(key, defaults.get(key, ABSENT)):
            return key
    return None


def scorer_defaults() -> dict[str, Any]:
    """The ``scorer.*`` keys of a default config, flattened as :func:`experiment_of` flattens them."""
    from orderlearn.config import ExperimentConfig

    return _flatten(ExperimentConfig().to_dict().get("scorer") or {}, "scorer")


def _check_agreement(recorded: dict[str, Any], recomputed: dict[str, float], path: Path, route: str) -> None:
    for m in CHECKED:
        a, b = float(recorded[m]), recomputed[m]
        same = (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOLERANCE
        if not same:
            raise DataError(f"{path}: {route} {m} is {a:.6f} in results.json but {b:.6f} from scores.csv")


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs by method, in order of first appearance, folds sorted; conflicts are DataErrors."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.method, []).append(run)
    for method, members in groups.items():
        seen: dict[str, Path] = {}
        for run in members:
            if run.fold in seen:
                raise DataError(f"method {method!r} has two runs on {run.fold}: {seen[run.fold]} and {run.path}")
            seen[run.fold] = run.path
        _check_same_experiment(method, members)
        members.sort(key=lambda r: r.fold)
    return groups


def _check_same_experiment(method: str, members: Sequence[Run]) -> None:
    """Every run of ``method`` agrees with its first on everything but the fold."""
    first = members[0]
    for run in members[1:]:
        key = first_difference(first.experiment, run.experiment)
        if key is not None:
            raise DataError(
                f"runs of method {method!r} differ in {key}: {first.experiment.get(key, ABSENT)!r} in {first.path} "
                f"but {run.experiment.get(key, ABSENT)!r} in {run.path}; only the fold (data.split) may differ, "
                "so give different experiments different config names"
            )
