"""Metrics: PC / MAE / RMSE / Spearman (and CS) for scores, classification accuracy / macro F1,
and comparator diagnostics. How they are shown is :mod:`.markdown` and :mod:`.plots`.

Comparator diagnostics are computed on the test × bank comparisons the scorer used, with
labels from the true scores: accuracy, per-class accuracy, confusion matrix, and
forward/reverse agreement (does comparing (ref, test) give the label-reversed answer?).
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from scipy import stats

from orderlearn.types import labels_from_delta, swap_first_second
from orderlearn.types import PairLabel


# metrics only some runs record: CS(t) (ages), and accuracy / macro-F1 of a task a method also
# classifies (gender, beauty level)
EXTRA_METRIC = re.compile(r"^(cs[0-9.]+|[a-z][a-z_]*_(accuracy|macro_f1))$")


def extra_metric_names(*names: Iterable[str]) -> list[str]:
    """The optional metrics among ``names`` (metric dictionaries or key lists), CS first, in a fixed order."""
    found = {key for keys in names for key in keys if EXTRA_METRIC.match(key)}
    return sorted(found, key=lambda m: (not m.startswith("cs"), m))


def cs_key(within: float) -> str:
    """The metric name of CS(``within``): ``cs5`` for 5, ``cs2.5`` for 2.5."""
    return f"cs{within:g}"


def score_metrics(predicted: Sequence[float], truth: Sequence[float], cs_thresholds: Sequence[float] = ()) -> dict[str, float]:
    """Pearson correlation (PC), MAE, RMSE and Spearman's ρ of predicted against true scores, and
    for each ``t`` of ``cs_thresholds`` the cumulative score CS(t) (``cs<t>``: the share of images
    with ``|predicted − true| ≤ t``; age estimation reports CS(5))."""
    p, t = np.asarray(predicted, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if p.shape != t.shape or p.size == 0:
        raise ValueError(f"predicted {p.shape} and true {t.shape} scores must be equal, non-empty shapes")
    constant = p.std() == 0 or t.std() == 0
    return {
        "pc": float("nan") if constant else float(stats.pearsonr(p, t)[0]),
        "mae": float(np.abs(p - t).mean()),
        "rmse": float(np.sqrt(((p - t) ** 2).mean())),
        "spearman": float("nan") if constant else float(stats.spearmanr(p, t)[0]),
        "n": int(p.size),
        **{cs_key(within): float((np.abs(p - t) <= within).mean()) for within in cs_thresholds},
    }


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Accuracy and macro F1 (the paper's ACC and F1 score); targets < 0 are ignored.

    Macro F1 averages ``2TP / (2TP + FP + FN)`` over the classes present in the targets or
    the predictions (scikit-learn's convention).
    """
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"logits must be [N, K] and targets [N], got {tuple(logits.shape)} and {tuple(targets.shape)}")
    valid = targets >= 0
    if not bool(valid.any()):
        raise ValueError("classification_metrics: no target with a known class (all < 0)")
    pred, true = logits[valid].argmax(dim=1), targets[valid].long()
    f1s = []
    for k in torch.unique(torch.cat([pred, true])).tolist():
        tp = ((pred == k) & (true == k)).sum().item()
        fp = ((pred == k) & (true != k)).sum().item()
        fn = ((pred != k) & (true == k)).sum().item()
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": (pred == true).float().mean().item(), "macro_f1": sum(f1s) / len(f1s)}


def comparator_metrics(
    probs: torch.Tensor,
    test_scores: torch.Tensor,
    ref_scores: torch.Tensor,
    margin: float,
    probs_reverse: Optional[torch.Tensor] = None,
    asked: Optional[torch.Tensor] = None,
) -> dict[str, object]:
    """Diagnostics of comparisons ``probs[N, R, K]`` (test first) against the true labels
    (only the pairs marked in ``asked`` [N, R] when a budget left the others unasked)."""
    k = probs.shape[-1]
    truth = torch.from_numpy(labels_from_delta((test_scores[:, None] - ref_scores[None, :]).numpy(), margin))
    predicted = probs.argmax(-1)
    mask = truth < k  # a two-class comparator is judged on the pairs that are not SIMILAR
    if asked is not None:
        mask = mask & asked.cpu()
    truth_m, pred_m = truth[mask], predicted[mask]
    names = [PairLabel(i).name for i in range(k)]
    confusion = torch.zeros(k, k, dtype=torch.long)
    confusion.index_put_((truth_m, pred_m), torch.ones_like(truth_m), accumulate=True)
    per_class = {names[c]: (float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else math.nan) for c in range(k)}
    result: dict[str, object] = {
        "accuracy": float((truth_m == pred_m).float().mean()),
        "per_class_accuracy": per_class,
        "confusion": {"rows_true_cols_predicted": names, "matrix": confusion.tolist()},
        "pairs": int(mask.sum()),
    }
    if probs_reverse is not None:
        reverse_as_forward = swap_first_second(probs_reverse).argmax(-1)
        result["forward_reverse_agreement"] = float((reverse_as_forward == predicted).float().mean())
    return result
