"""``orderlearn evaluate --scores CSV [--out DIR]``: the metrics of a scores CSV.

Reads a CSV with ``true_score`` and ``score`` columns (and ``direct_score`` when a run wrote
one) through the one reader of that format (:mod:`orderlearn.report.scores_csv`) and writes
PC, MAE, RMSE and Spearman per route as ``metrics.json`` and ``metrics.md``.
"""
from __future__ import annotations

import argparse


def main(args: argparse.Namespace) -> int:
    from orderlearn.files import atomic_write_json
    from orderlearn.report.markdown import markdown_table
    from orderlearn.report.metrics import score_metrics
    from orderlearn.report.scores_csv import read_scores_csv

    table = read_scores_csv(args.scores, require_truth=True)
    truth = table.truth.tolist()
    results = {"order_learned": score_metrics(table.scores.tolist(), truth)}
    if table.direct is not None:
        results["direct"] = score_metrics(table.direct.tolist(), truth)
    out = args.out or args.scores.parent
    atomic_write_json(out / "metrics.json", results, default=float)
    markdown = markdown_table([{"route": k, **v} for k, v in results.items()], ["route", "pc", "mae", "rmse", "spearman", "n"])
    (out / "metrics.md").write_text(markdown + "\n")
    print(markdown)
    return 0
