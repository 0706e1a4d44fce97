"""``orderlearn demo [-o key=value ...] [--overwrite]``: the main job on the embedded synthetic default.

The same as ``orderlearn run --config configs/synthetic/demo.yaml`` (and recorded as that
command): the synthetic dataset is generated on first use, so the demo needs no download. Its
report then gains one line (:mod:`orderlearn.runs.new_scale_line`): the run scored on a scale
it never saw (the share of raters giving 4 or 5) from 30 references, by both routes; the numbers
go into ``results.json`` as ``new_scale``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEMO_CONFIG = REPO_CONFIGS / "synthetic" / "demo.yaml"


def main(args: argparse.Namespace) -> int:
    from orderlearn.config import load_config
    from orderlearn.runs.launch import run_config

    run_config(DEMO_CONFIG, args.override, resume=False, overwrite=args.overwrite)
    add_new_scale_line(Path(load_config(DEMO_CONFIG, list(args.override)).output_dir))
    return 0


def add_new_scale_line(run: Path) -> None:
    """Append the new-scale line to ``RUN/report.md`` and ``new_scale`` to ``RUN/results.json``."""
    import json

    from orderlearn.files import atomic_write_json, atomic_write_text
    from orderlearn.runs.new_scale_line import new_scale_line, new_scale_results

    found = new_scale_results(run)
    if found is None:
        return
    line = new_scale_line(found)
    report = run / "report.md"
    atomic_write_text(report, report.read_text() + "\n" + line + "\n")
    results = json.loads((run / "results.json").read_text())
    atomic_write_json(run / "results.json", {**results, "new_scale": found}, default=float)
    print(line)
