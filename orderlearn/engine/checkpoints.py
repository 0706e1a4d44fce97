"""What a training run leaves on disk, and reading it back: per-epoch weights and the resume state,
behind one object, :class:`CheckpointStore` (and :func:`load_weights` for a weights file anywhere).

Layout of ``<root>/checkpoints/`` (``root`` is ``<run folder>/<kind>`` in a run):

``epoch_NNN/``
    ``model.safetensors`` (the model's :meth:`~comparators.base.Model.checkpoint_state_dict`),
    ``config.yaml``, ``metrics.json``: what scoring, ensembles and exports read.
``state_epoch_NNN/``
    the resume state after epoch NNN: ``trained.safetensors`` (again only what trains: the LoRA
    adapters and projector of a LLaVA comparator, never its frozen base model), ``optimizer.pt``,
    ``scheduler.pt``, ``scaler.pt`` (fp16 only), one ``rng_rank{R}.pt`` per process (its random
    generators and its objective's own, the in-batch pair generator) and
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

Beside ``checkpoints/``, in ``root``: ``trainer_state.json`` (epoch, step, best epoch and metric,
history), ``metrics.json`` (history and best epoch: what :meth:`CheckpointStore.best` and
:meth:`CheckpointStore.last_k` read) and ``lr_trace.json`` (the learning rate of every step),
rewritten whole after every epoch.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from comparators.base import Model

from orderlearn.engine.heads import unwrap
from orderlearn.errors import ConfigError
from orderlearn.files import atomic_write_json, atomic_write_text

STATE_PREFIX = "state_epoch_"
TRAINER_FILE = "trainer_state.json"
TRAINED_FILE = "trained.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
SCALER_FILE = "scaler.pt"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
STATE_FORMAT = 1
SUMMARY_KEYS = ("epoch", "global_step", "best_epoch", "best_metric", "history")
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

    def mismatch(self, expected: Mapping[str, torch.Tensor]) -> Optional[str]:
        """Why the saved trained tensors cannot load into a model whose checkpoint state is
        ``expected`` (None when names and shapes agree)."""
        with safe_open(str(self.folder / TRAINED_FILE), framework="pt") as handle:
            saved = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
        return _tensor_mismatch(saved, {k: tuple(v.shape) for k, v in expected.items()})

    def model_changes(self, model_section: Mapping[str, Any]) -> list[str]:
        """``model.key: old -> new`` for each model option that differs from the recorded one."""
        return _config_differences(self.trainer.get("model", {}), model_section, "model.")

    def trained(self) -> dict[str, torch.Tensor]:
        """The trained tensors (what :meth:`~comparators.base.Model.load_checkpoint_state_dict` takes)."""
        return load_file(str(self.folder / TRAINED_FILE))

    def load_training_state(self, optimizer: Any, scheduler: Any, scaler: Optional[Any]) -> None:
        """Optimizer, scheduler and (fp16) gradient-scaler states, onto the devices of their parameters."""
        optimizer.load_state_dict(torch.load(self.folder / OPTIMIZER_FILE, map_location="cpu", weights_only=True))
        scheduler.load_state_dict(torch.load(self.folder / SCHEDULER_FILE, map_location="cpu", weights_only=True))
        if scaler is not None and (self.folder / SCALER_FILE).is_file():
            scaler.load_state_dict(torch.load(self.folder / SCALER_FILE, map_location="cpu", weights_only=True))

    def restore_rng(self, rank: int) -> bool:
        """Restore this process's generators; False when the state has no file for ``rank``
        (resumed on more processes than it was written with)."""
        path = self.folder / f"rng_rank{rank}.pt"
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

    def objective_state(self, rank: int) -> Optional[dict[str, Any]]:
        """The objective's own state this process saved (None: no file for ``rank``, or a state
        written before objectives kept theirs)."""
        path = self.folder / f"rng_rank{rank}.pt"
        if not path.is_file():
            return None
        return torch.load(path, map_location="cpu", weights_only=True).get("objective")


class CheckpointStore:
    """The checkpoints of one training run under ``root`` (see the module's layout).

    Writing an epoch takes three calls because every process holds random generators of its
    own: the main process opens the epoch's hidden state folder (:meth:`begin_epoch`), every
    process writes its generators into it (:meth:`save_rng`), and the main process writes the
    rest and renames it into place (:meth:`save_epoch`); the caller synchronises the processes
    in between. Nothing here knows about processes, the loop or the run folder around ``root``.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.folder = self.root / "checkpoints"

    def __repr__(self) -> str:
        return f"CheckpointStore({str(self.root)!r})"

    # ------------------------------------------------------------------ reading
    def weights(self, epoch: int) -> Path:
        """The weights file of epoch ``epoch`` (``checkpoints/epoch_NNN/model.safetensors``)."""
        return self.folder / f"epoch_{epoch:03d}" / WEIGHTS_FILE

    def best(self) -> Path:
        """The weights of the validation-selected epoch of the run recorded in ``metrics.json``."""
        return self.weights(int(self._metrics()["best_epoch"]))

    def last_k(self, k: int) -> list[Path]:
        """The weights of the run's last ``k`` epochs, oldest first (a checkpoint ensemble)."""
        epochs = [int(h["epoch"]) for h in self._metrics()["history"]]
        if not 1 <= k <= len(epochs):
            raise ValueError(f"{self.root}: {len(epochs)} epochs recorded; cannot take the last {k}")
        return [self.weights(e) for e in epochs[-k:]]

    def latest_resume_state(self, notify: Callable[[str], None] = print) -> ResumeState:
        """The newest complete resume state; each newer incomplete one is skipped with a note to
        ``notify``. A ConfigError saying what the folder holds when there is none (asked to
        resume, starting from scratch would be a surprise)."""
        for folder in self._state_folders():
            problem, trainer = _check_state(folder)
            if problem is None:
                return ResumeState(folder, trainer)
            notify(f"--resume: skipping incomplete resume state {folder.name} ({problem})")
        raise ConfigError(f"--resume: no checkpoint in {self.folder} to resume from ({self._describe()}); "
                          "run without --resume to start afresh")

    # ------------------------------------------------------------------ writing (main process unless said)
    def open(self, fresh: bool) -> list[str]:
        """Create the folder; ``fresh`` (a run that does not resume) removes every resume state
        an earlier run left, so a later ``--resume`` cannot continue that run. Returns their names."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not fresh:
            return []
        old = self._state_folders() + [p for p in self.folder.iterdir() if p.name.startswith(f".{STATE_PREFIX}")]
        for folder in old:
            _remove(folder)
        return [p.name for p in old]

    def begin_epoch(self, epoch: int) -> None:
        """Empty the hidden folder the state of ``epoch`` is assembled in."""
        tmp = self._state_tmp(epoch)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)

    def save_rng(self, epoch: int, rank: int, objective: Optional[Mapping[str, Any]] = None) -> None:
        """Every process, after :meth:`begin_epoch`: this process's random generators (python,
        numpy, torch CPU and CUDA) and its objective's own (``objective``: the in-batch pair
        generator), so dropout masks, augmentations and pairs of the next epoch continue
        exactly as in an unbroken run."""
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
                 "torch": torch.get_rng_state(), "objective": dict(objective or {})}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        path = self._state_tmp(epoch) / f"rng_rank{rank}.pt"
        torch.save(state, path)
        _fsync_file(path)

    def save_epoch(self, epoch: int, tensors: Mapping[str, torch.Tensor], config_yaml: str, metrics: Mapping[str, Any],
                   optimizer: Any, scheduler: Any, scaler: Optional[Any], record: dict[str, Any]) -> Path:
        """After every process's :meth:`save_rng`: epoch ``epoch``'s weights (``epoch_NNN/``, with
        the config and the epoch's metrics), its resume state (``state_epoch_NNN/``: ``record`` is
        the loop's bookkeeping, :data:`SUMMARY_KEYS` and ``lr_trace`` among it), each renamed into
        place whole, the older states removed, then the summary files. Returns the weights file."""
        weights = self._save_weights(epoch, tensors, config_yaml, metrics)
        tmp = self._state_tmp(epoch)
        _save_tensors(tensors, tmp / TRAINED_FILE)
        _torch_save_synced(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        _torch_save_synced(scheduler.state_dict(), tmp / SCHEDULER_FILE)
        if scaler is not None:
            _torch_save_synced(scaler.state_dict(), tmp / SCALER_FILE)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
        atomic_write_json(tmp / TRAINER_FILE, {**record, "format": STATE_FORMAT, "files": files}, sync=True)
        _fsync_dir(tmp)
        final = self.folder / f"{STATE_PREFIX}{epoch:03d}"
        if final.exists():
            _remove(final)
        os.rename(tmp, final)
        _fsync_dir(self.folder)
        for old in self._state_folders():
            if old != final:
                _remove(old)
        atomic_write_json(self.root / TRAINER_FILE, {k: record[k] for k in SUMMARY_KEYS}, sync=True)
        atomic_write_json(self.root / METRICS_FILE, {"history": record["history"], "best_epoch": record["best_epoch"]}, sync=True)
        atomic_write_json(self.root / "lr_trace.json", record["lr_trace"], sync=True)
        return weights

    # ------------------------------------------------------------------ helpers
    def _save_weights(self, epoch: int, tensors: Mapping[str, torch.Tensor], config_yaml: str,
                      metrics: Mapping[str, Any]) -> Path:
        """``epoch_NNN/`` with the weights, the config and the metrics; it appears whole or not at all."""
        final = self.weights(epoch).parent
        tmp = self.folder / f".epoch_{epoch:03d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _save_tensors(tensors, tmp / WEIGHTS_FILE)
        atomic_write_text(tmp / "config.yaml", config_yaml, sync=True)
        atomic_write_json(tmp / METRICS_FILE, dict(metrics), sync=True)
        _fsync_dir(tmp)
        if final.exists():  # a rerun of the same epoch (fresh run into an old folder): move the old one away first
            _remove(final)
        os.rename(tmp, final)
        _fsync_dir(self.folder)
        return final / WEIGHTS_FILE

    def _state_tmp(self, epoch: int) -> Path:
        return self.folder / f".{STATE_PREFIX}{epoch:03d}.tmp"

    def _state_folders(self) -> list[Path]:
        """``state_epoch_NNN`` folders, newest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _STATE_RE.match(p.name)) and p.is_dir()]
        return [p for _, p in sorted(found, reverse=True)]

    def _metrics(self) -> dict[str, Any]:
        return json.loads((self.root / METRICS_FILE).read_text())

    def _describe(self) -> str:
        """What the checkpoints folder holds, for an error that says why nothing can be resumed."""
        if not self.folder.is_dir():
            return "the folder does not exist"
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in self.folder.iterdir())
        if not names:
            return "the folder is empty"
        notes = {"last_state/": " (the whole-model state of an older version: not resumable by this one)"}
        shown = [n + notes.get(n, "") for n in names[:8]]
        return "found " + ", ".join(shown) + (f", ... {len(names) - 8} more" if len(names) > 8 else "")


def load_weights(model: nn.Module, checkpoint: Path) -> nn.Module:
    """Load a ``model.safetensors`` written by :meth:`CheckpointStore.save_epoch` into ``model`` (strict).

    A checkpoint of another architecture is a :class:`CheckpointMismatchError` naming the
    differing tensors (counts and a few names), and the model options that differ when the
    checkpoint's ``config.yaml`` sits beside it.
    """
    target = unwrap(model)
    checkpoint = Path(checkpoint)
    with safe_open(str(checkpoint), framework="pt") as handle:
        saved = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    problem = _tensor_mismatch(saved, {k: tuple(v.shape) for k, v in target.checkpoint_state_dict().items()})
    if problem:
        raise CheckpointMismatchError(f"{checkpoint}: does not match the model{_saved_model_differences(checkpoint, target)}: {problem}")
    target.load_checkpoint_state_dict(load_file(str(checkpoint)))
    return model


def _saved_model_differences(checkpoint: Path, model: Model) -> str:
    """`` (model options: x 'a' there, 'b' here)`` from the checkpoint's config.yaml, or ''."""
    saved_config = checkpoint.parent / "config.yaml"
    if not saved_config.is_file() or not dataclasses.is_dataclass(model.config):
        return ""
    saved = (yaml.safe_load(saved_config.read_text()) or {}).get("model", {}).get("args", {})
    current = dataclasses.asdict(model.config)
    changed = [f"{k} {saved[k]!r} there, {current[k]!r} here" for k in sorted(set(saved) & set(current))
               if json.loads(json.dumps(saved[k], default=str)) != json.loads(json.dumps(current[k], default=str))]
    return f" (model options: {'; '.join(changed[:4])})" if changed else ""


def _tensor_mismatch(saved: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]) -> Optional[str]:
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


def _config_differences(saved: Any, current: Any, prefix: str) -> list[str]:
    """``key: old -> new`` for every leaf that differs between two config mappings."""
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        out = []
        for key in sorted(set(saved) | set(current), key=str):
            if key not in current:
                out.append(f"{prefix}{key}: {saved[key]!r} -> (not set)")
            elif key not in saved:
                out.append(f"{prefix}{key}: (not set) -> {current[key]!r}")
            else:
                out.extend(_config_differences(saved[key], current[key], f"{prefix}{key}."))
        return out
    return [] if saved == current else [f"{prefix.rstrip('.')}: {saved!r} -> {current!r}"]


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
