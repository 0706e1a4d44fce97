"""One run path for every method: a comparator defined here runs through `orderlearn run` with no
other edit, a regressor's bank route is its degenerate comparator, a saved run scores again
exactly as it scored its test set, calibration sees ensembled probabilities, and the per-image
feature cache is shared across folds and changes no number."""
from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from torch import nn

import comparators
from comparators.base import Comparator
from comparators.transforms import make_transform
from orderlearn.cli import main
from orderlearn.config import config_from_dict
from orderlearn.runs.recipe import run_experiment
from orderlearn.runs.loaded import LoadedRun

from builders import TINY_IMAGE, small_run, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class PixelPairOptions:
    image_size: int = 16
    hidden: int = 8


class PixelPairComparator(Comparator):
    """A comparator that only implements ``forward(a, b)``: no embed/compare split."""

    def __init__(self, options: PixelPairOptions) -> None:
        super().__init__()
        self.config = options
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * options.image_size ** 2, options.hidden), nn.ReLU(),
                                 nn.Linear(options.hidden, 3))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([a, b], dim=1))

    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        return make_transform(self.config.image_size)


@comparators.register_model("test-pixel-pairs", kind="comparator", options=PixelPairOptions)
def build_pixel_pairs(**kwargs: Any) -> PixelPairComparator:
    return PixelPairComparator(PixelPairOptions(**kwargs))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_forward_only_comparator_registered_here_runs_through_orderlearn_run(synthetic_root, tmp_path):
    out = tmp_path / "run"
    raw = tiny_config(synthetic_root, out, epochs=1, frozen_backbone=False, batch_size=32)
    raw["model"] = {"name": "test-pixel-pairs", "image_size": 16}
    raw["pairs"] = {"total": 200, "val_total": 60}
    raw["bank"] = {"per_bin": 2}
    raw["scorer"] = {"name": "bt-exact", "both_orders": True}
    raw["direct_baseline"] = False
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(raw))  # JSON is YAML
    assert main(["run", "--config", str(config)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "test-pixel-pairs" and results["order_learned"]["n"] == 40
    assert results["comparator_metrics"]["pairs"] == 40 * results["bank_size"]  # every pair through forward(a, b)
    assert main(["score", "--run", str(out), "--out", str(tmp_path / "again.csv")]) == 0
    assert [r["score"] for r in read_csv(tmp_path / "again.csv")] == [r["score"] for r in read_csv(out / "scores.csv")]
    # a bad option of this model is a config error at load, naming the key
    assert main(["run", "--config", str(config), "-o", "model.hiden=4"]) == 2


@pytest.fixture(scope="module")
def dld_soft_run(synthetic_root, tmp_path_factory):
    """A tiny dual-label-distribution run scored through the bank with soft labels."""
    out = tmp_path_factory.mktemp("dld") / "run"
    raw = small_run(synthetic_root, out, {"name": "dual-label-distribution", **TINY_IMAGE, "resize": None}, name="dld-soft",
                    train={"select_metric": "val_pc"}, scorer={"name": "bt-grid", "step": 0.001, "soft": True})
    return out, run_experiment(config_from_dict(raw))


def test_soft_labels_through_the_bank_return_a_regressors_own_scores(dld_soft_run):
    """The degenerate-comparator identity: the view answers Link(ŝ − r) and the soft-label BT
    likelihood under that same link is a sum of cross-entropies minimised exactly at s = ŝ."""
    out, results = dld_soft_run
    assert results["scorer"]["link_source"] == "comparator"  # the scorer uses the view's own link
    rows = read_csv(out / "scores.csv")
    direct = torch.tensor([float(r["direct_score"]) for r in rows], dtype=torch.float64)
    bank = torch.tensor([float(r["score"]) for r in rows], dtype=torch.float64)
    inside = (direct > 1.0) & (direct < 5.0)
    assert inside.sum() == len(rows)  # DLD's score is an expectation over [1, 5]
    assert direct.std() > 1e-3  # the identity is not trivial: the regressor's scores vary
    assert (bank - direct).abs().max() <= 0.001 + 2e-6  # the grid step (and the CSV's 6 decimals)


def test_a_regressor_runs_score_command_reproduces_its_test_scores(dld_soft_run, tmp_path):
    out, _ = dld_soft_run
    assert main(["score", "--run", str(out), "--out", str(tmp_path / "scored.csv")]) == 0
    again, saved = read_csv(tmp_path / "scored.csv"), read_csv(out / "scores.csv")
    assert [(r["path"], r["score"], r["std"]) for r in again] == [(r["path"], r["score"], r["std"]) for r in saved]


def test_checkpoint_ensemble_is_calibrated_on_its_ensembled_probabilities(synthetic_root, tmp_path):
    raw = tiny_config(synthetic_root, tmp_path / "ens", epochs=2)
    raw["ensemble_last"] = 2
    raw["scorer"] = {"name": "bt-exact", "both_orders": True, "calibrate_link": True, "calibrate_intervals": True}
    raw["direct_baseline"] = False
    results = run_experiment(config_from_dict(raw))
    evaluator = results["scorer"]
    assert len(evaluator["checkpoints"]) == 2 and evaluator["link_source"] == "calibrated"

    saved = LoadedRun.load(tmp_path / "ens")
    from orderlearn.data.splits import load_training

    val = load_training(saved.config.data).val
    truth = torch.tensor([s.score for s in val], dtype=torch.float64)
    delta = (truth[:, None] - saved.bank.scores[None, :]).reshape(-1)
    before = comparators_link(results)

    def fitted_on(route_checkpoints: list[str]) -> tuple[float, float]:
        route = saved.route.with_recipe(dataclasses.replace(saved.recipe, checkpoints=route_checkpoints))
        probs = route.comparisons(val, "validation").for_scoring
        link = before.fit(delta, probs.reshape(-1, probs.shape[-1]).double())
        return link.slope, link.tie_width

    ensembled = fitted_on(evaluator["checkpoints"])
    assert ensembled == pytest.approx((evaluator["link"]["slope"], evaluator["link"]["tie_width"]), rel=1e-9)
    last_only = fitted_on(evaluator["checkpoints"][-1:])
    assert abs(last_only[0] - ensembled[0]) > 1e-6  # the members differ, so the ensemble's fit is its own


def comparators_link(results: dict):
    from scorers import Link

    return Link.from_config(results["link_calibration"]["default_link"])


@pytest.mark.slow  # four runs, ~6 s
def test_folds_share_the_feature_cache_and_a_warm_cache_changes_no_number(synthetic_root, tmp_path, feature_cache_dir):
    def run(name: str, split: str) -> dict:
        raw = tiny_config(synthetic_root, tmp_path / name, epochs=1)
        raw["data"]["split"] = split
        return run_experiment(config_from_dict(raw))

    cold = run("cold", "fold1")
    entries = {p.name for p in feature_cache_dir.rglob("*.npy")}
    assert len(entries) == 200  # every synthetic image once (train, validation and test of fold 1)
    warm = run("warm", "fold1")
    assert warm["order_learned"] == cold["order_learned"]
    assert warm["direct"] == cold["direct"]  # the direct head no longer depends on what the cache held
    run("fold2", "fold2")
    assert {p.name for p in feature_cache_dir.rglob("*.npy")} == entries  # fold 2: the same 200 images, no new entry


def test_a_budget_asks_only_that_many_references_in_every_scoring_path(synthetic_root, tmp_path):
    raw = tiny_config(synthetic_root, tmp_path / "budget", epochs=1)
    raw["scorer"] = {"name": "bt-exact", "both_orders": True, "budget": 6, "active_batch": 2, "calibrate_intervals": True}
    raw["direct_baseline"] = False
    results = run_experiment(config_from_dict(raw))
    assert results["bank_size"] > 6
    assert results["comparator_calls_per_image"] == 12  # 6 references, both orders
    assert results["comparator_metrics"]["pairs"] <= 40 * 6  # only the pairs asked are judged
    assert results["interval_calibration"]["std_scale"] > 0  # fitted on the budgeted validation scores
    assert main(["score", "--run", str(tmp_path / "budget"), "--out", str(tmp_path / "again.csv")]) == 0
    again, saved = read_csv(tmp_path / "again.csv"), read_csv(tmp_path / "budget" / "scores.csv")
    assert [r["score"] for r in again] == [r["score"] for r in saved]


@pytest.mark.slow  # a run and every scoring path, ~3 s
def test_reference_positions_are_fitted_saved_and_used_by_every_scoring_path(synthetic_root, tmp_path, monkeypatch):
    """scorer.calibrate_references: the positions are fitted on validation x bank,
    saved in scorer.json, and `score` and `active` score against them as the run did."""
    monkeypatch.chdir(tmp_path)
    raw = tiny_config(synthetic_root, tmp_path / "positions", epochs=1)
    raw["scorer"] = {"name": "bt-exact", "calibrate_references": True}  # (a tiny comparator's fitted link is flat)
    raw["direct_baseline"] = False
    results = run_experiment(config_from_dict(raw))
    evaluator = json.loads((tmp_path / "positions" / "scorer.json").read_text())
    positions = torch.tensor(evaluator["reference_positions"], dtype=torch.float64)
    saved = LoadedRun.load(tmp_path / "positions")
    assert positions.shape == saved.bank.scores.shape and evaluator["link_source"] == "default"
    shift = (positions - saved.bank.scores).abs()
    assert results["reference_calibration"]["mean_abs_shift"] == pytest.approx(float(shift.mean()), rel=1e-9)
    assert float(shift.max()) > 0  # a trained comparator does not place every reference at its rating
    assert results["order_learned_uncalibrated"]["n"] == results["order_learned"]["n"]
    assert main(["score", "--run", str(tmp_path / "positions"), "--out", str(tmp_path / "again.csv")]) == 0
    again, first = read_csv(tmp_path / "again.csv"), read_csv(tmp_path / "positions" / "scores.csv")
    assert [(r["path"], r["score"]) for r in again] == [(r["path"], r["score"]) for r in first]
    assert main(["active", "--run", str(tmp_path / "positions"), "--budgets", "4", "--out", str(tmp_path / "act")]) == 0
    report = json.loads((tmp_path / "act" / "active.json").read_text())
    assert report["references"] == "fitted positions"
    assert report["full_bank"]["pc"] == pytest.approx(results["order_learned"]["pc"], abs=1e-9)
    assert main(["active", "--run", str(tmp_path / "positions"), "--budgets", "4", "--references", "known",
                 "--out", str(tmp_path / "known")]) == 0
    known = json.loads((tmp_path / "known" / "active.json").read_text())
    assert known["references"] == "known scores" and known["full_bank"]["mae"] != report["full_bank"]["mae"]
