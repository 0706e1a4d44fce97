"""`orderlearn active` end to end on a tiny trained run, and its comparator-backed compare_fn."""
from __future__ import annotations

import csv
import json

import pytest
import torch

import comparators
from orderlearn.bank.comparisons import ComparatorCalls, Member
from orderlearn.commands.active_evidence import load_evidence, random_mask
from orderlearn.commands.active_variants import scorer_variants, selected_on_validation
from orderlearn.cli import main
from orderlearn.config import config_from_dict
from orderlearn.bank.comparisons import compare_all
from orderlearn.runs.recipe import run_experiment
from orderlearn.engine.runtime import make_accelerator

from builders import TINY_MODEL, tiny_config

BUDGETS = (4, 8)


@pytest.fixture(scope="module")
def tiny_run(synthetic_root, tmp_path_factory):
    """A trained tiny comparator run (exact BT, both orders, calibrated link and intervals), in its own cwd."""
    home = tmp_path_factory.mktemp("active")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)  # the embedding cache lives under ./runs
        raw = tiny_config(synthetic_root, home / "run", epochs=1)
        raw["scorer"] = {"name": "bt-exact", "both_orders": True, "calibrate_link": True, "calibrate_intervals": True}
        raw["direct_baseline"] = False
        results = run_experiment(config_from_dict(raw))
    return home, home / "run", results


def test_active_command_writes_report_within_budget(tiny_run, monkeypatch):
    home, run, results = tiny_run
    monkeypatch.chdir(home)
    out = home / "report"
    assert main(["active", "--run", str(run), "--budgets", *map(str, BUDGETS), "--out", str(out)]) == 0
    for name in ("active.md", "active.csv", "variants.csv", "active.json", "active_scores.csv", "active.png"):
        assert (out / name).is_file(), name
    assert (out / "active.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "active.json").read_text())
    assert [row["budget"] for row in report["active"]] == list(BUDGETS)
    for row in report["active"]:
        assert row["comparisons_max"] <= row["budget"]
        assert row["calls_max"] <= 2 * row["budget"]  # both orders: two comparator calls per comparison
    with (out / "active_scores.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == results["order_learned"]["n"] == 40
    for budget in BUDGETS:
        used = [int(r[f"n_{budget}"]) for r in rows]
        assert max(used) <= budget and min(used) >= 1
    # the full-bank row is the run's own order-learned result: same comparator, scorer, link, orders
    full = report["full_bank"]
    for key in ("pc", "mae", "rmse"):
        assert full[key] == pytest.approx(results["order_learned"][key], abs=1e-9), key
    intervals = results["interval_calibration"]
    assert full["coverage95"] == pytest.approx(intervals["coverage_uncalibrated"], abs=1e-12)
    assert full["std_scale"] == pytest.approx(intervals["std_scale"], rel=1e-6)
    assert full["coverage95_scaled"] == pytest.approx(results["interval_coverage"], abs=1e-12)
    for row in report["active"]:  # each budget's scale is fitted on its own validation run
        assert row["std_scale"] > 0 and 0.0 <= row["coverage95_scaled"] <= 1.0
    assert report["link"]["calibrated"]["slope"] == pytest.approx(results["link_calibration"]["slope"], rel=1e-9)
    # the factorial holds 16 contrasts; the one matching the run's settings equals the full-bank row
    variants = report["variants"]
    assert len(variants) == 16 and len({(v["scorer"], v["labels"], v["link"], v["orders"]) for v in variants}) == 16
    (same,) = [v for v in variants if v["run_setting"] == "yes"]
    assert (same["scorer"], same["labels"], same["link"], same["orders"]) == ("bt-exact", "hard", "calibrated", "both")
    assert same["pc"] == pytest.approx(full["pc"], abs=1e-12)
    assert "| all |" in (out / "active.md").read_text()


def test_comparator_calls_answer_like_compare_all_and_count_per_image():
    torch.manual_seed(0)
    model = comparators.create(**TINY_MODEL).eval()
    accelerator = make_accelerator(config_from_dict({"train": {"tracker": "none"}}), ".")
    test_emb, ref_emb = torch.randn(5, model.embedding_dim), torch.randn(7, model.embedding_dim)
    full = compare_all(model, test_emb, ref_emb, accelerator)  # [5, 7, 3]
    model.pair_batch_size = 3  # several chunks for five pairs
    member = Member(model, test_emb, ref_emb)
    calls = ComparatorCalls([member], accelerator, both_orders=False)
    tests, refs = torch.tensor([0, 0, 4, 2, 4]), torch.tensor([6, 1, 0, 3, 5])
    answer = calls(tests, refs)
    assert torch.allclose(answer, full[tests, refs], atol=1e-6)
    assert calls.calls.tolist() == [2, 0, 1, 0, 2]
    both = ComparatorCalls([member], accelerator, both_orders=True)
    both(tests, refs)
    assert both.calls.tolist() == [4, 0, 2, 0, 4]  # two presentation orders per comparison


def test_random_mask_is_seeded_with_m_per_row():
    mask = random_mask(6, 10, 3, seed=1)
    assert mask.sum(1).tolist() == [3] * 6
    assert torch.equal(mask, random_mask(6, 10, 3, seed=1)) and not torch.equal(mask, random_mask(6, 10, 3, seed=2))


def test_other_base_scorer_and_link_match_their_full_bank_variant(tiny_run, monkeypatch):
    home, run, _ = tiny_run
    monkeypatch.chdir(home)
    out = home / "grid-default"
    assert main(["active", "--run", str(run), "--budgets", "4", "--out", str(out), "--scorer", "bt-grid",
                 "--link", "default"]) == 0
    report = json.loads((out / "active.json").read_text())
    assert report["scorer"] == "bt-grid" and report["link"]["used"] == "default"
    (same,) = [v for v in report["variants"] if (v["scorer"], v["labels"], v["link"], v["orders"]) == ("bt-grid", "hard", "default", "both")]
    assert report["full_bank"]["pc"] == pytest.approx(same["pc"], abs=1e-12)
    assert report["full_bank"]["mae"] == pytest.approx(same["mae"], abs=1e-12)
    assert report["active"][0]["comparisons_max"] == 4


def test_a_rewritten_dataset_is_refused(tiny_run):
    from dataclasses import replace

    from orderlearn.commands.active_evidence import check_unchanged
    from orderlearn.bank.references import ReferenceBank
    from orderlearn.config import load_config
    from orderlearn.data.splits import load_test, load_training
    from orderlearn.errors import DataError

    _, run, _ = tiny_run
    config = load_config(run / "config.yaml")
    test, splits, bank = load_test(config.data), load_training(config.data), ReferenceBank.load(run / "bank.json")
    check_unchanged(run, test, splits.train + splits.val, bank)  # the data the run saw: accepted
    moved = [replace(test[0], score=test[0].score + 0.1)] + test[1:]
    with pytest.raises(DataError, match="dataset changed"):
        check_unchanged(run, moved, splits.train + splits.val, bank)
    with pytest.raises(DataError, match="bank reference"):
        check_unchanged(run, test, splits.val, bank)  # bank images no longer in the training split


def test_selection_takes_the_best_validation_figure_of_the_metric_asked_for():
    rows = [{"val_pc": 0.9, "val_mae": 0.30, "run_setting": ""},
            {"val_pc": 0.8, "val_mae": 0.20, "run_setting": ""},
            {"val_pc": 0.9, "val_mae": 0.40, "run_setting": "yes"}]
    assert selected_on_validation(rows) is rows[2]  # a PC tie goes to the run's own setting
    assert selected_on_validation(rows, "val_mae") is rows[1]  # ages: the lowest MAE
    with pytest.raises(ValueError, match="val_rmse"):
        selected_on_validation(rows, "val_rmse")


def test_scorer_selection_on_mae_reports_the_chosen_variant(tiny_run, monkeypatch, capsys):
    from benchmarks import scorer_selection
    home, run, _ = tiny_run
    monkeypatch.chdir(home)
    monkeypatch.setattr("sys.argv", ["scorer_selection", "--select", "val_mae", str(run)])
    scorer_selection.main()
    out = capsys.readouterr().out
    best = min(scorer_variants(load_evidence(run)), key=lambda v: v["val_mae"])["val_mae"]
    assert f"(val mae {best:.4f})" in out
    assert "| direct_mae | order_learned_mae |" in out and "selected order-learned behind direct (mae) on" in out


def test_active_report_selects_on_the_metric_asked_for(tiny_run, monkeypatch):
    home, run, _ = tiny_run
    monkeypatch.chdir(home)
    out = home / "report-mae"
    assert main(["active", "--run", str(run), "--budgets", "4", "--select", "val_mae", "--out", str(out)]) == 0
    report = json.loads((out / "active.json").read_text())
    chosen = report["validation_selected"]
    assert chosen["selected_on"] == "val_mae"
    assert chosen["val_mae"] == min(v["val_mae"] for v in report["variants"])


def test_direct_prior_needs_the_runs_direct_head(tiny_run, monkeypatch, capsys):
    home, run, _ = tiny_run
    monkeypatch.chdir(home)
    assert main(["active", "--run", str(run), "--budgets", "4", "--out", str(home / "x"), "--direct-prior"]) != 0
    error = capsys.readouterr().err
    assert "--direct-prior: " in error and "has no direct route to take the prior from" in error
