"""Issue 31, case 12 (its loop part): training stops with a one-line error naming the epoch and
step when the loss goes NaN or infinite, instead of training every later epoch on NaN and
failing later in calibration; nothing of the broken epoch is written."""
from __future__ import annotations

import math
import pytest
from orderlearn.errors import TrainingDivergedError

from test_training_loop import CountingObjective, tiny_fit

pytestmark = pytest.mark.usefixtures("one_thread")


class BreaksAt(CountingObjective):
    """A loss that turns ``value`` (NaN or inf) at training step ``at``."""

    def __init__(self, at: int, value: float) -> None:
        super().__init__()
        self.at, self.value = at, value

    def loss(self, model, batch):
        loss = super().loss(model, batch)
        return loss * self.value if self.steps == self.at else loss


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_loss_stops_training_naming_epoch_and_step(tmp_path, value):
    objective = BreaksAt(at=7, value=value)  # 5 steps per epoch: epoch 2, its step 2
    with pytest.raises(TrainingDivergedError) as caught:
        tiny_fit(tmp_path / "run", objective=objective)
    message = str(caught.value)
    assert "\n" not in message
    assert f"loss is {value}" in message and "epoch 2, step 2 (optimizer step 7)" in message and "optim.lr" in message
    checkpoints = tmp_path / "run" / "comparator" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("epoch_*")) == ["epoch_001"]  # epoch 2 never saved
    assert objective.evaluations == 1


def test_the_command_line_prints_the_divergence_in_one_line(monkeypatch, capsys):
    """``orderlearn run`` ends with exit status 2 and one line on stderr, not a traceback."""
    from orderlearn import cli
    from orderlearn.commands import run as run_command

    def diverges(args):
        raise TrainingDivergedError("train: the training loss is nan at epoch 3, step 2 (optimizer step 12); stopped")

    monkeypatch.setattr(run_command, "main", diverges)
    assert cli.main(["run", "--config", "any.yaml"]) == 2
    assert capsys.readouterr().err == "error: train: the training loss is nan at epoch 3, step 2 (optimizer step 12); stopped\n"
