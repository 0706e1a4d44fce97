"""What a run fits on validation × bank, each step returning a new :class:`ScoringRecipe`.

:func:`fit_views` fits each checkpoint's comparator view (a regressor's link; a comparator has
nothing to fit) and, when the view has a link of its own and none was configured, scores under
it. :func:`calibrate` fits the scorer's link, the references' positions and the interval scale.
Both compare the validation images with the bank through the :class:`~.route.BankRoute` the test
images go through, and neither changes the recipe they start from.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import torch

from scorers.intervals import interval_scale
from scorers.references import calibrate as calibrate_scorer

from orderlearn.bank.route import BankRoute, Comparisons
from orderlearn.bank.scoring_recipe import ScoringRecipe, link_dict
from orderlearn.types import ScoredImage


def fit_views(route: BankRoute, samples: Sequence[ScoredImage], margin: float) -> ScoringRecipe:
    """Fit each checkpoint's view on ``samples`` × bank (true scores known): the route's recipe
    with every view's state and, where it applies, the first view's own link."""
    recipe = route.recipe
    states = []
    truth = torch.tensor([s.score for s in samples], dtype=torch.float64)
    for _, view in route.views():
        view.fit_view(route.embeddings(view, samples, "features validation"), truth, route.bank_embeddings(view),
                      route.bank.scores, margin)
        states.append(view.view_state())
        natural = view.natural_link() if not states[:-1] else None
        if natural is not None and recipe.link_source == "default":  # score under the view's own link
            recipe = dataclasses.replace(recipe, link=link_dict(natural), link_source="comparator")
    return dataclasses.replace(recipe, view_states=states)


def calibrate(route: BankRoute, samples: Sequence[ScoredImage], link: bool, intervals: bool,
              references: bool = False, comparisons: Optional[Comparisons] = None) -> tuple[ScoringRecipe, dict[str, Any]]:
    """Fit the scorer's link, the references' positions and/or the interval scale on ``samples`` ×
    bank comparisons (in that order: each uses what the previous fitted); the calibrated recipe
    and what changed (the report ``results.json`` draws on). ``comparisons``: ``samples`` × the
    whole bank when the caller already has them (they depend on the route's weights and views,
    not on the link or positions fitted here).

    Link and positions: :func:`scorers.references.calibrate` (one alternation when both).
    """
    recipe = route.recipe
    if not (link or intervals or references):
        return recipe, {}
    truth = torch.tensor([s.score for s in samples], dtype=torch.float64)
    bank_scores = route.bank.scores
    val = comparisons if comparisons is not None else route.comparisons(samples, "validation", full_bank=True)  # every validation x bank pair
    report: dict[str, Any] = {}
    if link or references:
        scorer = recipe.make_scorer()
        before = scorer.link
        fitted = calibrate_scorer(val.for_scoring.double(), truth, bank_scores, before, fit_link=link,
                                  fit_positions=references, soft=scorer.soft, low=recipe.low, high=recipe.high)
        if link:
            recipe = dataclasses.replace(recipe, link=link_dict(fitted.link), link_source="calibrated")
            report["link"] = {**link_dict(fitted.link), "before": link_dict(before)}
        if fitted.positions is not None:
            recipe = dataclasses.replace(recipe, reference_positions=fitted.positions.tolist())
            shift = (fitted.positions - bank_scores.to(fitted.positions)).abs()
            report["reference_positions"] = {"mean_abs_shift": float(shift.mean()), "max_abs_shift": float(shift.max())}
    if intervals:  # the scale: from the very procedure the test images get (under a budget too)
        if recipe.budget is not None:
            val = route.with_recipe(recipe).comparisons(samples, "validation")
        raw = recipe.make_scorer().score(val.for_scoring.double(), recipe.reference_scores(bank_scores), val.mask)
        recipe = dataclasses.replace(recipe, interval_scale=interval_scale(raw, truth))
        report["std_scale"] = recipe.interval_scale
    return recipe, report
