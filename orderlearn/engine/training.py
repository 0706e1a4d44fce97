"""One accelerate training loop for every comparator and regressor.

Methods differ in their module and objective, never in this loop: an :class:`Objective`
turns a batch into a loss and evaluates a validation loader. The loop does mixed precision
(bf16 on GPUs that have it), gradient accumulation, the same global batches and learning-rate
schedule on 1 and N processes, per-epoch weights and a small resume state (what trains, the
optimizer, scheduler and random generators; :mod:`orderlearn.engine.checkpoints`) renamed into place
whole, exact ``resume``, a lock on its output folder, seeding, tqdm progress, TensorBoard + JSON
metrics (and ``lr_trace.json``), and model selection on the validation split only (the test
split never enters here).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Protocol, Sequence

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DistributedType, extract_model_from_parallel, set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from comparators.base import Model
from comparators.losses import ComparatorLoss

from orderlearn.engine.checkpoints import (STATE_PREFIX, CheckpointMismatchError, ResumeState, begin_state, clear_states, config_differences,
                          describe_folder, finish_state, load_trained, load_training_state, newest_state, restore_rng,
                          save_epoch_weights, save_rng, saved_shapes, tensor_mismatch, weights_file_mismatch,
                          write_json_atomic)
from orderlearn.config import ExperimentConfig
from orderlearn.errors import ConfigError
from orderlearn.runs.lock import run_lock

log = logging.getLogger(__name__)
HIGHER_IS_BETTER = {"val_loss": False, "val_mae": False, "val_accuracy": True, "val_pc": True}


class Objective(Protocol):
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def evaluate(self, model: nn.Module, loader: DataLoader, accelerator: Accelerator) -> dict[str, float]: ...


class ComparatorObjective:
    """Pair batches: loss on ``model(a, b)`` (and ``model(b, a)`` for the KL term)."""

    def __init__(self, loss: ComparatorLoss):
        self.criterion = loss

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        a, b = batch["image_a"], batch["image_b"]
        if self.criterion.needs_reverse:  # forward and reversed pair in the same batch (eq. 8)
            logits = model(torch.cat([a, b]), torch.cat([b, a]))
            forward, reverse = logits.chunk(2)
            return self.criterion(forward, batch["label"], reverse)
        return self.criterion(model(a, b), batch["label"])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, accelerator: Accelerator) -> dict[str, float]:
        losses, correct, count = [], 0, 0
        for batch in loader:
            logits = model(batch["image_a"], batch["image_b"])
            nll = torch.nn.functional.cross_entropy(logits.float(), batch["label"], reduction="none")
            hits = (logits.argmax(-1) == batch["label"]).float()
            nll, hits = accelerator.gather_for_metrics((nll, hits))
            losses.append(nll.sum().item())
            correct += hits.sum().item()
            count += len(hits)
        return {"val_loss": sum(losses) / max(count, 1), "val_accuracy": correct / max(count, 1)}


class RegressorObjective:
    """Image batches: the regressor's own loss; validation also reports MAE and PC."""

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return _unwrap(model).loss(model(batch["image"]), batch)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, accelerator: Accelerator) -> dict[str, float]:
        losses, predicted, target = [], [], []
        for batch in loader:
            output = model(batch["image"])
            loss = _unwrap(model).loss(output, batch).reshape(1).repeat(len(output.score))
            loss, score, truth = accelerator.gather_for_metrics((loss, output.score.float(), batch["score"].float()))
            losses.append(loss.sum().item())
            predicted.append(score.cpu())
            target.append(truth.cpu())
        p, t = torch.cat(predicted).double(), torch.cat(target).double()
        pc = float(np.corrcoef(p.numpy(), t.numpy())[0, 1]) if len(p) > 1 and p.std() > 0 else 0.0
        return {"val_loss": sum(losses) / len(p), "val_mae": float((p - t).abs().mean()), "val_pc": pc}


class HeadOnly(nn.Module):
    """Frozen-backbone mode: train a model's ``forward_head`` on its cached ``forward_features``
    (a comparator's ``compare`` on embeddings, a regressor's heads on backbone features).

    The whole model stays inside (``wrapped``) so checkpoints hold a complete model; its
    :meth:`~comparators.base.Model.feature_modules` stay in evaluation mode (frozen batch-norm
    statistics) while the head trains.
    """

    def __init__(self, model: Model):
        super().__init__()
        self.wrapped = model
        head = model.head_parameters()
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head:
            p.requires_grad_(True)

    def forward(self, *features: torch.Tensor) -> Any:
        return self.wrapped.forward_head(*features)

    def train(self, mode: bool = True) -> "HeadOnly":
        super().train(mode)
        for module in self.wrapped.feature_modules():
            module.eval()
        return self


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, so a resumed run sees the same order as an unbroken one.

    With ``views > 1`` the ``size`` items are ``views`` views of ``size // views`` faces,
    view-major (item ``v·N + f`` is view ``v`` of face ``f``, as
    :class:`~orderlearn.engine.fitting.FeatureImageDataset` lays them out), and an epoch is a
    permutation of the faces, each in a view drawn with the epoch's seed: every face once per
    epoch, flipped or not at random, as an augmenting loader would show it
    (``train.views_per_epoch: one``), instead of every cached view of every face.
    """

    def __init__(self, size: int, seed: int, views: int = 1):
        if views < 1 or size % views:
            raise ValueError(f"{size} items cannot be {views} views of each face")
        self.size, self.seed, self.views, self.epoch = size, seed, views, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        faces = len(self)
        order = torch.randperm(faces, generator=g)
        if self.views > 1:
            order = order + faces * torch.randint(0, self.views, (faces,), generator=g)
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.size // self.views


class GlobalBatchSampler(Sampler[list[int]]):
    """Per-process batches cut from the global batches of one seeded permutation per epoch.

    Why: a run on N processes must see the same global batches as one process with an N times
    larger batch. accelerate shards a DataLoader's batch sampler by handing batch ``k·N + r`` to
    process ``r``; so this sampler cuts each global batch of ``batch_size · N`` consecutive
    indices of the epoch's permutation into N consecutive per-process batches, and drops an
    incomplete last global batch (accelerate would otherwise pad it with indices from the start
    of the epoch on some processes only). On one process it is the plain ``drop_last`` batching
    of the permutation. With fewer examples than one global batch the per-process batch shrinks
    to ``size // N`` (one step per epoch, as a single small batch did before).

    The epoch is set with :meth:`start_epoch`, not ``set_epoch``: accelerate's prepared loader
    calls ``set_epoch`` of the samplers it finds with its own count of *completed* passes over
    the loader, which restarts at 0 in a resumed process and does not advance when an epoch
    stops early at ``train.max_steps_per_epoch`` (every epoch then drew the same first batches).
    """

    def __init__(self, size: int, seed: int, batch_size: int, num_processes: int, views: int = 1):
        self.order = EpochSampler(size, seed, views)
        size = len(self.order)  # examples per epoch
        if size < num_processes:
            raise ConfigError(f"train.batch_size: {size} training examples cannot give each of {num_processes} processes a batch")
        self.num_processes = num_processes
        self.batch_size = min(batch_size, size // num_processes)  # per process; accelerate reads the name
        self.drop_last = True
        self.global_batches = size // (self.batch_size * num_processes)

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.num_processes

    def start_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        order, b = list(self.order), self.batch_size
        for i in range(len(self)):
            yield order[i * b:(i + 1) * b]

    def __len__(self) -> int:
        return self.global_batches * self.num_processes


@dataclass
class TrainResult:
    output_dir: Path
    best_epoch: int
    best_metric: float
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def best_checkpoint(self) -> Path:
        return self.output_dir / "checkpoints" / f"epoch_{self.best_epoch:03d}" / "model.safetensors"


def make_accelerator(config: ExperimentConfig, output_dir: Path, log_with: Optional[str] = None) -> Accelerator:
    precision = config.train.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    tracker = log_with if log_with is not None else config.train.tracker
    tracker = None if tracker == "none" else tracker
    if tracker == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            log.warning("tensorboard is not installed; metrics go to metrics.json only")
            tracker = None
    accelerator = Accelerator(
        mixed_precision=precision,
        gradient_accumulation_steps=config.train.grad_accum,
        log_with=tracker,
        project_dir=str(output_dir),
    )
    if accelerator.device.type == "cpu":
        if precision == "bf16" and not cpu_has_native_bf16():
            log.warning("train.mixed_precision: bf16 on a CPU without AVX512-BF16 or AMX runs 3 to 7 times slower than "
                        "float32 (benchmarks/cpu_precision.py); set it to \"no\" and train.channels_last: true")
        # subnormal floats (|x| < 1.2e-38, e.g. optimizer moments and gradients late in a decayed
        # schedule) take a slow path in x86 arithmetic; they become 0, so late epochs run as fast
        # as early ones
        torch.set_flush_denormal(True)
    return accelerator


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX); elsewhere oneDNN
    emulates it through float32 and converts on every operation."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


@dataclass
class Schedule:
    """The run's length in optimizer steps of the global batch (``batch_size`` x processes x
    ``grad_accum`` examples), the same on 1 and N processes."""

    global_batches: int  # per epoch, before the step cap
    grad_accum: int
    max_steps_per_epoch: Optional[int]

    @property
    def steps_per_epoch(self) -> int:
        steps = math.ceil(self.global_batches / self.grad_accum)
        return min(steps, self.max_steps_per_epoch) if self.max_steps_per_epoch else steps


def fit(
    model: nn.Module,
    objective: Objective,
    train_data: Dataset,
    val_data: Dataset,
    config: ExperimentConfig,
    output_dir: Path,
    accelerator: Accelerator,
    resume: bool = False,
    param_groups: Optional[Sequence[dict[str, Any]]] = None,
    desc: str = "train",
    views_per_face: int = 1,
) -> TrainResult:
    """Train ``model`` and return where its best (validation-selected) checkpoint is.

    The learning-rate schedule counts optimizer steps of the global batch and is stepped here
    once per optimizer step (accelerate's prepared scheduler steps once per process, which
    with ``train.max_steps_per_epoch`` ran the schedule N times too fast on N processes); the lr
    of every step is logged to ``lr_trace.json``. ``output_dir`` is locked for the call
    (:func:`~orderlearn.runs.lock.run_lock`). With ``resume``, training continues after the
    newest complete resume state, or stops with an error when there is none. With
    ``views_per_face > 1``, ``train_data`` holds that many views of each face, view-major, and
    each epoch shows every face once in a drawn view (:class:`EpochSampler`).
    """
    output_dir = Path(output_dir)
    ckpt_dir = output_dir / "checkpoints"
    with contextlib.ExitStack() as stack:
        if accelerator.is_main_process:
            stack.enter_context(run_lock(output_dir))
        return _fit_locked(model, objective, train_data, val_data, config, output_dir, ckpt_dir, accelerator, resume,
                           param_groups, desc, views_per_face)


def _fit_locked(model: nn.Module, objective: Objective, train_data: Dataset, val_data: Dataset, config: ExperimentConfig,
                output_dir: Path, ckpt_dir: Path, accelerator: Accelerator, resume: bool,
                param_groups: Optional[Sequence[dict[str, Any]]], desc: str, views_per_face: int) -> TrainResult:
    train_cfg = config.train
    select, higher = train_cfg.select_metric, HIGHER_IS_BETTER[train_cfg.select_metric]
    if isinstance(objective, ComparatorObjective) and select in ("val_mae", "val_pc"):
        raise ConfigError(f"train.select_metric: {select} is for regressors; a comparator reports val_loss and val_accuracy")
    state = find_resume_state(ckpt_dir, accelerator) if resume else None
    if accelerator.is_main_process:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            cleared = clear_states(ckpt_dir)
            if cleared:
                accelerator.print(f"{desc}: starting afresh in {output_dir}; removed the resume state(s) of an earlier run: {', '.join(cleared)}")
        config.save(output_dir / "config.yaml")
    set_seed(config.seed)
    sampler = GlobalBatchSampler(len(train_data), config.seed, train_cfg.batch_size, accelerator.num_processes, views_per_face)
    schedule = Schedule(sampler.global_batches, train_cfg.grad_accum, train_cfg.max_steps_per_epoch)
    steps_per_epoch = schedule.steps_per_epoch
    train_loader = DataLoader(train_data, batch_sampler=sampler, num_workers=train_cfg.num_workers)
    val_loader = DataLoader(val_data, batch_size=train_cfg.eval_batch_size, num_workers=train_cfg.num_workers)
    params = list(param_groups) if param_groups else [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config, steps_per_epoch))  # not prepared: see fit
    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    if len(train_loader) != sampler.global_batches:
        raise RuntimeError(f"accelerate sharded {sampler.global_batches} global batches into {len(train_loader)} per process; "
                           "the training loop relies on one per-process batch per global batch")

    trainer = {"epoch": 0, "global_step": 0, "best_epoch": 0, "best_metric": None, "history": [], "lr_trace": []}
    if state is not None:
        trainer = restore(state, model, optimizer, scheduler, accelerator, config, sampler, schedule)
        accelerator.print(f"{desc}: resuming after epoch {state.epoch} from {state.folder}")
    if accelerator.trackers == [] and accelerator.log_with:
        accelerator.init_trackers(config.name.replace("/", "_"), config={"seed": config.seed, "lr": config.optim.lr})

    for epoch in range(trainer["epoch"] + 1, train_cfg.epochs + 1):
        sampler.start_epoch(epoch)
        _unwrap(model).on_epoch_start(epoch, train_cfg.epochs)
        model.train()
        started, running, seen = time.time(), 0.0, 0
        bar = tqdm(total=steps_per_epoch, desc=f"{desc} epoch {epoch}/{train_cfg.epochs}", disable=not accelerator.is_local_main_process, leave=False)
        step = 0
        for batch in train_loader:
            with accelerator.accumulate(model):
                loss = objective.loss(model, batch)
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                lrs = [group["lr"] for group in optimizer.param_groups]  # the rates this step used
                if not optimizer.step_was_skipped:  # fp16 overflow: the step did not happen, nor does the schedule's
                    scheduler.step()
                step += 1
                trainer["global_step"] += 1
                global_step = trainer["global_step"]
                trainer["lr_trace"].append({"step": global_step, "lr": lrs})
                running += loss.item()
                seen += 1
                bar.update(1)
                bar.set_postfix(loss=f"{running / seen:.4f}")
                if global_step % train_cfg.log_every == 0:
                    accelerator.log({"train/loss": loss.item(), "train/lr": lrs[0]}, step=global_step)
                if step >= steps_per_epoch:
                    break
        bar.close()
        _unwrap(model).on_epoch_end(epoch, train_cfg.epochs)
        model.eval()
        metrics = objective.evaluate(model, val_loader, accelerator)
        train_loss = float(accelerator.reduce(torch.tensor(running / max(seen, 1), device=accelerator.device), "mean"))
        metrics.update(epoch=epoch, train_loss=train_loss, seconds=time.time() - started)  # over the global batches
        accelerator.log({f"val/{k}": v for k, v in metrics.items()}, step=epoch * steps_per_epoch)
        improved = trainer["best_metric"] is None or (metrics[select] > trainer["best_metric"] if higher else metrics[select] < trainer["best_metric"])
        if improved:
            trainer["best_metric"], trainer["best_epoch"] = metrics[select], epoch
        trainer["epoch"] = epoch
        trainer["history"].append(metrics)
        accelerator.print(f"{desc} epoch {epoch}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
        save_epoch(accelerator, model, optimizer, scheduler, config, ckpt_dir, epoch, metrics, trainer, sampler, schedule)
    accelerator.wait_for_everyone()
    return TrainResult(output_dir, trainer["best_epoch"], trainer["best_metric"], trainer["history"])


def find_resume_state(ckpt_dir: Path, accelerator: Accelerator) -> ResumeState:
    """The newest complete resume state under ``ckpt_dir``; a ConfigError saying what the
    folder holds when there is none (asked to resume, starting from scratch would be a surprise)."""
    state, skipped = newest_state(ckpt_dir)
    for note in skipped:
        accelerator.print(f"--resume: skipping incomplete resume state {note}")
    if state is None:
        raise ConfigError(f"--resume: no checkpoint in {ckpt_dir} to resume from ({describe_folder(ckpt_dir)}); "
                          "run without --resume to start afresh")
    return state


def restore(state: ResumeState, model: nn.Module, optimizer: Any, scheduler: Any, accelerator: Accelerator,
            config: ExperimentConfig, sampler: GlobalBatchSampler, schedule: Schedule) -> dict[str, Any]:
    """Load a resume state into the prepared model, optimizer and scheduler and restore this
    process's random generators; returns the loop's bookkeeping (epoch, history, lr trace)."""
    trainer = dict(state.trainer)
    target = _unwrap(model)
    problem = tensor_mismatch(saved_shapes(state), {k: tuple(v.shape) for k, v in target.checkpoint_state_dict().items()})
    if problem:
        changed = config_differences(trainer.get("model", {}), _model_section(config), "model.")
        what = f" ({'; '.join(changed[:4])})" if changed else ""
        raise CheckpointMismatchError(f"--resume: the checkpoint in {state.folder} does not match the config{what}: {problem}")
    changed = config_differences(trainer.get("model", {}), _model_section(config), "model.")
    if changed:
        accelerator.print(f"--resume: model options changed since the checkpoint: {'; '.join(changed)}")
    written = (trainer["global_batch"], trainer["steps_per_epoch"])
    if written != (sampler.global_batch_size * config.train.grad_accum, schedule.steps_per_epoch):
        raise ConfigError(f"--resume: the checkpoint in {state.folder} was written with a global batch of {written[0]} "
                          f"examples and {written[1]} optimizer steps per epoch ({trainer['world_size']} processes); this run "
                          f"has {sampler.global_batch_size * config.train.grad_accum} and {schedule.steps_per_epoch} "
                          f"({accelerator.num_processes} processes): the learning-rate schedule and the data order would not continue")
    target.load_checkpoint_state_dict({k: v.to(accelerator.device) for k, v in load_trained(state).items()})
    load_training_state(state, optimizer, scheduler, accelerator.scaler)
    if not restore_rng(state, accelerator.process_index):
        set_seed(config.seed + 1_000 * state.epoch + accelerator.process_index)
        accelerator.print(f"--resume: no random-generator state for process {accelerator.process_index} "
                          f"(written by {trainer['world_size']} processes): reseeded; dropout and augmentation differ from an unbroken run")
    return {k: trainer[k] for k in ("epoch", "global_step", "best_epoch", "best_metric", "history", "lr_trace")}


def save_epoch(accelerator: Accelerator, model: nn.Module, optimizer: Any, scheduler: Any, config: ExperimentConfig,
               ckpt_dir: Path, epoch: int, metrics: dict, trainer: dict, sampler: GlobalBatchSampler, schedule: Schedule) -> None:
    """Epoch ``epoch``'s weights (``epoch_NNN/``) and resume state (``state_epoch_NNN/``), each
    renamed into place whole (see :mod:`orderlearn.engine.checkpoints`), then the run's summary files."""
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise NotImplementedError(f"checkpoints of a {accelerator.distributed_type} run (sharded parameters and optimizer) "
                                  "are not implemented; train with DDP (one full copy of the trained tensors per process)")
    accelerator.wait_for_everyone()
    tmp = ckpt_dir / f".{STATE_PREFIX}{epoch:03d}.tmp"
    if accelerator.is_main_process:
        tmp = begin_state(ckpt_dir, epoch)
    accelerator.wait_for_everyone()
    save_rng(tmp, accelerator.process_index)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    tensors = checkpoint_state(_unwrap(accelerator.unwrap_model(model)))
    config_yaml = yaml.safe_dump(config.to_dict(), sort_keys=False)
    save_epoch_weights(ckpt_dir, epoch, tensors, config_yaml, metrics)
    record = {**trainer, "model": _model_section(config), "world_size": accelerator.num_processes,
              "per_process_batch": sampler.batch_size, "global_batch": sampler.global_batch_size * config.train.grad_accum,
              "steps_per_epoch": schedule.steps_per_epoch}
    finish_state(tmp, ckpt_dir, epoch, tensors, optimizer, scheduler, accelerator.scaler, record)
    summary = {k: trainer[k] for k in ("epoch", "global_step", "best_epoch", "best_metric", "history")}
    write_json_atomic(ckpt_dir.parent / "trainer_state.json", summary)
    write_json_atomic(ckpt_dir.parent / "metrics.json", {"history": trainer["history"], "best_epoch": trainer["best_epoch"]})
    write_json_atomic(ckpt_dir.parent / "lr_trace.json", trainer["lr_trace"])


def _model_section(config: ExperimentConfig) -> dict[str, Any]:
    """The config's ``model`` section: the model's name and options, the base model's id among
    them (a LLaVA comparator's ``checkpoint``): what the base weights are rebuilt from on resume."""
    return json.loads(json.dumps(dataclasses.asdict(config.model), default=str))


def make_optimizer(params: Sequence[Any], config: ExperimentConfig) -> torch.optim.Optimizer:
    o = config.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay, amsgrad=o.amsgrad)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, amsgrad=o.amsgrad)


def lr_lambda(config: ExperimentConfig, steps_per_epoch: int):
    """Multiplier of the base lr at optimizer step ``i`` (linear warm-up, then the schedule)."""
    s, total = config.schedule, config.train.epochs * steps_per_epoch
    warmup = int(s.warmup_epochs * steps_per_epoch)

    def factor(i: int) -> float:
        if i < warmup:
            return (i + 1) / warmup
        if s.name == "step":
            return s.gamma ** ((i // steps_per_epoch) // s.step_size)
        if s.name == "cosine":
            progress = (i - warmup) / max(total - warmup, 1)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    return factor


def checkpoint_state(model: Model) -> dict[str, torch.Tensor]:
    """What a per-epoch checkpoint holds: :meth:`~comparators.base.Model.checkpoint_state_dict`
    (the whole state dict by default; a LoRA model's adapters and trained parts only)."""
    return model.checkpoint_state_dict()


def load_weights(model: nn.Module, checkpoint: Path) -> nn.Module:
    """Load a ``model.safetensors`` written by :func:`fit` into ``model`` (strict).

    A checkpoint of another architecture is a :class:`~orderlearn.engine.checkpoints.CheckpointMismatchError`
    naming the differing tensors (counts and a few names), and the model options that differ
    when the checkpoint's ``config.yaml`` sits beside it.
    """
    from safetensors.torch import load_file

    target = _unwrap(model)
    checkpoint = Path(checkpoint)
    problem = weights_file_mismatch(checkpoint, target.checkpoint_state_dict())
    if problem:
        raise CheckpointMismatchError(f"{checkpoint}: does not match the model{_saved_model_differences(checkpoint, target)}: {problem}")
    target.load_checkpoint_state_dict(load_file(str(checkpoint)))
    return model


def _saved_model_differences(checkpoint: Path, model: Model) -> str:
    """`` (it was written with backbone 'x', the model has 'y')`` from the checkpoint's config.yaml, or ''."""
    saved_config = checkpoint.parent / "config.yaml"
    if not saved_config.is_file() or not dataclasses.is_dataclass(model.config):
        return ""
    saved = (yaml.safe_load(saved_config.read_text()) or {}).get("model", {}).get("args", {})
    current = dataclasses.asdict(model.config)
    changed = [f"{k} {saved[k]!r} there, {current[k]!r} here" for k in sorted(set(saved) & set(current))
               if json.loads(json.dumps(saved[k], default=str)) != json.loads(json.dumps(current[k], default=str))]
    return f" (model options: {'; '.join(changed[:4])})" if changed else ""


def _unwrap(model: nn.Module) -> Model:
    """The :class:`~comparators.base.Model` inside accelerate's wrapper and :class:`HeadOnly`."""
    model = extract_model_from_parallel(model)
    if isinstance(model, HeadOnly):
        model = model.wrapped
    return model
