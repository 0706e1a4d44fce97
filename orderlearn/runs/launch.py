"""A run from a config file and ``key=value`` overrides: the one path ``orderlearn run``,
``orderlearn demo`` and :func:`orderlearn.api.run` take.

The config is loaded and validated (its ``base:`` chain resolved, the overrides applied) before
any data is read, then the recipe runs (:func:`orderlearn.runs.recipe.run_experiment`). The
command line that reproduces the run is recorded in its results, so a table over runs can say
how each was made; a run started from Python records the same line.
"""
from __future__ import annotations

import copy
import math
import shlex
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import yaml

from orderlearn.config import ExperimentConfig, canonical_sections, config_from_dict, load_config
from orderlearn.config_files import apply_overrides
from orderlearn.runs.recipe import run_experiment


def run_config(config_path: Union[str, Path], overrides: Sequence[str] = (), resume: bool = False,
               overwrite: bool = False) -> dict[str, Any]:
    """Load ``config_path`` with ``overrides`` (``key.sub=value``, values read as YAML) and run it;
    the results dictionary. A non-empty ``output_dir`` is continued (``resume``), emptied first
    (``overwrite``) or refused."""
    config = load_config(config_path, list(overrides))
    return run_experiment(config, resume=resume, command=command_line(config_path, overrides, resume), overwrite=overwrite)


def run_mapping(config: Union[ExperimentConfig, Mapping[str, Any]], overrides: Sequence[str] = (), resume: bool = False,
                overwrite: bool = False) -> dict[str, Any]:
    """A config given as a loaded :class:`ExperimentConfig` or a resolved mapping (no ``base:``),
    with ``overrides`` applied as ``-o`` applies them to a file; no command line is recorded."""
    raw = config.to_dict() if isinstance(config, ExperimentConfig) else copy.deepcopy(dict(config))  # the caller's stays as given
    loaded = config_from_dict(apply_overrides(canonical_sections(raw), list(overrides), canonical_sections))
    return run_experiment(loaded, resume=resume, overwrite=overwrite)


def command_line(config_path: Union[str, Path], overrides: Sequence[str], resume: bool) -> str:
    """The ``orderlearn run`` line that reproduces a run (``--overwrite`` is not part of it)."""
    return shlex.join(["orderlearn", "run", "--config", str(config_path), *(x for o in overrides for x in ("-o", o))]
                      + (["--resume"] if resume else []))


def override_lines(values: Mapping[str, Any]) -> list[str]:
    """``{"train.epochs": 1}`` as the ``-o`` lines ``["train.epochs=1"]``: each value written as
    YAML, which the loader reads back to the same value (paths as text)."""
    return [f"{key}={yaml_text(value)}" for key, value in values.items()]


def yaml_text(value: Any) -> str:
    """One value as flow-style YAML text (``1``, ``0.001``, ``'1'``, ``[a, b]``, ``null``)."""
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump([value], default_flow_style=True, width=math.inf).strip()[1:-1]
