"""Issue 31, case 1: ``--resume`` is exact with ``pairs.recipe: in-batch``.

The in-batch objective draws the pairs of every batch from a generator of its own; a resume
state that does not hold it continues with the pairs of a fresh generator, so a run killed in
epoch 2 or 3 and resumed trained on other pairs than an unbroken one. Here two cached views of
each face (one drawn per face per epoch), dropout in the comparator, and kills in epoch 2 and in
epoch 3 of the same run: the resumed run must end with the same weights, history and learning
rates, bit for bit.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pytest
import torch

from comparators.losses import ComparatorLoss
from orderlearn.config import config_from_dict
from orderlearn.data.pairs import sample_pairs
from orderlearn.engine.datasets import FeatureImageDataset
from orderlearn.engine.heads import InBatchComparator
from orderlearn.engine.objectives import InBatchObjective
from orderlearn.engine.training import fit
from orderlearn.runs.recipe import setup as run_setup
from orderlearn.types import ScoredImage

from test_training_loop import Killed, TinyComparator, TinyConfig, final_weights, loop_config

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 5  # optimizer steps per epoch (loop_config's train.max_steps_per_epoch)


class KillableInBatch(InBatchObjective):
    """The in-batch objective of a run that is killed (``Killed``) at training step ``kill_at``."""

    def __init__(self, kill_at: Optional[int], val: list[ScoredImage]) -> None:
        val_pairs = sample_pairs([s.score for s in val], "balanced-3", 24, 0.2, 1)
        super().__init__(ComparatorLoss("ce"), 0.2, "balanced-3", val_pairs, seed=7)
        self.kill_at, self.steps = kill_at, 0

    def loss(self, model, batch):
        self.steps += 1
        if self.steps == self.kill_at:
            raise Killed(f"killed at step {self.steps}")
        return super().loss(model, batch)


def faces(n: int, seed: int, views: int) -> tuple[torch.Tensor, list[ScoredImage]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, views, 6, generator=g) if views > 1 else torch.randn(n, 6, generator=g)
    first = x[:, 0, 0] if views > 1 else x[:, 0]
    return x, [ScoredImage(Path(f"{seed}_{i}.jpg"), float(3 + torch.tanh(v))) for i, v in enumerate(first)]


def in_batch_fit(out: Path, kill_at: Optional[int], resume: bool) -> None:
    torch.manual_seed(0 if not resume else 123)  # a resumed process has its own history: nothing may depend on it
    model = InBatchComparator(TinyComparator(TinyConfig(dropout=0.3)), from_features=False)
    train_x, train = faces(96, 0, views=2)
    val_x, val = faces(32, 1, views=1)
    config = config_from_dict({**loop_config(out, epochs=4, batch_size=12).to_dict(), "pairs": {"recipe": "in-batch"}})
    config = config_from_dict({**config.to_dict(), "train": {**config.to_dict()["train"], "frozen_backbone": True,
                                                            "feature_views": ["identity", "hflip"], "views_per_epoch": "one"}})
    with run_setup(config, resume) as run:
        fit(model, KillableInBatch(kill_at, val), FeatureImageDataset(train_x, train, views=2),
            FeatureImageDataset(val_x, val), config, run.store, run.accelerator, run.resume_state, views_per_face=2)


def test_in_batch_resume_after_kills_in_epochs_2_and_3_is_bit_identical(tmp_path):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    in_batch_fit(straight, None, resume=False)
    with pytest.raises(Killed):
        in_batch_fit(broken, STEPS + 2, resume=False)  # in epoch 2: resumes after epoch 1
    with pytest.raises(Killed):
        in_batch_fit(broken, STEPS + 3, resume=True)  # epoch 2 again, then killed in epoch 3
    in_batch_fit(broken, None, resume=True)  # from the end of epoch 2 to the end
    for epoch in (1, 2, 3, 4):
        want, got = final_weights(straight, epoch), final_weights(broken, epoch)
        assert all(torch.equal(want[n], got[n]) for n in want), f"epoch {epoch}'s weights differ"
    history = [json.loads((o / "comparator" / "metrics.json").read_text())["history"] for o in (straight, broken)]
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(history[0]) == strip(history[1])
    trace = [json.loads((o / "comparator" / "lr_trace.json").read_text()) for o in (straight, broken)]
    assert trace[0] == trace[1] and len(trace[0]) == 4 * STEPS
