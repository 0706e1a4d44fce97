"""The same config and seed give the same numbers in every process, on 2 threads as on 1.

The backward of indexing (the in-batch objective's ``emb[a]``) accumulates with a
multi-threaded kernel whose order of additions depends on the threads' timing: two processes of
one config trained apart in the sixth digit from the first epoch on 2 cores (equal on 1). A run
now uses PyTorch's deterministic kernels (``engine.runtime.deterministic_algorithms``)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from orderlearn.config import config_from_dict
from orderlearn.runs.recipe import setup

TESTS = Path(__file__).resolve().parent
RUN = """
import json, sys, torch
sys.path.insert(0, {tests!r})
from builders import tiny_config
from orderlearn.config import config_from_dict
from orderlearn.runs.recipe import run_experiment
torch.set_num_threads(2)
raw = tiny_config(__import__("pathlib").Path({root!r}), __import__("pathlib").Path({out!r}), epochs=2)
raw["feature_cache"] = "none"
raw["pairs"] = {{"recipe": "in-batch", "val_total": 300}}
raw["train"]["feature_views"] = ["identity", "hflip"]
raw["model"].update(trainable_from="blocks.4", dropout=0.3)
history = run_experiment(config_from_dict(raw))["train"]["history"]
print(json.dumps([{{k: v for k, v in h.items() if k != "seconds"}} for h in history]))
"""


@pytest.mark.slow  # two training processes, ~1 min
def test_two_processes_of_one_config_train_identically_on_two_threads(synthetic_root, tmp_path):
    histories = []
    for name in ("first", "second"):
        code = RUN.format(tests=str(TESTS), root=str(synthetic_root), out=str(tmp_path / name))
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        histories.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert histories[0] == histories[1]


def test_a_run_turns_deterministic_kernels_on_and_leaves_the_setting_as_it_was(tmp_path):
    assert not torch.are_deterministic_algorithms_enabled()
    config = config_from_dict({"name": "det", "output_dir": str(tmp_path / "run"), "train": {"tracker": "none"}})
    with setup(config):
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert not torch.are_deterministic_algorithms_enabled()
