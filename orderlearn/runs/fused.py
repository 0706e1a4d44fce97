"""The fused route (``scorer.direct_prior: true``): the bank route with each face's direct score as its prior.

The two routes of a comparator run see the same embeddings and fail differently: the direct
head gives one calibrated opinion per face, the comparator's judgments against the bank refine
a score but start from nothing, which costs the most where comparisons are few (an active
budget of 8–32). The fused route scores each face by Bradley–Terry under a Gaussian prior
centred on its direct score (:class:`scorers.GaussianPrior`): few comparisons then correct the
regressor's opinion instead of replacing it, many comparisons outweigh it.

The prior's width is the direct route's error, measured where nothing is tested: the RMSE of the
direct head's scores on the validation images (the head was selected on their loss, so this
width is, if anything, a little narrow). With a budget, the active selection aims at the prior
and is run again for the fused route (its questions differ from the plain route's).

Chosen on validation, never on test: the validation images are scored by both bank routes
(the prior from their own direct scores), and ``chosen_on_validation`` names the better one by
the run's selection metric where it is a score metric (``val_pc``: PC; ``val_mae``: MAE) and by
MAE otherwise. The test scores of the fused route are reported as their own route either way
(``fused`` in results.json, ``fused_score`` in scores.csv), so a table shows what the choice
would have given. The calibrated interval scale and output map of the run's recipe apply
unchanged (they were fitted on the plain route).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

import scorers

from orderlearn.bank.route import BankRoute, Comparisons
from orderlearn.report.metrics import score_metrics
from orderlearn.types import ScoredImage

SELECTED_BY = {"val_pc": ("pc", max), "val_mae": ("mae", min)}


@dataclass(frozen=True)
class FusedRoute:
    """The fused route's test scores and what results.json says of it (``fused_route``)."""

    scores: scorers.Scores
    report: dict[str, Any]


def prior_width(errors: torch.Tensor, low: float, high: float) -> float:
    """The RMS of the direct route's out-of-sample ``errors`` (on validation, or the references'
    leave-one-out errors on a new scale), floored at 1e-6 of the score range (a direct route that
    fits them exactly still leaves the comparisons a say)."""
    rms = float(torch.as_tensor(errors, dtype=torch.float64).pow(2).mean().sqrt())
    return max(rms, 1e-6 * (high - low))


def fused_scores(route: BankRoute, samples: Sequence[ScoredImage], direct: torch.Tensor, width: float,
                 name: str, comparisons: Optional[Comparisons] = None) -> scorers.Scores:
    """``samples`` scored by the bank route under the prior N(direct, width²) per face.
    ``comparisons``: the plain route's comparisons of ``samples``, reused where they are the
    whole bank (under a budget the questions depend on the prior, so they are asked again)."""
    prior = scorers.GaussianPrior(direct.double(), width)
    if comparisons is None or route.recipe.budget is not None:
        comparisons = route.comparisons(samples, name, prior=prior)
    return route.score(comparisons, prior=prior)


def fused_route(route: BankRoute, val: Sequence[ScoredImage], test: Sequence[ScoredImage], direct_val: torch.Tensor,
                direct_test: torch.Tensor, select_metric: str, cs_thresholds: Sequence[float] = (),
                test_comparisons: Optional[Comparisons] = None, val_comparisons: Optional[Comparisons] = None) -> FusedRoute:
    """The fused route of a run (module docstring): its test scores and its report (the prior's
    width, validation metrics of both bank routes and of the direct route, the route chosen);
    ``test_comparisons`` / ``val_comparisons``: the plain route's, made earlier in the run (the
    bank phase's), reused where they are the whole bank."""
    recipe = route.recipe
    val_truth = torch.tensor([s.score for s in val], dtype=torch.float64)
    width = prior_width(direct_val.double() - val_truth, recipe.low, recipe.high)
    truth = val_truth.tolist()
    if val_comparisons is None or recipe.budget is not None:
        val_comparisons = route.comparisons(val, "validation")
    on_validation = {
        "order_learned": score_metrics(route.score(val_comparisons).value.tolist(), truth, cs_thresholds),
        "fused": score_metrics(fused_scores(route, val, direct_val, width, "validation (fused)", val_comparisons)
                               .value.tolist(), truth, cs_thresholds),
        "direct": score_metrics(direct_val.tolist(), truth, cs_thresholds),
    }
    metric, better = SELECTED_BY.get(select_metric, ("mae", min))
    chosen = better(("order_learned", "fused"), key=lambda r: on_validation[r][metric])
    scores = fused_scores(route, test, direct_test, width, "test (fused)", test_comparisons)
    report = {"prior_std": width, "prior_std_from": "direct route's validation RMSE", "budget": recipe.budget,
              "validation": on_validation, "chosen_on_validation": chosen, "chosen_by": f"validation {metric}"}
    return FusedRoute(scores, report)
