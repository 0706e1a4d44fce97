"""One accelerate training loop for every comparator and regressor.

Methods differ in their module and objective, never in this loop: an
:class:`~orderlearn.engine.objectives.Objective` turns a batch into a loss and evaluates a
validation loader. The loop does mixed precision (bf16 on GPUs that have it), gradient
accumulation, the same global batches and learning-rate schedule on 1 and N processes
(:mod:`orderlearn.engine.samplers`), per-epoch weights and a small resume state (what trains,
the optimizer, scheduler and random generators) written through a
:class:`~orderlearn.engine.checkpoints.CheckpointStore`, exact resume from the
:class:`~orderlearn.engine.checkpoints.ResumeState` it is given, seeding, tqdm progress,
TensorBoard + JSON metrics (and ``lr_trace.json``), and model selection on the validation split
only (the test split never enters here).

It knows nothing of run folders: the caller holds the folder's lock, looked the resume state up
and saved the config (:mod:`orderlearn.runs.recipe`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from comparators.base import Model

from orderlearn.config import ExperimentConfig
from orderlearn.engine.checkpoints import CheckpointStore, ResumeState
from orderlearn.engine.heads import unwrap
from orderlearn.engine.objectives import ComparatorObjective, Objective
from orderlearn.engine.runtime import restore
from orderlearn.engine.samplers import GlobalBatchSampler, Schedule
from orderlearn.errors import ConfigError, TrainingDivergedError

HIGHER_IS_BETTER = {"val_loss": False, "val_mae": False, "val_accuracy": True, "val_pc": True}


@dataclass
class TrainResult:
    """Where a fit left its checkpoints, and which epoch validation chose."""

    store: CheckpointStore
    best_epoch: int
    best_metric: float
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def best_checkpoint(self) -> Path:
        return self.store.weights(self.best_epoch)


def fit(
    model: nn.Module,
    objective: Objective,
    train_data: Dataset,
    val_data: Dataset,
    config: ExperimentConfig,
    store: CheckpointStore,
    accelerator: Accelerator,
    resume_state: Optional[ResumeState] = None,
    param_groups: Optional[Sequence[dict[str, Any]]] = None,
    desc: str = "train",
    views_per_face: int = 1,
) -> TrainResult:
    """Train ``model`` and return where its best (validation-selected) checkpoint is.

    The learning-rate schedule counts optimizer steps of the global batch and is stepped here
    once per optimizer step (accelerate's prepared scheduler steps once per process, which
    with ``train.max_steps_per_epoch`` ran the schedule N times too fast on N processes); the lr
    of every step is logged to ``lr_trace.json``. With ``resume_state``, training continues
    after it; without, the store's earlier resume states are removed first (a later resume
    must not continue another run). With ``views_per_face > 1``, ``train_data`` holds that many
    views of each face, view-major, and each epoch shows every face once in a drawn view
    (:class:`~orderlearn.engine.samplers.EpochSampler`).
    """
    train_cfg = config.train
    trainee = unwrap(model)  # the Model inside: its epoch hooks run, its checkpoint state is saved and restored
    select, higher = train_cfg.select_metric, HIGHER_IS_BETTER[train_cfg.select_metric]
    if isinstance(objective, ComparatorObjective) and select in ("val_mae", "val_pc"):
        raise ConfigError(f"train.select_metric: {select} is for regressors; a comparator reports val_loss and val_accuracy")
    if accelerator.is_main_process:
        cleared = store.open(fresh=resume_state is None)
        if cleared:
            accelerator.print(f"{desc}: starting afresh in {store.root}; removed the resume state(s) of an earlier run: {', '.join(cleared)}")
    set_seed(config.seed)
    sampler = GlobalBatchSampler(len(train_data), config.seed, train_cfg.batch_size, accelerator.num_processes, views_per_face)
    schedule = Schedule(sampler.global_batches, train_cfg.grad_accum, train_cfg.max_steps_per_epoch)
    steps_per_epoch = schedule.steps_per_epoch
    train_loader = DataLoader(train_data, batch_sampler=sampler, num_workers=train_cfg.num_workers)
    val_loader = DataLoader(val_data, batch_size=train_cfg.eval_batch_size, num_workers=train_cfg.num_workers)
    params = list(param_groups) if param_groups else [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config, steps_per_epoch))  # not prepared: see above
    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    if len(train_loader) != sampler.global_batches:
        raise RuntimeError(f"accelerate sharded {sampler.global_batches} global batches into {len(train_loader)} per process; "
                           "the training loop relies on one per-process batch per global batch")

    facts = {"model": model_section(config), "world_size": accelerator.num_processes, "per_process_batch": sampler.batch_size,
             "global_batch": sampler.global_batch_size * train_cfg.grad_accum, "steps_per_epoch": steps_per_epoch}
    trainer = {"epoch": 0, "global_step": 0, "best_epoch": 0, "best_metric": None, "history": [], "lr_trace": []}
    if resume_state is not None:
        trainer = restore(resume_state, trainee, optimizer, scheduler, objective, accelerator, facts, config.seed)
        accelerator.print(f"{desc}: resuming after epoch {resume_state.epoch} from {resume_state.folder}")
    if accelerator.trackers == [] and accelerator.log_with:
        accelerator.init_trackers(config.name.replace("/", "_"), config={"seed": config.seed, "lr": config.optim.lr})

    for epoch in range(trainer["epoch"] + 1, train_cfg.epochs + 1):
        sampler.start_epoch(epoch)
        trainee.on_epoch_start(epoch, train_cfg.epochs)
        model.train()
        started, running, seen = time.time(), 0.0, 0
        bar = tqdm(total=steps_per_epoch, desc=f"{desc} epoch {epoch}/{train_cfg.epochs}", disable=not accelerator.is_local_main_process, leave=False)
        step = 0
        for batch in train_loader:
            with accelerator.accumulate(model):
                loss = objective.loss(model, batch)
                stop_if_diverged(loss, accelerator, epoch, step + 1, trainer["global_step"] + 1, optimizer)
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
        trainee.on_epoch_end(epoch, train_cfg.epochs)
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
        save_epoch(accelerator, trainee, optimizer, scheduler, config, store, epoch, metrics, {**trainer, **facts}, objective)
    accelerator.wait_for_everyone()
    return TrainResult(store, trainer["best_epoch"], trainer["best_metric"], trainer["history"])


def save_epoch(accelerator: Accelerator, trainee: Model, optimizer: Any, scheduler: Any, config: ExperimentConfig,
               store: CheckpointStore, epoch: int, metrics: dict, record: dict, objective: Objective) -> None:
    """Epoch ``epoch``'s weights (``trainee``'s checkpoint state) and resume state through ``store``: the main process opens the
    state, every process adds its random generators and its objective's, the main process
    writes the rest (``record``: the loop's bookkeeping and the run's facts, as the state
    records them)."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        store.begin_epoch(epoch)
    accelerator.wait_for_everyone()
    store.save_rng(epoch, accelerator.process_index, objective.state_dict())
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    store.save_epoch(epoch, trainee.checkpoint_state_dict(),
                     yaml.safe_dump(config.to_dict(), sort_keys=False), metrics, optimizer, scheduler, accelerator.scaler, record)


def stop_if_diverged(loss: torch.Tensor, accelerator: Accelerator, epoch: int, step: int, global_step: int,
                     optimizer: torch.optim.Optimizer) -> None:
    """A TrainingDivergedError, before the step is taken, when the loss of any process is NaN or
    infinite: every later step would train on it (and the calibration after training fail on
    NaN outputs). On several processes the verdict is gathered, so all of them stop together."""
    finite = torch.isfinite(loss.detach()).all().reshape(1)
    if accelerator.num_processes > 1:
        finite = accelerator.gather(finite).all().reshape(1)
    if bool(finite):
        return
    lrs = sorted({group["lr"] for group in optimizer.param_groups})
    value = loss.detach().float().cpu().reshape(-1)[0].item()
    where = f"is {value}" if not math.isfinite(value) else "went non-finite on another process"
    raise TrainingDivergedError(f"train: the training loss {where} at epoch {epoch}, "
                                f"step {step} (optimizer step {global_step}); stopped before that step. Lower optim.lr "
                                f"(this step's rate: {', '.join(f'{lr:g}' for lr in lrs)}) or check the data's scores")


def make_optimizer(params: Sequence[Any], config: ExperimentConfig) -> torch.optim.Optimizer:
    """The config's ``optim``: SGD with momentum, Adam or AdamW, over ``params`` (tensors or groups)."""
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


def model_section(config: ExperimentConfig) -> dict[str, Any]:
    """The config's ``model`` section: the model's name and options, the base model's id among
    them (a LLaVA comparator's ``checkpoint``): what the base weights are rebuilt from on resume."""
    return json.loads(json.dumps(dataclasses.asdict(config.model), default=str))
