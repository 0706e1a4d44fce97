"""The accelerate loop and the main job end to end on tiny models and small synthetic data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from orderlearn.config import config_from_dict
from orderlearn.runs.recipe import run_experiment

from builders import TINY_IMAGE, small_run, tiny_config


@pytest.mark.slow  # a run, then score and evaluate, ~3-4 s
def test_main_job_end_to_end_writes_everything(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the embedding cache lives under ./runs
    out = tmp_path / "run"
    raw = tiny_config(synthetic_root, out)
    raw["scorer"] = {"name": "bt-exact", "both_orders": True, "calibrate_link": True, "calibrate_intervals": True}
    results = run_experiment(config_from_dict(raw))
    for name in ("config.yaml", "bank.json", "scores.csv", "results.json", "report.md", "scatter.png"):
        assert (out / name).is_file(), name
    assert {"order_learned", "direct", "comparator_metrics"} <= set(results)
    assert results["order_learned"]["n"] == 40
    assert results["comparator_metrics"]["forward_reverse_agreement"] == pytest.approx(1.0)  # symmetric head
    history = json.loads((out / "comparator" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert (out / "comparator" / "checkpoints" / "epoch_002" / "model.safetensors").is_file()
    # `orderlearn score` re-scores the test split with the run's settings; `evaluate` reads the CSV
    from orderlearn.cli import main

    assert main(["score", "--run", str(out)]) == 0
    assert main(["evaluate", "--scores", str(out / "scored.csv")]) == 0
    rescored = json.loads((out / "metrics.json").read_text())["order_learned"]
    assert rescored["pc"] == pytest.approx(results["order_learned"]["pc"], abs=1e-6)
    assert rescored["mae"] == pytest.approx(results["order_learned"]["mae"], abs=1e-6)
    assert main(["score", "--run", str(tmp_path / "nowhere")]) == 2  # a clear error, not a traceback
    calibration = results["link_calibration"]
    assert calibration["slope"] > 0 and calibration["default_link"] == {"slope": 10.0, "tie_width": 0.2}
    assert 0.0 <= results["interval_coverage"] <= 1.0
    assert results["interval_calibration"]["std_scale"] > 0
    assert "| direct |" in (out / "report.md").read_text().replace("embeddings + regression head ", "")


@pytest.mark.slow  # two runs, ~4 s
def test_same_config_and_seed_give_same_numbers(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = run_experiment(config_from_dict(tiny_config(synthetic_root, tmp_path / "a", epochs=1)))
    second = run_experiment(config_from_dict(tiny_config(synthetic_root, tmp_path / "b", epochs=1)))
    assert first["order_learned"] == second["order_learned"]
    assert first["train"]["history"][0]["val_loss"] == second["train"]["history"][0]["val_loss"]


def resumable(root: Path, out: Path, epochs: int) -> dict:
    # a constant schedule, so stopping after epoch 1 of a 1-epoch run equals epoch 1 of a 2-epoch run
    raw = tiny_config(root, out, frozen_backbone=False, epochs=epochs, max_steps_per_epoch=3)
    return {**raw, "schedule": {"name": "constant"}, "direct_baseline": False}


@pytest.mark.slow  # three runs, ~8 s
def test_resume_continues_where_it_stopped(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    straight = run_experiment(config_from_dict(resumable(synthetic_root, tmp_path / "straight", 2)))
    run_experiment(config_from_dict(resumable(synthetic_root, tmp_path / "resumed", 1)))
    resumed = run_experiment(config_from_dict(resumable(synthetic_root, tmp_path / "resumed", 2)), resume=True)
    assert [h["epoch"] for h in resumed["train"]["history"]] == [1, 2]
    assert resumed["train"]["history"][1]["val_loss"] == pytest.approx(straight["train"]["history"][1]["val_loss"], rel=1e-5)


def test_embeddings_use_evaluation_mode(synthetic_root, tmp_path, monkeypatch):
    """A freshly built model is in training mode; its batch-norm must not embed with batch statistics."""
    import comparators
    from orderlearn.data import scut
    from orderlearn.data.images import load_image
    from orderlearn.engine.features import FeatureExtractor
    from orderlearn.engine.runtime import make_accelerator

    monkeypatch.chdir(tmp_path)
    config = config_from_dict(tiny_config(synthetic_root, tmp_path / "run"))
    model = comparators.create("siamese", **config.model.args)
    train, _ = scut.read_split(synthetic_root, "fold1")
    samples = train[:6]
    extractor = FeatureExtractor(make_accelerator(config, tmp_path), batch_size=4)
    assert model.training
    embedded = extractor(model, samples, "embed")
    assert model.training  # the caller's mode is restored
    model.eval()
    with torch.no_grad():
        expected = model.embed(torch.stack([model.preprocess()(load_image(s.path)) for s in samples]))
    torch.testing.assert_close(embedded, expected, rtol=1e-4, atol=1e-5)


def test_regressor_frozen_backbone_trains_heads_only(synthetic_root, tmp_path, monkeypatch):
    """The reduced CPU protocol: backbone features once, only the method's heads train."""
    monkeypatch.chdir(tmp_path)
    raw = small_run(synthetic_root, tmp_path / "dld", {"name": "dual-label-distribution", **TINY_IMAGE, "resize": None},
                    name="dld-frozen")
    results = run_experiment(config_from_dict(raw))
    assert results["direct"]["n"] == results["order_learned"]["n"] == 40
    from safetensors.torch import load_file

    first, second = (load_file(str(tmp_path / "dld" / "regressor" / "checkpoints" / f"epoch_00{e}" / "model.safetensors")) for e in (1, 2))
    backbone = [k for k in first if k.startswith("backbone.")]
    assert backbone and all(torch.equal(first[k], second[k]) for k in backbone)  # the backbone stayed frozen
    assert any(not torch.equal(first[k], second[k]) for k in first if k.startswith("head."))  # the head trained
