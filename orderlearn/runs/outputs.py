"""What a finished run leaves for people and for other commands: ``scores.csv`` (and
``val_scores.csv``, the same columns for the validation images), ``results.json``,
``report.md`` (the direct-vs-order-learned table, and with ``bank.from`` the draws from
another dataset) and ``scatter.png``."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

import scorers

from orderlearn.report.foreign_bank_table import foreign_bank_markdown
from orderlearn.report.markdown import markdown_table
from orderlearn.report.metrics import extra_metric_names
from orderlearn.report.plots import scatter_plot
from orderlearn.report.scores_csv import FUSED  # the fused route's column: one name, read and written
from orderlearn.files import atomic_write_json, atomic_write_text
from orderlearn.types import ScoredImage

SCORE_COLUMNS = ["path", "true_score", "score", "std", "lower95", "upper95", "direct_score"]
VAL_SCORES_FILE = "val_scores.csv"  # the validation images, scored by both routes as the test images were


def write_run_outputs(out: Path, name: str, method: str, test: Sequence[ScoredImage], scores: scorers.Scores,
                      direct: Optional[torch.Tensor], results: dict[str, Any],
                      fused: Optional[torch.Tensor] = None) -> str:
    """Write the four files into ``out``; returns the report's markdown (``fused``: the fused
    route's test scores, ``scorer.direct_prior``)."""
    write_scores_csv(out / "scores.csv", test, scores, direct, fused)
    atomic_write_json(out / "results.json", results, default=float)
    rows = [{"method": f"{method} + {results['scorer']['scorer']}", "route": "order-learned", **results["order_learned"]}]
    if direct is not None:
        rows.insert(0, {"method": f"{method} ({results['direct_how']})", "route": "direct", **results["direct"]})
    if fused is not None:
        chosen = results["fused_route"]["chosen_on_validation"]
        rows.append({"method": f"{method} + {results['scorer']['scorer']}, direct score as prior", "route": "fused",
                     **results["fused"]})
        rows = [{**row, "chosen on validation": "yes" if row["route"].replace("-", "_") == chosen else ""}
                if row["route"] != "direct" else {**row, "chosen on validation": ""} for row in rows]
    extras = extra_metric_names(*rows)
    table = markdown_table([{**{k: "-" for k in extras}, **row} for row in rows],
                           ["method", "route", "pc", "mae", "rmse", "spearman", *extras, "n"]
                           + (["chosen on validation"] if fused is not None else []))
    cm = results["comparator_metrics"]
    agreement = cm.get("forward_reverse_agreement", math.nan)
    report = (f"# {name}\n\n{table}\n\ncomparator accuracy on test x bank pairs: {cm['accuracy']:.4f}; "
              f"per class: {cm['per_class_accuracy']}; forward/reverse agreement: {agreement:.4f}\n")
    if "foreign_bank" in results:  # bank.from: the draws from another dataset, under the run's own table
        report += foreign_bank_markdown(results["foreign_bank"])
    atomic_write_text(out / "report.md", report)
    series = {"order-learned": scores.value.tolist()}
    if direct is not None:
        series = {"direct": direct.tolist(), **series}
    if fused is not None:
        series["fused"] = fused.tolist()
    scatter_plot(out / "scatter.png", [s.score for s in test], series, title=name)
    return report


def write_scores_csv(path: Path, samples: Sequence[ScoredImage], scores: scorers.Scores,
                     direct: Optional[torch.Tensor] = None, fused: Optional[torch.Tensor] = None) -> Path:
    """One row per image: path, true score (empty when unknown), score, std, 95% interval, direct,
    and the fused route's score where there is one (a ``fused_score`` column only then)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(SCORE_COLUMNS + ([FUSED] if fused is not None else []))
    for i, sample in enumerate(samples):
        writer.writerow([
            str(sample.path), "" if math.isnan(sample.score) else f"{sample.score:.6f}", f"{float(scores.value[i]):.6f}",
            _cell(scores.std, i), _cell(scores.lower, i), _cell(scores.upper, i), _cell(direct, i),
        ] + ([_cell(fused, i)] if fused is not None else []))
    return atomic_write_text(path, buffer.getvalue())


def _cell(values: Optional[torch.Tensor], i: int) -> str:
    return "" if values is None else f"{float(values[i]):.6f}"
