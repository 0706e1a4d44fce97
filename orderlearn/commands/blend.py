"""``orderlearn blend RUN_A RUN_B --out DIR``: two finished runs' scores averaged per route, the
weight chosen on validation (:mod:`orderlearn.runs.blend`); DIR is a table folder that
``orderlearn compare`` reads like a run's."""
from __future__ import annotations

import argparse
import shlex


def main(args: argparse.Namespace) -> int:
    from orderlearn.runs.blend import blend_runs

    first, second = args.runs
    command = shlex.join(["orderlearn", "blend", str(first), str(second), "--out", str(args.out), "--select", args.select])
    blend_runs(first, second, args.out, args.select, command)
    print((args.out / "report.md").read_text())
    return 0
