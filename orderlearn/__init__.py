"""orderlearn: order learning on faces.

Predict an ordinal score (facial beauty, age) by comparing an image with a bank of scored
references and turning the comparisons into a score by Bradley–Terry likelihood; every direct
method is also a (degenerate) comparator, so "direct vs order-learned" is one table.

The public API is imported lazily (``orderlearn.load`` loads the pipeline on first use), so
``import orderlearn`` and the vocabulary in :mod:`orderlearn.types` stay light. The calls that
mirror the command line (:mod:`orderlearn.api`)::

    import orderlearn

    rows = orderlearn.load("runs/demo").predict(["me.jpg"])              # orderlearn predict
    results = orderlearn.run("configs/synthetic/demo.yaml", **{"train.epochs": 1})  # orderlearn run
    table = orderlearn.compare(["runs/a", "runs/b"])                     # orderlearn compare
    entries = orderlearn.models()                                        # orderlearn models
    keys = orderlearn.config_reference()                                 # every config key
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_PUBLIC = {
    "load": "orderlearn.api",
    "run": "orderlearn.api",
    "compare": "orderlearn.api",
    "Predictor": "orderlearn.api",
    "Prediction": "orderlearn.runs.predictions",
    "models": "orderlearn.api",
    "config_reference": "orderlearn.report.config_reference",
    "run_experiment": "orderlearn.runs.recipe",
    "load_config": "orderlearn.config",
    "config_from_dict": "orderlearn.config",
    "ExperimentConfig": "orderlearn.config",
    "LoadedRun": "orderlearn.runs.loaded",
    "score_run": "orderlearn.commands.score",
    "ScoringRecipe": "orderlearn.bank.scoring_recipe",
    "ReferenceBank": "orderlearn.bank.references",
    "compare_runs": "orderlearn.report.tables",
    "load_training": "orderlearn.data.splits",
    "load_test": "orderlearn.data.splits",
    "ScoredImage": "orderlearn.types",
    "PairLabel": "orderlearn.types",
    "ConfigError": "orderlearn.errors",
    "DataError": "orderlearn.errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'orderlearn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
