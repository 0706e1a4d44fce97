"""Shared fixtures: the real SCUT-FBP5500 folder (skips cleanly where ../shared is absent)
and small synthetic datasets generated once per session."""
from __future__ import annotations

from pathlib import Path

import os

import pytest
import torch

# no machine here reaches a model hub: fail at once instead of retrying for a minute
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SCUT_ROOT = SHARED / "data" / "scut-fbp5500"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def scut_root() -> Path:
    if not (SCUT_ROOT / "Images").is_dir():
        pytest.skip(f"real SCUT-FBP5500 not found at {SCUT_ROOT}")
    return SCUT_ROOT


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    from orderlearn.synthetic import generate_synthetic_scut

    return generate_synthetic_scut(tmp_path_factory.mktemp("synthetic") / "scut", n_images=200, image_size=64, seed=0)
