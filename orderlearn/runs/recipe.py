"""The main job, one path for every method: data -> model -> fit -> comparator view -> bank
evaluation -> report.

A regressor walks the same road as a comparator from "fit" on: its comparator view
(:class:`~comparators.regression_comparator.RegressionComparator`) is compared with the same
bank, under the same scorer options, as any comparator; its direct route is its own score.
``run_experiment(config)`` writes into ``config.output_dir``: ``config.yaml``, ``<kind>/``
(the training loop's checkpoints and metrics; kind = comparator | regressor), ``bank.json``,
``scorer.json`` (the :class:`~orderlearn.bank.scoring_recipe.ScoringRecipe` that ``score``,
``active``, ``predict`` and ``export`` load), ``scores.csv``, ``results.json``, ``report.md``, ``scatter.png``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from accelerate import Accelerator

import comparators
import scorers
from comparators.base import Comparator, Model

from orderlearn.bank.phase import bank_phase
from orderlearn.bank.references import ReferenceBank
from orderlearn.bank.route import BankRoute, Comparisons
from orderlearn.bank.scoring_recipe import RECIPE_FILE, ScoringRecipe, interval_coverage
from orderlearn.config import ExperimentConfig
from orderlearn.errors import ConfigError
from orderlearn.data.splits import load_second_test, load_test, load_training
from orderlearn.runs.direct import direct_classifications, direct_scores
from orderlearn.report.metrics import comparator_metrics, score_metrics
from orderlearn.engine.features import FeatureCache, FeatureExtractor
from orderlearn.engine.fitting import fit_model
from orderlearn.runs.outputs import write_run_outputs
from orderlearn.runs.lock import run_lock
from orderlearn.engine.training import TrainResult, find_resume_state, make_accelerator


def run_experiment(config: ExperimentConfig, resume: bool = False, accelerator: Optional[Accelerator] = None,
                   command: Optional[str] = None) -> dict[str, Any]:
    """Train, score and evaluate as configured; return the results dictionary (``command``, the
    command line that started the run, is recorded in it for the results tables)."""
    started = time.time()
    accelerator = accelerator or make_accelerator(config, Path(config.output_dir))
    with run_folder(config, accelerator, resume) as out:
        return run_in_folder(config, out, accelerator, resume, started, command)


def run_in_folder(config: ExperimentConfig, out: Path, accelerator: Accelerator, resume: bool, started: float,
                  command: Optional[str] = None) -> dict[str, Any]:
    """The run's sequence, inside its locked output folder."""
    model = build_model(config)
    splits = load_training(config.data)
    accelerator.print(f"data: {len(splits.train)} train, {len(splits.val)} validation images ({config.data.kind})")
    model.setup_from_training(splits.train)
    place_model(model, config, accelerator)
    features = feature_extractor(config, accelerator)
    trained = fit_model(model, splits, config, accelerator, features, out / config.task, resume)

    fitted = bank_phase(model, config, splits, out, [str(c.relative_to(out)) for c in bank_checkpoints(trained, config)],
                        features, accelerator)
    bank, route = fitted.bank, fitted.route
    test = load_test(config.data)
    accelerator.print(f"bank: {len(bank)} references; test: {len(test)} images")
    comparisons, scores = fitted.score(test)
    direct = direct_scores(model, trained.best_checkpoint, splits, test, config, accelerator, features, out / "direct")
    tests = [test] + ([load_second_test(config.data)] if config.data.second is not None else [])
    classified = direct_classifications(model, tests, config, accelerator, features) if direct is not None else {}

    results = collect_results(config, trained, bank, route, fitted.uncalibrated, fitted.calibration, comparisons, scores,
                              test, direct)
    if classified:
        results["direct"].update(classified)
    results.update(model.run_summary())
    if command is not None:
        results["command"] = command
    results["direct_how"] = "embedding head" if isinstance(model, Comparator) else "own score"
    results["seconds"] = time.time() - started
    if accelerator.is_main_process:
        model.write_figures(out)
        bank.save(out / "bank.json")
        route.recipe.save(out / RECIPE_FILE)
        print("\n" + write_run_outputs(out, config.name, config.model.name, test, scores, direct, results))
    accelerator.end_training()
    return results


@contextlib.contextmanager
def run_folder(config: ExperimentConfig, accelerator: Accelerator, resume: bool) -> Iterator[Path]:
    """The run's output folder for the ``with`` block: locked against a second run (main
    process), checked for a resume state when resuming (before any data is read), with the
    resolved config in it and the global seed set."""
    out = Path(config.output_dir)
    with run_lock(out) if accelerator.is_main_process else contextlib.nullcontext():
        if resume:
            find_resume_state(out / config.task / "checkpoints", accelerator)
        torch.manual_seed(config.seed)
        if accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            config.save(out / "config.yaml")
        yield out


def build_model(config: ExperimentConfig) -> Model:
    """The registered model of ``config.model`` (its kind was checked against ``config.task``
    when the config loaded)."""
    model = comparators.create(config.model.name, **config.model.args)
    if model.uses_second_database != (config.data.second is not None):
        needs = "learns a task from data.second; set it" if model.uses_second_database else "learns nothing from data.second; remove it"
        raise ConfigError(f"model {config.model.name!r} (as configured) {needs}")
    return model


def feature_extractor(config: ExperimentConfig, accelerator: Accelerator) -> FeatureExtractor:
    """Features cached on disk when they cannot change during the run (a frozen backbone)."""
    cache = FeatureCache.from_setting(config.feature_cache) if config.train.frozen_backbone else None
    return FeatureExtractor(accelerator, config.train.eval_batch_size, config.train.num_workers, cache,
                            channels_last=config.train.channels_last)


def place_model(model: Model, config: ExperimentConfig, accelerator: Accelerator) -> Model:
    """``model`` on the run's device, its conv weights (and so their outputs) in channels-last order
    when ``train.channels_last`` says so: the CPU's oneDNN convolutions run that 1.3-2.3 times
    faster than contiguous float32 (benchmarks/cpu_precision.py) with the same numbers to 1e-5,
    where bf16 autocast is faster only on a CPU with bf16 arithmetic. Every path that computes a
    run's features places its model here, so they match the key :func:`feature_extractor` caches
    them under."""
    fmt = torch.channels_last if config.train.channels_last else torch.contiguous_format
    return model.to(accelerator.device, memory_format=fmt)


def bank_checkpoints(trained: TrainResult, config: ExperimentConfig) -> list[Path]:
    """The checkpoint(s) the bank route averages: the validation-selected one, or the last K."""
    if config.ensemble_last == 1:
        return [trained.best_checkpoint]
    epochs = range(config.train.epochs - config.ensemble_last + 1, config.train.epochs + 1)
    return [trained.output_dir / "checkpoints" / f"epoch_{e:03d}" / "model.safetensors" for e in epochs]


def collect_results(config: ExperimentConfig, trained: TrainResult, bank: ReferenceBank, route: BankRoute,
                    uncalibrated: ScoringRecipe, calibration: dict[str, Any], comparisons: Comparisons,
                    scores: "scorers.Scores", test: list, direct: Optional[torch.Tensor]) -> dict[str, Any]:
    """results.json: training history, both routes' metrics, the scoring recipe, diagnostics."""
    truth = [s.score for s in test]
    results: dict[str, Any] = {
        "name": config.name, "method": config.model.name, "task": config.task,
        "train": {"best_epoch": trained.best_epoch, "best_" + config.train.select_metric: trained.best_metric, "history": trained.history},
        "bank_size": len(bank), "scorer": dataclasses.asdict(route.recipe),
        "order_learned": score_metrics(scores.value.tolist(), truth, config.cs_thresholds),
        "link_calibration": None, "interval_calibration": None, "interval_coverage": interval_coverage(scores, truth),
        "reference_calibration": calibration.get("reference_positions"),
        "comparator_metrics": comparator_metrics(comparisons.forward, torch.tensor(truth, dtype=torch.float64), bank.scores,
                                                 config.pairs.margin, comparisons.reverse, comparisons.mask),
    }
    if comparisons.calls is not None:
        results["comparator_calls_per_image"] = float(comparisons.calls.double().mean())
    if "link" in calibration or "reference_positions" in calibration:  # the same comparisons before calibration
        before = uncalibrated.score_with(comparisons.for_scoring, bank.scores, mask=comparisons.mask)
        results["order_learned_uncalibrated"] = score_metrics(before.value.tolist(), truth, config.cs_thresholds)
    if "link" in calibration:
        results["link_calibration"] = {**{k: calibration["link"][k] for k in ("slope", "tie_width")},
                                       "default_link": calibration["link"]["before"]}
    if "std_scale" in calibration:
        raw = dataclasses.replace(route.recipe, interval_scale=None).score_with(comparisons.for_scoring, bank.scores, mask=comparisons.mask)
        results["interval_calibration"] = {"std_scale": calibration["std_scale"], "coverage_uncalibrated": interval_coverage(raw, truth)}
    if direct is not None:
        results["direct"] = score_metrics(direct.tolist(), truth, config.cs_thresholds)
    return results
