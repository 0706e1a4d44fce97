"""A finished run, loaded to score more images exactly as it scored its test set.

What ``orderlearn score``, ``orderlearn active`` (and any later command) need from a run
folder: its resolved config, the model it trained (weights are loaded per checkpoint by the
bank route), its :class:`~orderlearn.bank.evaluator.BankEvaluator` (``scorer.json``) and its
reference bank. Regressor and comparator runs load the same way.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from accelerate import Accelerator

from comparators.base import Model

from orderlearn.bank.references import ReferenceBank
from orderlearn.bank.evaluator import EVALUATOR_FILE, BankEvaluator, BankRoute
from orderlearn.config import ExperimentConfig, load_config
from orderlearn.errors import DataError
from orderlearn.runs.recipe import build_model, feature_extractor, place_model
from orderlearn.engine.runtime import make_accelerator


@dataclass
class SavedRun:
    path: Path
    config: ExperimentConfig
    model: Model
    evaluator: BankEvaluator
    bank: ReferenceBank
    accelerator: Accelerator
    route: BankRoute


def load_run(run: Path, accelerator: Optional[Accelerator] = None) -> SavedRun:
    """Load ``run``'s config, model, bank evaluator and bank (a DataError when any is missing)."""
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise DataError(f"{run} is not an `orderlearn run` folder (no config.yaml)")
    config = load_config(run / "config.yaml")
    evaluator = BankEvaluator.load(run / EVALUATOR_FILE)
    missing = [c for c in evaluator.checkpoints if not (run / c).is_file()]
    if missing:
        raise DataError(f"{run}: checkpoint {run / missing[0]} named in {EVALUATOR_FILE} does not exist")
    bank = ReferenceBank.load(run / evaluator.bank_file)
    # no tracker: loading a run to score logs nothing and must not write into its folder
    quiet = dataclasses.replace(config, train=dataclasses.replace(config.train, tracker="none"))
    accelerator = accelerator or make_accelerator(quiet, run)
    model = place_model(build_model(config), config, accelerator)
    route = BankRoute(model, evaluator, bank, run, feature_extractor(config, accelerator), accelerator, config.train.eval_batch_size)
    return SavedRun(run, config, model, evaluator, bank, accelerator, route)
