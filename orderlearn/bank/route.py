"""The bank route: faces × bank -> comparisons -> probabilities -> scores, under a scoring recipe.

:class:`BankRoute` computes the comparisons of a run's :class:`~.scoring_recipe.ScoringRecipe`:
for each checkpoint it loads the weights, takes the model's comparator view (with that
checkpoint's view state), computes features (through the feature cache) of the images and the
bank, and compares them in one or both orders; the checkpoints' probabilities are averaged
(LMOL's checkpoint ensemble), then the two orders are combined (:func:`scorers.combine_orders`).
Under a scoring budget only the pairs that active reference selection asks are compared, each
checkpoint's view under its own weights. Calibration (:mod:`.calibration`) runs on validation
images through the very same route, so it always sees the kind of probabilities the test
images get.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch
from accelerate import Accelerator

import scorers
from comparators.base import Comparator, Model

from orderlearn.bank.comparisons import ComparatorCalls, EmbeddingMemo, Member, compare_members, view_embeddings
from orderlearn.bank.references import ReferenceBank
from orderlearn.bank.scoring_recipe import ScoringRecipe
from orderlearn.engine.features import FeatureExtractor
from orderlearn.engine.checkpoints import load_weights
from orderlearn.errors import DataError
from orderlearn.types import ScoredImage


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
    """Comparisons of sample sets with the bank, and their scores, under one :class:`ScoringRecipe`."""

    def __init__(self, model: Model, recipe: ScoringRecipe, bank: ReferenceBank, weights_dir: Path,
                 features: FeatureExtractor, accelerator: Accelerator, batch_size: int,
                 stored_bank_embeddings: Optional[Sequence[torch.Tensor]] = None,
                 memo: Optional[EmbeddingMemo] = None) -> None:
        """``weights_dir``: the folder the recipe's checkpoints are relative to (a run, a bundle);
        ``stored_bank_embeddings``: per checkpoint, what :meth:`bank_embeddings` would compute
        (an exported bundle carries them, so it scores without the bank's images); ``memo``: the
        faces' embeddings per checkpoint, shared with the run's other phases (a new one if None)."""
        self.model, self.recipe, self.bank, self.weights_dir = model, recipe, bank, Path(weights_dir)
        self.features, self.accelerator, self.batch_size = features, accelerator, batch_size
        self.memo = memo if memo is not None else EmbeddingMemo()
        self.stored_bank_embeddings = _checked_bank_embeddings(stored_bank_embeddings, recipe, bank)
        self._checkpoint = 0  # the checkpoint whose view views() yielded last
        # per checkpoint: the bank as compare() reads it, computed once (calibration, validation
        # and test all compare with the same references under the same weights)
        self._bank: dict[int, torch.Tensor] = dict(enumerate(self.stored_bank_embeddings or []))

    def with_recipe(self, recipe: ScoringRecipe) -> "BankRoute":
        """The same model, bank and features under ``recipe`` (a fitted or calibrated one); the bank's
        embeddings computed so far are shared, as they depend on the checkpoints alone."""
        if list(recipe.checkpoints) != list(self.recipe.checkpoints):
            if self.stored_bank_embeddings is not None:
                raise DataError("stored bank embeddings belong to the recipe's checkpoints; they cannot change")
            return BankRoute(self.model, recipe, self.bank, self.weights_dir, self.features, self.accelerator,
                             self.batch_size, memo=self.memo)
        route = BankRoute(self.model, recipe, self.bank, self.weights_dir, self.features, self.accelerator,
                          self.batch_size, self.stored_bank_embeddings, self.memo)
        route._bank = self._bank
        return route

    def load_checkpoint(self, index: int) -> None:
        """Checkpoint ``index``'s weights into the model, on the route's device, in eval mode."""
        load_weights(self.model, self.weights_dir / self.recipe.checkpoints[index])
        self.model.to(self.accelerator.device).eval()

    def restore_weights(self) -> None:
        """The weights of the checkpoint whose view the route yielded last back in the model, after
        something that shares the model (the direct route's selected checkpoint) loaded its own."""
        self.load_checkpoint(self._checkpoint)

    def views(self) -> Iterator[tuple[int, Comparator]]:
        """(checkpoint index, comparator view with that checkpoint's weights and view state)."""
        for i in range(len(self.recipe.checkpoints)):
            self.load_checkpoint(i)
            view = self.model.comparator_view()
            if i < len(self.recipe.view_states):
                view.load_view_state(self.recipe.view_states[i])
            self._checkpoint = i
            yield i, view.to(self.accelerator.device).eval()

    def embeddings(self, view: Comparator, samples: Sequence[ScoredImage], desc: str) -> torch.Tensor:
        """What ``view`` (the one :meth:`views` yielded last) compares for ``samples``: computed once
        per checkpoint and kept in the route's :class:`~.comparisons.EmbeddingMemo`."""
        checkpoint = self.weights_dir / self.recipe.checkpoints[self._checkpoint]
        return self.memo.get(checkpoint, samples, lambda: view_embeddings(
            view, self.features(view, samples, desc), self.accelerator, self.batch_size))

    def bank_embeddings(self, view: Comparator) -> torch.Tensor:
        """The references as ``view.compare`` reads them (their images, or their known scores)."""
        if self._checkpoint not in self._bank:
            features = self.embeddings(view, self.bank.samples, "features bank")
            self._bank[self._checkpoint] = view.embed_references(features, self.bank.scores)
        return self._bank[self._checkpoint]

    def members(self, samples: Sequence[ScoredImage], name: str) -> list[Member]:
        """Each checkpoint's view with ``samples`` and the bank embedded under it; with several
        checkpoints, each member reloads its own weights before it compares."""
        members = []
        several = len(self.recipe.checkpoints) > 1
        for i, view in self.views():
            activate = (lambda i=i: self.load_checkpoint(i)) if several else None
            members.append(Member(view, self.embeddings(view, samples, f"features {name}"), self.bank_embeddings(view),
                                  activate))
        return members

    def comparisons(self, samples: Sequence[ScoredImage], name: str, full_bank: bool = False,
                    prior: Optional[scorers.GaussianPrior] = None) -> Comparisons:
        """Comparisons of ``samples`` with the bank: every reference, or under the recipe's
        budget only those active selection chooses (``full_bank`` forces every reference);
        ``prior``: each sample's prior (the fused route), which active selection starts from."""
        if self.recipe.budget is not None and not full_bank:
            return self._budgeted(samples, name, prior)
        fwd, rev = compare_members(self.members(samples, name), self.accelerator, name, self.recipe.reverse_pass)
        scoring = scorers.combine_orders(fwd, rev) if self.recipe.both_orders else fwd
        return Comparisons(fwd, rev, scoring)

    def _budgeted(self, samples: Sequence[ScoredImage], name: str,
                  prior: Optional[scorers.GaussianPrior] = None) -> Comparisons:
        """Active reference selection: each image asks only ``budget`` references, chosen round
        by round where the score is still uncertain; the comparator answers only those pairs."""
        members = self.members(samples, name)
        calls = ComparatorCalls(members, self.accelerator, self.recipe.both_orders)
        active = scorers.ActiveScorer(self.recipe.make_scorer(), budget=self.recipe.budget,
                                      batch=min(self.recipe.active_batch, self.recipe.budget))
        result = active.score(calls, self.recipe.reference_scores(self.bank.scores), len(samples),
                              members[0].view.num_classes, prior=prior)
        probs = result.probs.float()
        return Comparisons(probs, None, probs, mask=result.mask, calls=calls.calls)

    def score(self, comparisons: Comparisons, name: Optional[str] = None,
              prior: Optional[scorers.GaussianPrior] = None) -> scorers.Scores:
        return self.recipe.score_with(comparisons.for_scoring, self.bank.scores, name, comparisons.mask, prior)


def _checked_bank_embeddings(stored: Optional[Sequence[torch.Tensor]], recipe: ScoringRecipe,
                             bank: ReferenceBank) -> Optional[list[torch.Tensor]]:
    """``stored`` as a list, one [R, ...] tensor per checkpoint (a DataError when it does not fit)."""
    if stored is None:
        return None
    stored = list(stored)
    if len(stored) != len(recipe.checkpoints):
        raise DataError(f"{len(stored)} stored bank embeddings for {len(recipe.checkpoints)} checkpoints")
    for i, emb in enumerate(stored):
        if emb.shape[0] != len(bank):
            raise DataError(f"stored bank embeddings of checkpoint {i}: {emb.shape[0]} rows for {len(bank)} references")
    return stored
