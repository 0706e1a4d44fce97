"""Scoring with 2 CPU processes (gloo) gives the same scores as with 1.

`embed_samples` and `compare_all` split their work across accelerate's processes and gather it
back in order; this runs `orderlearn active` (embeds test and validation images, compares test ×
bank in both orders and validation × bank, calibrates the link, scores the full bank and an
active budget) once in this process and once under
``python -m torch.distributed.run --standalone --nproc_per_node 2`` with
``ACCELERATE_USE_CPU=true``, and compares every per-image score.

``orderlearn score`` is run the same two ways and its CSVs compared too.

Why not ``accelerate launch --cpu --num_processes 2``: for ``--cpu`` accelerate's launcher
starts a single process unless it is given an MPI hostfile (``--mpirun_hostfile``, mpirun
required); torchrun starts the processes, and ``ACCELERATE_USE_CPU`` makes accelerate's state
pick MULTI_CPU with the gloo backend (without it, on a machine without a GPU, each process
would run alone with num_processes = 1).

Cost: ~40 s on 2 shared CPU cores (training the tiny run, one in-process run, one 2-process
run whose start-up — two Python processes importing torch, rendezvous — dominates); up to
~170 s when the cores are heavily oversubscribed.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orderlearn.cli import main
from orderlearn.config import config_from_dict
from orderlearn.runs.recipe import run_experiment

from builders import tiny_config

# two processes under torch.distributed.run, each on one thread, against one process on one thread: a face
# is computed on its own (issue 31, case 8), and a one-row product's sum is split across threads,
# so the same thread count is what makes the numbers equal
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

REPO = Path(__file__).resolve().parents[1]


def read_scores(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_two_cpu_processes_score_like_one(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    raw = tiny_config(synthetic_root, run, epochs=1)
    raw["scorer"] = {"name": "bt-exact", "both_orders": True, "calibrate_link": True}
    raw["direct_baseline"] = False
    run_experiment(config_from_dict(raw))

    # fresh working folders: no embedding cache, so both runs embed test and validation images
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one_dir.mkdir()
    two_dir.mkdir()
    monkeypatch.chdir(one_dir)
    assert main(["score", "--run", str(run), "--out", str(one_dir / "scored.csv")]) == 0
    assert main(["active", "--run", str(run), "--budgets", "4", "--out", str(one_dir / "out")]) == 0

    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    # the commands' arguments are baked into a launcher (one start-up for both commands):
    # torchrun's own parser would take `--run` after the script name for an ambiguous
    # abbreviation of its `--run-path`
    launcher = tmp_path / "launch.py"
    score = ["score", "--run", str(run), "--out", str(two_dir / "scored.csv")]
    active = ["active", "--run", str(run), "--budgets", "4", "--out", str(two_dir / "out")]
    launcher.write_text(f"import sys\nfrom orderlearn.cli import main\nsys.exit(main({score!r}) or main({active!r}))\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(launcher)]
    done = subprocess.run(cmd, cwd=two_dir, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reports = [json.loads((d / "out" / "active.json").read_text()) for d in (one_dir, two_dir)]
    assert [r["processes"] for r in reports] == [1, 2]  # the work really was split over 2 processes

    one, two = read_scores(one_dir / "scored.csv"), read_scores(two_dir / "scored.csv")  # `orderlearn score`
    assert len(one) == len(two) == 40
    for a, b in zip(one, two):
        assert a["path"] == b["path"]
        for key in ("score", "std", "lower95", "upper95"):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-6), (a["path"], key)

    one, two = read_scores(one_dir / "out" / "active_scores.csv"), read_scores(two_dir / "out" / "active_scores.csv")
    assert len(one) == len(two) == 40
    for a, b in zip(one, two):
        assert a["path"] == b["path"]
        assert int(a["n_4"]) == int(b["n_4"]) == 4
        for key in ("full", "active_4"):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-6), (a["path"], key)
    link_one, link_two = (r["link"]["calibrated"] for r in reports)
    assert link_two["slope"] == pytest.approx(link_one["slope"], rel=1e-5)
    assert link_two["tie_width"] == pytest.approx(link_one["tie_width"], rel=1e-5)
