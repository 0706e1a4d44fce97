"""One accelerate training loop for every comparator and regressor.

Methods differ in their module and objective, never in this loop: an :class:`Objective`
turns a batch into a loss and evaluates a validation loader. The loop does mixed precision
(bf16 on GPUs that have it), gradient accumulation, a per-epoch checkpoint written atomically,
``resume``, seeding, tqdm progress, TensorBoard + JSON metrics, and model selection on the
validation split only (the test split never enters here).
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Protocol, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import extract_model_from_parallel, set_seed
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from comparators.base import Model
from comparators.losses import ComparatorLoss

from .config import ExperimentConfig

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
    """A seeded permutation per epoch, so a resumed run sees the same order as an unbroken one."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=g).tolist())

    def __len__(self) -> int:
        return self.size


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
    return Accelerator(
        mixed_precision=precision,
        gradient_accumulation_steps=config.train.grad_accum,
        log_with=tracker,
        project_dir=str(output_dir),
    )


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
) -> TrainResult:
    """Train ``model`` and return where its best (validation-selected) checkpoint is."""
    output_dir = Path(output_dir)
    ckpt_dir = output_dir / "checkpoints"
    if accelerator.is_main_process:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        config.save(output_dir / "config.yaml")
    set_seed(config.seed)
    train_cfg = config.train
    sampler = EpochSampler(len(train_data), config.seed)
    train_loader = DataLoader(train_data, batch_size=train_cfg.batch_size, sampler=sampler, num_workers=train_cfg.num_workers, drop_last=len(train_data) > train_cfg.batch_size)
    val_loader = DataLoader(val_data, batch_size=train_cfg.eval_batch_size, num_workers=train_cfg.num_workers)
    params = list(param_groups) if param_groups else [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, config)
    steps_per_epoch = math.ceil(len(train_loader) / train_cfg.grad_accum)
    if train_cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, train_cfg.max_steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config, steps_per_epoch))
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, val_loader, scheduler)

    state_file = output_dir / "trainer_state.json"
    state = {"epoch": 0, "best_epoch": 0, "best_metric": None, "history": []}
    if resume and (ckpt_dir / "last_state").is_dir() and state_file.is_file():
        accelerator.load_state(str(ckpt_dir / "last_state"))
        state = json.loads(state_file.read_text())
        accelerator.print(f"resuming after epoch {state['epoch']}")
    if accelerator.trackers == [] and accelerator.log_with:
        accelerator.init_trackers(config.name.replace("/", "_"), config={"seed": config.seed, "lr": config.optim.lr})
    select, higher = train_cfg.select_metric, HIGHER_IS_BETTER[train_cfg.select_metric]
    if isinstance(objective, ComparatorObjective) and select in ("val_mae", "val_pc"):
        raise ValueError(f"train.select_metric={select} is for regressors; a comparator reports val_loss and val_accuracy")

    for epoch in range(state["epoch"] + 1, train_cfg.epochs + 1):
        sampler.set_epoch(epoch)
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
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                step += 1
                running += loss.item()
                seen += 1
                bar.update(1)
                bar.set_postfix(loss=f"{running / seen:.4f}")
                global_step = (epoch - 1) * steps_per_epoch + step
                if global_step % train_cfg.log_every == 0:
                    accelerator.log({"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0]}, step=global_step)
                if step >= steps_per_epoch:
                    break
        bar.close()
        _unwrap(model).on_epoch_end(epoch, train_cfg.epochs)
        model.eval()
        metrics = objective.evaluate(model, val_loader, accelerator)
        metrics.update(epoch=epoch, train_loss=running / max(seen, 1), seconds=time.time() - started)
        accelerator.log({f"val/{k}": v for k, v in metrics.items()}, step=epoch * steps_per_epoch)
        improved = state["best_metric"] is None or (metrics[select] > state["best_metric"] if higher else metrics[select] < state["best_metric"])
        if improved:
            state["best_metric"], state["best_epoch"] = metrics[select], epoch
        state["epoch"] = epoch
        state["history"].append(metrics)
        accelerator.print(f"{desc} epoch {epoch}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
        save_epoch(accelerator, model, config, ckpt_dir, epoch, metrics, state, state_file)
    accelerator.wait_for_everyone()
    return TrainResult(output_dir, state["best_epoch"], state["best_metric"], state["history"])


def save_epoch(accelerator: Accelerator, model: nn.Module, config: ExperimentConfig, ckpt_dir: Path, epoch: int, metrics: dict, state: dict, state_file: Path) -> None:
    """Write epoch ``epoch``'s weights and the resumable state; each lands whole or not at all."""
    accelerator.wait_for_everyone()
    tmp_state = ckpt_dir / "last_state.tmp"
    accelerator.save_state(str(tmp_state))
    if not accelerator.is_main_process:
        return
    target = _unwrap(accelerator.unwrap_model(model))
    epoch_dir = ckpt_dir / f"epoch_{epoch:03d}"
    tmp = ckpt_dir / f".epoch_{epoch:03d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().contiguous().cpu() for k, v in checkpoint_state(target).items()}, str(tmp / "model.safetensors"))
    config.save(tmp / "config.yaml")
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
    shutil.rmtree(epoch_dir, ignore_errors=True)
    tmp.rename(epoch_dir)
    shutil.rmtree(ckpt_dir / "last_state", ignore_errors=True)
    tmp_state.rename(ckpt_dir / "last_state")
    _atomic_json(state_file, state)
    _atomic_json(ckpt_dir.parent / "metrics.json", {"history": state["history"], "best_epoch": state["best_epoch"]})


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
    """Load a ``model.safetensors`` written by :func:`fit` into ``model`` (strict)."""
    from safetensors.torch import load_file

    _unwrap(model).load_checkpoint_state_dict(load_file(str(checkpoint)))
    return model


def _unwrap(model: nn.Module) -> Model:
    """The :class:`~comparators.base.Model` inside accelerate's wrapper and :class:`HeadOnly`."""
    model = extract_model_from_parallel(model)
    if isinstance(model, HeadOnly):
        model = model.wrapped
    return model


def _atomic_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(path)
