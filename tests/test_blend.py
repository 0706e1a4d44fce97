"""``orderlearn blend``: finished runs' scores averaged per route with the weights chosen on
validation, written as a folder ``orderlearn compare`` reads. The weights are the validation
optimum of the grid, the test scores are that weighted mean of the runs' own test scores, and
runs of different data are refused with one line."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from orderlearn.cli import main
from orderlearn.config import config_from_dict
from orderlearn.runs.blend import choose_weights, weight_grid
from orderlearn.runs.recipe import run_experiment

from builders import TINY_IMAGE, small_run, synthetic_data

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(root: Path, out: Path, name: str, seed: int, **data) -> Path:
    raw = small_run(root, out, {"name": "plain", **TINY_IMAGE}, name=name, seed=seed)
    raw["data"] = synthetic_data(root, **data)
    run_experiment(config_from_dict(raw))
    return out


@pytest.fixture(scope="module")
def two_runs(synthetic_root, tmp_path_factory) -> tuple[Path, Path]:
    home = tmp_path_factory.mktemp("blend")
    return _run(synthetic_root, home / "a", "plain-a", 0), _run(synthetic_root, home / "b", "plain-b", 1)


def test_the_grid_holds_every_weighting_in_steps_of_a_twentieth():
    two, three = weight_grid(2), weight_grid(3)
    assert two == [(round(k / 20, 2), round(1 - k / 20, 2)) for k in range(21)]
    assert len(three) == 231 == len(set(three)) and all(abs(sum(w) - 1) < 1e-9 and min(w) >= 0 for w in three)
    assert (0.35, 0.4, 0.25) in three


def test_the_weights_are_the_validation_optimum_and_a_tie_keeps_the_plain_mean():
    truth = [1.0, 2.0, 3.0, 4.0]
    good, bad = torch.tensor(truth), torch.tensor([4.0, 1.0, 3.0, 2.0])
    weights, table = choose_weights([good, bad], truth, "val_mae")
    assert weights == (1.0, 0.0) and len(table) == 21
    assert choose_weights([good, good], truth)[0] == (0.5, 0.5)  # every weighting equal: the middle
    # three runs whose errors cancel only together: +1, -1 and 0 on alternate faces
    up, down = torch.tensor(truth) + torch.tensor([1.0, 0, 1, 0]), torch.tensor(truth) - torch.tensor([1.0, 0, 1, 0])
    weights, table = choose_weights([up, down, bad], truth, "val_mae")
    assert weights == (0.5, 0.5, 0.0) and len(table) == 231


@pytest.mark.slow
def test_blend_writes_a_folder_compare_reads_with_the_weighted_test_scores(two_runs, tmp_path, capsys):
    first, second = two_runs
    out = tmp_path / "blend"
    assert main(["blend", str(first), str(second), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    with (out / "scores.csv").open() as handle:
        blended = list(csv.DictReader(handle))
    with (first / "scores.csv").open() as handle:
        a = list(csv.DictReader(handle))
    with (second / "scores.csv").open() as handle:
        b = list(csv.DictReader(handle))
    for route, column in (("direct", "direct_score"), ("order_learned", "score")):
        w, rest = results["blend"]["weights"][route]["members"]
        assert w + rest == pytest.approx(1.0)
        chosen = [row for row in results["blend"]["weights"][route]["validation"] if row["weights"] == [w, rest]][0]
        assert chosen["pc"] == max(row["pc"] for row in results["blend"]["weights"][route]["validation"])
        for x, y, z in zip(blended, a, b):
            assert x["path"] == y["path"] == z["path"]
            assert float(x[column]) == pytest.approx(w * float(y[column]) + (1 - w) * float(z[column]), abs=2e-6)
    assert "blend" in results["command"] and results["seconds"] > 0
    table = tmp_path / "table"
    assert main(["compare", str(out), str(first), "--out", str(table)]) == 0
    assert "weighted on validation" in (table / "compare.md").read_text()
    assert "each run's own" in (table / "compare.md").read_text()


@pytest.mark.slow
def test_three_runs_blend_with_weights_summing_to_one(two_runs, tmp_path):
    first, second = two_runs
    out = tmp_path / "blend3"
    assert main(["blend", str(first), str(second), str(first), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    weights = results["blend"]["weights"]["order_learned"]["members"]
    assert len(weights) == 3 and sum(weights) == pytest.approx(1.0)
    assert weights[0] == weights[2]  # the same run twice: the tie keeps them equal
    assert "w3" in (out / "report.md").read_text()


def test_one_run_is_refused_with_one_line(two_runs, tmp_path, capsys):
    assert main(["blend", str(two_runs[0]), "--out", str(tmp_path / "x")]) != 0
    assert "give 2 to 5 run folders, got 1" in capsys.readouterr().err


def test_runs_of_different_data_are_refused(two_runs, tmp_path, capsys):
    other = tmp_path / "c"
    shutil.copytree(two_runs[1], other)  # the same run, read with another validation carve
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["data"]["val_fraction"] = 0.3
    (other / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["blend", str(two_runs[0]), str(other), "--out", str(tmp_path / "x")]) != 0
    assert "read different validation images" in capsys.readouterr().err
