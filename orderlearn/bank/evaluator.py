"""The bank route of a run: comparisons with the reference bank -> scores, one owner for it.

:class:`BankEvaluator` is what turns comparisons with the bank into scores for one run: the
scorer and its options, the link it scores with (and where that link came from), where the
references sit on the comparator's scale when fitted (:mod:`scorers.references`), the interval
scale, the checkpoint(s) whose probabilities are averaged, each checkpoint's comparator-view
state (a regressor's fitted link), the both-order setting and the bank file. It is saved with
the run as ``scorer.json`` and loaded by ``orderlearn run``, ``score`` and ``active`` alike, so
a saved run scores new images exactly as it scored its test set.

:class:`BankRoute` computes the comparisons: for each checkpoint it loads the weights, takes
the model's comparator view, computes features (through the feature cache) of the images and
the bank, and compares them in one or both orders; the checkpoints' probabilities are averaged
(LMOL's checkpoint ensemble), then the two orders are combined (:func:`scorers.combine_orders`).
Calibration (link, reference positions, intervals) runs on validation images through the very
same function, so it always sees the kind of probabilities the test images get.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
from accelerate import Accelerator

import scorers
from comparators.base import Comparator, Model
from scorers.intervals import interval_scale, widen
from scorers.references import calibrate as calibrate_scorer

from orderlearn.bank.references import ReferenceBank
from orderlearn.bank.comparisons import ComparatorCalls, Member, compare_all, view_embeddings
from orderlearn.config import ExperimentConfig
from orderlearn.errors import DataError
from orderlearn.engine.features import FeatureExtractor
from orderlearn.files import atomic_write_json
from orderlearn.engine.checkpoints import load_weights
from orderlearn.types import ScoredImage

EVALUATOR_FILE = "scorer.json"
EVALUATOR_FORMAT = 1


@dataclass
class BankEvaluator:
    """Scorer settings of one run (see the module docstring); JSON-serialisable."""

    scorer: str
    scorer_args: dict[str, Any]  # the scorer's own options, without its link
    low: float
    high: float
    checkpoints: list[str]  # relative to the run folder; probabilities averaged over them
    both_orders: bool = False
    reverse_pass: bool = True  # also compare (reference, image): both_orders and the agreement metric
    link: Optional[dict[str, float]] = None  # the scorer's link; None = the scorer's default
    link_source: str = "default"  # default | configured | comparator | calibrated
    interval_scale: Optional[float] = None  # posterior std × this, fitted on validation
    # where the comparator places each reference (scorers.references), fitted on validation x bank;
    # None: at its known score
    reference_positions: Optional[list[float]] = None
    budget: Optional[int] = None  # comparisons per image by active reference selection; None: every reference
    active_batch: int = 4  # references asked per image and round under a budget
    view_states: list[dict[str, Any]] = field(default_factory=list)  # per checkpoint
    bank_file: str = "bank.json"
    format: int = EVALUATOR_FORMAT

    @classmethod
    def from_config(cls, config: ExperimentConfig, checkpoints: Sequence[str]) -> "BankEvaluator":
        args = dict(config.scorer.args)
        link = args.pop("link", None)
        return cls(scorer=config.scorer.name, scorer_args=args, low=config.data.score_low, high=config.data.score_high,
                   checkpoints=list(checkpoints), both_orders=config.scorer.both_orders,
                   reverse_pass=config.scorer.both_orders or config.scorer.reverse_pass,
                   link=None if link is None else _link_dict(scorers.Link.from_config(link)),
                   link_source="default" if link is None else "configured",
                   budget=config.scorer.budget, active_batch=config.scorer.active_batch)

    def make_scorer(self, name: Optional[str] = None) -> scorers.Scorer:
        """The scorer with this run's link (``name``: another scorer, with its defaults, same link)."""
        args = dict(self.scorer_args) if name in (None, self.scorer) else {}
        if self.link is not None:
            args["link"] = dict(self.link)
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
                   mask: Optional[torch.Tensor] = None) -> scorers.Scores:
        """Scores of ``probs [N, R, K]`` (only where ``mask`` when given) against the bank whose known
        scores are ``bank_scores`` (placed where :meth:`reference_scores` says), with the calibrated
        intervals (``name``: another scorer, its default options and this run's link, unwidened)."""
        scores = self.make_scorer(name).score(probs.double(), self.reference_scores(bank_scores), mask)
        if self.interval_scale is not None and scores.std is not None and name in (None, self.scorer):
            scores = widen(scores, self.interval_scale, self.low, self.high)
        return scores

    def save(self, path: Path) -> Path:
        atomic_write_json(Path(path), asdict(self), default=None)
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> "BankEvaluator":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path} does not exist: not a finished `orderlearn run` folder (or one made before scorer.json)")
        try:
            raw = json.loads(path.read_text())
            evaluator = cls(**raw)
        except (json.JSONDecodeError, TypeError) as exc:
            raise DataError(f"{path} is not a bank evaluator file ({exc})") from None
        if evaluator.format != EVALUATOR_FORMAT:
            raise DataError(f"{path}: format {evaluator.format}, this orderlearn reads {EVALUATOR_FORMAT}")
        return evaluator



def _link_dict(link: scorers.Link) -> dict[str, float]:
    return {"slope": link.slope, "tie_width": link.tie_width}


@dataclass
class Comparisons:
    """A sample set's comparisons with the bank: forward (image, ref), reverse (ref, image) in
    the forward index order (not label-swapped), what the scorer reads, and — under a budget —
    which pairs were asked (``mask`` [N, R]; the other entries are zeros) and how many comparator
    calls each image cost."""

    forward: torch.Tensor  # [N, R, K]
    reverse: Optional[torch.Tensor]
    for_scoring: torch.Tensor
    mask: Optional[torch.Tensor] = None
    calls: Optional[torch.Tensor] = None  # [N] comparator calls (all checkpoints, both orders)


class BankRoute:
    """Comparisons of sample sets with the bank under a run's :class:`BankEvaluator`."""

    def __init__(self, model: Model, evaluator: BankEvaluator, bank: ReferenceBank, run_dir: Path,
                 features: FeatureExtractor, accelerator: Accelerator, batch_size: int,
                 stored_bank_embeddings: Optional[Sequence[torch.Tensor]] = None) -> None:
        """``stored_bank_embeddings``: per checkpoint, what :meth:`bank_embeddings` would compute
        (an exported bundle carries them, so it scores without the bank's images)."""
        self.model, self.evaluator, self.bank, self.run_dir = model, evaluator, bank, Path(run_dir)
        self.features, self.accelerator, self.batch_size = features, accelerator, batch_size
        self.stored_bank_embeddings = _checked_bank_embeddings(stored_bank_embeddings, evaluator, bank)
        self._checkpoint = 0  # the checkpoint whose view views() yielded last
        # per checkpoint: the bank as compare() reads it, computed once (calibration, validation
        # and test all compare with the same references under the same weights)
        self._bank: dict[int, torch.Tensor] = dict(enumerate(self.stored_bank_embeddings or []))

    def views(self) -> Iterator[tuple[int, Comparator]]:
        """(checkpoint index, comparator view with that checkpoint's weights and view state)."""
        for i, checkpoint in enumerate(self.evaluator.checkpoints):
            load_weights(self.model, self.run_dir / checkpoint)
            self.model.to(self.accelerator.device).eval()
            view = self.model.comparator_view()
            if i < len(self.evaluator.view_states):
                view.load_view_state(self.evaluator.view_states[i])
            self._checkpoint = i
            yield i, view.to(self.accelerator.device).eval()

    def embeddings(self, view: Comparator, samples: Sequence[ScoredImage], desc: str) -> torch.Tensor:
        return view_embeddings(view, self.features(view, samples, desc), self.accelerator, self.batch_size)

    def bank_embeddings(self, view: Comparator) -> torch.Tensor:
        """The references as ``view.compare`` reads them (their images, or their known scores)."""
        if self._checkpoint not in self._bank:
            features = self.embeddings(view, self.bank.samples, "features bank")
            self._bank[self._checkpoint] = view.embed_references(features, self.bank.scores)
        return self._bank[self._checkpoint]

    def fit_views(self, samples: Sequence[ScoredImage], margin: float) -> None:
        """Fit each checkpoint's view on ``samples`` × bank (true scores known) and keep its state."""
        states = []
        truth = torch.tensor([s.score for s in samples], dtype=torch.float64)
        for _, view in self.views():
            view.fit_view(self.embeddings(view, samples, "features validation"), truth, self.bank_embeddings(view),
                          self.bank.scores, margin)
            states.append(view.view_state())
            natural = view.natural_link() if not states[:-1] else None
            if natural is not None and self.evaluator.link_source == "default":  # score under the view's own link
                self.evaluator.link, self.evaluator.link_source = _link_dict(natural), "comparator"
        self.evaluator.view_states = states

    def comparisons(self, samples: Sequence[ScoredImage], name: str, full_bank: bool = False) -> Comparisons:
        """Comparisons of ``samples`` with the bank: every reference, or under the evaluator's
        budget only those active selection chooses (``full_bank`` forces every reference)."""
        if self.evaluator.budget is not None and not full_bank:
            return self._budgeted(samples, name)
        forward, reverse = [], []
        for _, view in self.views():
            emb, bank_emb = self.embeddings(view, samples, f"features {name}"), self.bank_embeddings(view)
            forward.append(compare_all(view, emb, bank_emb, self.accelerator, desc=f"{name} x bank"))
            if self.evaluator.reverse_pass:
                reverse.append(compare_all(view, bank_emb, emb, self.accelerator, desc=f"bank x {name}").transpose(0, 1))
        fwd = torch.stack(forward).mean(0)
        rev = torch.stack(reverse).mean(0) if reverse else None
        scoring = scorers.combine_orders(fwd, rev) if self.evaluator.both_orders else fwd
        return Comparisons(fwd, rev, scoring)

    def _budgeted(self, samples: Sequence[ScoredImage], name: str) -> Comparisons:
        """Active reference selection: each image asks only ``budget`` references, chosen round
        by round where the score is still uncertain; the comparator answers only those pairs."""
        members = []
        for _, view in self.views():
            emb = self.embeddings(view, samples, f"features {name}")
            members.append(Member(view, test=emb, val=emb[:0], bank=self.bank_embeddings(view)))
        calls = ComparatorCalls(members, "test", self.accelerator, self.evaluator.both_orders)
        active = scorers.ActiveScorer(self.evaluator.make_scorer(), budget=self.evaluator.budget,
                                      batch=min(self.evaluator.active_batch, self.evaluator.budget))
        result = active.score(calls, self.evaluator.reference_scores(self.bank.scores), len(samples),
                              members[0].view.num_classes)
        probs = result.probs.float()
        return Comparisons(probs, None, probs, mask=result.mask, calls=calls.calls)

    def score(self, comparisons: Comparisons, name: Optional[str] = None) -> scorers.Scores:
        return self.evaluator.score_with(comparisons.for_scoring, self.bank.scores, name, comparisons.mask)

    def calibrate(self, samples: Sequence[ScoredImage], link: bool, intervals: bool,
                  references: bool = False) -> dict[str, Any]:
        """Fit the scorer's link, the references' positions and/or the interval scale on
        ``samples`` × bank comparisons (in that order: each uses what the previous fitted).

        Link and positions: :func:`scorers.references.calibrate` (one alternation when both).
        """
        if not (link or intervals or references):
            return {}
        truth = torch.tensor([s.score for s in samples], dtype=torch.float64)
        val = self.comparisons(samples, "validation", full_bank=True)  # link, positions: every validation x bank pair
        report: dict[str, Any] = {}
        if link or references:
            scorer = self.evaluator.make_scorer()
            before = scorer.link
            fitted = calibrate_scorer(val.for_scoring.double(), truth, self.bank.scores, before, fit_link=link,
                                      fit_positions=references, soft=scorer.soft, low=self.evaluator.low,
                                      high=self.evaluator.high)
            if link:
                self.evaluator.link, self.evaluator.link_source = _link_dict(fitted.link), "calibrated"
                report["link"] = {**_link_dict(fitted.link), "before": _link_dict(before)}
            if fitted.positions is not None:
                self.evaluator.reference_positions = fitted.positions.tolist()
                shift = (fitted.positions - self.bank.scores.to(fitted.positions)).abs()
                report["reference_positions"] = {"mean_abs_shift": float(shift.mean()), "max_abs_shift": float(shift.max())}
        if intervals:  # the scale: from the very procedure the test images get (under a budget too)
            if self.evaluator.budget is not None:
                val = self.comparisons(samples, "validation")
            raw = self.evaluator.make_scorer().score(val.for_scoring.double(), self.evaluator.reference_scores(self.bank.scores),
                                                     val.mask)
            self.evaluator.interval_scale = interval_scale(raw, truth)
            report["std_scale"] = self.evaluator.interval_scale
        return report


def _checked_bank_embeddings(stored: Optional[Sequence[torch.Tensor]], evaluator: BankEvaluator,
                             bank: ReferenceBank) -> Optional[list[torch.Tensor]]:
    """``stored`` as a list, one [R, ...] tensor per checkpoint (a DataError when it does not fit)."""
    if stored is None:
        return None
    stored = list(stored)
    if len(stored) != len(evaluator.checkpoints):
        raise DataError(f"{len(stored)} stored bank embeddings for {len(evaluator.checkpoints)} checkpoints")
    for i, emb in enumerate(stored):
        if emb.shape[0] != len(bank):
            raise DataError(f"stored bank embeddings of checkpoint {i}: {emb.shape[0]} rows for {len(bank)} references")
    return stored


def interval_coverage(scores: scorers.Scores, truth: Sequence[float]) -> Optional[float]:
    """Share of images whose true score lies in the scorer's 95% interval (None without one)."""
    if scores.lower is None or scores.upper is None:
        return None
    t = torch.tensor(list(truth), dtype=torch.float64)
    inside = (scores.lower.double() <= t) & (t <= scores.upper.double())
    return float(inside.double().mean()) if len(t) else math.nan
