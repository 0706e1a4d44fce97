"""Multi-database multi-task training (``data.second``): AdaShare-AFF learns beauty levels from
the run's dataset and gender from a second one, as the paper's LSAFBD + SCUT-FBP5500 setting;
both tasks are reported on their own database's test files. Synthetic data, a tiny network."""
from __future__ import annotations

import json

import pytest
import torch

from orderlearn.config import config_from_dict
from orderlearn.data.splits import load_training
from orderlearn.errors import ConfigError
from orderlearn.runs.recipe import run_experiment
from orderlearn.data.synthetic import generate_synthetic_ages

TINY = {"weights": "random", "layers": [1, 1, 1, 1], "width": 8, "image_size": 32}


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


@pytest.fixture(scope="module")
def ages_manifest(tmp_path_factory):
    return generate_synthetic_ages(tmp_path_factory.mktemp("ages") / "ages", n_images=100, image_size=32) / "manifest.csv"


def raw_config(synthetic_root, ages_manifest, tmp_path, **model):
    return {
        "name": "multi", "seed": 0, "output_dir": str(tmp_path / "run"), "task": "regressor",
        "data": {"kind": "scut", "root": str(synthetic_root), "split": "fold1", "val_fraction": 0.2,
                 "second": {"kind": "manifest", "root": str(ages_manifest), "split": "fold1", "val_fraction": 0.2,
                            "score_low": 16, "score_high": 77}},
        "model": {"name": "adashare-aff", **TINY, "gender_from": "second", **model},
        "optim": {"name": "adamw", "lr": 1e-3}, "schedule": {"name": "constant"},
        "train": {"epochs": 2, "batch_size": 32, "tracker": "none", "select_metric": "val_loss"},
        "scorer": {"name": "bt-grid", "step": 0.01},
    }


def test_each_task_learns_from_its_own_database_only():
    from comparators.regressors.adashare_aff import build

    model = build(**TINY, gender_from="second")
    batch = {"score": torch.tensor([2.0, 4.0, 30.0, 60.0]), "rating_counts": torch.zeros(4, 5),
             "gender": torch.tensor([0, 1, 1, 0]), "database": torch.tensor([0, 0, 1, 1])}
    levels, gender = model.task_targets(batch, torch.device("cpu"))
    assert levels.tolist() == [1, 3, -1, -1]  # the ages of database 1 are not beauty levels
    assert gender.tolist() == [-1, -1, 1, 0]  # the beauty database's genders are not used
    same = build(**TINY)
    levels, gender = same.task_targets(batch, torch.device("cpu"))
    assert gender.tolist() == [0, 1, 1, 0]


def test_second_database_joins_training_and_validation_tagged(synthetic_root, ages_manifest, tmp_path):
    config = config_from_dict(raw_config(synthetic_root, ages_manifest, tmp_path))
    splits = load_training(config.data)
    assert {s.database for s in splits.train + splits.val} == {0}
    assert {s.database for s in splits.second.train + splits.second.val} == {1}
    both = splits.for_the_model()
    assert len(both.train) == len(splits.train) + len(splits.second.train) == 128 + 64


def test_multi_database_run_reports_both_tasks_on_their_own_test_files_and_the_policy(synthetic_root, ages_manifest, tmp_path):
    results = run_experiment(config_from_dict(raw_config(synthetic_root, ages_manifest, tmp_path)))
    direct = results["direct"]
    assert direct["beauty_level_n"] == direct["n"] == 40  # the beauty set's test files
    assert direct["gender_n"] == 20  # the age set's test fold, not the beauty set's genders
    for key in ("beauty_level_accuracy", "beauty_level_macro_f1", "gender_accuracy", "gender_macro_f1"):
        assert 0.0 <= direct[key] <= 1.0
    policy = results["sharing_policy"]
    assert policy["tasks"] == ["beauty", "gender"] and len(policy["p_execute"][0]) == 4
    assert (tmp_path / "run" / "policy.png").stat().st_size > 0
    assert json.loads((tmp_path / "run" / "results.json").read_text())["sharing_policy"] == policy


def test_a_second_database_must_be_used_and_selection_must_be_on_the_loss(synthetic_root, ages_manifest, tmp_path):
    raw = raw_config(synthetic_root, ages_manifest, tmp_path)
    raw["train"]["select_metric"] = "val_pc"
    with pytest.raises(ConfigError, match=r"train.select_metric: 'val_pc' would pool"):
        config_from_dict(raw)
    raw = raw_config(synthetic_root, ages_manifest, tmp_path, gender_from="same")
    with pytest.raises(ConfigError, match=r"learns nothing from data.second; remove it"):
        run_experiment(config_from_dict(raw))
    raw["data"].pop("second")
    raw["model"]["gender_from"] = "second"
    with pytest.raises(ConfigError, match=r"learns a task from data.second; set it"):
        run_experiment(config_from_dict(raw))
    raw = raw_config(synthetic_root, ages_manifest, tmp_path)
    raw["data"]["second"]["kind"] = "csv"
    with pytest.raises(ConfigError, match=r"data.second.kind: 'csv' is not one of"):
        config_from_dict(raw)
