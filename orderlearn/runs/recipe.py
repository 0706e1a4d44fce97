"""The main job as a recipe, one path for every method: setup -> data -> fit -> bank -> direct -> report
(with ``scorer.direct_prior``, the fused route after direct; with ``bank.from``, a bank from another
dataset before report).

Each phase is a function that takes the state the phases before it left (small dataclasses:
:class:`RunSetup`, :class:`Fitted`, :class:`Banked`, :class:`Direct`) and returns its own, so a
reader follows the run top to bottom in :func:`run_experiment` and a phase can be run or tested
on its own. The run's folder is handled once, in :func:`setup`: the lock
(:mod:`orderlearn.runs.lock`), the resume lookup and the saved config; the training loop
(:mod:`orderlearn.engine`) is handed a checkpoint store and the resume state and knows nothing
of run folders.

A regressor walks the same road as a comparator from "fit" on: its comparator view
(:class:`~comparators.regression_comparator.RegressionComparator`) is compared with the same
bank, under the same scorer options, as any comparator; its direct route is its own score.
``run_experiment(config)`` writes into ``config.output_dir``: ``config.yaml``, ``<kind>/``
(the training loop's checkpoints and metrics; kind = comparator | regressor), ``direct/`` (a
comparator's direct head), ``bank.json``, ``scorer.json`` (the
:class:`~orderlearn.bank.scoring_recipe.ScoringRecipe` that ``score``, ``active``, ``predict`` and
``export`` load),
``scores.csv``, ``val_scores.csv`` (the validation images scored by both routes, as the test
images were: what ``orderlearn blend`` chooses its weights on without scoring anything again),
``results.json``, ``report.md``, ``scatter.png``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from accelerate import Accelerator

import scorers
from comparators.base import Comparator, Model

from orderlearn.bank.comparisons import EmbeddingMemo
from orderlearn.bank.references import ReferenceBank
from orderlearn.bank import phase as bank_route
from orderlearn.bank.route import BankRoute, Comparisons
from orderlearn.bank.scoring_recipe import RECIPE_FILE, ScoringRecipe, interval_coverage
from orderlearn.config import ExperimentConfig
from orderlearn.errors import ConfigError
from orderlearn.data.splits import TrainingSplits, load_run_data
from orderlearn.runs.direct import direct_classifications, direct_scores
from orderlearn.report.metrics import comparator_metrics, score_metrics
from orderlearn.engine.checkpoints import CheckpointStore, ResumeState
from orderlearn.engine.features import FeatureExtractor
from orderlearn.engine.fitting import fit_model
from orderlearn.engine.runtime import deterministic_algorithms, make_accelerator
from orderlearn.engine.training import TrainResult
from orderlearn.runs.fused import FusedRoute, fused_route
from orderlearn.runs.foreign_bank import ForeignData, foreign_bank_results, load_foreign_data, loaded_in_run
from orderlearn.runs.model_setup import build_model, feature_extractor, place_model
from orderlearn.runs.outputs import VAL_SCORES_FILE, write_run_outputs, write_scores_csv
from orderlearn.runs.lock import LOCK_NAME, run_lock
from orderlearn.types import ScoredImage


def run_experiment(config: ExperimentConfig, resume: bool = False, accelerator: Optional[Accelerator] = None,
                   command: Optional[str] = None, overwrite: bool = False) -> dict[str, Any]:
    """Train, score and evaluate as configured; return the results dictionary (``command``, the
    command line that started the run, is recorded in it for the results tables). A folder
    that already holds something is continued (``resume``), emptied first (``overwrite``) or
    refused."""
    started = time.time()
    with setup(config, resume, accelerator, overwrite) as run:
        data = load_run_data(config.data)  # each database read and checked once, before any training
        foreign = load_foreign_data(config, data)  # bank.from's faces (None without it), checked before training too
        fitted = fit_phase(run, data.training)
        banked = bank_phase(run, fitted, data.test)
        direct = direct_phase(run, fitted, data.tests)
        fused = fused_phase(run, fitted, banked, direct)
        foreign_results = foreign_phase(run, fitted, banked, foreign)
        return report_phase(run, fitted, banked, direct, started, command, foreign_results, fused)


# ---------------------------------------------------------------------- setup
@dataclass
class RunSetup:
    """What every phase works in: the config, the locked output folder, the accelerator, the
    training loop's checkpoint store (``<out>/<kind>/``) and the state to resume from (None:
    a fresh run)."""

    config: ExperimentConfig
    out: Path
    accelerator: Accelerator
    store: CheckpointStore
    resume_state: Optional[ResumeState]


@contextlib.contextmanager
def setup(config: ExperimentConfig, resume: bool = False, accelerator: Optional[Accelerator] = None,
          overwrite: bool = False) -> Iterator[RunSetup]:
    """The run's output folder for the ``with`` block, handled here and nowhere else: locked
    against a second run (main process); when it already holds something, its resume state found
    (``resume``; a ConfigError when there is none), or emptied (``overwrite``), or a ConfigError
    (a fresh run would mix its files with the old run's); the resolved config saved in it, the
    global seed set, PyTorch's deterministic kernels on. All before any data is read."""
    out = Path(config.output_dir)
    accelerator = accelerator or make_accelerator(config, out)
    with run_lock(out) if accelerator.is_main_process else contextlib.nullcontext(), deterministic_algorithms():
        if not resume:
            claim_output_dir(out, overwrite, accelerator.is_main_process)
        store = CheckpointStore(out / config.task)
        state = store.latest_resume_state(accelerator.print) if resume else None
        torch.manual_seed(config.seed)
        if accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            config.save(out / "config.yaml")
        yield RunSetup(config, out, accelerator, store, state)


def claim_output_dir(out: Path, overwrite: bool, main_process: bool) -> None:
    """A fresh run's folder: empty (but for the lock, and the config.yaml of a run that stopped
    before it trained anything, which this run rewrites), or emptied when ``overwrite`` (main
    process); otherwise a ConfigError naming what is there, since a new run would overwrite
    results.json, report.md and scores.csv and leave the old run's later epochs and direct/
    head beside its own."""
    held = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir() if p.name != LOCK_NAME) if out.is_dir() else []
    if set(held) <= {"config.yaml"}:
        return
    if not overwrite:
        shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        raise ConfigError(f"output_dir: {out} already holds a run ({shown}); pass --resume to continue it, --overwrite "
                          "to empty it first, or choose another output_dir")
    if main_process:
        for name in held:
            path = out / name.rstrip("/")
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


# ---------------------------------------------------------------------- fit
@dataclass
class Fitted:
    """The trained model (its last epoch's weights in memory), the data it was fitted on,
    the feature extractor every later phase computes features through and the faces' embeddings
    per checkpoint that the bank and direct routes share."""

    model: Model
    splits: TrainingSplits
    features: FeatureExtractor
    trained: TrainResult
    embeddings: EmbeddingMemo = field(default_factory=EmbeddingMemo)


def fit_phase(run: RunSetup, splits: TrainingSplits) -> Fitted:
    """Build the model and train it on ``splits`` (or resume training)."""
    config, accelerator = run.config, run.accelerator
    model = build_model(config)
    accelerator.print(f"data: {len(splits.train)} train, {len(splits.val)} validation images ({config.data.kind})")
    model.setup_from_training(splits.train)
    place_model(model, config, accelerator)
    features = feature_extractor(config, accelerator)
    trained = fit_model(model, splits, config, accelerator, features, run.store, run.resume_state)
    return Fitted(model, splits, features, trained)


# ---------------------------------------------------------------------- bank
@dataclass
class Banked:
    """The bank route's state: the fitted bank phase (references, calibrated scoring recipe, the
    recipe before calibration, the calibration's report), the test images, their comparisons
    with the bank and their scores, and the validation images' scores."""

    phase: bank_route.BankPhase
    test: list[ScoredImage]
    comparisons: Comparisons
    scores: "scorers.Scores"
    val_scores: "scorers.Scores"


def bank_phase(run: RunSetup, fitted: Fitted, test: list[ScoredImage]) -> Banked:
    """The order-learned route: the bank phase of :mod:`orderlearn.bank.phase` (bank, views and
    calibration on validation), then the validation and the ``test`` images scored through the bank."""
    config, out = run.config, run.out
    checkpoints = [str(c.relative_to(out)) for c in bank_checkpoints(fitted.trained, config)]
    phase = bank_route.bank_phase(fitted.model, config, fitted.splits, out, checkpoints, fitted.features,
                                  run.accelerator, memo=fitted.embeddings)
    run.accelerator.print(f"bank: {len(phase.bank)} references; test: {len(test)} images")
    comparisons, scores = phase.score(test)
    return Banked(phase, test, comparisons, scores, phase.score_validation(fitted.splits.val))


def bank_checkpoints(trained: TrainResult, config: ExperimentConfig) -> list[Path]:
    """The checkpoint(s) the bank route averages: the validation-selected one, or the last K."""
    if config.ensemble_last == 1:
        return [trained.best_checkpoint]
    return trained.store.last_k(config.ensemble_last)


# ---------------------------------------------------------------------- direct
@dataclass
class Direct:
    """The direct route: a score per test image (None for a comparator without a direct head)
    and the classification metrics of the tasks a regressor also predicts."""

    scores: Optional[torch.Tensor]
    classified: dict[str, float]
    val_scores: Optional[torch.Tensor] = None  # the same route on the validation images


def direct_phase(run: RunSetup, fitted: Fitted, tests: list[list[ScoredImage]]) -> Direct:
    """Scores of the first test set without the bank, from the validation-selected checkpoint, and
    the classification metrics of every test set's tasks (:mod:`orderlearn.runs.direct`)."""
    config, accelerator = run.config, run.accelerator
    model, features = fitted.model, fitted.features
    direct = direct_scores(model, fitted.trained.best_checkpoint, fitted.splits, tests[0], config, accelerator, features,
                           CheckpointStore(run.out / "direct"), fitted.embeddings)
    if direct is None:
        return Direct(None, {})
    return Direct(direct.test, direct_classifications(model, tests, config, accelerator, features), direct.val)


# ---------------------------------------------------------------------- fused
def fused_phase(run: RunSetup, fitted: Fitted, banked: Banked, direct: Direct) -> Optional[FusedRoute]:
    """With ``scorer.direct_prior``: the bank route with each face's direct score as its prior,
    validation and test (:mod:`orderlearn.runs.fused`); None without it."""
    config = run.config
    if not config.scorer.direct_prior:
        return None
    if direct.scores is None or direct.val_scores is None:  # the config checks make this unreachable
        raise ConfigError("scorer.direct_prior: the run has no direct head to take the prior from")
    run.accelerator.print("fused route: the direct score as each face's prior")
    return fused_route(banked.phase.route, fitted.splits.val, banked.test, direct.val_scores, direct.scores,
                       config.train.select_metric, config.cs_thresholds, banked.comparisons, banked.phase.validation)


# ---------------------------------------------------------------------- bank.from
def foreign_phase(run: RunSetup, fitted: Fitted, banked: Banked, data: Optional[ForeignData]) -> Optional[dict[str, Any]]:
    """With ``bank.from``: its test faces scored against ``bank.draws`` seeded banks of ``bank.size``
    of its training faces, by both routes on its scale (:mod:`orderlearn.runs.foreign_bank`); None
    without it. Every weight it loads is one the run's own phases loaded last, so the model is
    left as they left it."""
    if data is None:
        return None
    loaded = loaded_in_run(run.out, run.config, fitted.model, banked.phase, run.accelerator)
    return foreign_bank_results(loaded, data, run.accelerator.print)


# ---------------------------------------------------------------------- report
def report_phase(run: RunSetup, fitted: Fitted, banked: Banked, direct: Direct, started: float,
                 command: Optional[str] = None, foreign: Optional[dict[str, Any]] = None,
                 fused: Optional[FusedRoute] = None) -> dict[str, Any]:
    """results.json and the other outputs (main process); returns the results dictionary
    (``foreign``: the ``bank.from`` phase's entry, ``foreign_bank``; ``fused``: the fused route's,
    ``fused`` and ``fused_route``)."""
    config, out, accelerator, model = run.config, run.out, run.accelerator, fitted.model
    phase = banked.phase
    results = collect_results(config, fitted.trained, phase.bank, phase.route, phase.uncalibrated, phase.calibration,
                              banked.comparisons, banked.scores, banked.test, direct.scores)
    if direct.classified:
        results["direct"].update(direct.classified)
    if foreign is not None:
        results["foreign_bank"] = foreign
    if fused is not None:
        truth = [s.score for s in banked.test]
        results["fused"] = score_metrics(fused.scores.value.tolist(), truth, config.cs_thresholds)
        results["fused_route"] = fused.report
    results.update(model.run_summary())
    if command is not None:
        results["command"] = command
    results["direct_how"] = "embedding head" if isinstance(model, Comparator) else "own score"
    results["seconds"] = time.time() - started
    if accelerator.is_main_process:
        model.write_figures(out)
        phase.bank.save(out / "bank.json")
        phase.recipe.save(out / RECIPE_FILE)
        write_scores_csv(out / VAL_SCORES_FILE, fitted.splits.val, banked.val_scores, direct.val_scores)
        print("\n" + write_run_outputs(out, config.name, config.model.name, banked.test, banked.scores, direct.scores,
                                       results, None if fused is None else fused.scores.value))
    accelerator.end_training()
    return results


# ---------------------------------------------------------------------- results
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
