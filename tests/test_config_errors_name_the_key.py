"""Configuration errors found after loading (they need the model built, or the dataset's own
list of splits) are still one-line ConfigErrors that name the key, never a bare ValueError that
the command line would show as a traceback."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from comparators.base import Comparator
from orderlearn.config import config_from_dict
from orderlearn.data.scut import split_files
from orderlearn.engine.heads import InBatchComparator
from orderlearn.errors import ConfigError
from orderlearn.runs.recipe import build_model

from builders import tiny_config


def test_a_backbone_unit_that_does_not_exist_names_model_trainable_from(tmp_path: Path):
    raw = tiny_config(tmp_path / "data", tmp_path / "out")
    raw["model"]["trainable_from"] = "blocks.99"
    raw["train"]["frozen_backbone"] = False
    config = config_from_dict(raw)
    with pytest.raises(ConfigError, match=r"^model\.trainable_from: .*blocks\.99"):
        build_model(config)


class ForwardOnly(Comparator):
    """A comparator without the embed/compare split."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(2, 3)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([a, b], dim=1))


def test_in_batch_pairs_with_a_comparator_that_does_not_split_name_pairs_recipe():
    with pytest.raises(ConfigError, match=r"^pairs\.recipe: in-batch"):
        InBatchComparator(ForwardOnly(), from_features=False)


def test_an_unknown_scut_split_names_data_split(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"^data\.split: .*'fold9'"):
        split_files(tmp_path, "fold9")
