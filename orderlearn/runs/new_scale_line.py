"""The demo's new-scale line: a finished run scored on a scale it never saw, from 30 references.

The new scale is the share of the raters who gave a face 4 or 5, in percent (the synthetic
SCUT layout, like SCUT-FBP5500, keeps every face's rating distribution): neither route was
trained on it. Thirty references are drawn from the run's training images with a seed, scored
on that scale; the test images are scored against them by both routes
(:func:`orderlearn.runs.new_scale.score_on_new_scale`): the order-learned one self-calibrated on
the references, the direct one mapped onto the scale by a monotone fit on the same references.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional

from orderlearn.bank.references import ReferenceBank
from orderlearn.data.splits import load_test, load_training
from orderlearn.report.metrics import score_metrics
from orderlearn.runs.loaded import LoadedRun
from orderlearn.runs.new_scale import score_on_new_scale
from orderlearn.types import ScoredImage

REFERENCES, SEED = 30, 0


def top_two_share(sample: ScoredImage) -> Optional[float]:
    """The share (percent) of a face's raters who gave it 4 or 5; None without its rating counts."""
    counts = sample.rating_counts
    if not counts or len(counts) != 5:
        return None
    return 100.0 * (counts[3] + counts[4]) / sum(counts)


def on_share_scale(samples: list[ScoredImage]) -> list[ScoredImage]:
    return [ScoredImage(path=s.path, score=share) for s in samples if (share := top_two_share(s)) is not None]


def new_scale_results(run: Path, count: int = REFERENCES, seed: int = SEED) -> Optional[dict[str, Any]]:
    """Both routes' metrics on the share scale (None when the data keep no rating distributions)."""
    loaded = LoadedRun.from_run(run)
    train, test = on_share_scale(load_training(loaded.config.data).train), on_share_scale(load_test(loaded.config.data))
    if len(train) < count or not test:
        return None
    references = ReferenceBank(sorted(random.Random(seed).sample(train, count), key=lambda s: s.score))
    new = score_on_new_scale(loaded, references, test, "test")
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
