"""The report of ``orderlearn active``: ``active.md``, ``active.csv`` (one row per budget),
``variants.csv`` (full-bank contrasts), ``active.json`` (everything), ``active_scores.csv`` (per
test image: true score, full-bank score, and each budget's score and comparisons) and
``active.png`` (PC and MAE against comparisons per image, log-2 axis, full-bank line; with
``--direct-prior`` the fused route's line and the direct route's).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

from orderlearn.commands.active_evidence import METRIC_COLUMNS, PC_TOLERANCE, TARGET_BUDGET
from orderlearn.files import atomic_write_json
from orderlearn.report.markdown import markdown_table
from orderlearn.report.metrics import extra_metric_names
from orderlearn.types import ScoredImage

ACTIVE_COLUMNS = ["budget", "comparisons_mean", "comparisons_max", "calls_max", "pc", "pc_gap", "mae", "rmse",
                  "spearman", "coverage95", "mean_std", "std_scale", "coverage95_scaled", "random_pc", "random_mae",
                  "comparator_seconds", "total_seconds"]
FUSED_COLUMNS = ["fused_pc", "fused_mae", "fused_comparisons_mean"]  # --direct-prior
VARIANT_COLUMNS = ["scorer", "labels", "link", "orders", "pc", "mae", "rmse", "spearman", "coverage95", "mean_std",
                   "std_scale", "coverage95_scaled", "val_pc", "val_mae", "run_setting"]


def write_report(report: dict[str, Any], out: Path, test: Sequence[ScoredImage]) -> None:
    """active.md / .csv / .json, variants.csv, active_scores.csv and active.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = report["active"] + [report["full_bank"]]
    _write_csv(out / "active.csv", rows, active_columns(report))
    extra = extra_metric_names(*report["variants"])  # CS(t) where the study asks for it
    after_mae = VARIANT_COLUMNS.index("mae") + 1  # CS(t) beside the MAE it refines
    _write_csv(out / "variants.csv", report["variants"], VARIANT_COLUMNS[:after_mae] + extra + VARIANT_COLUMNS[after_mae:])
    per_image = report["per_image"]
    with (out / "active_scores.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        keys = list(per_image)
        writer.writerow(["path", "true_score", *keys])
        for i, sample in enumerate(test):
            writer.writerow([str(sample.path), f"{sample.score:.6f}",
                             *[f"{per_image[k][i]:.6f}" if k.startswith(("full", "active")) else per_image[k][i] for k in keys]])
    atomic_write_json(out / "active.json", {k: v for k, v in report.items() if k != "per_image"}, default=float)
    (out / "active.md").write_text(markdown_report(report))
    plot(out / "active.png", report)


def active_columns(report: dict[str, Any]) -> list[str]:
    """The per-budget columns: with ``--direct-prior`` the fused route's after the plain route's."""
    if not report.get("fused"):
        return ACTIVE_COLUMNS
    at = ACTIVE_COLUMNS.index("random_mae") + 1
    return ACTIVE_COLUMNS[:at] + FUSED_COLUMNS + ACTIVE_COLUMNS[at:]


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def markdown_report(report: dict[str, Any]) -> str:
    target = report["target"]
    verdict = (f"met: {target['smallest_budget_within']} comparisons per image are within {PC_TOLERANCE} PC of the full bank"
               if target["met"] else f"not met: no budget ≤ {TARGET_BUDGET} is within {PC_TOLERANCE} PC of the full bank")
    link = report["link"]
    fused = report.get("fused")
    run = report["run_order_learned"]
    run_line = ("the run's own order-learned result (results.json): " + ", ".join(f"{k} {run[k]:.4f}" for k in METRIC_COLUMNS)
                if run else "the run has no results.json")
    return "\n".join([
        f"# Active reference selection: {report['run']}",
        "",
        f"Comparator `{report['comparator']}`, scorer `{report['scorer']}` {report['scorer_args']}, "
        f"{'both orders' if report['both_orders'] else 'one order'}, {link['used']} link "
        f"(default k {link['default']['slope']:.3f} τ {link['default']['tie_width']:.3f}; calibrated on validation × bank "
        f"k {link['calibrated']['slope']:.3f} τ {link['calibrated']['tie_width']:.3f}; scored with "
        f"k {link['scored_with']['slope']:.3f} τ {link['scored_with']['tie_width']:.3f}), references at their "
        f"{report['references']}; {report['test_images']} test images, "
        f"bank of {report['bank_size']}; batches of {report['active_batch']}, init {report['init']}.",
        "",
        "Comparisons per image = references asked (comparator calls = that × orders). pc_gap = full-bank PC − PC. "
        "coverage95: share of true scores in the raw posterior 95% interval; std_scale / coverage95_scaled: the "
        "std scaled so that the same procedure's intervals cover 95% of the validation images (conformal), and the "
        "test coverage then. random_*: the same number of random references.",
        "",
        markdown_table([{"fused_comparisons_mean": report["bank_size"], **row} if row["budget"] == "all" and fused
                        else row for row in report["active"] + [report["full_bank"]]], active_columns(report)),
        "",
        *([f"Fused route (`--direct-prior`): the same scorer and budget with each face's direct score as its prior "
           f"(std {fused['prior_std']:.4f}, the direct head's validation RMSE), the active selection aimed at it. "
           f"The direct route alone: PC {fused['direct']['pc']:.4f}, MAE {fused['direct']['mae']:.4f}.", ""]
          if fused else []),
        f"Target (within {PC_TOLERANCE} PC of the full bank at ≤ {TARGET_BUDGET} comparisons): {verdict}.",
        "",
        f"Full bank ({run_line}, 95% coverage {report['run_interval_coverage']}; equal to the `run_setting` row when "
        f"ensemble_last = 1, here {report['ensemble_last']}):",
        "",
        markdown_table(report["variants"], VARIANT_COLUMNS),
        "",
    ])


def plot(path: Path, report: dict[str, Any]) -> Path:
    """PC and MAE against comparisons per image (log-2 axis), active and random, full-bank line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, full = report["active"], report["full_bank"]
    x = [row["budget"] for row in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "pc", "PC"), (axes[1], "mae", "MAE")):
        ax.plot(x, [row[key] for row in rows], "o-", label="active selection")
        ax.plot(x, [row[f"random_{key}"] for row in rows], "s--", alpha=0.7, label="random references")
        if report.get("fused"):
            ax.plot(x, [row[f"fused_{key}"] for row in rows], "^-", label="fused (direct score as prior)")
            ax.axhline(report["fused"]["direct"][key], color="grey", ls=":", lw=1, label="direct")
        ax.axhline(full[key], color="black", lw=1, label=f"full bank ({report['bank_size']})")
        if key == "pc":
            ax.axhspan(full[key] - PC_TOLERANCE, full[key] + PC_TOLERANCE, color="grey", alpha=0.2,
                       label=f"±{PC_TOLERANCE}")
        if x:
            ax.set_xscale("log", base=2)
            ax.set_xticks(x, [str(v) for v in x])
        ax.set(xlabel="comparisons per test image", ylabel=label, title=f"{label} vs comparisons")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['comparator']} + {report['scorer']}: active reference selection")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
