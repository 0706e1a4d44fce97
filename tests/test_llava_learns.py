"""Gradients through the LMOL path learn an ordering: a small version of configs/lmol/tiny_learns.yaml.

A tiny random LLaVA (LLaVA-1.5's structure and ids, the real Llama-2 tokenizer, LoRA on every
projection of the language model, the projector trained) goes through the real pipeline
(``run_experiment``: pairs, the accelerate loop, checkpoints, bank, ``compare_grid``, BT) on the
synthetic faces with their score coded as brightness (benchmarks/llava.py learnable-data).

What chance is, and why the margins cannot be met by luck:
* comparator accuracy on test x bank pairs: a comparator that ignores the images can at best
  always answer the most frequent true label, so the bar is that label's share of the pairs
  (read from the run's own confusion matrix, ~0.4 here), not 1/3; the test asks for 0.15 more.
  Without signal the accuracy scatters around that bar by a few hundredths (the pairs share
  test faces, so fewer than 40 x R independent draws).
* PC of 40 test scores: with no signal PC is ~N(0, 1/sqrt(39) = 0.16); PC >= 0.5 is a 3.1 sigma
  event under the null (p ~ 0.001). Measured here: accuracy 0.709 against a 0.485 majority label,
  PC 0.778 (about 45 s on 2 shared cores).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.llava import write_brightness_coded_faces
from orderlearn.config import config_from_dict
from orderlearn.runs.recipe import run_experiment

pytestmark = [pytest.mark.usefixtures("one_thread"),  # tiny tensors: threads only add contention
              pytest.mark.slow]  # a learning run of ~15 s


def learns_config(manifest: Path, out: Path, tokenizer: Path) -> dict:
    """configs/lmol/tiny_learns.yaml at CI size: 200 faces at 16 px (16 image tokens each), 2 epochs."""
    return {
        "name": "lmol-tiny-learns-ci",
        "seed": 0,
        "output_dir": str(out),
        "data": {"kind": "manifest", "root": str(manifest), "split": "split", "val_fraction": 0.1},
        "model": {"name": "llava", "tiny": True, "tokenizer": str(tokenizer), "image_size": 16,
                  "patch_size": 4, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
                  "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                  "train_projector": True, "torch_dtype": "float32", "lora_lr": 3e-3, "projector_lr": 3e-3},
        "pairs": {"recipe": "balanced-3", "total": 2400, "val_total": 96, "margin": 0.2},
        "loss": {"name": "ce"},
        "optim": {"weight_decay": 0.0},
        "schedule": {"name": "cosine"},
        "train": {"epochs": 2, "batch_size": 16, "eval_batch_size": 64, "mixed_precision": "no", "tracker": "none"},
        "bank": {"per_bin": 2},
        "scorer": {"name": "bt-grid", "step": 0.01, "reverse_pass": False},
        "direct_baseline": False,
    }


def test_tiny_llava_learns_a_visible_ordering(tmp_path, monkeypatch, llama2_tokenizer_dir):
    monkeypatch.chdir(tmp_path)
    manifest = write_brightness_coded_faces(tmp_path / "data", n_images=200, image_size=32, seed=0)
    results = run_experiment(config_from_dict(learns_config(manifest, tmp_path / "run", llama2_tokenizer_dir)))

    cm = results["comparator_metrics"]
    class_counts = [sum(row) for row in cm["confusion"]["matrix"]]
    majority = max(class_counts) / sum(class_counts)  # the best an image-blind comparator can do
    pc = results["order_learned"]["pc"]
    print(f"accuracy {cm['accuracy']:.4f} (majority label {majority:.4f}), PC {pc:.4f}, n {results['order_learned']['n']}")
    assert results["order_learned"]["n"] == 40
    assert cm["accuracy"] >= majority + 0.15, (cm["accuracy"], majority)
    assert pc >= 0.5, pc
