"""``orderlearn run --config C [-o key=value ...] [--resume | --overwrite]``: one experiment from a config file.

Library code in :mod:`orderlearn.runs.launch` (the function :func:`orderlearn.api.run` calls too):
the config is loaded and validated before any data is read, the recipe runs, and the command
line is recorded in the run folder, so a table over runs can say how each was made.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence


def main(args: argparse.Namespace) -> int:
    return run_config(args.config, args.override, args.resume, args.overwrite)


def run_config(config_path: Path, overrides: Sequence[str], resume: bool, overwrite: bool = False) -> int:
    """Run ``config_path`` with ``overrides`` (:func:`orderlearn.runs.launch.run_config`); exit status 0."""
    from orderlearn.runs.launch import run_config as launch

    launch(config_path, overrides, resume, overwrite)
    return 0
