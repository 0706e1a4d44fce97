"""Training on 2 CPU processes (gloo) is training on 1 with the same global batch.

The same fine-tuned (non-frozen) tiny run twice: ``orderlearn run`` under
``python -m torch.distributed.run --standalone --nproc_per_node 2`` with ``ACCELERATE_USE_CPU=true``
(see test_multiprocess.py for why not ``accelerate launch --cpu``) and per-process batch 8, and
in this process with batch 16. ``train.max_steps_per_epoch`` is set: that is where the schedule
used to run twice as fast on 2 processes (accelerate's prepared scheduler steps once per
process), so that epoch 3 trained at lr 0.

What must agree: the learning rate of every optimizer step, exactly; every tensor of the final
weights, the validation metrics of each epoch and the test × bank comparator accuracy within the
rounding of DDP's gradient average (two half-batch means averaged instead of one mean):
``ATOL`` below. The model has no batch statistics (GroupNorm), no dropout and no random
augmentation, whose per-process batches or random streams would differ by construction.

Cost: one 2-process start-up (two Python processes importing torch, rendezvous) plus two
3-epoch runs of 12 steps on 32 px images; ~1-2 min on 2 shared CPU cores.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from orderlearn.config import load_config
from orderlearn.runs.recipe import run_experiment

pytestmark = pytest.mark.slow  # two processes under torch.distributed.run

REPO = Path(__file__).resolve().parents[1]
ATOL = 1e-4  # measured: final weights within 2.4e-6, validation losses within 4e-8 (2-core CPU, torch 2.14)
PER_PROCESS_BATCH = 8


def fine_tuned_config(root: Path) -> dict:
    return {
        "name": "two-processes", "seed": 5,
        "data": {"kind": "scut", "root": str(root), "split": "fold1", "val_fraction": 0.2, "limit_test": 20},
        "model": {"name": "siamese", "backbone": "test_efficientnet_gn", "weights": "random", "image_size": 32,
                  "projection": 16, "hidden": 16, "dropout": 0.0, "augment": []},
        "pairs": {"total": 600, "val_total": 120},
        "optim": {"lr": 3e-3},
        "schedule": {"name": "cosine", "warmup_epochs": 0.5},
        "train": {"epochs": 3, "batch_size": PER_PROCESS_BATCH, "eval_batch_size": 64, "frozen_backbone": False,
                  "max_steps_per_epoch": 12, "tracker": "none", "mixed_precision": "no"},
        "bank": {"per_bin": 2},
        "scorer": {"name": "bt-grid", "step": 0.01, "reverse_pass": False},
        "direct_baseline": False,
    }


def test_two_processes_train_like_one_with_the_same_global_batch(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(fine_tuned_config(synthetic_root)))
    two, one = tmp_path / "two", tmp_path / "one"

    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    launcher = tmp_path / "launch.py"  # what train_comparator.py runs, with its arguments baked in
    argv = ["run", "--config", str(config_file), "-o", f"output_dir={two}"]
    launcher.write_text(f"import sys\nimport torch\ntorch.set_num_threads(1)\nfrom orderlearn.cli import main\nsys.exit(main({argv!r}))\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(launcher)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    torch.set_num_threads(1)
    single = load_config(config_file, [f"output_dir={one}", f"train.batch_size={2 * PER_PROCESS_BATCH}"])
    run_experiment(single)

    traces = [json.loads((run / "comparator" / "lr_trace.json").read_text()) for run in (one, two)]
    assert len(traces[0]) == 3 * 12  # 3 epochs x the 12-step cap, in optimizer steps of the global batch
    assert traces[1] == traces[0]  # exactly
    assert traces[0][-1]["lr"][0] > 0  # the last epoch trains

    histories = [json.loads((run / "comparator" / "metrics.json").read_text())["history"] for run in (one, two)]
    for a, b in zip(*histories):
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=ATOL)
        assert b["val_accuracy"] == pytest.approx(a["val_accuracy"], abs=1 / 120 + 1e-9)  # at most one of 120 pairs flips
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=ATOL)
    weights = [load_file(str(run / "comparator" / "checkpoints" / "epoch_003" / "model.safetensors")) for run in (one, two)]
    worst = max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0])
    assert worst < ATOL, worst
    epoch2 = load_file(str(two / "comparator" / "checkpoints" / "epoch_002" / "model.safetensors"))
    assert any(not torch.equal(epoch2[k], weights[1][k]) for k in epoch2)  # epoch 3 changed the weights
    results = [json.loads((run / "results.json").read_text()) for run in (one, two)]
    assert results[1]["comparator_metrics"]["accuracy"] == pytest.approx(results[0]["comparator_metrics"]["accuracy"], abs=0.01)
