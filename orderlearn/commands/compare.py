"""``orderlearn compare RUN_DIR ... --out DIR [--with-table CSV]``: one direct-vs-order-learned
table over trained runs (fold mean ± std).

``--new-scale PROTOCOL [--sizes N ...] [--draws K] [--seed S]`` makes the other table of a study:
the same comparator runs scored on a scale (or a population) they never saw, from N references,
by both routes (:mod:`orderlearn.runs.new_scale_study`, written by
:mod:`orderlearn.report.new_scale_table`).

The tables themselves (grouping runs into methods, aggregation, the files and plots they write)
are library code in :mod:`orderlearn.report`; this command runs them and prints the markdown.
"""
from __future__ import annotations

import argparse
import shlex


def main(args: argparse.Namespace) -> int:
    if args.new_scale is not None:
        return new_scale(args)
    from orderlearn.report.tables import compare_runs

    result = compare_runs(args.runs, args.out, args.with_table)
    print(result["markdown"])
    print(f"wrote compare.md, compare.csv, compare.json and {len(result['plots'])} plots into {args.out}")
    return 0


def new_scale(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from orderlearn.errors import ConfigError
    from orderlearn.report.new_scale_table import write_new_scale_table
    from orderlearn.runs.new_scale_study import check_study, study_run

    if args.with_table is not None:
        raise ConfigError("--with-table: the new-scale table is made from its runs alone; leave out --with-table")
    sizes = sorted(set(args.sizes))
    check_study(args.runs, args.new_scale)
    rows = []
    with tqdm(total=len(args.runs) * len(sizes) * args.draws, desc="new scale", unit="draw") as bar:
        def progress(text: str) -> None:
            bar.set_postfix_str(text)
            bar.update(1)

        for run in args.runs:
            rows += study_run(run, args.new_scale, sizes, args.draws, args.seed, progress)
    command = shlex.join(["orderlearn", "compare", *map(str, args.runs), "--new-scale", args.new_scale,
                          "--sizes", *map(str, sizes), "--draws", str(args.draws), "--seed", str(args.seed), "--out", str(args.out)])
    result = write_new_scale_table(rows, args.out, command)
    print(result["markdown"])
    print(f"wrote new_scale.md, new_scale.csv, new_scale_draws.csv, new_scale.json and new_scale.png into {args.out}")
    return 0
