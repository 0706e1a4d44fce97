"""``orderlearn active``: how few comparisons per test image does a trained comparator need?

Scoring against the full bank costs R comparator calls per test image (R ≈ 350; one LMM
forward pass each for LLaVA). :class:`scorers.ActiveScorer` asks only the references that pin
the score down. This module measures that trade-off on a finished run with the *real*
comparator: the test images and the bank are embedded once, and every comparison the active
scorer requests is answered by the comparator's ``compare`` on those embeddings, in batches,
and counted per test image (comparisons are the cost; precomputed probabilities would hide
it). Any run works: a comparator run, or a regressor run through its comparator view; a run
with a checkpoint ensemble averages its checkpoints' answers as the run does.

For each budget (comparisons per image) it reports PC, MAE, RMSE, Spearman and the 95%
interval coverage of the active scores — raw, and with the posterior std scaled so that the same
procedure (the active scorer at that budget, run on the validation images) covers 95% of the
validation scores (:mod:`scorers.intervals`) — next to the same number of *random* references
(read from the full-bank answers, which are the same comparator's answers), and the full bank.
The base scorer is the run's own (its name, arguments, both-orders setting and, when the run
calibrated it, the link fitted on validation × bank comparisons), so the full-bank row is the
run's own order-learned result.

With ``--direct-prior`` every row also gives the fused route (:mod:`orderlearn.runs.fused`): the
same base scorer and budget with each face's direct score as its prior, the active selection aimed
at it; the report gives the direct route beside it.

On the full bank it also contrasts, in one factorial table: grid (eq. 13) vs exact BT, hard vs
soft labels, the default vs the calibrated link (:meth:`scorers.Link.fit` on the comparator's
probabilities for validation × bank pairs, true δ known), one vs both presentation orders,
each with its 95% interval coverage (raw and validation-scaled).

The run is loaded as a :class:`~orderlearn.runs.loaded.LoadedRun` and its images compared
through its own bank route (:mod:`.active_evidence`); the factorial is :mod:`.active_variants`;
the report, written into ``--out`` (default ``RUN/active``), is :mod:`.active_report`.

Target of the issue: within ``PC_TOLERANCE`` (0.002) of the full bank at ``TARGET_BUDGET``
(32) comparisons or fewer; the report says whether it holds.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import torch

import scorers
from scorers.references import calibrate as calibrate_scorer

from orderlearn.bank.comparisons import ComparatorCalls
from orderlearn.bank.scoring_recipe import link_dict
from orderlearn.commands.active_evidence import (PC_TOLERANCE, TARGET_BUDGET, ActiveEvidence, FullBank, Truths,
                                                 full_bank, load_evidence, random_mask, summary, truths_of)
from orderlearn.commands.active_report import markdown_report, write_report
from orderlearn.commands.active_variants import check_selection_metric, fitted_links, selected_on_validation, variant_rows
from orderlearn.errors import DataError
from orderlearn.report.metrics import score_metrics
from orderlearn.runs.fused import prior_width
from orderlearn.runs.new_scale import direct_scores

if TYPE_CHECKING:  # pragma: no cover
    import argparse

DEFAULT_BUDGETS = (4, 8, 16, 32, 64)
LINK_CHOICES = ("run", "default", "calibrated")
REFERENCE_CHOICES = ("run", "known", "calibrated")


def active_row(evidence: ActiveEvidence, base: scorers.Scorer, budget: int, batch: int, init: str, both: bool,
               test: FullBank, truths: Truths, seed: int) -> tuple[dict[str, Any], scorers.ActiveResult]:
    """One budget: the active scorer on the test images (every comparison a comparator call), the
    same on the validation images (to fit the interval scale), and random references."""
    accelerator, orders = evidence.accelerator, 2 if both else 1
    num_classes = test.forward.shape[-1]
    refs = truths.scoring_refs.to(accelerator.device)
    active = scorers.ActiveScorer(base, budget=budget, batch=min(batch, budget), init=init)
    calls = ComparatorCalls(evidence.members["test"], accelerator, both)
    started = time.perf_counter()
    result = active.score(calls, refs, len(evidence.test), num_classes)
    seconds = time.perf_counter() - started
    used = result.num_comparisons.cpu()
    if not torch.equal(calls.calls, used * orders):
        raise RuntimeError(f"budget {budget}: comparator calls {calls.calls.tolist()[:5]}... disagree with the "
                           f"active scorer's count {used.tolist()[:5]}...")
    val_calls = ComparatorCalls(evidence.members["val"], accelerator, both)
    val_result = active.score(val_calls, refs, len(evidence.val), num_classes)
    n, r = len(evidence.test), len(truths.refs)
    random = base.score(test.probs(both), truths.scoring_refs, random_mask(n, r, budget, seed + budget))
    random_metrics = score_metrics(random.value.tolist(), truths.test.tolist())
    row = {"budget": budget, "comparisons_mean": float(used.double().mean()), "comparisons_max": int(used.max()),
           "calls_max": int(calls.calls.max()),
           **summary(result.scores, truths.test, val_result.scores, truths.val, truths.low, truths.high),
           "comparator_seconds": calls.seconds, "total_seconds": seconds,
           "random_pc": random_metrics["pc"], "random_mae": random_metrics["mae"]}
    return row, result


def direct_prior_of(evidence: ActiveEvidence, truths: Truths) -> tuple[scorers.GaussianPrior, dict[str, Any]]:
    """The fused route's prior for the test images (:mod:`orderlearn.runs.fused`): each face's direct
    score from the run's direct head, the width the head's RMSE on the validation images; and what
    the report says of it (the width, the direct route's test metrics)."""
    loaded = evidence.loaded
    direct_val, direct_test = direct_scores(loaded, evidence.val, "validation"), direct_scores(loaded, evidence.test, "test")
    if direct_val is None or direct_test is None:
        raise DataError(f"--direct-prior: {evidence.path} has no direct route to take the prior from (a comparator "
                        "run needs its direct head, direct_baseline: true; a bundle carries none)")
    width = prior_width(direct_val - truths.val.to(direct_val), truths.low, truths.high)
    return (scorers.GaussianPrior(direct_test, width),
            {"prior_std": width, "direct": score_metrics(direct_test.tolist(), truths.test.tolist())})


def fused_columns(scores: scorers.Scores, truths: Truths, comparisons: Optional[torch.Tensor] = None) -> dict[str, Any]:
    """A row's fused-route cells: its PC and MAE (and comparisons per image under a budget)."""
    metrics = score_metrics(scores.value.tolist(), truths.test.tolist())
    cells = {"fused_pc": metrics["pc"], "fused_mae": metrics["mae"]}
    if comparisons is not None:
        cells["fused_comparisons_mean"] = float(comparisons.double().mean())
    return cells


def evaluate_active(evidence: ActiveEvidence, budgets: Sequence[int] = DEFAULT_BUDGETS, batch: int = 4,
                    init: str = "median", scorer_name: Optional[str] = None, link: str = "run",
                    seed: int = 0, references: str = "run", select: str = "val_pc",
                    direct_prior: bool = False) -> dict[str, Any]:
    """Everything ``orderlearn active`` reports, as a dictionary (see the module doc).

    ``link`` chooses the base scorer's link: ``"run"`` (calibrated iff the run calibrated it),
    ``"default"`` (the configured one) or ``"calibrated"``. It matters for the selection, not only
    for the scores: the link says how much one answer narrows the posterior, so an over-confident
    link makes the active scorer stop exploring too early. ``references`` likewise: ``"run"``
    (the fitted positions iff the run fitted them), ``"known"`` (the bank's scores) or
    ``"calibrated"`` (positions fitted on validation × bank, :mod:`scorers.references`); the full
    bank, the active rows and the random rows all score against the same places. ``select`` is the
    validation metric the reported best variant is chosen on (:func:`selected_on_validation`).
    ``direct_prior``: every row also scores the fused route (the same base scorer and budget, each
    face's direct score as its prior, the active selection aimed at it): ``fused_pc``, ``fused_mae``.
    """
    check_selection_metric(select)
    budgets = sorted(set(int(b) for b in budgets))
    if not budgets or budgets[0] < 1:
        raise ValueError(f"budgets must be positive integers, got {list(budgets)}")
    if link not in LINK_CHOICES:
        raise ValueError(f"link must be one of {LINK_CHOICES}, got {link!r}")
    if references not in REFERENCE_CHOICES:
        raise ValueError(f"references must be one of {REFERENCE_CHOICES}, got {references!r}")
    config, accelerator = evidence.config, evidence.accelerator
    both = config.scorer.both_orders
    name = scorer_name or config.scorer.name
    truths = truths_of(evidence)
    n, r = len(evidence.test), len(evidence.bank)

    test = full_bank(evidence, "test")
    val = full_bank(evidence, "val")
    default_link, calibrated = fitted_links(evidence, val, truths)
    base = evidence.recipe.make_scorer(name, link=default_link)
    val_probs = val.probs(config.scorer.both_orders)
    use_calibrated = link == "calibrated" or (link == "run" and config.scorer.calibrate_link)
    use_positions = references == "calibrated" or (references == "run" and config.scorer.calibrate_references)
    if use_calibrated or use_positions:  # exactly as the run calibrates (scorers.references.calibrate)
        fitted = calibrate_scorer(val_probs, truths.val, truths.refs, default_link, fit_link=use_calibrated,
                                  fit_positions=use_positions, soft=base.soft, low=truths.low, high=truths.high)
        base = evidence.recipe.make_scorer(name, link=fitted.link)
        truths.places = fitted.positions
    full_scores = base.score(test.probs(both), truths.scoring_refs)
    orders = 2 if both else 1
    full_row = {"budget": "all", "comparisons_mean": float(r), "comparisons_max": r, "calls_max": orders * r,
                **summary(full_scores, truths.test, base.score(val.probs(both), truths.scoring_refs), truths.val,
                          truths.low, truths.high),
                "comparator_seconds": test.seconds, "random_pc": math.nan, "random_mae": math.nan}

    prior, fused = direct_prior_of(evidence, truths) if direct_prior else (None, None)
    if prior is not None:
        full_row.update(fused_columns(base.score(test.probs(both), truths.scoring_refs, prior=prior), truths))
    rows, per_image = [], {"full": full_scores.value.tolist()}
    for budget in budgets:
        if budget >= r:
            continue  # every reference: that is the full-bank row
        row, result = active_row(evidence, base, budget, batch, init, both, test, truths, seed)
        if prior is not None:
            active = scorers.ActiveScorer(base, budget=budget, batch=min(batch, budget), init=init)
            calls = ComparatorCalls(evidence.members["test"], accelerator, both)
            with_prior = active.score(calls, truths.scoring_refs.to(accelerator.device), n, test.forward.shape[-1],
                                      prior=prior)
            row.update(fused_columns(with_prior.scores, truths, with_prior.num_comparisons))
        rows.append(row)
        per_image[f"active_{budget}"] = result.scores.value.cpu().tolist()
        per_image[f"n_{budget}"] = result.num_comparisons.cpu().tolist()
    for row in rows + [full_row]:
        row["pc_gap"] = full_row["pc"] - row["pc"]
    # met when the active PC is at most PC_TOLERANCE below the full bank's (above it counts too)
    within = [row["budget"] for row in rows if row["budget"] <= TARGET_BUDGET and row["pc_gap"] <= PC_TOLERANCE]
    run_results = evidence.loaded.results or {}
    return {
        "run": str(evidence.path), "comparator": config.model.name, "scorer": name,
        "scorer_args": {k: v for k, v in config.scorer.args.items()} if name == config.scorer.name else {},
        "both_orders": both, "active_batch": batch, "init": init, "bank_size": r, "test_images": n,
        "validation_images": len(evidence.val), "num_classes": test.forward.shape[-1],
        "ensemble_last": config.ensemble_last, "processes": accelerator.num_processes,
        "link": {"default": link_dict(default_link), "calibrated": link_dict(calibrated),
                 "used": "calibrated" if use_calibrated else "default",
                 "scored_with": link_dict(base.link)},
        "references": "fitted positions" if use_positions else "known scores",
        "active": rows, "full_bank": full_row,
        "target": {"tolerance_pc": PC_TOLERANCE, "max_budget": TARGET_BUDGET,
                   "met": bool(within), "smallest_budget_within": min(within) if within else None},
        "variants": (variants := variant_rows(evidence, test, val, truths, default_link, calibrated)),
        "validation_selected": {**selected_on_validation(variants, select), "selected_on": select},
        "fused": fused,
        "run_order_learned": run_results.get("order_learned"),
        "run_interval_coverage": run_results.get("interval_coverage"),
        "per_image": per_image,
    }


def run_active(run: Path, budgets: Sequence[int] = DEFAULT_BUDGETS, out: Optional[Path] = None, batch: int = 4,
               init: str = "median", scorer_name: Optional[str] = None, link: str = "run",
               references: str = "run", select: str = "val_pc", direct_prior: bool = False) -> dict[str, Any]:
    """``orderlearn active``: load, evaluate, and (main process) write the report; returns it."""
    check_selection_metric(select)  # before the run is loaded
    evidence = load_evidence(Path(run))
    report = evaluate_active(evidence, budgets, batch, init, scorer_name, link, references=references, select=select,
                             direct_prior=direct_prior)
    if evidence.accelerator.is_main_process:
        target = Path(out) if out else Path(run) / "active"
        write_report(report, target, evidence.test)
        print("\n" + markdown_report(report))
    evidence.accelerator.wait_for_everyone()
    return report


def main(args: "argparse.Namespace") -> int:
    """The command: the report into ``--out`` (default RUN/active), printed as markdown."""
    from orderlearn.commands.score import check_scorer_option

    check_scorer_option(args.scorer)
    run_active(args.run, args.budgets, args.out, args.batch, scorer_name=args.scorer, link=args.link,
               references=args.references, select=args.select, direct_prior=args.direct_prior)
    return 0
