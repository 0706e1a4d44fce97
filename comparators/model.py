"""The contract every model offers the training loop, the pipeline and the feature cache."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn

from orderlearn.types import ScoredImage

Batch = dict[str, Any]
"""A collated batch. Comparator batches: ``image_a``, ``image_b`` (float [B,3,H,W]) and
``label`` (long [B]). Regressor batches: ``image`` (float [B,3,H,W]), ``score`` (float [B]),
``rating_counts`` (float [B,5], zeros when unknown), ``std`` (float [B]), ``gender``
(long [B], 0 female / 1 male / -1 unknown), ``age`` (float [B], nan when unknown), ``database``
(long [B]: 0 the run's dataset, 1 its second database in multi-database training)."""


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

    def feature_key_config(self) -> Any:
        """What, besides the feature modules' weights and the transform, determines
        :meth:`forward_features` (hashed into the feature-cache key). Default: the whole options
        config (any option might); a model whose features are a frozen trunk's output returns
        that trunk's description, so methods over the same trunk share cached features."""
        return self.config

    def feature_views(self) -> tuple[str, ...]:
        """Views of each image (:func:`comparators.views.parse_view`) whose features
        :meth:`forward_features` is run on, stacked on axis 1 when more than one (a test-time
        averaging view). Default: the image itself, features ``[N, ...]``."""
        return ("identity",)

    def feature_modules(self) -> list[nn.Module]:
        """Modules whose weights determine :meth:`forward_features` (hashed into the feature-cache
        key, and kept in evaluation mode while only the head trains). Default: the whole model."""
        return [self]

    @property
    def uses_second_database(self) -> bool:
        """True when the method learns a task from a second dataset's images (``data.second``,
        batch ``database`` 1): the run then requires ``data.second``, and every other model refuses
        it (checked before any data is read). Default: False."""
        return False

    # ---------------------------------------------------------------- what a run reports
    def run_summary(self) -> dict[str, Any]:
        """Entries for the run's results.json that only the method knows (e.g. a learned sharing
        policy), from the weights the run scored with. Default: none."""
        return {}

    def write_figures(self, folder: Path) -> list[Path]:
        """Pictures only the method can draw, into the run's folder; returns their paths. Default: none."""
        return []

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
    def comparator_view(self) -> "nn.Module":
        """This model as a :class:`~comparators.comparator.Comparator` against the reference bank
        (a comparator: itself; a regressor: its degenerate comparator)."""
        raise NotImplementedError
