"""``orderlearn predict PHOTO|DIR ... --model RUN_OR_BUNDLE``: the score of your own photos.

The scoring, the table and the files are library code in :mod:`orderlearn.runs.predictions`
(the same function :meth:`orderlearn.api.Model.predict` calls); this command runs it in a
working folder for the aligned crops, prints the table and writes what was asked for. Files that cannot be scored are listed with their reason while the rest are
scored; the command then exits non-zero.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import argparse


def main(args: "argparse.Namespace") -> int:
    """The command: print the table (and the pictures, CSV, JSON asked for); exit status 1 when a photo failed."""
    import sys
    import tempfile

    from orderlearn.commands.score import refuse_outputs_over_inputs
    from orderlearn.runs.loaded import LoadedRun
    from orderlearn.runs.predictions import format_table, predict, write_csv, write_json

    from orderlearn.bank.own_references import read_references

    refuse_outputs_over_inputs({"--csv": args.csv, "--json": args.json}, args.photos)
    references = read_references(args.references) if args.references else None
    model = LoadedRun.load(args.model)
    with tempfile.TemporaryDirectory(prefix="orderlearn-crops-") as work:
        result = predict(model, args.photos, Path(work), args.align, args.one_face, references=references)
        model = result.model or model
        if result.items:
            print(format_table(result.items))
        if args.plot and result.items:
            from orderlearn.report.decision_plots import decisions_for, plot_decisions

            decisions = decisions_for([Path(p.file).name for p in result.items], [s.path for s in result.scored],
                                      result.comparisons.for_scoring, result.scores, model.bank.scores)
            plot_decisions(args.plot, decisions, model.recipe, model.references.get)
            print(f"wrote {len(decisions)} pictures into {args.plot}")
    if args.csv:
        write_csv(args.csv, result.items)
    if args.json:
        write_json(args.json, result)
    for path, why in result.failed:
        print(f"error: not scored: {path}: {why}", file=sys.stderr)
    return 1 if result.failed else 0
