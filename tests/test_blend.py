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
from orderlearn.data.splits import load_training
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


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_a_run_saves_its_validation_scores_as_a_reload_scores_them(two_runs):
    """val_scores.csv holds what the loaded run computes for its validation images, by both
    routes: what a blend used to score again with every run."""
    from orderlearn.runs.loaded import LoadedRun
    from orderlearn.runs.new_scale import direct_scores

    run = two_runs[0]
    saved = _rows(run / "val_scores.csv")
    loaded = LoadedRun.from_run(run)
    val = load_training(loaded.config.data).val
    assert [row["path"] for row in saved] == [str(s.path) for s in val] and len(val) > 0
    bank_route = loaded.score(val, "validation")[1].value
    direct = direct_scores(loaded, val, "validation")
    for row, ol, own, sample in zip(saved, bank_route, direct, val):
        assert float(row["true_score"]) == pytest.approx(sample.score, abs=1e-6)
        assert float(row["score"]) == pytest.approx(float(ol), abs=2e-6)
        assert float(row["direct_score"]) == pytest.approx(float(own), abs=2e-6)


@pytest.mark.slow
def test_a_blend_of_saved_scores_equals_the_blend_that_scores_again(two_runs, tmp_path):
    """Runs made before val_scores.csv existed are scored again; the blend is the same."""
    old = []
    for run in two_runs:
        copy = tmp_path / f"old-{run.name}"
        shutil.copytree(run, copy)
        (copy / "val_scores.csv").unlink()
        old.append(copy)
    assert main(["blend", *map(str, two_runs), "--out", str(tmp_path / "saved")]) == 0
    assert main(["blend", *map(str, old), "--out", str(tmp_path / "again")]) == 0
    saved = json.loads((tmp_path / "saved" / "results.json").read_text())["blend"]["weights"]
    again = json.loads((tmp_path / "again" / "results.json").read_text())["blend"]["weights"]
    for route in ("direct", "order_learned"):
        assert saved[route]["members"] == again[route]["members"]
    for x, y in zip(_rows(tmp_path / "saved" / "scores.csv"), _rows(tmp_path / "again" / "scores.csv")):
        assert float(x["score"]) == pytest.approx(float(y["score"]), abs=2e-6)
        assert float(x["direct_score"]) == pytest.approx(float(y["direct_score"]), abs=2e-6)


def test_saved_scores_of_other_images_are_refused_naming_the_file(two_runs, tmp_path, capsys):
    other = tmp_path / "edited"
    shutil.copytree(two_runs[1], other)
    rows = _rows(other / "val_scores.csv")
    with (other / "val_scores.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[1:])  # one validation image dropped
    assert main(["blend", str(two_runs[0]), str(other), "--out", str(tmp_path / "x")]) != 0
    err = capsys.readouterr().err
    assert "val_scores.csv does not list the" in err and str(other) in err
