"""The fused route (``scorer.direct_prior``): the bank route with each face's direct score as its
prior, its width the direct route's validation RMSE, chosen on validation, reported as its own
route in results.json, scores.csv, report.md and the ``orderlearn compare`` table.

The run's fused scores are reproduced from the saved run; a narrow prior gives the direct
scores back and a wide one the plain bank route's; the config refuses the option where there is
no direct head or no comparator."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from scorers import GaussianPrior

from orderlearn.cli import main
from orderlearn.config import config_from_dict
from orderlearn.data.splits import load_test, load_training
from orderlearn.errors import ConfigError
from orderlearn.report.metrics import score_metrics
from orderlearn.runs.fused import fused_route, fused_scores, prior_width
from orderlearn.runs.loaded import LoadedRun
from orderlearn.runs.new_scale import direct_scores
from orderlearn.runs.recipe import run_experiment

from builders import small_run, tiny_config, TINY_IMAGE

pytestmark = pytest.mark.usefixtures("one_thread")
BUDGET = 8


@pytest.fixture(scope="module")
def run(synthetic_root, tmp_path_factory) -> Path:
    """The tiny comparator with its direct head, an active budget and the fused route (one epoch)."""
    raw = tiny_config(synthetic_root, tmp_path_factory.mktemp("fused") / "run", epochs=1)
    raw["scorer"] = {**raw["scorer"], "budget": BUDGET, "direct_prior": True}
    run_experiment(config_from_dict(raw))
    return Path(raw["output_dir"])


def test_the_option_is_refused_without_a_direct_head_or_a_comparator(synthetic_root, tmp_path):
    raw = tiny_config(synthetic_root, tmp_path / "a")
    raw["scorer"]["direct_prior"] = True
    raw["direct_baseline"] = False
    with pytest.raises(ConfigError, match="scorer.direct_prior: .*set direct_baseline: true"):
        config_from_dict(raw)
    regressor = small_run(synthetic_root, tmp_path / "b", {"name": "plain", **TINY_IMAGE}, name="plain",
                          scorer={"name": "bt-grid", "step": 0.01, "direct_prior": True})
    with pytest.raises(ConfigError, match="scorer.direct_prior: .*task is regressor"):
        config_from_dict(regressor)


def test_the_prior_width_is_the_validation_rmse_with_a_floor():
    assert prior_width(torch.tensor([1.0, -1.0]), 1.0, 5.0) == pytest.approx(1.0)
    assert prior_width(torch.tensor([0.0]), 1.0, 5.0) == pytest.approx(4e-6)


@pytest.mark.slow
def test_a_run_reports_the_fused_route_and_a_saved_run_reproduces_it(run, capsys):
    results = json.loads((run / "results.json").read_text())
    fused = results["fused_route"]
    assert set(results) >= {"fused", "fused_route", "direct", "order_learned"}
    assert fused["chosen_on_validation"] in ("order_learned", "fused") and fused["budget"] == BUDGET
    assert set(fused["validation"]) == {"order_learned", "fused", "direct"} and fused["prior_std"] > 0
    with (run / "scores.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert all(row["fused_score"] for row in rows)
    assert "| fused |" in (run / "report.md").read_text()

    loaded = LoadedRun.from_run(run)
    val, test = load_training(loaded.config.data).val, load_test(loaded.config.data)
    direct_val, direct_test = direct_scores(loaded, val, "validation"), direct_scores(loaded, test, "test")
    errors = direct_val - torch.tensor([s.score for s in val], dtype=torch.float64)
    assert prior_width(errors, 1.0, 5.0) == pytest.approx(fused["prior_std"])
    again = fused_route(loaded.route, val, test, direct_val, direct_test, loaded.config.train.select_metric)
    truth = [s.score for s in test]
    assert score_metrics(again.scores.value.tolist(), truth) == pytest.approx(
        {k: v for k, v in results["fused"].items()}, abs=1e-6)
    narrow = fused_scores(loaded.route, test, direct_test, 1e-4, "test").value
    assert (narrow - direct_test).abs().max().item() <= 0.01 + 1e-9  # the grid's step
    plain_comparisons = loaded.route.comparisons(test, "test")  # the plain route's questions: its init, no prior
    plain = loaded.route.score(plain_comparisons).value
    assert score_metrics(plain.tolist(), truth)["mae"] == pytest.approx(results["order_learned"]["mae"], abs=1e-6)
    wide = loaded.route.score(plain_comparisons, prior=GaussianPrior(direct_test, 1e4)).value
    assert (wide - plain).abs().max().item() <= 0.01 + 1e-9  # a prior this wide changes nothing but rounding

    out = run.parent / "table"
    assert main(["compare", str(run), "--out", str(out)]) == 0
    with (out / "compare.csv").open() as handle:
        routes = [row["route"] for row in csv.DictReader(handle)]
    assert routes == ["direct", "order-learned", "fused"]


@pytest.mark.slow
def test_active_with_the_direct_prior_reports_the_fused_route_per_budget(run, capsys):
    out = run.parent / "active"
    assert main(["active", "--run", str(run), "--budgets", "4", str(BUDGET), "--out", str(out), "--direct-prior"]) == 0
    report = json.loads((out / "active.json").read_text())
    results = json.loads((run / "results.json").read_text())
    assert report["fused"]["prior_std"] == pytest.approx(results["fused_route"]["prior_std"])
    assert report["fused"]["direct"]["mae"] == pytest.approx(results["direct"]["mae"], abs=1e-6)
    at_budget = [row for row in report["active"] if row["budget"] == BUDGET][0]
    # the run's own fused route is the same scorer, budget, prior and active selection
    assert at_budget["fused_mae"] == pytest.approx(results["fused"]["mae"], abs=1e-6)
    assert at_budget["fused_comparisons_mean"] <= BUDGET and "fused_pc" in report["full_bank"]
    with (out / "active.csv").open() as handle:
        assert "fused_pc" in next(csv.reader(handle))
    assert "Fused route (`--direct-prior`)" in (out / "active.md").read_text()


@pytest.mark.slow
def test_a_full_bank_fused_run_compares_the_validation_images_with_the_bank_once(synthetic_root, tmp_path, monkeypatch):
    """Calibration and the fused route read the same validation × bank comparisons (they do not
    depend on the link): the comparator answers them once, which matters for LLaVA."""
    import orderlearn.bank.route as route_module
    asked: list[str] = []
    real = route_module.compare_members

    def counted(members, accelerator, name, reverse):
        asked.append(name)
        return real(members, accelerator, name, reverse)

    monkeypatch.setattr(route_module, "compare_members", counted)
    raw = tiny_config(synthetic_root, tmp_path / "run", epochs=1)
    raw["scorer"] = {**raw["scorer"], "direct_prior": True, "calibrate_link": True, "calibrate_intervals": True}
    results = run_experiment(config_from_dict(raw))
    assert asked.count("validation") == 1 and asked.count("test") == 1, asked
    assert results["link_calibration"] is not None and results["fused_route"]["chosen_on_validation"]


def test_the_direct_route_leaves_the_bank_routes_weights_in_the_model(run, tmp_path):
    """``direct_scores`` loads the validation-selected checkpoint into the model the bank route
    shares; afterwards the model holds the weights the route had loaded, whichever they were."""
    import dataclasses
    from safetensors.torch import load_file, save_file
    loaded = LoadedRun.from_run(run)
    own = loaded.route.recipe.checkpoints[0]
    state = load_file(str(run / own))
    moved = {k: v + 1.0 if v.is_floating_point() else v for k, v in state.items()}
    save_file(moved, str(run / "moved.safetensors"))
    recipe = dataclasses.replace(loaded.recipe, checkpoints=["moved.safetensors"])
    other = dataclasses.replace(loaded, route=loaded.route.with_recipe(recipe))
    list(other.route.views())  # the route's weights in the model, as before any comparison
    val = load_training(loaded.config.data).val
    assert direct_scores(other, val[:4], "validation") is not None
    held = other.model.state_dict()
    assert all(torch.equal(held[k].cpu(), v) for k, v in moved.items())
    (run / "moved.safetensors").unlink()
