"""A bank drawn from another dataset, after the run: ``bank.from``, ``bank.size`` N, ``bank.draws`` K.

A run's own bank holds its training faces on its training scale. ``bank.from`` names another
dataset section (the keys of ``data:``; those it leaves out are the run's, so it may be the same
faces under another definition of the score, other groups, or another database): after the run's
own phases, K seeded draws of N references are taken from that section's training faces
(validation excluded, never test faces), and that section's test split is scored against each
draw by both routes on the references' scale
(:func:`orderlearn.runs.new_scale.score_on_new_scale`): the comparator against the N references
self-calibrated on them, and the run's direct score mapped by a monotone fit on the same N. Only
the references are fitted on: the run's checkpoint, scorer and direct head are the ones it chose
on validation.

A draw is that of ``orderlearn compare --new-scale`` with the same seed: draw d of N references is
seeded by (``bank.seed``, N, d) alone. When the section scores faces on the run's scale (the same
``score_definition``, ``score_low`` and ``score_high``), the run's own routes (its bank, its
unmapped direct score) are scored on the same test faces beside the draws, and ``CS(t)`` of the
run's ``cs_thresholds`` is reported (t is in the run's units: ages). The section's faces are read
and checked with the run's own data, before any training (:func:`load_foreign_data`), so a missing
folder or too few faces stop the run before it trains.

results.json holds it all under ``foreign_bank``; report.md a short table
(:func:`orderlearn.report.foreign_bank_table.foreign_bank_markdown`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from accelerate import Accelerator

from comparators.base import Model

from orderlearn.bank.phase import BankPhase
from orderlearn.config import DataConfig, ExperimentConfig
from orderlearn.data.splits import RunData, load_run_data
from orderlearn.errors import ConfigError, DataError
from orderlearn.report.foreign_bank_table import summarise_draws
from orderlearn.report.metrics import score_metrics
from orderlearn.runs.loaded import LoadedRun, ReferenceImages
from orderlearn.runs.new_scale import direct_scores, route_values, score_draws
from orderlearn.runs.new_scale_study import DRAWS
from orderlearn.types import ScoredImage

DEFAULT_DRAWS = DRAWS  # bank.draws when unset: the new-scale protocols' K


@dataclass
class ForeignData:
    """``bank.from``'s faces, read once: the pool the references are drawn from (its training faces,
    its validation carved off and left out), its test split, and how many of those test faces the
    run itself trained or was selected on (the same file: their scores say less)."""

    section: DataConfig
    pool: list[ScoredImage]
    test: list[ScoredImage]
    seen_in_training: int


def load_foreign_data(config: ExperimentConfig, own: RunData) -> Optional[ForeignData]:
    """``bank.from``'s training pool and test split (None without ``bank.from``), read and checked
    like ``data`` (:func:`~orderlearn.data.splits.load_run_data`); a ConfigError naming
    ``bank.size`` when the pool holds fewer faces than a draw takes."""
    section = config.bank.from_
    if section is None:
        return None
    data = load_run_data(section)
    pool, test = data.training.train, data.test
    if config.bank.size is None or config.bank.size > len(pool):
        raise ConfigError(f"bank.size: {config.bank.size} references per draw; bank.from gives {len(pool)} training "
                          "faces (validation excluded) to draw from")
    if not test:
        raise DataError("bank.from: its test split holds no faces to score")
    trained_on = {s.path.resolve() for s in own.training.train + own.training.val}
    seen = sum(s.path.resolve() in trained_on for s in test)
    return ForeignData(section, pool, test, seen)


def on_run_scale(config: ExperimentConfig) -> bool:
    """Whether ``bank.from`` scores faces as ``data`` does: the same definition and range, so the
    run's own routes and its CS(t) thresholds mean the same on its test faces."""
    source, data = config.bank.from_, config.data
    return source is not None and (source.score_definition, source.score_low, source.score_high) == (
        data.score_definition, data.score_low, data.score_high)


def loaded_in_run(out: Path, config: ExperimentConfig, model: Model, phase: BankPhase,
                  accelerator: Accelerator) -> LoadedRun:
    """The run being made, as a :class:`LoadedRun` (what the new-scale functions score with): its
    model, bank and calibrated route as its bank phase left them, its folder for the checkpoints
    and the direct head. Nothing is read from disk but those weights."""
    return LoadedRun(out, config, model, phase.bank, accelerator, phase.route, ReferenceImages(phase.bank), None,
                     "not measured yet", None, is_bundle=False)


def foreign_bank_results(loaded: LoadedRun, data: ForeignData,
                         say: Callable[[str], None] = print) -> dict[str, Any]:
    """The ``foreign_bank`` entry of results.json: per draw both routes' metrics on ``data``'s test
    faces and what was fitted, their mean ± std over draws, and (on the run's scale) the run's own
    routes; ``say`` shows the progress, a line per draw."""
    config = loaded.config
    bank, source = config.bank, data.section
    size, draws = int(bank.size or 0), bank.draws or DEFAULT_DRAWS
    same_scale = on_run_scale(config)
    cs = list(config.cs_thresholds) if same_scale else []
    truth = [s.score for s in data.test]
    say(f"bank.from: {draws} draws of {size} references from {len(data.pool)} training faces "
        f"({source.kind}, {source.score_definition}); test: {len(data.test)} images"
        + (f", {data.seen_in_training} of them among the run's training faces" if data.seen_in_training else ""))
    results: dict[str, Any] = {
        "dataset": {k: getattr(source, k) for k in ("kind", "root", "split", "score_definition", "score_low", "score_high",
                                                     "group_by", "train_groups", "test_groups")},
        "references": size, "draws": draws, "seed": bank.seed, "pool": len(data.pool), "test_images": len(data.test),
        "test_faces_seen_in_training": data.seen_in_training, "on_run_scale": same_scale, "cs_thresholds": cs,
    }
    if same_scale:  # the run's own routes on these faces, N-free
        results["run_routes"] = {"order_learned": score_metrics(loaded.score(data.test, "bank.from test")[1].value.tolist(),
                                                                truth, cs)}
    direct = direct_scores(loaded, data.test, "bank.from test")  # the same for every draw
    if same_scale and direct is not None:
        results["run_routes"]["direct"] = score_metrics(direct.tolist(), truth, cs)
    per_draw = []
    for draw, new in score_draws(loaded, data.pool, data.test, size, draws, bank.seed, "bank.from test",
                                 lambda line: say(f"bank.from: {line}"), direct):
        per_draw.append({"draw": draw, "calibration": new.calibration,
                         **{key: score_metrics(values, truth, cs) for key, values in route_values(new).items()}})
    results["per_draw"] = per_draw
    results["summary"] = summarise_draws(per_draw)
    return results
