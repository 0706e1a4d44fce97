"""The model a config names, built and placed, and the feature extractor it is embedded through:
what a run (:mod:`orderlearn.runs.recipe`) and a loaded run (:mod:`orderlearn.runs.loaded`) both
set up, kept apart from either so each imports it (the recipe also runs the phases that score a
loaded run: :mod:`orderlearn.runs.foreign_bank`)."""
from __future__ import annotations

import torch
from accelerate import Accelerator

import comparators
from comparators.base import Model

from orderlearn.config import ExperimentConfig
from orderlearn.engine.features import FeatureCache, FeatureExtractor
from orderlearn.errors import ConfigError


def build_model(config: ExperimentConfig) -> Model:
    """The registered model of ``config.model`` (its kind was checked against ``config.task``
    when the config loaded)."""
    try:
        model = comparators.create(config.model.name, **config.model.args)
    except ValueError as error:  # an option only the built model can check (a backbone unit, say)
        raise ConfigError(model_option_error(str(error))) from error
    if model.uses_second_database != (config.data.second is not None):
        needs = "learns a task from data.second; set it" if model.uses_second_database else "learns nothing from data.second; remove it"
        raise ConfigError(f"model {config.model.name!r} (as configured) {needs}")
    return model


def model_option_error(message: str) -> str:
    """A model's complaint about one of its options, keyed under ``model.``: the models word
    theirs as ``option: problem``; anything else is put under ``model:`` whole."""
    key, sep, _ = message.partition(": ")
    return f"model.{message}" if sep and key.isidentifier() else f"model: {message}"


def feature_extractor(config: ExperimentConfig, accelerator: Accelerator) -> FeatureExtractor:
    """Features cached on disk when they cannot change during the run (a frozen backbone)."""
    cache = FeatureCache.from_setting(config.feature_cache) if config.train.frozen_backbone else None
    return FeatureExtractor(accelerator, config.train.eval_batch_size, config.train.num_workers, cache,
                            channels_last=config.train.channels_last)


def place_model(model: Model, config: ExperimentConfig, accelerator: Accelerator) -> Model:
    """``model`` on the run's device, its conv weights (and so their outputs) in channels-last order
    when ``train.channels_last`` says so: the CPU's oneDNN convolutions run that 1.3-2.3 times
    faster than contiguous float32 (benchmarks/cpu_precision.py) with the same numbers to 1e-5,
    where bf16 autocast is faster only on a CPU with bf16 arithmetic. Every path that computes a
    run's features places its model here, so they match the key :func:`feature_extractor` caches
    them under."""
    fmt = torch.channels_last if config.train.channels_last else torch.contiguous_format
    return model.to(accelerator.device, memory_format=fmt)
