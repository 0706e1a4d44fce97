"""``orderlearn demo [-o key=value ...] [--overwrite]``: the main job on the embedded synthetic default.

The same as ``orderlearn run --config configs/synthetic/demo.yaml`` (and recorded as that
command): the synthetic dataset is generated on first use, so the demo needs no download.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from orderlearn.commands.run import run_config

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEMO_CONFIG = REPO_CONFIGS / "synthetic" / "demo.yaml"


def main(args: argparse.Namespace) -> int:
    return run_config(DEMO_CONFIG, args.override, resume=False, overwrite=args.overwrite)
