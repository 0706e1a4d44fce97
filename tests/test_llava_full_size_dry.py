"""The dry run of benchmarks/llava_full_size.py: the full-size path (and its --throughput mode) on
the tiny LLaVA, in seconds. The 7B run itself needs ~19 GB of memory and is a benchmark, not a test;
what it runs is this code with another ``LlavaConfig``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a subprocess running the benchmark script
def test_full_size_script_dry_run_trains_compares_checkpoints_and_resumes(llama2_tokenizer_dir, tmp_path):
    """``python benchmarks/llava_full_size.py --tiny``: the script as the lead runs it (its own process)."""
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "llava_full_size.py"), "--device", "cpu", "--tiny",
                           "--tokenizer", str(llama2_tokenizer_dir), "--out", str(out), "--threads", "1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((out / "llava_full_size.json").read_text())
    assert figures["parameters"]["trainable"] == 23680  # LoRA 17,408 + projector 6,272 (hand count in test_llava.py)
    assert figures["dtype"] == "bfloat16" and figures["gradient_checkpointing"] is True
    assert figures["label_ids"] == [3824, 6440, 13999]
    grid = figures["compare_grid"]
    assert grid["agree"] and grid["same_answers"] and grid["max_abs_difference"]["cached_vs_naive"] <= grid["tolerance"]
    resume = figures["resume"]
    assert resume["reproduces"] and resume["next_loss"] == resume["next_loss_after_resume"]
    assert resume["read_back_max_difference"] == 0.0 and resume["next_step_weights_max_difference"] == 0.0
    epoch = out / "checkpoints" / "epoch_001"
    assert figures["disk"]["epoch_checkpoint"]["bytes"] == sum(p.stat().st_size for p in epoch.iterdir())
    assert figures["disk"]["resume_state"]["files"] >= 4 and figures["peak_rss_bytes"] > 0
    assert figures["losses"][0] != figures["losses"][1] and figures["seconds_per_step"] > 0
    assert "resuming reproduces the next step" in done.stdout


def test_throughput_dry_run_measures_every_rate_and_projects_the_protocols(llama2_tokenizer_dir, tmp_path, one_thread):
    """``--throughput --tiny --device cpu``: what benchmarks/gpu_llava.sh runs on the GPU, end to end."""
    from benchmarks.llava_full_size import main

    assert main(["--device", "cpu", "--tiny", "--throughput", "--tokenizer", str(llama2_tokenizer_dir),
                 "--out", str(tmp_path)]) == 0
    figures = json.loads((tmp_path / "llava_throughput.json").read_text())
    bf16, four_bit = figures["runs"]
    assert bf16["precision"] == "bf16" and four_bit == {"precision": "4bit", "skipped": "needs CUDA"}
    rows = bf16["training"]
    assert [(r["batch"], r["gradient_checkpointing"]) for r in rows] == [(8, True), (16, True), (32, True),
                                                                         (8, False), (16, False), (32, False)]
    assert all(r["pairs_per_s"] > 0 for r in rows)
    for name, refs in (("bank", 350), ("active", 32)):
        rates = bf16["inference"][name]
        assert rates["references"] == refs
        assert all(rates[k] > 0 for k in ("naive_pairs_per_s", "cached_pairs_per_s", "shared_prefix_pairs_per_s"))
    hours = bf16["hours"]
    assert hours["seed_protocol_hours"] > 0 and hours["ours_hours"] > 0
    configured = next(r for r in rows if r["batch"] == 8 and r["gradient_checkpointing"])
    assert hours["train_hours_configured_batch"] == pytest.approx(450_000 / configured["pairs_per_s"] / 3600)
    naive = bf16["inference"]["bank"]["naive_pairs_per_s"]
    assert hours["test_hours_seed_naive"] == pytest.approx(1_100 * 350 / naive / 3600)


def test_throughput_starts_nothing_once_its_time_budget_is_spent(llama2_tokenizer_dir, tmp_path, one_thread):
    """``--budget-s``: a fixed device slot is never overrun; what was skipped is recorded."""
    from benchmarks.llava_full_size import main

    assert main(["--device", "cpu", "--tiny", "--throughput", "--tokenizer", str(llama2_tokenizer_dir), "--out",
                 str(tmp_path), "--budget-s", "1e-9", "--quantisation", "none"]) == 0
    (run,) = json.loads((tmp_path / "llava_throughput.json").read_text())["runs"]
    assert all(r.get("skipped") == "time budget spent" for r in run["training"])
    assert all(v.get("skipped") == "time budget spent" for v in run["inference"].values())
    assert not any(k.endswith("hours") for k in run["hours"])


@pytest.mark.slow  # a subprocess running the shell script
def test_gpu_llava_script_stops_at_once_without_cuda(llama2_tokenizer_dir, tmp_path):
    """No CUDA (hidden with CUDA_VISIBLE_DEVICES=""): exit 3 with the reason, before any work."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "GPU_RUN_DIR": str(tmp_path / "runs"), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_llava.sh"), str(llama2_tokenizer_dir)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "no CUDA GPU" in done.stderr and not (tmp_path / "runs").exists()
    no_tokenizer = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_llava.sh")], cwd=tmp_path,
                                  env={**env, "TOKENIZER": ""}, capture_output=True, text=True, timeout=60)
    assert no_tokenizer.returncode == 2 and "tokenizer" in no_tokenizer.stderr
