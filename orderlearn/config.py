"""Experiment configs: dataclasses loaded from YAML, validated on load, saved with every run.

Unknown keys and wrongly typed values are errors that name the key (``train.epoch``: did
you mean ``train.epochs``?). ``model`` and ``scorer`` keep their own keyword arguments in
``args``; those are validated here too, when the config is loaded and before any data is read:
a model's options against the options dataclass it registered (plus its factory's own keyword
parameters), a scorer's against its constructor, with the same did-you-mean messages, and
then the component's own range checks run (the scorer is built once; the model's options
dataclass is instantiated, which builds nothing heavy).

A config file may name a ``base:`` and hold only its differences (``orderlearn/config_files.py``
resolves the chain); ``-o`` overrides apply to the resolved config, which is what gets validated
and what a run folder saves, so a saved ``config.yaml`` loads on its own.

This module is the entry: :func:`load_config` (a file) and :func:`config_from_dict` (a mapping).
The parts live beside it, one job each: the sections as dataclasses
(:mod:`orderlearn.config_sections`, re-exported here, so ``from orderlearn.config import
ExperimentConfig`` keeps working), YAML values into typed fields (:mod:`orderlearn.config_typing`),
the value checks (:mod:`orderlearn.config_checks`) and the files that inherit
(:mod:`orderlearn.config_files`).
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Optional, Union

from orderlearn.config_checks import check_config
from orderlearn.config_files import BASE_KEY, UNSET_KEY, apply_overrides, file_setting, one_line, resolve_file
from orderlearn.config_sections import (CHOICES, OPEN_SECTIONS, BankConfig, DataConfig, ExperimentConfig, LossConfig,
                                        ModelConfig, OptimConfig, PairsConfig, ScheduleConfig, ScorerConfig,
                                        TrainConfig)
from orderlearn.config_typing import build_section
from orderlearn.errors import ConfigError

__all__ = [
    "BankConfig", "CHOICES", "ConfigError", "DataConfig", "ExperimentConfig", "LossConfig", "ModelConfig", "OPEN_SECTIONS",
    "OptimConfig", "PairsConfig", "ScheduleConfig", "ScorerConfig", "TrainConfig", "canonical_sections",
    "config_from_dict", "load_config",
]


def load_config(path: Union[str, Path], overrides: Optional[list[str]] = None) -> ExperimentConfig:
    """Read a YAML config, resolve its ``base:`` chain, apply ``key.sub=value`` overrides (values
    parsed as YAML) and validate the result; every error is a one-line ConfigError naming the
    file and the key. The returned config is the resolved one (what a run folder saves)."""
    path = Path(path)
    raw = resolve_file(path, canonical_sections)
    raw = apply_overrides(raw, overrides, canonical_sections)
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        message = one_line(exc)
        raise ConfigError(f"{path}: {message}{_where_set(path, message, overrides)}") from None


def _where_set(path: Path, message: str, overrides: Optional[list[str]]) -> str:
    """`` (set in base.yaml)`` when the key an error names comes from a base file, else ''."""
    match = re.match(r"unknown key '([^']+)'|([\w.]+)[:\[ ]", message)
    key = match and (match.group(1) or match.group(2))
    if not key or any(o.partition("=")[0].strip() in (key, key.replace(".", ".args.", 1)) for o in overrides or []):
        return ""
    source = file_setting(path, key, canonical_sections)
    return f" (set in {source})" if source is not None and source != path else ""


def canonical_sections(raw: dict[str, Any]) -> dict[str, Any]:
    """``model`` and ``scorer`` with their component's options under ``args``.

    A file may write them flat (``model: {name: siamese, backbone: resnet18}``) or under
    ``args``; merging a variant into its base and applying ``-o model.image_size=..`` or
    ``-o model.args.image_size=..`` must all address the same option, so every layer is put into
    the ``args`` spelling first. A key given both ways in one layer is an error naming it."""
    raw = dict(raw)
    for section in OPEN_SECTIONS:
        body = raw.get(section)
        if not isinstance(body, dict):
            continue  # build_section names the section when it is not a mapping
        own = {f.name for f in dataclasses.fields(type(getattr(ExperimentConfig(), section)))} - {"args"}
        flat = {k: v for k, v in body.items() if k not in own and k != "args"}
        if not flat:
            continue
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise ConfigError(f"{section}.args: expected a mapping, got {args!r}")
        twice = sorted(flat.keys() & args.keys(), key=str)
        if twice:
            key = twice[0]
            raise ConfigError(f"{section}.{key}: given twice, as {section}.{key} and {section}.args.{key}")
        raw[section] = {k: v for k, v in body.items() if k in own} | {"args": {**args, **flat}}
    return raw


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """A validated config from one resolved mapping (no ``base``: files are resolved by load_config)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: a config must be a mapping of keys, got {type(raw).__name__}")
    if BASE_KEY in raw or UNSET_KEY in raw:
        key = BASE_KEY if BASE_KEY in raw else UNSET_KEY
        raise ConfigError(f"{key}: only a config file can inherit (load it with load_config)")
    config = build_section(ExperimentConfig, bank_source_over_data(canonical_sections(raw)), "")
    check_config(config)
    return config


def bank_source_over_data(raw: dict[str, Any]) -> dict[str, Any]:
    """``bank.from`` over the run's ``data``: the dataset keys it leaves out are ``data``'s (but
    ``second``), so ``bank.from: {score_definition: high_share, score_low: 0, score_high: 100}`` is
    the run's own dataset on another scale and ``bank.from: {train_groups: [AF], test_groups: [AF]}``
    its other groups. Resolved once, here: the config a run saves holds the whole section."""
    bank, data = raw.get("bank"), raw.get("data", {})
    source = bank.get("from") if isinstance(bank, dict) else None
    if not isinstance(source, dict) or not isinstance(data, dict):
        return raw  # no bank.from, or a section build_section will name as not a mapping
    keys = {f.name for f in dataclasses.fields(DataConfig)} - {"second"}
    inherited = {k: v for k, v in data.items() if k in keys}
    return {**raw, "bank": {**bank, "from": {**inherited, **source}}}
