"""The tiny models and small runs the tests share, written once.

Many tests train a model for real, and each must stay fast on a 2-core CPU: a random-weight
MobileNetV2 (width 0.35) at 48 px, a frozen backbone, the synthetic SCUT layout from the
``synthetic_root`` fixture. These settings used to be copied into each file; a test whose
numbers depend on them (a fixed seed, a fixed count of steps) now reads them from here, so
changing a value below changes those tests' numbers: change it only on purpose.

``tiny_config`` is the small comparator run (siamese, bt-grid scorer); ``small_run`` the small
run of any model (by default a regressor) with the common training settings; both return the
raw dict ``config_from_dict`` reads, so a test can still adjust any section before loading it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

TINY_BACKBONE: dict[str, Any] = {"backbone": "mobilenetv2_035", "weights": "random"}
"""The smallest timm CNN the models accept, with random weights (no download)."""

TINY_IMAGE: dict[str, Any] = {**TINY_BACKBONE, "image_size": 48}
"""The tiny backbone at the 48 px the synthetic faces are trained at."""

TINY_MODEL: dict[str, Any] = {"name": "siamese", **TINY_IMAGE, "projection": 32, "hidden": 32}
"""The tiny siamese comparator of ``tiny_config``."""

TINY_IR50: dict[str, Any] = {"widths": (4, 4, 4, 2), "depths": (1, 1, 1, 1)}
"""The smallest IR-50 ``create_backbone("ir50", ...)`` builds: c = 2 pooled features."""

SMALL_TRAIN: dict[str, Any] = {"epochs": 2, "batch_size": 32, "frozen_backbone": True, "tracker": "none"}
"""Training of ``small_run``: two epochs of the heads on cached backbone features, no tracker."""

GRID_SCORER: dict[str, Any] = {"name": "bt-grid", "step": 0.01}
"""The Bradley–Terry grid scorer the small runs score with."""


def synthetic_data(root: Path, **overrides: Any) -> dict[str, Any]:
    """The ``data`` section of a small run: fold 1 of a SCUT-layout folder, 20 % of training held out."""
    return {"kind": "scut", "root": str(root), "split": "fold1", "val_fraction": 0.2, **overrides}


def tiny_config(root: Path, out: Path, **train: Any) -> dict[str, Any]:
    """The small comparator run: ``TINY_MODEL`` on 1200 pairs for two epochs, seed 3; ``train``
    keywords replace the training settings (``epochs=1``, ``batch_size=32``...)."""
    return {
        "name": "tiny",
        "seed": 3,
        "output_dir": str(out),
        "data": synthetic_data(root),
        "model": dict(TINY_MODEL),
        "pairs": {"total": 1200, "val_total": 300},
        "optim": {"lr": 3e-3},
        "train": {"epochs": 2, "batch_size": 64, "eval_batch_size": 64, "frozen_backbone": True, "tracker": "none", **train},
        "scorer": {"name": "bt-grid", "step": 0.01},
    }


def small_run(root: Path, out: Path, model: dict[str, Any], *, name: str, task: Optional[str] = "regressor", seed: int = 0,
              train: Optional[dict[str, Any]] = None, scorer: Optional[dict[str, Any]] = None,
              **sections: Any) -> dict[str, Any]:
    """A small run of ``model`` on ``root`` (synthetic fold 1): ``SMALL_TRAIN`` updated by ``train``,
    ``GRID_SCORER`` unless ``scorer`` is given, and any further top-level ``sections`` (``pairs``,
    ``loss``, ``bank``...) as given. ``task=None`` leaves the task to the config's default."""
    raw: dict[str, Any] = {"name": name, "seed": seed, "output_dir": str(out)}
    if task is not None:
        raw["task"] = task
    raw.update({"data": synthetic_data(root), "model": dict(model), **sections,
                "train": {**SMALL_TRAIN, **(train or {})}, "scorer": dict(scorer or GRID_SCORER)})
    return raw


def tiny_comparator_run(root: Path, out: Path) -> Path:
    """``tiny_config`` trained one epoch into ``out``, without the direct head: a finished run for
    tests of what reads a run folder (predict, serve, score)."""
    from orderlearn.config import config_from_dict
    from orderlearn.runs.recipe import run_experiment

    raw = tiny_config(root, out, epochs=1)
    raw["direct_baseline"] = False
    run_experiment(config_from_dict(raw))
    return out
