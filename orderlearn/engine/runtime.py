"""The processes a run trains on: the accelerator (precision, trackers, the CPU's number
formats), the launches it refuses, and putting a resume state back into the prepared model,
optimizer, scheduler, random generators and objective.

Why a module apart from the loop: the run builds its accelerator before it reads any data or
builds a model (the lock, the resume lookup and the config save need it), and scoring a saved
run builds one without ever training.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed

from comparators.base import Model

from orderlearn.config import ExperimentConfig
from orderlearn.engine.checkpoints import CheckpointMismatchError, ResumeState
from orderlearn.engine.objectives import Objective
from orderlearn.errors import ConfigError

log = logging.getLogger(__name__)
# what `accelerate launch` sets from a config file's distributed_type, and what it means
SHARDED_LAUNCHES = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DEEPSPEED"}


def make_accelerator(config: ExperimentConfig, output_dir: Path, log_with: Optional[str] = None) -> Accelerator:
    """The run's accelerator: ``train.mixed_precision`` (``auto``: bf16 on a GPU that has it),
    ``train.grad_accum``, the tracker (``log_with`` overrides ``train.tracker``; TensorBoard
    only when installed), flush-denormal on CPU. A sharded launch is refused first."""
    refuse_sharded_launch(os.environ)
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
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise ConfigError(_sharded_message(str(accelerator.distributed_type.value)))
    if accelerator.device.type == "cpu":
        if precision == "bf16" and not cpu_has_native_bf16():
            log.warning("train.mixed_precision: bf16 on a CPU without AVX512-BF16 or AMX runs 3 to 7 times slower than "
                        "float32 (benchmarks/cpu_precision.py); set it to \"no\" and train.channels_last: true")
        # subnormal floats (|x| < 1.2e-38, e.g. optimizer moments and gradients late in a decayed
        # schedule) take a slow path in x86 arithmetic; they become 0, so late epochs run as fast
        # as early ones
        torch.set_flush_denormal(True)
    return accelerator


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """PyTorch's deterministic kernels for the ``with`` block (warn-only where an op has none).

    Why: the backward of indexing (``emb[a]``, as the in-batch objective pairs a batch's faces)
    accumulates with ``index_put_``, whose multi-threaded CPU kernel adds in whatever order the
    threads finish; two processes of one config and seed then trained apart in the sixth digit
    from the first epoch on 2 cores (not on 1), enough to pick another best epoch. The
    deterministic kernels cost nothing measurable here. On CUDA, cuBLAS needs a fixed workspace
    for it (``CUBLAS_WORKSPACE_CONFIG``, set unless the user set it)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def refuse_sharded_launch(environ: Mapping[str, str]) -> None:
    """A ConfigError when ``accelerate launch`` was configured for FSDP or DeepSpeed.

    Why refused: a checkpoint here is one full copy of the trained tensors and the resume state
    one optimizer state dict, written by the main process; sharded parameters and optimizer
    states would need gathering that the loop does not do. Checked before the accelerator is
    built (and so before any data is read), from the variables the launcher sets.
    """
    for variable, kind in SHARDED_LAUNCHES.items():
        if environ.get(variable, "false").lower() == "true":
            raise ConfigError(_sharded_message(kind, variable))


def _sharded_message(kind: str, variable: str = "") -> str:
    how = f" ({variable}=true)" if variable else ""
    return (f"accelerate config: distributed_type {kind}{how} is not supported: checkpoints hold one full copy of the "
            "trained tensors; launch with distributed_type MULTI_GPU (configs/accelerate/multi_gpu.yaml) or one process")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX); elsewhere oneDNN
    emulates it through float32 and converts on every operation."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def restore(state: ResumeState, target: Model, optimizer: Any, scheduler: Any, objective: Objective,
            accelerator: Accelerator, facts: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Put a resume state back: the trained tensors into ``target`` (the model the loop trains,
    unwrapped), the optimizer, scheduler, this process's random generators and the objective's
    own (the in-batch pair generator); returns the loop's bookkeeping (epoch, history, lr trace).

    ``facts`` are this run's entries of the state's record (``model``: the config's model
    section; ``global_batch`` and ``steps_per_epoch``): tensors of another shape are a
    :class:`CheckpointMismatchError` naming the model options that changed, another global batch
    or epoch length a ConfigError (the learning-rate schedule and the data order would not
    continue). A process the state has no generators for (resumed on more processes) is
    reseeded from ``seed``, and says so."""
    trainer = dict(state.trainer)
    problem = state.mismatch(target.checkpoint_state_dict())
    changed = state.model_changes(facts["model"])
    if problem:
        what = f" ({'; '.join(changed[:4])})" if changed else ""
        raise CheckpointMismatchError(f"--resume: the checkpoint in {state.folder} does not match the config{what}: {problem}")
    if changed:
        accelerator.print(f"--resume: model options changed since the checkpoint: {'; '.join(changed)}")
    written = (trainer["global_batch"], trainer["steps_per_epoch"])
    if written != (facts["global_batch"], facts["steps_per_epoch"]):
        raise ConfigError(f"--resume: the checkpoint in {state.folder} was written with a global batch of {written[0]} "
                          f"examples and {written[1]} optimizer steps per epoch ({trainer['world_size']} processes); this run "
                          f"has {facts['global_batch']} and {facts['steps_per_epoch']} "
                          f"({accelerator.num_processes} processes): the learning-rate schedule and the data order would not continue")
    target.load_checkpoint_state_dict({k: v.to(accelerator.device) for k, v in state.trained().items()})
    state.load_training_state(optimizer, scheduler, accelerator.scaler)
    rank = accelerator.process_index
    if not state.restore_rng(rank):
        set_seed(seed + 1_000 * state.epoch + rank)
        accelerator.print(f"--resume: no random-generator state for process {rank} (written by {trainer['world_size']} "
                          "processes): reseeded; dropout and augmentation differ from an unbroken run")
    saved = state.objective_state(rank)
    if saved is not None:
        objective.load_state_dict(saved)
    elif objective.state_dict():
        accelerator.print(f"--resume: {state.folder} holds no state of the {type(objective).__name__} (an older resume "
                          "state): its pairs differ from an unbroken run's")
    return {k: trainer[k] for k in ("epoch", "global_step", "best_epoch", "best_metric", "history", "lr_trace")}
