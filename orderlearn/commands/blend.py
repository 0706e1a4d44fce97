"""``orderlearn blend RUN_A RUN_B [RUN ...] --out DIR``: finished runs' scores averaged per route,
the weights chosen on validation (:mod:`orderlearn.runs.blend`); DIR is a table folder that
``orderlearn compare`` reads like a run's."""
from __future__ import annotations

import argparse
import shlex


def main(args: argparse.Namespace) -> int:
    from orderlearn.runs.blend import blend_runs

    command = shlex.join(["orderlearn", "blend", *map(str, args.runs), "--out", str(args.out), "--select", args.select])
    blend_runs(args.runs, args.out, args.select, command)
    print((args.out / "report.md").read_text())
    return 0
