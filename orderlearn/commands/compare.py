"""``orderlearn compare RUN_DIR ... --out DIR [--with-table CSV]``: one direct-vs-order-learned
table over trained runs (fold mean ± std).

The table itself (grouping runs into methods, aggregation, the files and plots it writes) is
library code in :mod:`orderlearn.report.tables`; this command runs it and prints the markdown.
"""
from __future__ import annotations

import argparse


def main(args: argparse.Namespace) -> int:
    from orderlearn.report.tables import compare_runs

    result = compare_runs(args.runs, args.out, args.with_table)
    print(result["markdown"])
    print(f"wrote compare.md, compare.csv, compare.json and {len(result['plots'])} plots into {args.out}")
    return 0
