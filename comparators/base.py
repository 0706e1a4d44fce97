"""The model contract of orderlearn: :class:`Model`, and its two kinds :class:`Comparator` and
:class:`Regressor`.

Everything the training loop, the pipeline and the feature cache call on a model is declared
here, with a documented default, so nothing outside this file probes a model with
``getattr``/``hasattr``; a new method overrides what it needs and inherits the rest.

A comparator maps two image batches to logits over :class:`~orderlearn.types.PairLabel`
(K = 3: FIRST, SECOND, SIMILAR; K = 2 for two-class comparators: FIRST, SECOND). Where it can,
it splits into ``embed`` (once per image) and ``compare`` (per pair), so a test set of N images
against a bank of R references costs N + R backbone passes. One that only implements
``forward(a, b)`` still works end to end: its "embedding" is the preprocessed image itself and
``compare`` calls ``forward``, one pair at a time through the backbone.

A regressor maps one image batch to a :class:`RegressorOutput` with a ``score`` per image and
owns its loss, so one training loop serves every method of the literature. Where it splits
into ``forward_features`` (the backbone) and ``forward_head`` (timm's names), its features can
be computed once and only the head trained. Its comparator view
(:meth:`Regressor.comparator_view`) is the degenerate comparator of DESIGN.md.

The per-image feature function of either kind is :meth:`Model.forward_features` and the part
trained on cached features is :meth:`Model.forward_head`; for a comparator these are ``embed``
and ``compare``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn

from orderlearn.types import ScoredImage

if TYPE_CHECKING:  # pragma: no cover
    from scorers import Link

Batch = dict[str, Any]
"""A collated batch. Comparator batches: ``image_a``, ``image_b`` (float [B,3,H,W]) and
``label`` (long [B]). Regressor batches: ``image`` (float [B,3,H,W]), ``score`` (float [B]),
``rating_counts`` (float [B,5], zeros when unknown), ``std`` (float [B]), ``gender``
(long [B], 0 female / 1 male / -1 unknown), ``age`` (float [B], nan when unknown)."""


class Model(nn.Module):
    """What every comparator and regressor offers the loop, the pipeline and the feature cache.

    ``config`` is the model's own options dataclass (the ``model:`` section of a run config);
    it is part of the feature-cache key, so two models that differ in any option never share
    cached features.
    """

    config: Any = None
    splits: bool = False  # True when forward_features / forward_head (embed / compare) are defined

    # ---------------------------------------------------------------- images
    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        """PIL image -> tensor transform this model expects (evaluation mode)."""
        raise NotImplementedError(f"{type(self).__name__} must define preprocess()")

    def train_preprocess(self) -> Callable[[Any], torch.Tensor]:
        """PIL image -> tensor transform with training augmentation (defaults to evaluation's)."""
        return self.preprocess()

    # ---------------------------------------------------------------- features and head
    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Per-image features, computed once per image (and cached when they are frozen)."""
        raise NotImplementedError(f"{type(self).__name__} does not split into features and head")

    def forward_head(self, *features: torch.Tensor) -> Any:
        """What trains on cached features in frozen-backbone mode (a comparator: ``compare``)."""
        raise NotImplementedError(f"{type(self).__name__} does not split into features and head")

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters that train in frozen-backbone mode (``train.frozen_backbone: true``):
        every parameter outside :meth:`feature_modules`."""
        frozen = {id(p) for m in self.feature_modules() for p in m.parameters()}
        head = [p for p in self.parameters() if id(p) not in frozen]
        if not self.splits or not head:
            raise NotImplementedError(f"{type(self).__name__} has no head to train on cached features; "
                                      "train it with train.frozen_backbone: false")
        return head

    def feature_modules(self) -> list[nn.Module]:
        """Modules whose weights determine :meth:`forward_features` (hashed into the feature-cache
        key, and kept in evaluation mode while only the head trains). Default: the whole model."""
        return [self]

    # ---------------------------------------------------------------- training hooks
    def setup_from_training(self, samples: Sequence[ScoredImage]) -> None:
        """Called once with the training samples before training (e.g. class weights). Default: nothing."""

    def parameter_groups(self) -> Optional[list[dict[str, Any]]]:
        """Optimizer parameter groups when a method needs them (per-part lrs); None = every trainable parameter."""
        return None

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        """Called by the loop before each epoch (1-based): stage switches, ... Default: nothing."""

    def on_epoch_end(self, epoch: int, num_epochs: int) -> None:
        """Called by the loop after each epoch's training steps, before validation. Default: nothing."""

    # ---------------------------------------------------------------- checkpoints
    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """What a per-epoch checkpoint holds. Default: the whole state dict (a LoRA model returns
        only what trains, so an epoch of a 7B comparator costs megabytes)."""
        return self.state_dict()

    def load_checkpoint_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load what :meth:`checkpoint_state_dict` wrote (strict by default)."""
        self.load_state_dict(state)

    # ---------------------------------------------------------------- the bank route
    def comparator_view(self) -> "Comparator":
        """This model as a comparator against the reference bank (a comparator: itself)."""
        raise NotImplementedError


class Comparator(Model):
    """Base class of every comparator: ``forward(a, b) -> logits[B, K]``.

    Subclasses that can split override :meth:`embed` and :meth:`compare` and set
    ``splits = True``; :meth:`forward` then composes them. Others override ``forward`` only.
    ``pair_batch_size`` is how many pairs one scoring call handles: thousands for a small head,
    a few dozen for a language model.
    """

    num_classes: int = 3
    pair_batch_size: int = 8192

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[B, ...] image batch -> per-image embeddings. Without a split: the images themselves."""
        if self.splits:
            raise NotImplementedError(f"{type(self).__name__} sets splits = True but does not define embed()")
        return images

    def compare(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
        """Logits [B, K] for pairs of embeddings. Without a split: ``forward`` on the images."""
        if self.splits:
            raise NotImplementedError(f"{type(self).__name__} sets splits = True but does not define compare()")
        return self(emb_a, emb_b)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not self.splits:
            raise NotImplementedError(f"{type(self).__name__} must implement forward(a, b) or split (splits = True)")
        both = self.embed(torch.cat([a, b], dim=0))
        emb_a, emb_b = both.split([a.shape[0], b.shape[0]], dim=0)
        return self.compare(emb_a, emb_b)

    def compare_grid(self, emb_test: torch.Tensor, emb_refs: torch.Tensor) -> torch.Tensor:
        """Logits [n, R, K] of every (test i, reference j) pair. A comparator that can share work
        across one test image's references (LLaVA: the prompt prefix) overrides this."""
        n, r = emb_test.shape[0], emb_refs.shape[0]
        emb_a = emb_test.repeat_interleave(r, dim=0)
        emb_b = emb_refs.repeat(n, *([1] * (emb_refs.dim() - 1)))
        return self.compare(emb_a, emb_b).reshape(n, r, -1)

    def embed_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """The embedding :meth:`compare` reads, from :meth:`forward_features`' output (which is
        what the feature cache stores). Default: the features themselves."""
        return features

    def natural_link(self) -> Optional["Link"]:
        """The link under which this comparator's probabilities are exact, if it has one (a
        regressor's view does); the scorer uses it unless the run calibrates or sets one."""
        return None

    def view_state(self) -> dict[str, Any]:
        """What the bank route needs besides the checkpoint to rebuild this view (JSON-able)."""
        return {}

    def load_view_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`view_state` (saved with the run's bank evaluator)."""

    def fit_view(self, features: torch.Tensor, scores: torch.Tensor, ref_features: torch.Tensor,
                 ref_scores: torch.Tensor, margin: float) -> None:
        """Fit what the view itself needs on validation × bank evidence (true scores known).
        Comparators are trained to compare already: nothing to do."""

    # the Model contract in a comparator's words
    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)

    def forward_head(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.compare(emb_a, emb_b)

    def comparator_view(self) -> "Comparator":
        return self


@dataclass
class RegressorOutput:
    """What a regressor's forward returns: the score per image plus method-specific heads."""

    score: torch.Tensor  # [B]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


class Regressor(Model):
    """Base class of direct methods: ``forward(images) -> RegressorOutput`` and ``loss``.

    Methods with one backbone define ``forward_features`` (pooled features) and
    ``forward_head`` (features -> RegressorOutput) and inherit ``forward``; others (e.g. a
    multi-task net with task-specific blocks) override ``forward``.
    """

    def forward(self, images: torch.Tensor) -> RegressorOutput:
        return self.forward_head(self.forward_features(images))

    def forward_head(self, features: torch.Tensor) -> RegressorOutput:  # type: ignore[override]
        raise NotImplementedError(f"{type(self).__name__} does not split into features and head")

    def loss(self, output: RegressorOutput, batch: Batch) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def comparator_view(self) -> Comparator:
        """The degenerate comparator: two images compared through their predicted scores."""
        from .regression_comparator import RegressionComparator

        return RegressionComparator(self)
