"""One entry point from a :class:`DataConfig` to samples: train / validation / test.

Validation is carved from the training files (seeded); the test files are read only by
:func:`load_test`, which evaluation calls once for the final numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import manifest, scut
from .config import DataConfig
from .errors import DataError
from .types import ScoredImage

DEFAULT_SYNTHETIC_ROOT = Path("runs") / "data" / "synthetic-scut"


@dataclass
class TrainingSplits:
    train: list[ScoredImage]
    val: list[ScoredImage]


def dataset_root(config: DataConfig) -> Path:
    """The dataset folder (synthetic data is generated there on first use)."""
    if config.kind == "synthetic":
        from .synthetic import generate_synthetic_scut

        root = Path(config.root) if config.root else DEFAULT_SYNTHETIC_ROOT / f"n{config.synthetic_images}-s{config.synthetic_image_size}"
        return generate_synthetic_scut(root, n_images=config.synthetic_images, image_size=config.synthetic_image_size)
    if not config.root:
        raise DataError(f"data.root is required for data.kind={config.kind!r}")
    return Path(config.root)


def _read(config: DataConfig) -> tuple[list[ScoredImage], list[ScoredImage]]:
    root = dataset_root(config)
    if config.kind in ("synthetic", "scut"):
        return scut.read_split(root, config.split, config.ratings)
    samples = manifest.read_manifest(root)
    fold = int(config.split.removeprefix("fold")) if config.split.startswith("fold") else None
    return manifest.split_manifest(samples, fold)


def load_training(config: DataConfig) -> TrainingSplits:
    """Training files split into train and a seeded validation part (``val_fraction``)."""
    train, _ = _read(config)
    rng = np.random.default_rng(config.val_seed)
    if config.limit_train is not None:
        train = [train[i] for i in sorted(rng.choice(len(train), min(config.limit_train, len(train)), replace=False))]
    order = rng.permutation(len(train))
    n_val = int(round(config.val_fraction * len(train)))
    if len(train) - n_val < 2:
        raise DataError(f"training split has {len(train)} images: too few to carve {n_val} for validation")
    val = [train[i] for i in sorted(order[:n_val])]
    rest = [train[i] for i in sorted(order[n_val:])]
    return TrainingSplits(rest, val)


def load_test(config: DataConfig) -> list[ScoredImage]:
    """The test files of the configured split (read once, for the final numbers)."""
    _, test = _read(config)
    if config.limit_test is not None:
        rng = np.random.default_rng(config.val_seed + 1)
        test = [test[i] for i in sorted(rng.choice(len(test), min(config.limit_test, len(test)), replace=False))]
    return test
