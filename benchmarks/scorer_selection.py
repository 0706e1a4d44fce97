"""Scoring variants chosen on validation, for finished runs: does a validation-selected scorer
close the gap between the order-learned and the direct route?

    python -m benchmarks.scorer_selection runs/scut_siamese_inbatch_mobilenetv2_partial_cpu/fold{1..5}
    python -m benchmarks.scorer_selection --select val_mae runs/aaf_rapl_mobilenetv2_partial_cpu

For each run: the full-bank factorial of ``orderlearn active`` (grid vs exact BT, hard vs soft
labels, the configured vs the validation-fitted link, one vs both presentation orders; the run's
comparator, checkpoint and bank), each variant's validation PC (validation × bank comparisons:
faces carved from the training files) and, for the variant with the best validation PC, its test
PC next to the run's own order-learned and direct PCs. The fitted link is fitted on the same
validation comparisons, so its validation figure is in-sample; the selected variant's test figures
are not. Beauty selects on validation PC (the default), ages on validation MAE (``--select val_mae``);
the gap to the direct route is given in the selected metric. Prints a markdown table, one row per
run, and the mean over runs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from orderlearn.commands.active_evidence import load_evidence
from orderlearn.commands.active_variants import SELECTION_METRICS, scorer_variants, selected_on_validation
from orderlearn.report.markdown import markdown_table
from orderlearn.report.metrics import extra_metric_names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--select", choices=sorted(SELECTION_METRICS), default="val_pc",
                        help="the validation metric the variant is chosen on (default: val_pc)")
    args = parser.parse_args()
    metric = args.select.removeprefix("val_")
    better = SELECTION_METRICS[args.select]  # +1: higher is better, -1: lower
    rows = []
    for run in args.runs:
        results = json.loads((run / "results.json").read_text())
        direct = results.get("direct", {})
        variants = scorer_variants(load_evidence(run))
        chosen = selected_on_validation(variants, args.select)
        own = next((v for v in variants if v["run_setting"] == "yes"), None)
        rows.append({
            "run": str(run), f"direct_{metric}": direct.get(metric, float("nan")),
            f"order_learned_{metric}": results["order_learned"][metric],
            f"run_setting_val_{metric}": own[args.select] if own else float("nan"),
            "selected": f"{chosen['scorer']}, {chosen['labels']}, {chosen['link']} link, {chosen['orders']} order(s)",
            f"selected_val_{metric}": chosen[args.select], "selected_test_pc": chosen["pc"], "selected_test_mae": chosen["mae"],
            **{f"selected_test_{key}": chosen[key] for key in extra_metric_names(chosen)},
            f"selected_minus_direct_{metric}": chosen[metric] - direct.get(metric, float("nan")),
        })
        print(f"{run}: selected {rows[-1]['selected']} (val {metric} {chosen[args.select]:.4f}): test PC {chosen['pc']:.4f}, "
              f"MAE {chosen['mae']:.4f}", flush=True)
    shown = [{k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows]
    print()
    print(markdown_table(shown, list(rows[0])))
    for key in (f"direct_{metric}", f"order_learned_{metric}", "selected_test_pc", "selected_test_mae"):
        values = np.array([row[key] for row in rows])
        print(f"{key}: mean {values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else float('nan'):.4f}")
    behind = sum(better * row[f"selected_minus_direct_{metric}"] < 0 for row in rows)
    print(f"selected order-learned behind direct ({metric}) on {behind} of {len(rows)} runs")

if __name__ == "__main__":
    main()
