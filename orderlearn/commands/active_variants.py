"""The full-bank factorial of ``orderlearn active``, and the variant chosen on validation.

On the full bank, one table contrasts grid (eq. 13) vs exact BT, hard vs soft labels, the
default vs the calibrated link (:meth:`scorers.Link.fit` on the comparator's probabilities for
validation × bank pairs, true δ known) and one vs both presentation orders, each with its 95%
interval coverage (raw and validation-scaled). ``benchmarks/scorer_selection.py`` picks the
variant with the best validation figure from it.
"""
from __future__ import annotations

import itertools
import time
from typing import Any, Sequence

import scorers

from orderlearn.commands.active_evidence import ActiveEvidence, FullBank, Truths, full_bank, summary, truths_of
from orderlearn.report.metrics import extra_metric_names, score_metrics

SELECTION_METRICS = {"val_pc": 1.0, "val_mae": -1.0}  # the sign that makes larger better


def variant_rows(evidence: ActiveEvidence, test: FullBank, val: FullBank, truths: Truths,
                 default_link: scorers.Link, calibrated: scorers.Link) -> list[dict[str, Any]]:
    """The full-bank factorial: scorer × labels × link × orders, each with metrics and coverage
    (raw, and with the std scaled on the same scorer's validation scores)."""
    config = evidence.config
    run_scorer = config.scorer
    grid_step = run_scorer.args.get("step", 1e-3) if run_scorer.name == "bt-grid" else 1e-3
    run_soft = bool(run_scorer.args.get("soft", False))
    rows = []
    for name, soft, link_name, both in itertools.product(("bt-grid", "bt-exact"), (False, True),
                                                         ("default", "calibrated"), (False, True)):
        link = calibrated if link_name == "calibrated" else default_link
        extra = {"step": grid_step} if name == "bt-grid" else {}
        scorer = evidence.recipe.make_scorer(name, soft=soft, link=link, **extra)
        started = time.perf_counter()
        scores = scorer.score(test.probs(both), truths.refs)
        seconds = time.perf_counter() - started
        val_scores = scorer.score(val.probs(both), truths.refs)
        is_run = (name == run_scorer.name and soft == run_soft and both == run_scorer.both_orders
                  and (link_name == "calibrated") == run_scorer.calibrate_link and not run_scorer.calibrate_references)
        val_metrics = score_metrics(val_scores.value.double().cpu().tolist(), truths.val.tolist())
        test_cs = score_metrics(scores.value.double().cpu().tolist(), truths.test.tolist(), config.cs_thresholds)
        rows.append({"scorer": name, "labels": "soft" if soft else "hard", "link": link_name,
                     "orders": "both" if both else "one",
                     **summary(scores, truths.test, val_scores, truths.val, truths.low, truths.high),
                     **{key: test_cs[key] for key in extra_metric_names(test_cs)},
                     "val_pc": val_metrics["pc"], "val_mae": val_metrics["mae"],
                     "seconds": seconds, "run_setting": "yes" if is_run else ""})
    return rows


def check_selection_metric(metric: str) -> None:
    if metric not in SELECTION_METRICS:
        raise ValueError(f"selection metric {metric!r}: expected one of {sorted(SELECTION_METRICS)}")


def selected_on_validation(rows: Sequence[dict[str, Any]], metric: str = "val_pc") -> dict[str, Any]:
    """The variant with the best validation ``metric`` (highest PC or lowest MAE; the run's own
    setting wins a tie). Beauty is judged by PC, ages by MAE, so each study selects on its own
    metric. The calibrated link is fitted on the same validation comparisons, so its validation
    figure is in-sample; the test figures of the chosen row are the honest ones."""
    check_selection_metric(metric)
    sign = SELECTION_METRICS[metric]
    return max(rows, key=lambda row: (sign * row[metric], row["run_setting"] == "yes"))


def fitted_links(evidence: ActiveEvidence, val: FullBank, truths: Truths) -> tuple[scorers.Link, scorers.Link]:
    """(the configured link, the link fitted on validation × bank): the latter on the
    probabilities the run scores with (both orders combined when the run combines them), as the
    pipeline fits it."""
    config, recipe = evidence.config, evidence.recipe
    configured = scorers.Link.from_config(config.scorer.args.get("link")) if recipe.link_source == "calibrated" else None
    default_link = recipe.make_scorer(config.scorer.name, link=configured).link
    delta = truths.val[:, None] - truths.refs[None, :]
    val_probs = val.probs(config.scorer.both_orders)
    return default_link, default_link.fit(delta.reshape(-1), val_probs.reshape(-1, val_probs.shape[-1]))


def scorer_variants(evidence: ActiveEvidence) -> list[dict[str, Any]]:
    """The full-bank factorial of :func:`variant_rows` alone (no active budgets)."""
    truths = truths_of(evidence)
    test, val = full_bank(evidence, "test"), full_bank(evidence, "val")
    return variant_rows(evidence, test, val, truths, *fitted_links(evidence, val, truths))
