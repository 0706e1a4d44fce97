"""The bank route and the bank phase on a tiny trained comparator: the bank, the route's
probabilities, calibration returning a new scoring recipe, the run's own scores reproduced, and a
run folder and its bundle loading into the same LoadedRun."""
from __future__ import annotations

import copy
import csv
import dataclasses
from pathlib import Path

import pytest
import torch

import scorers
from orderlearn.bank.calibration import calibrate
from orderlearn.bank.phase import bank_phase
from orderlearn.bank.references import ReferenceBank
from orderlearn.bank.scoring_recipe import RECIPE_FILE, ScoringRecipe
from orderlearn.cli import main
from orderlearn.config import config_from_dict
from orderlearn.data.splits import load_test, load_training
from orderlearn.runs.loaded import LoadedRun
from orderlearn.runs.recipe import run_experiment
from safetensors.torch import load_file

from test_training_pipeline import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_run(synthetic_root, tmp_path_factory):
    """A two-epoch tiny comparator run (exact BT, both orders, calibrated link and intervals) and its bundle."""
    home = tmp_path_factory.mktemp("bank-phase")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests run (one_thread): sums in the same order, the same last bits
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(home)
            mp.setenv("ORDERLEARN_CACHE_DIR", str(home / "cache"))
            raw = tiny_config(synthetic_root, home / "run", epochs=2)
            raw["scorer"] = {"name": "bt-exact", "both_orders": True, "calibrate_link": True, "calibrate_intervals": True}
            raw["direct_baseline"] = False
            run_experiment(config_from_dict(raw))
            assert main(["export", str(home / "run"), "--out", str(home / "bundle"), "--template-faces", "5"]) == 0
    finally:
        torch.set_num_threads(threads)
    return home / "run", home / "bundle"


@pytest.fixture(scope="module")
def loaded(tiny_run) -> LoadedRun:
    """The run, loaded with the run's feature cache (features recomputed in other batches could
    differ from the run's in the last bit, and the phase is compared with the run exactly)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ORDERLEARN_CACHE_DIR", str(tiny_run[0].parent / "cache"))
        return LoadedRun.load(tiny_run[0])


def read_scores(path: Path) -> list[tuple[str, str, str]]:
    with path.open(newline="") as handle:
        return [(r["path"], r["score"], r["std"]) for r in csv.DictReader(handle)]


def test_the_bank_phase_rebuilds_the_runs_bank_and_recipe_and_scores(loaded, tiny_run):
    run = tiny_run[0]
    config = loaded.config
    splits = load_training(config.data)
    phase = bank_phase(loaded.model, config, splits, run, loaded.recipe.checkpoints, loaded.route.features,
                       loaded.accelerator)
    saved_bank = ReferenceBank.load(run / "bank.json")
    assert [(s.path, s.score) for s in phase.bank.samples] == [(s.path, s.score) for s in saved_bank.samples]
    assert 0 < len(phase.bank) <= len(splits.train)
    assert phase.recipe == ScoringRecipe.load(run / RECIPE_FILE)  # the recipe the run saved, refitted
    assert phase.uncalibrated.link_source == "default" and phase.uncalibrated.interval_scale is None
    assert phase.recipe.link_source == "calibrated" and phase.recipe.interval_scale > 0
    assert set(phase.calibration) == {"link", "std_scale"}
    test = load_test(config.data)
    _, scores = phase.score(test)
    again = [(str(s.path), f"{float(v):.6f}", f"{float(d):.6f}") for s, v, d in zip(test, scores.value, scores.std)]
    assert again == read_scores(run / "scores.csv")


def test_calibration_returns_a_new_recipe_and_leaves_the_old_one(loaded):
    config = loaded.config
    val = load_training(config.data).val
    start = ScoringRecipe.from_config(config, loaded.recipe.checkpoints)
    route = loaded.route.with_recipe(start)
    before = copy.deepcopy(start)
    calibrated, report = calibrate(route, val, link=True, intervals=True)
    assert calibrated is not start and start == before and route.recipe is start
    assert calibrated.link == {k: report["link"][k] for k in ("slope", "tie_width")} and calibrated.link != start.link
    assert calibrated.interval_scale == report["std_scale"] and start.interval_scale is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        start.link = calibrated.link
    unchanged, nothing = calibrate(route, val, link=False, intervals=False)
    assert unchanged is start and nothing == {}


def test_the_route_gives_probabilities_for_every_image_and_reference(loaded):
    test = load_test(loaded.config.data)[:7]
    comparisons = loaded.route.comparisons(test, "test")
    n, r = len(test), len(loaded.bank)
    assert comparisons.forward.shape == comparisons.reverse.shape == comparisons.for_scoring.shape == (n, r, 3)
    for probs in (comparisons.forward, comparisons.reverse, comparisons.for_scoring):
        assert torch.allclose(probs.sum(-1), torch.ones(n, r), atol=1e-5) and probs.min() >= 0
    assert torch.equal(comparisons.for_scoring, scorers.combine_orders(comparisons.forward, comparisons.reverse))
    assert comparisons.mask is None and comparisons.calls is None


def test_a_run_and_its_bundle_load_alike_and_score_the_same(loaded, tiny_run, monkeypatch):
    run, bundle_dir = tiny_run
    monkeypatch.setenv("ORDERLEARN_CACHE_DIR", str(run.parent / "cache"))
    bundle = LoadedRun.load(bundle_dir)
    assert bundle.is_bundle and not loaded.is_bundle
    assert bundle.config == loaded.config
    where = {"checkpoints": [], "bank_file": ""}  # the files' names differ, nothing else
    assert dataclasses.replace(bundle.recipe, **where) == dataclasses.replace(loaded.recipe, **where)
    assert [s.score for s in bundle.bank.samples] == [s.score for s in loaded.bank.samples]
    assert [s.path.name for s in bundle.bank.samples] == [s.path.name for s in loaded.bank.samples]
    for ours, theirs in zip(bundle.checkpoints, loaded.checkpoints, strict=True):
        a, b = load_file(str(ours)), load_file(str(theirs))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert repr(bundle.preprocess()) == repr(loaded.preprocess())
    assert type(bundle.model) is type(loaded.model)
    placed = [(p.device, p.is_contiguous()) for p in bundle.model.parameters()]
    assert placed == [(p.device, p.is_contiguous()) for p in loaded.model.parameters()]  # both placed alike
    test = load_test(loaded.config.data)
    _, from_bundle = bundle.score(test)
    _, from_run = loaded.score(test)
    assert torch.equal(from_bundle.value, from_run.value) and torch.equal(from_bundle.std, from_run.std)


def test_a_budgeted_checkpoint_ensemble_compares_under_each_checkpoints_weights(loaded, tiny_run):
    """Under a budget, each checkpoint's view answers only when active selection asks, after every
    view was made: it must answer under its own weights, not the last checkpoint's. With a budget
    of the whole bank, the budgeted answers are the full bank's."""
    run = tiny_run[0]
    epochs = sorted(str(p.relative_to(run)) for p in (run / "comparator" / "checkpoints").glob("epoch_*/model.safetensors"))
    assert len(epochs) == 2
    test = load_test(loaded.config.data)[:5]
    r = len(loaded.bank)
    ensemble = dataclasses.replace(loaded.recipe, checkpoints=epochs, view_states=[], budget=r, active_batch=r)
    route = loaded.route.with_recipe(ensemble)
    budgeted = route.comparisons(test, "test")
    full = route.comparisons(test, "test", full_bank=True)
    assert budgeted.mask.all()
    assert torch.allclose(budgeted.for_scoring, full.for_scoring, atol=1e-5)
    last = route.with_recipe(dataclasses.replace(ensemble, checkpoints=epochs[-1:])).comparisons(test, "test", full_bank=True)
    assert not torch.allclose(last.for_scoring, full.for_scoring, atol=1e-4)  # the checkpoints differ
