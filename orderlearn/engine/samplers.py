"""The order the training loop sees its examples in, and how long an epoch is.

One seeded permutation per epoch (:class:`EpochSampler`), cut into the per-process batches of
global batches (:class:`GlobalBatchSampler`) so 1 and N processes train on the same global
batches, and the run's length in optimizer steps of that global batch (:class:`Schedule`):
what a resumed run must find unchanged to continue the learning-rate schedule and the data order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch.utils.data import Sampler

from orderlearn.errors import ConfigError


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, so a resumed run sees the same order as an unbroken one.

    With ``views > 1`` the ``size`` items are ``views`` views of ``size // views`` faces,
    view-major (item ``v·N + f`` is view ``v`` of face ``f``, as
    :class:`~orderlearn.engine.datasets.FeatureImageDataset` lays them out), and an epoch is a
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
