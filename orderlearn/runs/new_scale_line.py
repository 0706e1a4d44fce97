"""The demo's new-scale line: a finished run scored on a scale it never saw, from 30 references.

The new scale is the share of the raters who gave a face 4 or 5, in percent (the synthetic
SCUT layout, like SCUT-FBP5500, keeps every face's rating distribution): neither route was
trained on it. Thirty references are drawn from the run's training images with a seed, scored
on that scale (one draw of the ``share`` protocol of ``orderlearn compare --new-scale``); the
test images are scored against them by both routes
(:func:`orderlearn.runs.new_scale.score_on_new_scale`): the order-learned one self-calibrated on
the references, the direct one mapped onto the scale by a monotone fit on the same references.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from orderlearn.data.splits import load_test, load_training
from orderlearn.errors import DataError
from orderlearn.report.metrics import score_metrics
from orderlearn.runs.loaded import LoadedRun
from orderlearn.runs.new_scale import draw_references, score_on_new_scale
from orderlearn.runs.new_scale_study import protocol_data

REFERENCES, SEED = 30, 0


def new_scale_results(run: Path, count: int = REFERENCES, seed: int = SEED) -> Optional[dict[str, Any]]:
    """Both routes' metrics on the share scale: draw 0 of ``count`` references of the ``share``
    protocol (:mod:`orderlearn.runs.new_scale_study`); None when the data keep no rating
    distributions or too few training faces."""
    loaded = LoadedRun.from_run(run)
    reference_data, test_data = protocol_data(loaded.config.data, "share", run)
    try:
        train, test = load_training(reference_data).train, load_test(test_data)
    except DataError:  # no rating histograms: no share scale
        return None
    if len(train) < count or not test:
        return None
    new = score_on_new_scale(loaded, draw_references(train, count, seed, 0), test, "test")
    truth = [s.score for s in test]
    results: dict[str, Any] = {"scale": "share of raters giving 4 or 5 (%)", "references": count, "seed": seed,
                               "calibration": new.calibration}
    if new.order_learned is not None:
        results["order_learned"] = score_metrics(new.order_learned.value.tolist(), truth)
    if new.direct_mapped is not None:
        results["direct_mapped"] = score_metrics(new.direct_mapped.tolist(), truth)
    return results


def new_scale_line(results: dict[str, Any]) -> str:
    """One line for the report: PC and MAE of each route on the new scale."""
    parts = [f"{name} PC {results[key]['pc']:.3f}, MAE {results[key]['mae']:.1f}"
             for key, name in (("order_learned", "order-learned (self-calibrated)"),
                               ("direct_mapped", f"direct mapped ({results['calibration'].get('direct_map', {}).get('kind', '-')})"))
             if key in results]
    return (f"new scale ({results['scale']}, never trained on) from {results['references']} training references: "
            + "; ".join(parts))
