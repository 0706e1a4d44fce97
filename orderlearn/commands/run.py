"""``orderlearn run --config C [-o key=value ...] [--resume | --overwrite]``: one experiment from a config file.

Loads and validates the config (its ``base:`` chain resolved, the overrides applied) before any
data is read, then runs the recipe (:func:`orderlearn.runs.recipe.run_experiment`): train, build
the bank, score, evaluate, report. The command line itself is recorded in the run folder, so a
table over runs can say how each was made.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Sequence


def main(args: argparse.Namespace) -> int:
    return run_config(args.config, args.override, args.resume, args.overwrite)


def run_config(config_path: Path, overrides: Sequence[str], resume: bool, overwrite: bool = False) -> int:
    """Load ``config_path`` with ``overrides`` and run it; the recorded command reproduces it.
    A non-empty ``output_dir`` is continued (``resume``), emptied first (``overwrite``) or refused."""
    from orderlearn.config import load_config
    from orderlearn.runs.recipe import run_experiment

    config = load_config(config_path, list(overrides))
    command = shlex.join(["orderlearn", "run", "--config", str(config_path), *(x for o in overrides for x in ("-o", o))]
                         + (["--resume"] if resume else []))
    run_experiment(config, resume=resume, command=command, overwrite=overwrite)
    return 0
