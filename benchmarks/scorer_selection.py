"""Scoring variants chosen on validation, for finished runs: does a validation-selected scorer
close the gap between the order-learned and the direct route?

    python -m benchmarks.scorer_selection runs/scut_siamese_inbatch_mobilenetv2_partial_cpu/fold{1..5}

For each run: the full-bank factorial of ``orderlearn active`` (grid vs exact BT, hard vs soft
labels, the configured vs the validation-fitted link, one vs both presentation orders; the run's
comparator, checkpoint and bank), each variant's validation PC (validation × bank comparisons:
faces carved from the training files) and, for the variant with the best validation PC, its test
PC next to the run's own order-learned and direct PCs. The fitted link is fitted on the same
validation comparisons, so its validation PC is in-sample; the selected variant's test PC is not.
Prints a markdown table, one row per run, and the mean over runs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from orderlearn.active_eval import load_run, scorer_variants, selected_on_validation
from orderlearn.evaluation import markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    rows = []
    for run in args.runs:
        results = json.loads((run / "results.json").read_text())
        variants = scorer_variants(load_run(run))
        chosen = selected_on_validation(variants)
        own = next((v for v in variants if v["run_setting"] == "yes"), None)
        rows.append({
            "run": str(run), "direct_pc": results.get("direct", {}).get("pc", float("nan")),
            "order_learned_pc": results["order_learned"]["pc"],
            "run_setting_val_pc": own["val_pc"] if own else float("nan"),
            "selected": f"{chosen['scorer']}, {chosen['labels']}, {chosen['link']} link, {chosen['orders']} order(s)",
            "selected_val_pc": chosen["val_pc"], "selected_test_pc": chosen["pc"], "selected_test_mae": chosen["mae"],
            "selected_minus_direct": chosen["pc"] - results.get("direct", {}).get("pc", float("nan")),
        })
        print(f"{run}: selected {rows[-1]['selected']} (val PC {chosen['val_pc']:.4f}): test PC {chosen['pc']:.4f}", flush=True)
    shown = [{k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows]
    print()
    print(markdown_table(shown, list(rows[0])))
    for key in ("direct_pc", "order_learned_pc", "selected_test_pc"):
        values = np.array([row[key] for row in rows])
        print(f"{key}: mean {values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else float('nan'):.4f}")
    behind = sum(row["selected_minus_direct"] < 0 for row in rows)
    print(f"selected order-learned behind direct on {behind} of {len(rows)} runs")


if __name__ == "__main__":
    main()
