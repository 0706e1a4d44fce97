"""Bank and margin chosen on validation, for a finished run: which reference bank (score-bin
width, references per bin) and, for a regressor, which pair margin θ of its comparator view give
the best validation error through the bank? The test files are not read.

    python -m benchmarks.bank_selection runs/aaf_rapl_mobilenetv2_partial_cpu \\
        --bin-widths 1 2 4 --per-bin 2 5 10 --margins 2 3 5

For each setting it runs the run's own bank phase (:func:`orderlearn.bank.phase.bank_phase`) with
the run's checkpoints: selects the bank from the training files (seeded), fits the comparator view on
validation × bank (a regressor's link, with margin θ), calibrates the scorer's link / reference
positions when the run's config does, and scores the validation faces against the bank. The view
and link are fitted on the same validation comparisons they are then scored on (two or three
parameters, as in the run). A comparator's margin is its training label rule and is not varied
here. Prints a markdown table (best validation MAE first) and the chosen setting; with ``--test``,
also the test metrics of the chosen setting alone (the test files read once, after the choice).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path


from comparators.base import Comparator
from orderlearn.bank.phase import BankPhase, bank_phase
from orderlearn.config import ExperimentConfig
from orderlearn.data.splits import load_test, load_training
from orderlearn.report.markdown import markdown_table
from orderlearn.report.metrics import score_metrics
from orderlearn.runs.loaded import LoadedRun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--bin-widths", type=float, nargs="+", required=True)
    parser.add_argument("--per-bin", type=int, nargs="+", required=True)
    parser.add_argument("--margins", type=float, nargs="+", help="a regressor view's θ (default: the run's)")
    parser.add_argument("--test", action="store_true", help="score the test files with the chosen setting")
    args = parser.parse_args()
    loaded = LoadedRun.from_run(args.run)
    config = loaded.config
    splits = load_training(config.data)
    truth = [s.score for s in splits.val]
    is_comparator = isinstance(loaded.model, Comparator)
    margins = [config.pairs.margin] if is_comparator or not args.margins else args.margins
    rows = []

    def fitted(bin_width: float, per_bin: int, margin: float) -> BankPhase:
        """The run's bank phase with this bank and margin (no interval scale: not compared here)."""
        return bank_phase(loaded.model, with_setting(config, bin_width, per_bin, margin), splits, loaded.source,
                          loaded.recipe.checkpoints, loaded.route.features, loaded.accelerator)

    for bin_width, per_bin, margin in itertools.product(args.bin_widths, args.per_bin, margins):
        phase = fitted(bin_width, per_bin, margin)
        bank = phase.bank
        _, scores = phase.score(splits.val, "validation")
        metrics = score_metrics(scores.value.tolist(), truth, config.cs_thresholds)
        rows.append({"bin_width": bin_width, "per_bin": per_bin, "margin": margin, "references": len(bank),
                     **{k: v for k, v in metrics.items() if k != "n"},
                     "run_setting": "yes" if (bin_width, per_bin, margin) == (config.bank.bin_width, config.bank.per_bin,
                                                                             config.pairs.margin) else ""})
        print(f"bin {bin_width:g}, {per_bin}/bin, θ {margin:g}: {len(bank)} references, validation MAE "
              f"{metrics['mae']:.4f}, PC {metrics['pc']:.4f}", flush=True)
    rows.sort(key=lambda row: row["mae"])
    shown = [{k: (f"{v:.4f}" if isinstance(v, float) and k not in ("bin_width", "margin") else v) for k, v in row.items()}
             for row in rows]
    print()
    print(markdown_table(shown, list(rows[0])))
    best = rows[0]
    print(f"\nchosen on validation MAE: bank.bin_width={best['bin_width']:g} bank.per_bin={best['per_bin']} "
          f"pairs.margin={best['margin']:g}")
    if args.test:
        test = load_test(config.data)
        _, scores = fitted(best["bin_width"], best["per_bin"], best["margin"]).score(test)
        metrics = score_metrics(scores.value.tolist(), [s.score for s in test], config.cs_thresholds)
        print("test, chosen setting: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "n")
              + f" ({metrics['n']} faces)")


def with_setting(config: ExperimentConfig, bin_width: float, per_bin: int, margin: float) -> ExperimentConfig:
    """``config`` with this bank and pair margin, and without the interval calibration."""
    return dataclasses.replace(config, bank=dataclasses.replace(config.bank, bin_width=bin_width, per_bin=per_bin),
                               pairs=dataclasses.replace(config.pairs, margin=margin),
                               scorer=dataclasses.replace(config.scorer, calibrate_intervals=False))


if __name__ == "__main__":
    main()
