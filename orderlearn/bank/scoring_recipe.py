"""The scoring recipe of a run: how comparisons with the bank become scores, saved as ``scorer.json``.

:class:`ScoringRecipe` holds what turns one run's comparisons with its bank into scores: the
scorer and its options, the link it scores with (and where that link came from), where the
references sit on the comparator's scale when fitted (:mod:`scorers.references`), the interval
scale, the monotone map of the scores onto a user's references' scale where one was fitted on them
(:mod:`.self_calibration`), the checkpoint(s) whose probabilities are averaged, each checkpoint's comparator-view
state (a regressor's fitted link), the both-order setting and the bank file. ``orderlearn run``
saves it; ``score``, ``active``, ``predict``, ``export`` and ``serve`` load it, so a saved run
scores new images exactly as it scored its test set.

It is frozen: fitting the views and calibrating on validation (:mod:`.calibration`) return a new
recipe, so the recipe before calibration stays what it was (the run reports both). The file
format is unchanged since it was called the bank evaluator, so every saved run still loads.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

import scorers
from scorers.intervals import widen
from scorers.monotone_map import MonotoneMap

from orderlearn.config import ExperimentConfig
from orderlearn.errors import DataError
from orderlearn.files import atomic_write_json

RECIPE_FILE = "scorer.json"
RECIPE_FORMAT = 1


@dataclass(frozen=True)
class ScoringRecipe:
    """Scorer settings of one run (see the module docstring); JSON-serialisable. Its lists and
    dictionaries are never changed in place: a changed recipe is a :func:`dataclasses.replace`."""

    scorer: str
    scorer_args: dict[str, Any]  # the scorer's own options, without its link
    low: float
    high: float
    checkpoints: list[str]  # relative to the run folder; probabilities averaged over them
    both_orders: bool = False
    reverse_pass: bool = True  # also compare (reference, image): both_orders and the agreement metric
    link: Optional[dict[str, float]] = None  # the scorer's link; None = the scorer's default
    link_source: str = "default"  # default | configured | comparator | calibrated | rescaled | references (own references)
    interval_scale: Optional[float] = None  # posterior std × this, fitted on validation
    # where the comparator places each reference (scorers.references), fitted on validation x bank;
    # None: at its known score
    reference_positions: Optional[list[float]] = None
    # the scores mapped onto a user's references' scale (MonotoneMap.to_dict), chosen on their
    # leave-one-out scores by self-calibration; None: no map (a run's own bank, or identity chosen)
    output_map: Optional[dict[str, Any]] = None
    budget: Optional[int] = None  # comparisons per image by active reference selection; None: every reference
    active_batch: int = 4  # references asked per image and round under a budget
    view_states: list[dict[str, Any]] = field(default_factory=list)  # per checkpoint
    bank_file: str = "bank.json"
    format: int = RECIPE_FORMAT

    @classmethod
    def from_config(cls, config: ExperimentConfig, checkpoints: Sequence[str]) -> "ScoringRecipe":
        """The recipe as configured, before anything is fitted on validation."""
        args = dict(config.scorer.args)
        link = args.pop("link", None)
        return cls(scorer=config.scorer.name, scorer_args=args, low=config.data.score_low, high=config.data.score_high,
                   checkpoints=list(checkpoints), both_orders=config.scorer.both_orders,
                   reverse_pass=config.scorer.both_orders or config.scorer.reverse_pass,
                   link=None if link is None else link_dict(scorers.Link.from_config(link)),
                   link_source="default" if link is None else "configured",
                   budget=config.scorer.budget, active_batch=config.scorer.active_batch)

    def make_scorer(self, name: Optional[str] = None, **changes: Any) -> scorers.Scorer:
        """The scorer with this run's link; ``name``: another scorer, with its defaults and the same
        link; ``changes``: options to set (those given as None are left as they are)."""
        args = dict(self.scorer_args) if name in (None, self.scorer) else {}
        if self.link is not None:
            args["link"] = dict(self.link)
        args.update({k: v for k, v in changes.items() if v is not None})
        return scorers.create(name or self.scorer, low=self.low, high=self.high, **args)

    def reference_scores(self, bank_scores: torch.Tensor) -> torch.Tensor:
        """What the scorer reads as the references' places: the fitted positions when this run
        calibrated them, else the bank's known scores ``bank_scores`` [R]."""
        if self.reference_positions is None:
            return bank_scores
        if len(self.reference_positions) != bank_scores.shape[0]:
            raise DataError(f"{len(self.reference_positions)} reference positions for a bank of {bank_scores.shape[0]}")
        return torch.tensor(self.reference_positions, dtype=torch.float64, device=bank_scores.device)

    def score_with(self, probs: torch.Tensor, bank_scores: torch.Tensor, name: Optional[str] = None,
                   mask: Optional[torch.Tensor] = None, prior: Optional[scorers.GaussianPrior] = None) -> scorers.Scores:
        """Scores of ``probs [N, R, K]`` (only where ``mask`` when given) against the bank whose known
        scores are ``bank_scores`` (placed where :meth:`reference_scores` says), with the calibrated
        intervals and through the output map (``name``: another scorer, its default options and this
        run's link, unwidened and unmapped: both were fitted on this run's scorer; ``prior``: a
        per-image Gaussian prior, the fused route's)."""
        scores = self.make_scorer(name).score(probs.double(), self.reference_scores(bank_scores), mask, prior=prior)
        if name not in (None, self.scorer):
            return scores
        if self.interval_scale is not None and scores.std is not None:
            scores = widen(scores, self.interval_scale, self.low, self.high)
        if self.output_map is not None:
            scores = MonotoneMap.from_dict(self.output_map).map_scores(scores, self.low, self.high)
        return scores

    def save(self, path: Path) -> Path:
        atomic_write_json(Path(path), asdict(self), default=None)
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> "ScoringRecipe":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path} does not exist: not a finished `orderlearn run` folder (or one made before scorer.json)")
        try:
            raw = json.loads(path.read_text())
            recipe = cls(**raw)  # a JSON list or number: a TypeError too
        except (json.JSONDecodeError, TypeError) as exc:
            raise DataError(f"{path} is not a scoring recipe file ({exc})") from None
        if recipe.format != RECIPE_FORMAT:
            raise DataError(f"{path}: format {recipe.format}, this orderlearn reads {RECIPE_FORMAT}")
        problem = recipe_problem(recipe)
        if problem:
            raise DataError(f"{path}: {problem}")
        return recipe


def recipe_problem(recipe: ScoringRecipe) -> Optional[str]:
    """``"key: what is wrong"`` for the first value of ``recipe`` no run writes, or None.

    Why at load: a run writes only values in range, so anything else is a damaged or edited file
    (a bundle's ``scorer.json`` especially), and it would otherwise score silently wrong (a
    negative interval scale prints an upside-down interval) or fail late with a traceback (a
    checkpoint list given as a string is read one character at a time). The scorer is built once
    here, so its own checks (its options, the size of its grid) speak before any image is read."""
    names = scorers.available()
    if not isinstance(recipe.scorer, str) or recipe.scorer not in names:
        return f"scorer: {recipe.scorer!r} is not a registered scorer ({', '.join(names)})"
    if not isinstance(recipe.scorer_args, dict):
        return f"scorer_args: {recipe.scorer_args!r} is not a mapping of the scorer's options"
    for key in ("low", "high"):
        if not _finite(getattr(recipe, key)):
            return f"{key}: {getattr(recipe, key)!r} is not a finite number"
    if not recipe.low < recipe.high:
        return f"low: {recipe.low} is not below high ({recipe.high})"
    if (not isinstance(recipe.checkpoints, list) or not recipe.checkpoints
            or not all(isinstance(c, str) and c for c in recipe.checkpoints)):
        return f"checkpoints: {recipe.checkpoints!r} is not a non-empty list of file names"
    for key in ("both_orders", "reverse_pass"):
        if not isinstance(getattr(recipe, key), bool):
            return f"{key}: {getattr(recipe, key)!r} is not true or false"
    for key, link in [("link", recipe.link)] + [(f"view_states[{i}].link", state.get("link"))
                                                 for i, state in enumerate(recipe.view_states or [])
                                                 if isinstance(state, dict)]:
        why = _link_problem(link)
        if why:
            return f"{key}: {why}"
    if not isinstance(recipe.view_states, list) or not all(isinstance(s, dict) for s in recipe.view_states):
        return f"view_states: {recipe.view_states!r} is not a list of mappings (one per checkpoint)"
    if len(recipe.view_states) > len(recipe.checkpoints):
        return f"view_states: {len(recipe.view_states)} for {len(recipe.checkpoints)} checkpoints"
    if recipe.interval_scale is not None and not (_finite(recipe.interval_scale) and recipe.interval_scale > 0):
        return f"interval_scale: {recipe.interval_scale!r} is not a finite number > 0"
    positions = recipe.reference_positions
    if positions is not None and not (isinstance(positions, list) and all(_finite(p) for p in positions)):
        return "reference_positions: not a list of finite numbers"
    if recipe.output_map is not None:
        try:
            MonotoneMap.from_dict(recipe.output_map)
        except ValueError as exc:
            return f"output_map: {exc}"
    for key in ("budget", "active_batch"):
        value = getattr(recipe, key)
        if (value is not None or key == "active_batch") and not (_integer(value) and value >= 1):
            return f"{key}: {value!r} is not an integer >= 1"
    if not isinstance(recipe.bank_file, str) or not recipe.bank_file:
        return f"bank_file: {recipe.bank_file!r} is not a file name"
    try:
        recipe.make_scorer()
    except (ValueError, TypeError, OverflowError) as exc:
        return f"scorer_args: {exc}"
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _link_problem(link: Any) -> Optional[str]:
    """Why ``link`` (a recipe's or a view state's) is not a link, or None (None: the default link)."""
    if link is None:
        return None
    if not isinstance(link, dict) or not all(_finite(v) for v in link.values()):
        return f"{link!r} is not a mapping of finite slope and tie_width"
    try:
        scorers.Link.from_config(link)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def link_dict(link: scorers.Link) -> dict[str, float]:
    """A link as the recipe (and the reports) write it."""
    return {"slope": link.slope, "tie_width": link.tie_width}


def interval_coverage(scores: scorers.Scores, truth: Union[Sequence[float], torch.Tensor]) -> Optional[float]:
    """Share of images whose true score lies in the scorer's 95% interval (None without one)."""
    if scores.lower is None or scores.upper is None:
        return None
    t = torch.as_tensor(truth, dtype=torch.float64).to(scores.lower.device)
    inside = (scores.lower.double() <= t) & (t <= scores.upper.double())
    return float(inside.double().mean()) if len(t) else math.nan
