"""Self-calibration: a foreign bank's link, positions and range fitted on its references alone.

A run's link and reference positions are fitted on validation × bank, in the units of the run's
training scores (a tie width of 0.2 on 1–5). References on another scale (a company's 1–10
ratings, another rater population) have no validation images on that scale, but they know each
other's scores: every reference is compared with every other one (references × references,
each reference's pair with itself left out), and the same fits as
:func:`~orderlearn.bank.calibration.calibrate` run on those comparisons, so the link and the
positions come out in the new scale's units. What is fitted depends on how many references
there are (R):

- always: the scorer's range ``[low, high]``: the references' lowest and highest score widened
  by one mean gap ``(max − min)/(R − 1)`` on each side (a face may sit a little beyond the
  extreme references; with R references that is about one gap); a grid scorer's ``step`` is
  scaled with the range, so the grid has as many points as the run's;
- R < :data:`MIN_FIT_LINK` (10): nothing else is fitted. The run's link is rescaled by the ratio
  of the two scales' spreads (the references' standard deviation over the run's bank's): slope ÷
  ratio, tie width × ratio; the references sit at their known scores; the run's interval scale
  (a unitless factor on the posterior std) is kept;
- R ≥ 10: the link (slope and tie width, starting from the rescaled one) on the R·(R − 1)
  ordered reference pairs, and the interval scale on the references' leave-one-out scores
  (each reference scored against the others);
- R ≥ :data:`MIN_FIT_POSITIONS` (20): also each reference's position, from its answers against
  the other references (at least 19), with one alternation with the link, as on validation;
- R ≥ 10, last: an output map (:func:`scorers.monotone_map.choose_map`). Where the comparator is
  unsure, Bradley–Terry pulls a score towards the middle of the references, and with a foreign
  bank no validation set can tell by how much. The references' leave-one-out scores can: a map
  from them to the known scores, identity, linear or isotonic, is chosen by a second
  leave-one-out over the references (identity on a tie; a flat or decreasing map is never a
  candidate: it would score every face alike), and every score is passed through it.
  The direct route's map is fitted the same way on the same references (``runs.new_scale``), so
  the two routes are re-anchored alike. The leave-one-out scores are out of sample for the
  comparisons, not for the link and positions (fitted on all R): the map sees slightly
  optimistic scores, which makes it, if anything, too timid.

Affine invariance: references scored a·s + b (a > 0) give a link, positions, range and grid
that are the same affine transform of those of scores s, so every score is a·ŝ + b (the
property test). A reversed scale (a < 0) is not supported: the link's slope is positive by
construction (FIRST means "higher on the scale"); negate such scores first.

The recipe it starts from is never changed: a new :class:`ScoringRecipe` is returned.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

import scorers
from scorers.intervals import interval_scale
from scorers.monotone_map import choose_map
from scorers.references import calibrate as calibrate_scorer

from orderlearn.bank.route import BankRoute
from orderlearn.bank.scoring_recipe import ScoringRecipe, link_dict
from orderlearn.errors import DataError

MIN_FIT_LINK = 10
MIN_FIT_POSITIONS = 20


def reference_range(scores: torch.Tensor) -> tuple[float, float]:
    """The scorer's range on the references' scale: their extremes widened by one mean gap each side."""
    low, high = float(scores.min()), float(scores.max())
    gap = (high - low) / max(len(scores) - 1, 1)
    return low - gap, high + gap


def spread_ratio(new_scores: torch.Tensor, run_scores: torch.Tensor) -> float:
    """How many new-scale units one run-scale unit is: the ratio of the scores' standard deviations."""
    run_spread = float(run_scores.double().std()) if len(run_scores) > 1 else 0.0
    new_spread = float(new_scores.double().std())
    if run_spread <= 0 or new_spread <= 0:
        raise DataError("the references or the run's bank have no spread of scores: no scale to map")
    return new_spread / run_spread


def rescaled_recipe(recipe: ScoringRecipe, new_scores: torch.Tensor, run_scores: torch.Tensor) -> ScoringRecipe:
    """The fallback for few references: the run's recipe moved to the references' range, its link
    rescaled by :func:`spread_ratio`, its reference positions dropped (they were the run's bank's)."""
    ratio = spread_ratio(new_scores, run_scores)
    link = recipe.make_scorer().link
    low, high = reference_range(new_scores)
    args = dict(recipe.scorer_args)
    if "step" in args:  # a grid's spacing is in score units: the same number of grid points
        args["step"] = float(args["step"]) * (high - low) / (recipe.high - recipe.low)
    return dataclasses.replace(recipe, scorer_args=args, low=low, high=high, reference_positions=None, output_map=None,
                               link=link_dict(scorers.Link(slope=link.slope / ratio, tie_width=link.tie_width * ratio)),
                               link_source="rescaled")


def self_calibrate(route: BankRoute, run_scores: torch.Tensor) -> tuple[ScoringRecipe, dict[str, Any]]:
    """The recipe for ``route``'s bank (a foreign one) fitted on references × references, as the
    module docstring says; ``run_scores``: the run's own bank's scores (the old scale's spread).
    Returns the new recipe and what was fitted (``references``, ``range``, ``spread_ratio``,
    ``fitted``: the names of what was fitted, ``link``, ``reference_positions``...)."""
    scores = route.bank.scores
    count = len(scores)
    if count < 2:
        raise DataError(f"{count} reference(s): a new scale needs at least 2")
    recipe = rescaled_recipe(route.recipe, scores, run_scores)
    report: dict[str, Any] = {"references": count, "range": [recipe.low, recipe.high],
                              "spread_ratio": spread_ratio(scores, run_scores), "fitted": ["range"],
                              "link": dict(recipe.link or {})}
    if count < MIN_FIT_LINK:
        return recipe, report
    route = route.with_recipe(dataclasses.replace(recipe, budget=None))
    probs = route.comparisons(route.bank.samples, "references", full_bank=True).for_scoring.double()
    others = ~torch.eye(count, dtype=torch.bool)
    scorer = recipe.make_scorer()
    positions = count >= MIN_FIT_POSITIONS
    fitted = calibrate_scorer(probs, scores, scores, scorer.link, fit_link=True, fit_positions=positions,
                              soft=scorer.soft, low=recipe.low, high=recipe.high, mask=others)
    recipe = dataclasses.replace(recipe, link=link_dict(fitted.link), link_source="references")
    report["fitted"].append("link")
    report["link"] = link_dict(fitted.link)
    if fitted.positions is not None:
        recipe = dataclasses.replace(recipe, reference_positions=fitted.positions.tolist())
        report["fitted"].append("reference_positions")
        report["reference_positions"] = {"mean_abs_shift": float((fitted.positions - scores).abs().mean())}
    leave_one_out = recipe.make_scorer().score(probs, recipe.reference_scores(scores), others)
    if leave_one_out.std is not None:
        recipe = dataclasses.replace(recipe, interval_scale=interval_scale(leave_one_out, scores))
        report["fitted"].append("interval_scale")
    report["leave_one_out_mae"] = float((leave_one_out.value - scores).abs().mean())
    output_map = choose_map(leave_one_out.value, scores, kinds=("identity", "linear", "isotonic"), increasing=True)
    report["output_map"] = {"kind": output_map.kind, "leave_one_out_mae": output_map.leave_one_out_mae}
    if output_map.kind != "identity":
        recipe = dataclasses.replace(recipe, output_map=output_map.to_dict())
        report["fitted"].append("output_map")
    return recipe, report
