"""One direct-vs-order-learned table over trained runs (the work behind ``orderlearn compare``,
whose command is :mod:`orderlearn.commands.compare`).

Each run folder (the ``output_dir`` of ``orderlearn run``, comparator or regressor) holds
``config.yaml``, ``results.json`` and ``scores.csv``. A run has up to three routes:

* **direct**: a regressor's own score (``task: regressor``), or, for a comparator run, the
  regression head fitted on its embeddings (``direct_baseline``);
* **order-learned**: the scores of the BT scorer against the reference bank (a regressor
  enters it as the degenerate :class:`~comparators.regression_comparator.RegressionComparator`);
* **fused** (comparator runs with ``scorer.direct_prior``): the same bank route with each face's
  direct score as its prior (:mod:`orderlearn.runs.fused`).

Grouping (the *method* of a run): the config ``name`` with a trailing ``-foldK`` / ``_foldK``
removed, so ``dld-mobilenetv2-scut`` run as ``-o data.split=fold2`` and a config named
``dld-mobilenetv2-scut-fold2`` both count as fold 2 of ``dld-mobilenetv2-scut``. The fold is
the config's ``data.split`` (what was actually run); a name suffix that contradicts it, or two
runs of one method on the same fold, are errors naming the folders. Runs of one method must
agree on everything that defines the experiment except the fold: the task, the dataset
(``data.kind``, ``data.root``, the score range, and the generator's size for synthetic data),
the whole ``model`` section (name and every option) and the whole ``scorer`` section; the
first key that differs is an error naming both folders, because averaging them would
silently mix experiments (a SCUT run and a synthetic run, two backbones).

Aggregation: per method and route, the mean over folds of each metric (PC, MAE, RMSE,
Spearman) and its sample standard deviation across folds (``ddof = 1``: the spread of a
fold's result, the usual "5-fold mean ± std"); the table says which folds were present, and
is a "5-fold" result only when fold1..fold5 all are. One fold: the mean alone, std NaN.

Per-fold metrics are those the run recorded in ``results.json``; they are recomputed from
``scores.csv`` and must agree (to the CSV's 6 decimals), so a stale or foreign CSV cannot
slip into the plots. The scatter plots pool the test images of all folds of a method (each
image is tested in exactly one fold), so their panel titles give pooled, not mean, metrics.

Outputs in ``--out``: ``compare.md``, ``compare.csv``, ``compare.json``, ``pc.png`` (PC per
method and route, mean ± std) and ``scatter_<method>.png`` (predicted vs true, both routes).

Growing a table (``--with-table earlier/compare.csv``): a table's methods are often run on
different days or machines, and a run folder is not kept forever. The rows of an earlier
``compare.csv`` whose method is not among the given runs are kept as they were written (same
position; the markdown names them and the file they came from); a method that has runs here is
recomputed from them and replaces its earlier rows. Only rows this command wrote can be kept:
a file without its columns, or with a cell that is not a number where one belongs, is an error
naming the file and line. Scatter plots exist only for the recomputed methods (they need the
per-image scores).
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from orderlearn.errors import DataError
from orderlearn.files import atomic_write_json
from orderlearn.user_files import not_text, why_not_a_file
from orderlearn.report.markdown import markdown_table
from orderlearn.report.metrics import EXTRA_METRIC, extra_metric_names
from orderlearn.report.plots import pc_plot, scatter_plot
from orderlearn.report.run_folders import METRICS, ROUTES, Route, Run, group_runs, read_run

ALL_FOLDS = tuple(f"fold{k}" for k in range(1, 6))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof = 1) of per-fold values; std is NaN for a single fold."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), (float(a.std(ddof=1)) if a.size > 1 else math.nan)


def folds_label(folds: Sequence[str]) -> str:
    if set(folds) == set(ALL_FOLDS) and len(folds) == len(ALL_FOLDS):
        return "5 (all)"
    if all(f in ALL_FOLDS for f in folds):
        return f"{len(folds)} of 5 ({', '.join(folds)})"
    return f"{len(folds)} ({', '.join(folds)})"


def shared_command(commands: Sequence[str]) -> str:
    """The one command behind a method's folds: the folds' own command when they all ran the same
    one, else their common form with each fold's number as ``K`` (``-o data.split=foldK -o
    output_dir=runs/m/foldK``) when that is all that differs, else "" (shown as "-"): a row over
    five folds must not name the command of one of them."""
    if len(set(commands)) == 1:
        return commands[0]
    general = {re.sub(r"fold\d+", "foldK", c) for c in commands}
    return general.pop() if len(general) == 1 and all(commands) else ""


def route_description(run: Run, route: Route) -> str:
    if run.model == "blend":
        return f"its runs' {route.label} scores, weighted on validation"
    if route.key == "direct":
        return "regressor output" if run.task == "regressor" else "embedding head"
    if route.key == "fused":
        return f"comparator + {run.scorer} on bank, direct score as prior"
    via = "regressor as comparator" if run.task == "regressor" else "comparator"
    return f"{via} + {run.scorer} on bank"


def summarise(groups: dict[str, list[Run]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(table rows, per-method details): one row per method and route."""
    rows, details = [], []
    for method, members in groups.items():
        folds = [r.fold for r in members]
        detail: dict[str, Any] = {
            "method": method, "model": members[0].model, "task": members[0].task, "folds": folds,
            "complete": sorted(folds) == list(ALL_FOLDS),
            "runs": [{"run_dir": str(r.path), "fold": r.fold, **r.metrics} for r in members], "routes": {},
        }
        for route in ROUTES:
            having = [r for r in members if route.key in r.metrics]
            if not having:
                continue
            if len(having) != len(members):
                raise DataError(f"method {method!r}: the {route.label} route is missing in "
                                + ", ".join(str(r.path) for r in members if route.key not in r.metrics))
            row: dict[str, Any] = {
                "method": method, "model": members[0].model, "route": route.label,
                "how": route_description(members[0], route), "folds": folds_label(folds), "n_folds": len(folds),
                "n_images": int(sum(r.truth.size for r in having)),
                "trainable": members[0].trainable, "pairs": members[0].pairs,
                "minutes_per_fold": float(np.mean([r.minutes for r in members])),
                "command": shared_command([r.command for r in members]),
            }
            summary = {}
            extras = [m for m in having[0].metrics[route.key] if EXTRA_METRIC.match(m)
                      and all(m in r.metrics[route.key] for r in having)]
            for m in (*METRICS, *extras):
                values = [r.metrics[route.key][m] for r in having]
                mean, std = mean_std(values)
                row[f"{m}_mean"], row[f"{m}_std"] = mean, std
                summary[m] = {"mean": mean, "std": std, "values": values}
            detail["routes"][route.key] = summary
            rows.append(row)
        details.append(detail)
    return rows, details


def _cell(mean: float, std: float) -> str:
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def extra_metrics(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The optional metrics (CS(t), classification accuracy and macro-F1) some row has: CS first."""
    return extra_metric_names(key.removesuffix("_mean") for r in rows for key in r if key.endswith("_mean"))


def markdown_report(rows: Sequence[dict[str, Any]]) -> str:
    metrics = [*METRICS, *extra_metrics(rows)]
    shown = [{**r, **{m: (_cell(r[f"{m}_mean"], r[f"{m}_std"]) if f"{m}_mean" in r else "-") for m in metrics},
              "minutes": f"{r['minutes_per_fold']:.1f}", "command": f"`{r['command']}`" if r["command"] else "-"} for r in rows]
    table = markdown_table(shown, ["method", "model", "route", "how", "folds", *metrics, "n_images", "trainable", "pairs",
                                   "minutes", "command"])
    return ("# Direct vs order-learned\n\n"
            "Mean ± sample std (ddof = 1) over the folds listed; a single fold shows its value alone.\n\n"
            + table + "\n")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "method"


TEXT_COLUMNS = ("method", "model", "route", "how", "folds", "trainable", "pairs", "command")
INTEGER_COLUMNS = ("n_folds", "n_images")


def table_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    return (["method", "model", "route", "how", "folds", "n_folds", "n_images"]
            + [f"{m}_{s}" for m in (*METRICS, *extra_metrics(rows)) for s in ("mean", "std")]
            + ["trainable", "pairs", "minutes_per_fold", "command"])


def read_table(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``compare.csv`` this module wrote, numbers as numbers (an empty metric cell: no such key)."""
    path = Path(path)
    why = why_not_a_file(path)
    if why is not None:
        raise DataError(f"table {path} {why} (--with-table takes a compare.csv)")
    try:
        return _table_rows(path)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(not_text(path, exc)) from None


def _table_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        required = [c for c in table_columns([]) if c != "command"]  # tables written before commands were recorded lack it
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(f"{path}: not a compare.csv: missing column(s) {', '.join(missing)}")
        rows = []
        for line, raw in enumerate(reader, start=2):
            row: dict[str, Any] = {"command": ""}
            for column, cell in raw.items():
                if column is None or cell is None:
                    raise DataError(f"{path}:{line}: the row has {'more' if column is None else 'fewer'} cells than the header")
                if column in TEXT_COLUMNS:
                    row[column] = cell
                elif cell == "" and column.endswith(("_mean", "_std")):
                    continue  # a metric this row does not have (another row's extra metric)
                else:
                    try:
                        row[column] = int(cell) if column in INTEGER_COLUMNS else float(cell)
                    except ValueError:
                        raise DataError(f"{path}:{line}: column {column}: {cell!r} is not a number") from None
            rows.append(row)
    return rows


def merge_rows(earlier: Sequence[dict[str, Any]], fresh: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, kept methods): the earlier table with each recomputed method's rows put in place of
    its old ones (or appended when it is new), and the methods kept from the earlier table."""
    fresh_by_method: dict[str, list[dict[str, Any]]] = {}
    for row in fresh:
        fresh_by_method.setdefault(row["method"], []).append(row)
    merged, placed, kept = [], set(), []
    for row in earlier:
        method = row["method"]
        if method in fresh_by_method:
            if method not in placed:
                merged.extend(fresh_by_method[method])
                placed.add(method)
            continue
        if method not in kept:
            kept.append(method)
        merged.append(row)
    merged.extend(r for m, rs in fresh_by_method.items() if m not in placed for r in rs)
    return merged, kept


@dataclass
class Comparison:
    """The table over runs before anything is written: its rows, the per-method details, the
    runs grouped by method, and the methods kept from an earlier table."""

    rows: list[dict[str, Any]]
    details: list[dict[str, Any]]
    groups: dict[str, list[Run]]
    kept: list[str]


def compare_table(run_dirs: Sequence[Path], with_table: Optional[Path] = None) -> Comparison:
    """Read the runs and aggregate them by method (nothing is written); ``with_table``: an
    earlier ``compare.csv`` whose other methods' rows are kept."""
    if not run_dirs:
        raise DataError("compare needs at least one run folder")
    earlier = read_table(with_table) if with_table is not None else None  # a bad table fails before any run is read
    groups = group_runs([read_run(Path(p)) for p in run_dirs])
    rows, details = summarise(groups)
    kept: list[str] = []
    if earlier is not None:
        rows, kept = merge_rows(earlier, rows)
    return Comparison(rows, details, groups, kept)


def compare_runs(run_dirs: Sequence[Path], out: Path, with_table: Optional[Path] = None) -> dict[str, Any]:
    """The table of :func:`compare_table`, written (md/csv/json) with its plots into ``out``."""
    table = compare_table(run_dirs, with_table)
    rows, details, groups, kept = table.rows, table.details, table.groups, table.kept
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    markdown = markdown_report(rows)
    if kept:
        markdown += (f"\nKept from `{with_table}` (their runs are not in this comparison): "
                     + ", ".join(kept) + ".\n")
    (out / "compare.md").write_text(markdown)
    columns = table_columns(rows)
    with (out / "compare.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    plots = {"pc": str(pc_plot(out / "pc.png", rows))}
    for method, members in groups.items():
        series = {route.label: np.concatenate([r.predictions[route.key] for r in members])
                  for route in ROUTES if all(route.key in r.predictions for r in members)}
        truth = np.concatenate([r.truth for r in members])
        title = f"{method} ({', '.join(r.fold for r in members)} pooled)"
        plots[method] = str(scatter_plot(out / f"scatter_{slug(method)}.png", truth.tolist(),
                                         {k: v.tolist() for k, v in series.items()}, title=title))
    payload = {"rows": rows, "methods": details, "plots": plots,
               "kept": {"table": str(with_table), "methods": kept} if kept else None}
    atomic_write_json(out / "compare.json", payload, default=float)
    return {**payload, "markdown": markdown}

