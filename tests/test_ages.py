"""Age estimation through the one run path: relative age position learning over a partially
fine-tuned timm backbone, CS(t) on both routes, gender accuracy of the direct route, and the
compare table's age columns (the synthetic age set, 5 folds of 120 faces; nothing here is an
accuracy claim)."""
from __future__ import annotations

import csv
import json

import pytest
import yaml

from orderlearn.cli import main
from orderlearn.report.metrics import score_metrics
from orderlearn.data.synthetic import generate_synthetic_ages

from builders import TINY_IMAGE


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def test_cumulative_score_counts_the_share_within_the_threshold():
    metrics = score_metrics([10, 14, 21, 30], [12, 20, 16, 30], cs_thresholds=[5, 2.5])
    assert metrics["cs5"] == 0.75 and metrics["cs2.5"] == 0.5  # errors 2, 6, 5, 0: "within" includes 5
    assert "cs5" not in score_metrics([1, 2], [1, 2])


@pytest.mark.slow  # a partial fine-tuning run, ~2 s
def test_relative_position_partial_run_reports_cs_gender_and_its_command(tmp_path, capsys):
    root = generate_synthetic_ages(tmp_path / "ages", n_images=150, image_size=48)
    config = {
        "name": "ages-rapl", "seed": 0, "output_dir": str(tmp_path / "run"), "task": "regressor",
        "data": {"kind": "manifest", "root": str(root / "manifest.csv"), "split": "fold1", "val_fraction": 0.2,
                 "score_low": 16, "score_high": 77},
        "model": {"name": "relative-position", **TINY_IMAGE,
                  "label_min": 16, "label_max": 77, "label_step": 1, "augment": [], "trainable_from": "blocks.5",
                  "test_flip": True},
        "pairs": {"margin": 3.0},
        "cs_thresholds": [5],
        "optim": {"name": "adam", "lr": 1e-3},
        "schedule": {"name": "step", "step_size": 1, "gamma": 0.1},
        "train": {"epochs": 2, "batch_size": 32, "frozen_backbone": True, "feature_views": ["identity", "hflip"],
                  "tracker": "none", "select_metric": "val_mae"},
        "bank": {"bin_width": 2.0, "per_bin": 3},
        "scorer": {"name": "bt-exact"},
    }
    path = tmp_path / "ages.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(path), "-o", "train.epochs=2"]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    for route in ("direct", "order_learned"):
        assert 0.0 <= results[route]["cs5"] <= 1.0
    test_n = results["direct"]["n"]
    assert results["direct"]["gender_n"] == test_n and 0.0 <= results["direct"]["gender_accuracy"] <= 1.0
    assert "gender_accuracy" not in results["order_learned"]  # the bank route scores ages only
    assert results["command"] == f"orderlearn run --config {path} -o train.epochs=2"
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| cs5 | gender_accuracy | gender_macro_f1 | n |" in report  # the order-learned row shows "-" for gender

    assert main(["compare", str(tmp_path / "run"), "--out", str(tmp_path / "table")]) == 0
    rows = {r["route"]: r for r in csv.DictReader((tmp_path / "table" / "compare.csv").open())}
    assert float(rows["direct"]["cs5_mean"]) == pytest.approx(results["direct"]["cs5"])
    assert float(rows["direct"]["gender_accuracy_mean"]) == pytest.approx(results["direct"]["gender_accuracy"])
    assert rows["order-learned"]["gender_accuracy_mean"] == ""  # not predicted on that route
    assert rows["direct"]["command"] == results["command"] and rows["direct"]["trainable"] == "from blocks.5"
    header = next(line for line in (tmp_path / "table" / "compare.md").read_text().splitlines() if line.startswith("| method"))
    assert "| cs5 | gender_accuracy |" in header and header.endswith("| command |")
