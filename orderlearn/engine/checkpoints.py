"""What a training run leaves on disk, and reading it back: per-epoch weights and the resume state.

Layout of ``<output_dir>/checkpoints/``:

``epoch_NNN/``
    ``model.safetensors`` (the model's :meth:`~comparators.base.Model.checkpoint_state_dict`),
    ``config.yaml``, ``metrics.json``: what scoring, ensembles and exports read.
``state_epoch_NNN/``
    the resume state after epoch NNN: ``trained.safetensors`` (again only what trains: the LoRA
    adapters and projector of a LLaVA comparator, never its frozen base model), ``optimizer.pt``,
    ``scheduler.pt``, ``scaler.pt`` (fp16 only), one ``rng_rank{R}.pt`` per process and
    ``trainer_state.json`` (epoch, optimizer step, best epoch, history, learning-rate trace, the
    ``model`` section of the config that names the base model, process count and batch sizes,
    and the size of every file of the folder).

Why folders renamed into place and no pointer file: a state is assembled in a hidden
``.state_epoch_NNN.tmp`` folder and renamed to its final name only when every file in it is
written and synced; older states are removed only after that (renamed away first, then
deleted). So at any instant, killed at any point, every ``state_epoch_NNN`` folder is complete
and the newest one is the state to resume from; a pointer would be a second record of the
same fact that can disagree with the first. Reading still checks each file against the
recorded sizes and falls back to the next older complete state.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from orderlearn.errors import ConfigError
from orderlearn.files import atomic_write_json

STATE_PREFIX = "state_epoch_"
TRAINER_FILE = "trainer_state.json"
TRAINED_FILE = "trained.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
SCALER_FILE = "scaler.pt"
STATE_FORMAT = 1
_STATE_RE = re.compile(rf"^{STATE_PREFIX}(\d+)$")


class CheckpointMismatchError(ConfigError):
    """Saved tensors that do not fit the model built from the config (another architecture)."""


@dataclass
class ResumeState:
    """A complete resume state on disk: its folder and its ``trainer_state.json``."""

    folder: Path
    trainer: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.trainer["epoch"])


# ---------------------------------------------------------------------- per-epoch weights
def save_epoch_weights(ckpt_dir: Path, epoch: int, tensors: Mapping[str, torch.Tensor], config_yaml: str,
                       metrics: Mapping[str, Any]) -> Path:
    """``epoch_NNN/`` with the weights, the config and the metrics; it appears whole or not at all."""
    final = ckpt_dir / f"epoch_{epoch:03d}"
    tmp = ckpt_dir / f".epoch_{epoch:03d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _save_tensors(tensors, tmp / "model.safetensors")
    _write_synced(tmp / "config.yaml", config_yaml.encode())
    _write_synced(tmp / "metrics.json", json.dumps(dict(metrics), indent=1).encode())
    _fsync_dir(tmp)
    if final.exists():  # a rerun of the same epoch (fresh run into an old folder): move the old one away first
        _remove(final)
    os.rename(tmp, final)
    _fsync_dir(ckpt_dir)
    return final


def weights_file_mismatch(path: Path, expected: Mapping[str, torch.Tensor]) -> Optional[str]:
    """Why the tensors in ``path`` cannot load into a model whose checkpoint state is ``expected``
    (None when names and shapes agree): counts and a few names of each kind of difference."""
    with safe_open(str(path), framework="pt") as handle:
        saved = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    return tensor_mismatch(saved, {k: tuple(v.shape) for k, v in expected.items()})


def tensor_mismatch(saved: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]) -> Optional[str]:
    """One clause saying which tensor names and shapes differ, or None when they all agree."""
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    reshaped = [f"{k} {list(saved[k])} vs {list(expected[k])}" for k in sorted(set(saved) & set(expected))
                if tuple(saved[k]) != tuple(expected[k])]
    if not (missing or unexpected or reshaped):
        return None
    parts = [f"{len(expected)} tensors expected, {len(saved)} saved"]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("of another shape (saved vs model)", reshaped)):
        if items:
            more = f", ... {len(items) - 3} more" if len(items) > 3 else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
    return "; ".join(parts)


def config_differences(saved: Any, current: Any, prefix: str) -> list[str]:
    """``key: old -> new`` for every leaf that differs between two config mappings."""
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        out = []
        for key in sorted(set(saved) | set(current), key=str):
            if key not in current:
                out.append(f"{prefix}{key}: {saved[key]!r} -> (not set)")
            elif key not in saved:
                out.append(f"{prefix}{key}: (not set) -> {current[key]!r}")
            else:
                out.extend(config_differences(saved[key], current[key], f"{prefix}{key}."))
        return out
    return [] if saved == current else [f"{prefix.rstrip('.')}: {saved!r} -> {current!r}"]


# ---------------------------------------------------------------------- resume state: writing
def begin_state(ckpt_dir: Path, epoch: int) -> Path:
    """The hidden folder the state of ``epoch`` is assembled in (main process; emptied first)."""
    tmp = ckpt_dir / f".{STATE_PREFIX}{epoch:03d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def save_rng(folder: Path, rank: int) -> None:
    """This process's random generators (python, numpy, torch CPU and CUDA): dropout masks and
    augmentations of the next epoch continue exactly as in an unbroken run."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    path = folder / f"rng_rank{rank}.pt"
    torch.save(state, path)
    _fsync_file(path)


def finish_state(tmp: Path, ckpt_dir: Path, epoch: int, tensors: Mapping[str, torch.Tensor], optimizer: Any,
                 scheduler: Any, scaler: Optional[Any], trainer: dict[str, Any]) -> Path:
    """Write the rest of the state into ``tmp`` (every process's RNG file is in it already), then
    rename it to ``state_epoch_NNN`` and remove the older states. Main process only."""
    _save_tensors(tensors, tmp / TRAINED_FILE)
    _torch_save_synced(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    _torch_save_synced(scheduler.state_dict(), tmp / SCHEDULER_FILE)
    if scaler is not None:
        _torch_save_synced(scaler.state_dict(), tmp / SCALER_FILE)
    files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    _write_synced(tmp / TRAINER_FILE, json.dumps({**trainer, "format": STATE_FORMAT, "files": files}, indent=1).encode())
    _fsync_dir(tmp)
    final = ckpt_dir / f"{STATE_PREFIX}{epoch:03d}"
    if final.exists():
        _remove(final)
    os.rename(tmp, final)
    _fsync_dir(ckpt_dir)
    for old in state_folders(ckpt_dir):
        if old != final:
            _remove(old)
    return final


def clear_states(ckpt_dir: Path) -> list[str]:
    """Remove every resume state (a fresh run into a folder that holds an earlier run's); returns their names."""
    if not ckpt_dir.is_dir():
        return []
    old = state_folders(ckpt_dir) + [p for p in ckpt_dir.iterdir() if p.name.startswith(f".{STATE_PREFIX}")]
    for folder in old:
        _remove(folder)
    return [p.name for p in old]


# ---------------------------------------------------------------------- resume state: reading
def state_folders(ckpt_dir: Path) -> list[Path]:
    """``state_epoch_NNN`` folders, newest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _STATE_RE.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found, reverse=True)]


def newest_state(ckpt_dir: Path) -> tuple[Optional[ResumeState], list[str]]:
    """The newest complete resume state, and why each newer one was skipped."""
    skipped = []
    for folder in state_folders(ckpt_dir):
        problem, trainer = _check_state(folder)
        if problem is None:
            return ResumeState(folder, trainer), skipped
        skipped.append(f"{folder.name} ({problem})")
    return None, skipped


def describe_folder(ckpt_dir: Path) -> str:
    """What a checkpoints folder holds, for an error that says why nothing can be resumed."""
    if not ckpt_dir.is_dir():
        return "the folder does not exist"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in ckpt_dir.iterdir())
    if not names:
        return "the folder is empty"
    notes = {"last_state/": " (the whole-model state of an older version: not resumable by this one)"}
    shown = [n + notes.get(n, "") for n in names[:8]]
    return "found " + ", ".join(shown) + (f", ... {len(names) - 8} more" if len(names) > 8 else "")


def load_trained(state: ResumeState) -> dict[str, torch.Tensor]:
    return load_file(str(state.folder / TRAINED_FILE))


def saved_shapes(state: ResumeState) -> dict[str, tuple[int, ...]]:
    with safe_open(str(state.folder / TRAINED_FILE), framework="pt") as handle:
        return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}


def load_training_state(state: ResumeState, optimizer: Any, scheduler: Any, scaler: Optional[Any]) -> None:
    """Optimizer, scheduler and (fp16) gradient-scaler states, onto the devices of their parameters."""
    optimizer.load_state_dict(torch.load(state.folder / OPTIMIZER_FILE, map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(state.folder / SCHEDULER_FILE, map_location="cpu", weights_only=True))
    if scaler is not None and (state.folder / SCALER_FILE).is_file():
        scaler.load_state_dict(torch.load(state.folder / SCALER_FILE, map_location="cpu", weights_only=True))


def restore_rng(state: ResumeState, rank: int) -> bool:
    """Restore this process's generators; False when the state has no file for ``rank``
    (resumed on more processes than it was written with)."""
    path = state.folder / f"rng_rank{rank}.pt"
    if not path.is_file():
        return False
    saved = torch.load(path, map_location="cpu", weights_only=True)
    random.setstate(_as_tuples(saved["python"]))
    kind, keys, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(saved["torch"])
    if "cuda" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda"])
    return True


# ---------------------------------------------------------------------- helpers
def _check_state(folder: Path) -> tuple[Optional[str], dict[str, Any]]:
    try:
        trainer = json.loads((folder / TRAINER_FILE).read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable {TRAINER_FILE}: {exc.__class__.__name__}", {}
    for name, size in trainer.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            return f"{name} missing", trainer
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} written", trainer
    for name in (TRAINED_FILE, OPTIMIZER_FILE, SCHEDULER_FILE):
        if name not in trainer.get("files", {}):
            return f"{name} not recorded", trainer
    return None, trainer


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _remove(folder: Path) -> None:
    """Rename away, then delete: an interrupted delete never leaves a half folder under a live name."""
    trash = folder.with_name(f".removing-{folder.name}-{os.getpid()}")
    shutil.rmtree(trash, ignore_errors=True)
    os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _save_tensors(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))
    _fsync_file(path)


def _torch_save_synced(payload: Any, path: Path) -> None:
    torch.save(payload, path)
    _fsync_file(path)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_json_atomic(path: Path, payload: Any) -> None:
    """Readers see the old file or the new one, never a half-written one (synced to disk)."""
    atomic_write_json(path, payload, sync=True)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (power loss); a killed process needs only the rename itself."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
