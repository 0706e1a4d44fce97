"""A loaded run on a new scale: its bank replaced by the user's references, both routes scored.

:func:`with_references` gives the :class:`~orderlearn.runs.loaded.LoadedRun` whose route compares
with the user's references under a recipe self-calibrated on them
(:mod:`orderlearn.bank.self_calibration`); :func:`score_on_new_scale` scores samples by both
routes, the one function ``predict --references``, ``score --references``, the demo's new-scale
line and the protocols call:

- order-learned: the comparator against the new references (None for a regressor run, whose
  bank route compares its own score, in the run's units, with the references' known scores);
- direct: the run's direct score as it is (the run's units) and mapped onto the new scale by a
  monotone fit on the same references (:func:`scorers.monotone_map.choose_map`: linear or isotonic,
  chosen by leave-one-out on the references). A run folder has a direct route
  when its model is a regressor or its comparator's direct head was fitted (``direct/``); an
  exported bundle carries the bank route only;
- fused (a comparator with a direct route, from 10 references): the comparator against the new
  references with each face's mapped direct score as its prior (:func:`fused_on_new_scale`).

:func:`score_draws` scores samples against seeded draws of references from a pool, the loop of
``orderlearn compare --new-scale`` and of a run's ``bank.from``.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

import torch

import scorers
from comparators.base import Comparator
from comparators.direct_head import EmbeddingRegressor
from scorers.monotone_map import MonotoneMap, choose_map, leave_one_out_residuals

from orderlearn.bank.references import ReferenceBank
from orderlearn.bank.route import BankRoute, Comparisons
from orderlearn.bank.self_calibration import MIN_FIT_LINK, self_calibrate
from orderlearn.bank.comparisons import view_embeddings
from orderlearn.engine.checkpoints import CheckpointStore, load_weights
from orderlearn.errors import DataError
from orderlearn.runs.fused import fused_scores, prior_width
from orderlearn.runs.loaded import LoadedRun, ReferenceImages
from orderlearn.types import ScoredImage


def has_bank_route(loaded: LoadedRun) -> bool:
    """Whether the run's bank route judges the references' images (a comparator), not their scores."""
    return isinstance(loaded.model, Comparator)


def with_references(loaded: LoadedRun, references: ReferenceBank) -> tuple[LoadedRun, dict[str, Any]]:
    """``loaded`` with ``references`` as its bank, under the recipe self-calibrated on them, and
    what the calibration fitted. ``loaded`` itself is unchanged."""
    recipe = dataclasses.replace(loaded.recipe, reference_positions=None, output_map=None)
    route = BankRoute(loaded.model, recipe, references, loaded.source, loaded.route.features, loaded.accelerator,
                      loaded.config.train.eval_batch_size)
    calibrated, report = self_calibrate(route, loaded.bank.scores)
    moved = dataclasses.replace(loaded, bank=references, route=route.with_recipe(calibrated),
                                references=ReferenceImages(references))
    return moved, report


def direct_scores(loaded: LoadedRun, samples: Sequence[ScoredImage], name: str = "images") -> Optional[torch.Tensor]:
    """The run's direct scores of ``samples`` (float64 [N], the run's units), as the run computed its
    test set's: the validation-selected checkpoint, a regressor's own score or the comparator's
    direct head; None where the run has no direct route (a bundle, a comparator without ``direct/``).
    The model is left with the weights the bank route had loaded."""
    if loaded.is_bundle:
        return None
    store, head_store = CheckpointStore(loaded.source / loaded.config.task), CheckpointStore(loaded.source / "direct")
    comparator = isinstance(loaded.model, Comparator)
    try:
        best = store.best()
        head_best = head_store.best() if comparator else None
    except (OSError, KeyError, ValueError):
        return None
    model, accelerator = loaded.model, loaded.accelerator
    load_weights(model, best)
    try:
        model.to(accelerator.device).eval()
        view = model.comparator_view().to(accelerator.device)
        features = loaded.route.features(view, list(samples), f"features {name}")
        embeddings = view_embeddings(view, features, accelerator, loaded.config.train.eval_batch_size)
    finally:  # the model is the bank route's too: it gets the route's weights back
        loaded.route.restore_weights()
    if not comparator:
        return embeddings.reshape(-1).double()
    head = EmbeddingRegressor(embeddings.shape[-1])
    load_weights(head, head_best)
    head.to(accelerator.device).eval()
    data = loaded.config.data
    with torch.no_grad():  # each face on its own, as the run scored its test set (runs/direct.py)
        out = [head(embeddings[i:i + 1].to(accelerator.device)).score.reshape(-1) for i in range(len(embeddings))]
    return (torch.cat(out) if out else embeddings.new_zeros(0)).double().cpu().clamp(data.score_low, data.score_high)


@dataclass
class NewScaleScores:
    """Both routes' scores of some samples on the references' scale (see the module docstring)."""

    order_learned: Optional[scorers.Scores]  # None: a regressor run
    comparisons: Optional[Comparisons]  # the samples' comparisons with the references
    direct: Optional[torch.Tensor]  # the run's units
    direct_mapped: Optional[torch.Tensor]  # the new scale
    direct_map: Optional[MonotoneMap]
    calibration: dict[str, Any]
    loaded: LoadedRun  # the run with the new bank
    fused: Optional[scorers.Scores] = None  # the bank route with the mapped direct score as prior


def draw_references(pool: Sequence[ScoredImage], size: int, seed: int, draw: int) -> ReferenceBank:
    """Draw ``draw`` of ``size`` references from ``pool``: seeded by (seed, size, draw) alone, so a
    draw is the same whatever other sizes or draws are asked for (``orderlearn compare --new-scale``
    and a run's ``bank.from`` draw alike)."""
    rng = random.Random(f"new-scale:{seed}:{size}:{draw}")
    return ReferenceBank(sorted(rng.sample(list(pool), size), key=lambda s: (s.score, str(s.path))))


def route_values(new: "NewScaleScores") -> dict[str, list[float]]:
    """The scores of each route re-anchored on the references, by key (``order_learned``,
    ``direct_mapped``, ``fused``; those the run has)."""
    values = {"order_learned": new.order_learned.value if new.order_learned is not None else None,
              "direct_mapped": new.direct_mapped, "fused": new.fused.value if new.fused is not None else None}
    return {key: v.tolist() for key, v in values.items() if v is not None}


def score_draws(loaded: LoadedRun, pool: Sequence[ScoredImage], samples: Sequence[ScoredImage], size: int, draws: int,
                seed: int, name: str, say: Optional[Callable[[str], None]] = None,
                direct: Optional[torch.Tensor] = None) -> Iterator[tuple[int, "NewScaleScores"]]:
    """``samples`` scored against draws 0..``draws``−1 of ``size`` references from ``pool``
    (:func:`draw_references`), one (draw, scores) at a time; their direct scores are computed
    once (or given as ``direct``), as they do not depend on the references. ``say``: a line per draw."""
    if direct is None:
        direct = direct_scores(loaded, samples, name)
    for draw in range(draws):
        if say is not None:
            say(f"N={size}, draw {draw + 1}/{draws}")
        yield draw, score_on_new_scale(loaded, draw_references(pool, size, seed, draw), samples, name, direct=direct)


def score_on_new_scale(loaded: LoadedRun, references: ReferenceBank, samples: Sequence[ScoredImage],
                       name: str = "images", direct: Optional[torch.Tensor] = None) -> NewScaleScores:
    """``samples`` scored on the scale of ``references`` by both routes (module docstring); the
    references and samples are scored as given (align them first where the photos are).
    ``direct``: the samples' :func:`direct_scores`, when a caller scoring them against several
    draws of references has them already (they do not depend on the references)."""
    calibration: dict[str, Any] = {}
    order_learned, comparisons, moved = None, None, loaded
    if has_bank_route(loaded):
        moved, calibration = with_references(loaded, references)
        comparisons, order_learned = moved.score(samples, name)
    if direct is None:
        direct = direct_scores(loaded, samples, name)
    mapped, direct_map, fused = None, None, None
    if direct is not None:
        on_references = direct_scores(loaded, references.samples, "references")
        try:
            direct_map = choose_map(on_references, references.scores)
        except ValueError as exc:
            raise DataError(f"the direct route's map onto the references' scale: {exc}") from None
        mapped = direct_map(direct)
        calibration["direct_map"] = {"kind": direct_map.kind, "leave_one_out_mae": direct_map.leave_one_out_mae}
        if order_learned is not None and len(references) >= MIN_FIT_LINK:
            fused, calibration["fused"] = fused_on_new_scale(moved, samples, comparisons, mapped, direct_map,
                                                             on_references, references, name)
    return NewScaleScores(order_learned, comparisons, direct, mapped, direct_map, calibration, moved, fused)


def fused_on_new_scale(moved: LoadedRun, samples: Sequence[ScoredImage], comparisons: Comparisons,
                       mapped: torch.Tensor, direct_map: MonotoneMap, on_references: torch.Tensor,
                       references: ReferenceBank, name: str) -> tuple[scorers.Scores, dict[str, Any]]:
    """The fused route on the references' scale (:mod:`orderlearn.runs.fused`): the comparator
    against the references under a prior centred on each face's mapped direct score, its width
    the RMS of the map's leave-one-out errors on the references (the only faces whose new-scale
    score is known). Scored without the order-learned route's output map, which was chosen for
    scores without a prior. From :data:`MIN_FIT_LINK` references on, as the fitted link."""
    residuals = leave_one_out_residuals(direct_map.kind, on_references, references.scores)
    recipe = moved.route.recipe
    width = prior_width(torch.as_tensor(residuals), recipe.low, recipe.high)
    route = moved.route.with_recipe(dataclasses.replace(recipe, output_map=None))
    scores = fused_scores(route, samples, mapped, width, f"{name} (fused)", comparisons)
    return scores, {"prior_std": width, "prior_std_from": "the direct map's leave-one-out RMSE on the references"}
