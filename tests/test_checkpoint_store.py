"""The checkpoint API on its own (:class:`~orderlearn.engine.checkpoints.CheckpointStore`), with a
real small model, optimizer and scheduler and no training loop:

- an epoch saved is found again as the resume state, and restores the weights, the optimizer,
  the scheduler and the random generators exactly;
- weights load strictly, and another architecture is refused naming the tensors and options;
- best / last-K name the right epochs, and only the newest resume state is kept;
- no resume state is a one-line error saying what the folder holds; an incomplete newer state
  is skipped for an older complete one; a fresh start removes an earlier run's states;
- killed before any rename of a save, the folder shows no partial file: every visible epoch
  folder, resume state and summary file is whole;
- the on-disk format is the one older run folders have (file names and JSON layout).
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from comparators.base import Comparator
from orderlearn.engine.checkpoints import CheckpointMismatchError, CheckpointStore, load_weights
from orderlearn.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class SmallOptions:
    dim: int = 5
    hidden: int = 12


class SmallComparator(Comparator):
    splits = True

    def __init__(self, options: SmallOptions) -> None:
        super().__init__()
        self.config = options
        self.embedder = nn.Sequential(nn.Linear(options.dim, options.hidden), nn.Tanh())
        self.head = nn.Linear(2 * options.hidden, 3)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedder(x)

    def compare(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([a, b], dim=-1))


class Trainee:
    """A model with an AdamW optimizer and a decaying schedule, a few real steps into training."""

    def __init__(self, seed: int, hidden: int = 12, steps: int = 3) -> None:
        torch.manual_seed(seed)
        self.model = SmallComparator(SmallOptions(hidden=hidden))
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-2)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda i: 0.9 ** i)
        x = torch.randn(16, 5)
        for _ in range(steps):
            loss = self.model(x[:8], x[8:]).logsumexp(-1).mean()
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()
            self.scheduler.step()


def record(epoch: int, best_epoch: int) -> dict:
    """The loop's bookkeeping as it hands it to save_epoch."""
    history = [{"epoch": e, "val_loss": 1.0 / e} for e in range(1, epoch + 1)]
    return {"epoch": epoch, "global_step": 3 * epoch, "best_epoch": best_epoch, "best_metric": 1.0 / best_epoch,
            "history": history, "lr_trace": [{"step": s, "lr": [0.01]} for s in range(1, 3 * epoch + 1)],
            "model": {"name": "small", "args": {"hidden": 12}}, "world_size": 1, "per_process_batch": 8,
            "global_batch": 8, "steps_per_epoch": 3}


def save(store: CheckpointStore, trainee: Trainee, epoch: int, best_epoch: Optional[int] = None) -> Path:
    store.begin_epoch(epoch)
    store.save_rng(epoch, 0)
    return store.save_epoch(epoch, trainee.model.checkpoint_state_dict(), "name: small\n", {"epoch": epoch, "val_loss": 1.0 / epoch},
                            trainee.optimizer, trainee.scheduler, None, record(epoch, best_epoch or epoch))


def fresh_store(path: Path) -> CheckpointStore:
    store = CheckpointStore(path)
    assert store.open(fresh=True) == []
    return store


def test_an_epoch_saved_is_the_resume_state_and_restores_everything_exactly(tmp_path):
    store = fresh_store(tmp_path / "comparator")
    trainee = Trainee(seed=0)
    weights = save(store, trainee, 1)
    after_save = (random.random(), float(np.random.rand()), torch.rand(3))  # what the next epoch would draw

    assert weights == tmp_path / "comparator" / "checkpoints" / "epoch_001" / "model.safetensors"
    assert sorted(p.name for p in weights.parent.iterdir()) == ["config.yaml", "metrics.json", "model.safetensors"]
    assert (weights.parent / "config.yaml").read_text() == "name: small\n"
    state = store.latest_resume_state()
    assert state.epoch == 1 and state.folder.name == "state_epoch_001"
    saved = state.trained()
    assert set(saved) == set(trainee.model.state_dict())
    assert all(torch.equal(saved[k], v) for k, v in trainee.model.state_dict().items())

    other = Trainee(seed=1, steps=1)  # another history: everything must come from the state
    state.load_training_state(other.optimizer, other.scheduler, None)
    assert other.scheduler.state_dict()["last_epoch"] == trainee.scheduler.state_dict()["last_epoch"] == 3
    want, got = trainee.optimizer.state_dict()["state"], other.optimizer.state_dict()["state"]
    assert want.keys() == got.keys()
    assert all(torch.equal(want[i][k], got[i][k]) for i in want for k in ("exp_avg", "exp_avg_sq", "step"))

    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    assert state.restore_rng(0)
    assert (random.random(), float(np.random.rand())) == after_save[:2] and torch.equal(torch.rand(3), after_save[2])
    assert not state.restore_rng(1)  # a process the state was not written by

    summary = json.loads((store.root / "trainer_state.json").read_text())
    assert summary == {k: record(1, 1)[k] for k in ("epoch", "global_step", "best_epoch", "best_metric", "history")}
    assert json.loads((store.root / "lr_trace.json").read_text()) == record(1, 1)["lr_trace"]


def test_load_weights_is_strict_and_names_what_differs(tmp_path):
    store = fresh_store(tmp_path / "comparator")
    trainee = Trainee(seed=0)
    weights = save(store, trainee, 1)
    (weights.parent / "config.yaml").write_text("model:\n  name: small\n  args: {dim: 5, hidden: 12}\n")
    x = torch.randn(4, 5)
    fresh = SmallComparator(SmallOptions())
    assert not torch.equal(fresh(x, x.flip(0)), trainee.model(x, x.flip(0)))
    assert load_weights(fresh, weights) is fresh
    assert torch.equal(fresh(x, x.flip(0)), trainee.model(x, x.flip(0)))
    with pytest.raises(CheckpointMismatchError) as err:
        load_weights(SmallComparator(SmallOptions(hidden=7)), weights)
    message = str(err.value)
    assert "\n" not in message and isinstance(err.value, ConfigError)
    assert "(model options: hidden 12 there, 7 here)" in message
    assert "4 tensors expected, 4 saved; 3 of another shape (saved vs model): embedder.0.bias [12] vs [7]" in message


def test_best_and_last_k_and_only_the_newest_state_is_kept(tmp_path):
    store = fresh_store(tmp_path / "comparator")
    trainee = Trainee(seed=0)
    for epoch in (1, 2, 3):
        save(store, trainee, epoch, best_epoch=2)
    assert store.best() == store.weights(2) == tmp_path / "comparator" / "checkpoints" / "epoch_002" / "model.safetensors"
    assert store.last_k(1) == [store.weights(3)]
    assert store.last_k(2) == [store.weights(2), store.weights(3)]
    assert all(p.is_file() for p in store.last_k(3))
    with pytest.raises(ValueError, match="3 epochs recorded; cannot take the last 4"):
        store.last_k(4)
    names = sorted(p.name for p in store.folder.iterdir())
    assert names == ["epoch_001", "epoch_002", "epoch_003", "state_epoch_003"]  # nothing hidden left behind


def test_no_resume_state_says_what_the_folder_holds(tmp_path):
    store = CheckpointStore(tmp_path / "comparator")
    with pytest.raises(ConfigError, match=r"^--resume: no checkpoint in .*comparator/checkpoints to resume from "
                                          r"\(the folder does not exist\); run without --resume to start afresh$"):
        store.latest_resume_state()
    (store.folder / "last_state").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"found last_state/ \(the whole-model state of an older version"):
        store.latest_resume_state()


def test_an_incomplete_newer_state_is_skipped_and_a_fresh_start_removes_old_states(tmp_path):
    store = fresh_store(tmp_path / "comparator")
    trainee = Trainee(seed=0)
    save(store, trainee, 1)
    kept = tmp_path / "kept"
    shutil.copytree(store.folder / "state_epoch_001", kept)
    save(store, trainee, 2)
    shutil.copytree(kept, store.folder / "state_epoch_001")  # two states, as a kill between rename and removal leaves
    optimizer = store.folder / "state_epoch_002" / "optimizer.pt"
    size = optimizer.stat().st_size
    optimizer.write_bytes(optimizer.read_bytes()[: size // 2])
    notes: list[str] = []
    state = store.latest_resume_state(notes.append)
    assert state.epoch == 1
    assert notes == [f"--resume: skipping incomplete resume state state_epoch_002 (optimizer.pt has {size // 2} bytes, {size} written)"]

    (store.folder / ".state_epoch_003.tmp").mkdir()  # a state being assembled when the earlier run died
    assert store.open(fresh=False) == []
    assert sorted(store.open(fresh=True)) == [".state_epoch_003.tmp", "state_epoch_001", "state_epoch_002"]
    assert sorted(p.name for p in store.folder.iterdir()) == ["epoch_001", "epoch_002"]  # the weights stay
    with pytest.raises(ConfigError, match="found epoch_001/, epoch_002/"):
        store.latest_resume_state()


def visible_is_whole(store: CheckpointStore) -> list[str]:
    """What a reader sees under the store's names; each must be complete. Returns the names."""
    seen = []
    for path in sorted(store.folder.iterdir()):
        if path.name.startswith("."):
            continue
        seen.append(path.name)
        if path.name.startswith("epoch_"):
            assert sorted(p.name for p in path.iterdir()) == ["config.yaml", "metrics.json", "model.safetensors"], path
            assert load_file(str(path / "model.safetensors")) and json.loads((path / "metrics.json").read_text())
        else:
            notes: list[str] = []
            state = store.latest_resume_state(notes.append)
            assert notes == [] and state.trained()
    for name in ("trainer_state.json", "metrics.json", "lr_trace.json"):
        if (store.root / name).exists():
            json.loads((store.root / name).read_text())
    return seen


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it and nothing is cleaned up on disk."""


def test_killed_before_any_rename_of_a_save_no_partial_file_is_visible(tmp_path, monkeypatch):
    rename, replace = os.rename, os.replace
    calls: list[str] = []
    kill_at: list[Optional[int]] = [None]

    def hit(src) -> None:
        calls.append(Path(src).name)
        if kill_at[0] is not None and len(calls) - 1 == kill_at[0]:
            raise Killed(calls[-1])

    def killing_rename(src, dst, *args, **kwargs):
        hit(src)
        return rename(src, dst, *args, **kwargs)

    def killing_replace(src, dst, *args, **kwargs):
        hit(src)
        return replace(src, dst, *args, **kwargs)

    trainee = Trainee(seed=0)
    monkeypatch.setattr(os, "rename", killing_rename)
    monkeypatch.setattr(os, "replace", killing_replace)
    dry = fresh_store(tmp_path / "dry")
    save(dry, trainee, 1)
    calls.clear()
    save(dry, trainee, 2)
    points = list(calls)
    assert len(points) >= 8, points  # two files in the epoch folder, its rename, the state's JSON and rename, a removal, 3 summaries

    for k, point in enumerate(points):
        store = fresh_store(tmp_path / f"kill{k}")
        kill_at[0] = None
        save(store, trainee, 1)
        calls.clear()
        kill_at[0] = k
        with pytest.raises(Killed):
            save(store, trainee, 2)
        kill_at[0] = None
        seen = visible_is_whole(store)
        assert "epoch_001" in seen and any(n.startswith("state_epoch_") for n in seen), (point, seen)
        assert store.latest_resume_state().epoch in (1, 2), point
        save(store, trainee, 2)  # the rerun of the killed epoch completes over what was left
        assert visible_is_whole(store) == ["epoch_001", "epoch_002", "state_epoch_002"], point


def test_the_files_are_those_older_run_folders_have(tmp_path):
    """Byte layout kept: a folder written before the store existed still resumes and loads."""
    store = fresh_store(tmp_path / "comparator")
    trainee = Trainee(seed=0)
    save(store, trainee, 1)
    state_dir = store.folder / "state_epoch_001"
    assert sorted(p.name for p in state_dir.iterdir()) == ["optimizer.pt", "rng_rank0.pt", "scheduler.pt",
                                                             "trained.safetensors", "trainer_state.json"]
    text = (state_dir / "trainer_state.json").read_text()
    written = json.loads(text)
    assert text == json.dumps(written, indent=1)  # indent 1, no trailing newline, keys in the loop's order
    assert written["format"] == 1 and list(written)[:5] == ["epoch", "global_step", "best_epoch", "best_metric", "history"]
    assert written["files"] == {p.name: p.stat().st_size for p in sorted(state_dir.iterdir()) if p.name != "trainer_state.json"}
    metrics = store.folder / "epoch_001" / "metrics.json"
    assert metrics.read_text() == json.dumps({"epoch": 1, "val_loss": 1.0}, indent=1)
    assert (store.root / "metrics.json").read_text() == json.dumps({"history": record(1, 1)["history"], "best_epoch": 1}, indent=1)
