"""The training loop's own guarantees, on models small enough to train in milliseconds (plus the
tiny siamese and the tiny LLaVA for the resume state). Each fit runs inside the run's
:func:`~orderlearn.runs.recipe.setup` (the lock, the resume lookup), as in ``orderlearn run``;
its checkpoints are under ``<out>/comparator/``:

- global batches and the learning-rate schedule do not depend on the number of processes
  (the 2-process run itself is in test_multiprocess_training.py);
- ``resume`` on a folder without a checkpoint is an error that says what the folder holds;
- two runs into one folder: the second fails at once naming the first; the lock of a killed
  run is taken over;
- resuming, or loading weights, with another architecture names the differing tensors;
- a run killed at any file operation of the checkpoint swap resumes to the same weights;
- the resume state holds only what trains, and resuming from it is bit-exact;
- a launch under FSDP or DeepSpeed stops before anything is read or written, in one line.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

import comparators
from comparators.base import Comparator
from comparators.losses import ComparatorLoss
from orderlearn.config import config_from_dict
from orderlearn.errors import ConfigError
from orderlearn.engine.checkpoints import load_weights
from orderlearn.engine.objectives import ComparatorObjective
from orderlearn.engine.training import fit
from orderlearn.runs.recipe import setup as run_setup

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


# ---------------------------------------------------------------------- a model that trains in milliseconds
@dataclass
class TinyConfig:
    dim: int = 6
    hidden: int = 16
    dropout: float = 0.2  # dropout draws from the RNG: an exact resume must restore it


class TinyComparator(Comparator):
    splits = True

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.embedder = nn.Sequential(nn.Linear(config.dim, config.hidden), nn.GELU(), nn.Dropout(config.dropout))
        self.head = nn.Linear(2 * config.hidden, 3)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedder(x)

    def compare(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([a, b], dim=-1))


@comparators.register_model("tiny-test", kind="comparator", options=TinyConfig)
def build_tiny(**kwargs) -> TinyComparator:
    return TinyComparator(TinyConfig(**kwargs))


class VectorPairs(torch.utils.data.Dataset):
    """Pairs of random vectors labelled by which has the larger first coordinate."""

    def __init__(self, n: int, dim: int = 6, seed: int = 0, delay: float = 0.0, started: Optional[Path] = None):
        g = torch.Generator().manual_seed(seed)
        self.a, self.b = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)
        self.label = (self.a[:, 0] < self.b[:, 0]).long()
        self.delay, self.started = delay, started

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.started is not None and not self.started.exists():
            self.started.write_text(str(os.getpid()))
        time.sleep(self.delay)
        return {"image_a": self.a[i], "image_b": self.b[i], "label": self.label[i]}


class CountingObjective(ComparatorObjective):
    """Counts validations (the checkpoint of epoch k is written right after the k-th) and can
    stop the process (``Killed``) at a chosen training step."""

    def __init__(self, kill_at_step: Optional[int] = None):
        super().__init__(ComparatorLoss("ce"))
        self.evaluations, self.steps, self.kill_at_step = 0, 0, kill_at_step

    def loss(self, model, batch):
        self.steps += 1
        if self.kill_at_step is not None and self.steps == self.kill_at_step:
            raise Killed(f"killed at training step {self.steps}")
        return super().loss(model, batch)

    def evaluate(self, model, loader, accelerator):
        self.evaluations += 1
        return super().evaluate(model, loader, accelerator)


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the loop catches it, nothing is cleaned up on disk."""


def loop_config(out: Path, hidden: int = 16, epochs: int = 3, **train) -> "object":
    return config_from_dict({
        "name": "loop", "seed": 1, "output_dir": str(out),
        "model": {"name": "tiny-test", "hidden": hidden},
        "optim": {"lr": 1e-2},
        "schedule": {"name": "cosine", "warmup_epochs": 0.5},
        "train": {"epochs": epochs, "batch_size": 8, "eval_batch_size": 32, "max_steps_per_epoch": 5, "tracker": "none",
                  "mixed_precision": "no", **train},
    })


def tiny_fit(out: Path, hidden: int = 16, epochs: int = 3, resume: bool = False, objective: Optional[ComparatorObjective] = None,
             train: Optional[torch.utils.data.Dataset] = None, overwrite: bool = False) -> tuple[TinyComparator, object]:
    torch.manual_seed(0)
    model = TinyComparator(TinyConfig(hidden=hidden))
    config = loop_config(out, hidden, epochs)
    with run_setup(config, resume, overwrite=overwrite) as run:
        result = fit(model, objective or CountingObjective(), train or VectorPairs(96), VectorPairs(32, seed=1), config,
                     run.store, run.accelerator, run.resume_state)
    return model, result


# ---------------------------------------------------------------------- global batches
def test_global_batches_do_not_depend_on_the_process_count():
    """What accelerate hands each of 2 processes (its BatchSamplerShard over our sampler) makes
    up, step by step, the batches of 1 process with twice the batch; no padding at the end."""
    from accelerate.data_loader import BatchSamplerShard

    from orderlearn.engine.samplers import GlobalBatchSampler

    for size in (100, 96, 40):
        one = GlobalBatchSampler(size, seed=4, batch_size=16, num_processes=1)
        two = GlobalBatchSampler(size, seed=4, batch_size=8, num_processes=2)
        for sampler in (one, two):
            sampler.start_epoch(3)
        shards = [list(BatchSamplerShard(two, num_processes=2, process_index=r)) for r in (0, 1)]
        single = list(one)
        assert len(shards[0]) == len(shards[1]) == len(single) == one.global_batches
        for step, batch in enumerate(single):
            assert shards[0][step] + shards[1][step] == batch
            assert len(set(batch)) == len(batch)
    # fewer examples than one global batch: one step, the per-process batch shrinks to fit
    small = GlobalBatchSampler(13, seed=4, batch_size=8, num_processes=2)
    shards = [list(BatchSamplerShard(small, num_processes=2, process_index=r)) for r in (0, 1)]
    assert [len(s) for s in shards] == [1, 1] and len(shards[0][0]) == len(shards[1][0]) == 6
    assert not set(shards[0][0]) & set(shards[1][0])


class IndexedPairs(VectorPairs):
    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**super().__getitem__(i), "index": torch.tensor(i)}


class BatchLog(CountingObjective):
    """Records which examples each training step trained on."""

    def __init__(self):
        super().__init__()
        self.steps_read: list[list[int]] = []

    def loss(self, model, batch):
        self.steps_read.append(batch["index"].tolist())
        return super().loss(model, batch)


def test_each_epoch_draws_its_own_batches_even_with_a_step_cap(tmp_path):
    """With train.max_steps_per_epoch an epoch ends before the loader is exhausted; accelerate's
    count of completed passes then never advanced and every epoch drew the same batches."""
    from orderlearn.engine.samplers import GlobalBatchSampler

    objective = BatchLog()
    tiny_fit(tmp_path / "run", epochs=3, objective=objective, train=IndexedPairs(96))  # 5 steps of 8 per epoch
    assert len(objective.steps_read) == 15
    expected = GlobalBatchSampler(96, seed=1, batch_size=8, num_processes=1)
    for epoch in (1, 2, 3):
        expected.start_epoch(epoch)
        assert objective.steps_read[(epoch - 1) * 5:epoch * 5] == list(expected)[:5], epoch
    assert objective.steps_read[0] != objective.steps_read[5] != objective.steps_read[10]


# ---------------------------------------------------------------------- case 9: --resume on nothing, two runs at once
def test_resume_without_a_checkpoint_says_so(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"--resume: no checkpoint in .*empty/comparator/checkpoints .*the folder does not exist"):
        tiny_fit(empty, resume=True)
    (empty / "comparator" / "checkpoints" / "last_state").mkdir(parents=True)  # what an older version left
    with pytest.raises(ConfigError, match=r"found last_state/ \(the whole-model state of an older version"):
        tiny_fit(empty, resume=True)


def test_resume_says_where_it_continues_from(tmp_path, capsys):
    tiny_fit(tmp_path / "run", epochs=1)
    tiny_fit(tmp_path / "run", epochs=2, resume=True)
    assert f"train: resuming after epoch 1 from {tmp_path / 'run' / 'comparator' / 'checkpoints' / 'state_epoch_001'}" in capsys.readouterr().out


LOCK_HOLDER = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_training_loop import VectorPairs, tiny_fit
tiny_fit(Path({out!r}), train=VectorPairs(96, delay=0.5, started=Path({started!r})))
"""


@contextlib.contextmanager
def running_fit(out: Path, started: Path) -> Iterator[subprocess.Popen]:
    """A slow training run in another process, yielded once it is inside the loop."""
    script = LOCK_HOLDER.format(tests=str(TESTS), out=str(out), started=str(started))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while not started.exists():
            if proc.poll() is not None:
                raise AssertionError(f"the first run ended early: {proc.stdout.read()[-2000:]}")
            if time.time() > deadline:
                raise AssertionError("the first run did not start training within 300 s")
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.mark.slow  # a subprocess
def test_second_run_into_the_same_folder_fails_naming_the_first_and_a_dead_ones_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    with running_fit(out, tmp_path / "started") as first:
        with pytest.raises(ConfigError) as err:
            tiny_fit(out, epochs=1)
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith(f"{out} is in use by pid {first.pid} on "), message
        os.kill(first.pid, signal.SIGKILL)  # dies holding the lock
        first.wait()
    _, result = tiny_fit(out, epochs=1, overwrite=True)  # the kernel released the dead run's lock: this run takes it
    assert result.best_epoch == 1


# ---------------------------------------------------------------------- sharded launches are refused
@pytest.mark.parametrize("variable, kind", [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DEEPSPEED")])
def test_a_sharded_launch_fails_at_once_naming_the_accelerate_setting(tmp_path, monkeypatch, capsys, variable, kind):
    """What `accelerate launch --config_file <a FSDP or DeepSpeed config>` sets in each process."""
    from orderlearn.cli import main

    out = tmp_path / "run"
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"name": "sharded", "output_dir": str(out), "model": {"name": "tiny-test"},
                                  "train": {"tracker": "none"}}))
    monkeypatch.setenv(variable, "true")
    assert main(["run", "--config", str(config)]) == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message
    assert message.startswith(f"error: accelerate config: distributed_type {kind} ({variable}=true) is not supported"), message
    assert "multi_gpu.yaml" in message
    assert not out.exists()  # no lock, no config, no data read
    monkeypatch.setenv(variable, "false")
    with run_setup(config_from_dict({"output_dir": str(out), "train": {"tracker": "none"}})) as run:
        assert run.resume_state is None and (out / "config.yaml").is_file()


# ---------------------------------------------------------------------- case 13: another architecture
def test_resume_with_another_architecture_names_the_differences(tmp_path):
    out = tmp_path / "run"
    tiny_fit(out, hidden=16, epochs=1)
    with pytest.raises(ConfigError, match="does not match the config") as err:
        tiny_fit(out, hidden=8, epochs=2, resume=True)
    message = str(err.value)
    assert "\n" not in message
    assert "model.args.hidden: 16 -> 8" in message
    assert "4 tensors expected, 4 saved; 3 of another shape (saved vs model): embedder.0.bias [16] vs [8]" in message


def test_load_weights_of_another_architecture_names_the_differences(tmp_path):
    out = tmp_path / "run"
    _, result = tiny_fit(out, hidden=16, epochs=1)
    other = TinyComparator(TinyConfig(hidden=8))
    with pytest.raises(ConfigError, match=r"does not match the model \(model options: hidden 16 there, 8 here\): ") as err:
        load_weights(other, result.best_checkpoint)
    assert "3 of another shape" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------- case 15: killed during the swap
@contextlib.contextmanager
def kill_at_file_operation(monkeypatch, armed: Callable[[], bool], kill_at: Optional[int]) -> Iterator[list[str]]:
    """Record every rename / replace / rmtree while ``armed()``; the ``kill_at``-th raises
    :class:`Killed` before it happens (an rmtree is killed after deleting one file)."""
    calls: list[str] = []
    rename, replace, rmtree = os.rename, os.replace, shutil.rmtree

    def hit(name: str, path) -> bool:
        if not armed():
            return False
        calls.append(f"{name} {Path(path).name}")
        return kill_at is not None and len(calls) - 1 == kill_at

    def fake_rename(src, dst, *args, **kwargs):
        if hit("rename", src):
            raise Killed(calls[-1])
        return rename(src, dst, *args, **kwargs)

    def fake_replace(src, dst, *args, **kwargs):
        if hit("replace", src):
            raise Killed(calls[-1])
        return replace(src, dst, *args, **kwargs)

    def fake_rmtree(path, *args, **kwargs):
        if Path(path).exists() and hit("rmtree", path):
            files = sorted(p for p in Path(path).rglob("*") if p.is_file())
            if files:
                files[0].unlink()
            raise Killed(calls[-1])
        return rmtree(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", fake_rename)
        patch.setattr(os, "replace", fake_replace)
        patch.setattr(shutil, "rmtree", fake_rmtree)
        yield calls


def final_weights(out: Path, epoch: int = 3) -> dict[str, torch.Tensor]:
    return load_file(str(out / "comparator" / "checkpoints" / f"epoch_{epoch:03d}" / "model.safetensors"))


def test_a_run_killed_at_any_step_of_the_checkpoint_swap_resumes_to_the_same_weights(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    tiny_fit(straight)
    want = final_weights(straight)

    objective = CountingObjective()  # epoch 2's checkpoint is written after the 2nd validation
    with kill_at_file_operation(monkeypatch, lambda: objective.evaluations == 2, kill_at=None) as calls:
        tiny_fit(tmp_path / "count", objective=objective)
    points = list(calls)
    assert len(points) >= 3, points

    for k, point in enumerate(points):
        out = tmp_path / f"kill{k}"
        objective = CountingObjective()
        with pytest.raises(Killed):
            with kill_at_file_operation(monkeypatch, lambda: objective.evaluations == 2, kill_at=k):
                tiny_fit(out, objective=objective)
        tiny_fit(out, resume=True)
        got = final_weights(out)
        assert set(got) == set(want)
        assert all(torch.equal(got[n], want[n]) for n in want), f"killed before {point}: resumed weights differ"
        assert [h["epoch"] for h in json.loads((out / "comparator" / "metrics.json").read_text())["history"]] == [1, 2, 3]


# ---------------------------------------------------------------------- small, exact resume state
def stop_and_resume(build: Callable[[], nn.Module], data: Callable[[nn.Module], tuple], config_of: Callable[[Path], object],
                    tmp_path: Path, steps_per_epoch: int) -> tuple[Path, Path]:
    """An unbroken 2-epoch run and one killed in epoch 2 (its epoch-1 state on disk) then resumed."""
    runs = {}
    for name, kill in (("straight", None), ("broken", steps_per_epoch + 1)):
        out = tmp_path / name
        config = config_of(out)
        torch.manual_seed(0)
        model = build()
        train, val = data(model)
        objective = CountingObjective(kill_at_step=kill)
        if kill is None:
            with run_setup(config) as run:
                fit(model, objective, train, val, config, run.store, run.accelerator, param_groups=model.parameter_groups())
        else:
            with pytest.raises(Killed), run_setup(config) as run:
                fit(model, objective, train, val, config, run.store, run.accelerator, param_groups=model.parameter_groups())
            torch.manual_seed(123)  # the resumed process has its own history: nothing may depend on it
            model = build()
            train, val = data(model)
            with run_setup(config, resume=True) as run:
                fit(model, CountingObjective(), train, val, config, run.store, run.accelerator, run.resume_state,
                    param_groups=model.parameter_groups())
        runs[name] = out
    return runs["straight"], runs["broken"]


def pair_data(root: Path, model: nn.Module, total: int) -> tuple:
    from orderlearn.data import scut
    from orderlearn.engine.datasets import PairDataset
    from orderlearn.data.pairs import sample_pairs

    train, _ = scut.read_split(root, "fold1")
    train_s, val_s = train[:100], train[100:140]
    train_pairs = sample_pairs([s.score for s in train_s], "balanced-3", total, 0.2, 0)
    val_pairs = sample_pairs([s.score for s in val_s], "balanced-3", 12, 0.2, 1)
    return PairDataset(train_s, train_pairs, model.train_preprocess()), PairDataset(val_s, val_pairs, model.preprocess())


def state_tensor_names(out: Path) -> tuple[Path, list[str]]:
    states = sorted((out / "comparator" / "checkpoints").glob("state_epoch_*"))
    assert [s.name for s in states] == ["state_epoch_002"]  # older states removed
    tensors = [p for p in states[0].iterdir() if p.suffix == ".safetensors"]
    assert [p.name for p in tensors] == ["trained.safetensors"]
    with safe_open(str(tensors[0]), framework="pt") as handle:
        return states[0], list(handle.keys())


def assert_same_final_weights(straight: Path, broken: Path) -> None:
    want, got = final_weights(straight, 2), final_weights(broken, 2)
    assert set(want) == set(got)
    assert all(torch.equal(want[n], got[n]) for n in want)
    trace = [json.loads((o / "comparator" / "lr_trace.json").read_text()) for o in (straight, broken)]
    assert trace[0] == trace[1] and len(trace[0]) == 6


@pytest.mark.slow  # two fine-tuning runs, ~2 s
def test_siamese_resume_is_exact(synthetic_root, tmp_path):
    import comparators
    from builders import TINY_BACKBONE

    args = {**TINY_BACKBONE, "image_size": 32, "projection": 16, "hidden": 16}

    def config_of(out: Path):
        return config_from_dict({
            "name": "siamese-resume", "seed": 2, "output_dir": str(out), "model": {"name": "siamese", **args},
            "schedule": {"name": "cosine", "warmup_epochs": 0.5},
            "train": {"epochs": 2, "batch_size": 6, "eval_batch_size": 12, "max_steps_per_epoch": 3, "tracker": "none",
                      "mixed_precision": "no"}})

    # batch norm, dropout and random flips: each needs its state restored for an exact resume
    straight, broken = stop_and_resume(lambda: comparators.create("siamese", **args),
                                       lambda m: pair_data(synthetic_root, m, 60), config_of, tmp_path, 3)
    assert_same_final_weights(straight, broken)
    state, names = state_tensor_names(broken)
    model = comparators.create("siamese", **args)
    assert sorted(names) == sorted(model.checkpoint_state_dict())  # for a fine-tuned CNN, all of it trains
    record = json.loads((state / "trainer_state.json").read_text())
    assert record["model"] == {"name": "siamese", "args": args} and record["epoch"] == 2 and record["global_step"] == 6


TOKENIZER_DIR = REPO.parent / "shared" / "models" / "llama2-tokenizer"


@pytest.mark.skipif(not (TOKENIZER_DIR / "tokenizer.model").is_file(), reason=f"Llama-2 tokenizer not found at {TOKENIZER_DIR}")
def test_llava_resume_state_holds_no_base_weights_and_resume_is_exact(synthetic_root, tmp_path):
    import comparators

    args = {"tiny": True, "tokenizer": str(TOKENIZER_DIR), "torch_dtype": "float32", "lora_lr": 1e-3, "projector_lr": 1e-3}

    def config_of(out: Path):
        return config_from_dict({
            "name": "llava-resume", "seed": 0, "output_dir": str(out), "model": {"name": "llava", **args},
            "optim": {"weight_decay": 0.0}, "schedule": {"name": "cosine", "warmup_epochs": 0.5},
            "train": {"epochs": 2, "batch_size": 4, "eval_batch_size": 12, "max_steps_per_epoch": 3, "tracker": "none",
                      "mixed_precision": "no"}})

    # LoRA dropout 0.05 draws from the RNG
    straight, broken = stop_and_resume(lambda: comparators.create("llava", **args),
                                       lambda m: pair_data(synthetic_root, m, 36), config_of, tmp_path, 3)
    assert_same_final_weights(straight, broken)
    state, names = state_tensor_names(broken)
    model = comparators.create("llava", **args)
    trained = model.checkpoint_state_dict()
    assert sorted(names) == sorted(trained) and len(names) == 2 * 7 * 2 + 4  # LoRA A/B of 2 layers x 7 projections + projector
    assert all("lora_" in n or "modules_to_save" in n for n in names)
    trained_bytes = sum(t.numel() * t.element_size() for t in trained.values())
    base_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values()) - trained_bytes
    state_bytes = sum(p.stat().st_size for p in state.iterdir())
    # the trained tensors, AdamW's two moments of each, RNG states and a little JSON: no base weights
    assert state_bytes < 3 * trained_bytes + 200_000 < base_bytes / 10, (state_bytes, trained_bytes, base_bytes)
    record = json.loads((state / "trainer_state.json").read_text())
    assert record["model"] == {"name": "llava", "args": args}  # the base model is rebuilt from this


def test_one_view_per_epoch_shows_every_face_once_in_a_drawn_view():
    """train.views_per_epoch: one over a view-major dataset of N faces x V views: each epoch
    holds each face exactly once (in one of its views), the draw is seeded per epoch, and over
    epochs every view of a face is seen (a random flip, not a fixed half of the views)."""
    from orderlearn.engine.samplers import EpochSampler, GlobalBatchSampler

    faces, views = 50, 2
    sampler = EpochSampler(faces * views, seed=3, views=views)
    assert len(sampler) == faces
    seen: dict[int, set[int]] = {f: set() for f in range(faces)}
    for epoch in range(1, 9):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(i % faces for i in order) == list(range(faces))  # each face once
        assert all(0 <= i < faces * views for i in order)
        for i in order:
            seen[i % faces].add(i // faces)
        sampler.set_epoch(epoch)
        assert list(sampler) == order  # seeded: the same epoch draws the same views
    assert all(v == {0, 1} for v in seen.values())
    sampler.set_epoch(1)
    first = [i // faces for i in sampler]
    assert 0 < sum(first) < faces  # both views drawn within one epoch
    batches = GlobalBatchSampler(faces * views, seed=3, batch_size=16, num_processes=1, views=views)
    assert batches.global_batches == faces // 16
    with pytest.raises(ValueError, match="views"):
        EpochSampler(101, seed=3, views=2)
