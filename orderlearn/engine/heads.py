"""What the training loop trains in place of a bare model: its head on cached features
(:class:`HeadOnly`), or a comparator on the pairs inside a batch (:class:`InBatchComparator`).

Both keep the whole :class:`~comparators.base.Model` inside, so a checkpoint written through
them holds the model's own :meth:`~comparators.base.Model.checkpoint_state_dict` and loads into
the bare model; :func:`unwrap` finds that model again under accelerate's wrapper.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from accelerate.utils import extract_model_from_parallel
from torch import nn

from comparators.base import Comparator, Model
from orderlearn.errors import ConfigError


class HeadOnly(nn.Module):
    """Frozen-backbone mode: train a model's ``forward_head`` on its cached ``forward_features``
    (a comparator's ``compare`` on embeddings, a regressor's heads on backbone features).

    The whole model stays inside (``wrapped``) so checkpoints hold a complete model; its
    :meth:`~comparators.base.Model.feature_modules` stay in evaluation mode (frozen batch-norm
    statistics) while the head trains.
    """

    def __init__(self, model: Model):
        super().__init__()
        self.wrapped = model
        head = model.head_parameters()
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head:
            p.requires_grad_(True)

    def forward(self, *features: torch.Tensor) -> Any:
        return self.wrapped.forward_head(*features)

    def train(self, mode: bool = True) -> "HeadOnly":
        super().train(mode)
        for module in self.wrapped.feature_modules():
            module.eval()
        return self


class InBatchComparator(Model):
    """``forward(inputs, a, b)``: logits of the pairs (inputs[a[i]], inputs[b[i]]), each input
    embedded once. ``from_features``: inputs are cached features (the frozen part stays frozen
    and in evaluation mode, as in :class:`HeadOnly`); otherwise images.

    The training loop sees it as the model: epoch hooks and checkpoints are the comparator's
    own, so a checkpoint loads into the bare comparator.
    """

    def __init__(self, comparator: Comparator, from_features: bool) -> None:
        super().__init__()
        if not comparator.splits:
            raise ConfigError(f"pairs.recipe: in-batch needs a comparator that splits into embed/compare; "
                             f"{type(comparator).__name__} does not")
        self.from_features = from_features
        self.inner = HeadOnly(comparator) if from_features else comparator

    @property
    def comparator(self) -> Comparator:
        return self.inner.wrapped if isinstance(self.inner, HeadOnly) else self.inner

    def embed_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        c = self.comparator
        return c.embed_from_features(inputs) if self.from_features else c.embed(inputs)

    def forward(self, inputs: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        emb = self.embed_inputs(inputs)
        return self.comparator.compare(emb[a], emb[b])

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        self.comparator.on_epoch_start(epoch, num_epochs)

    def on_epoch_end(self, epoch: int, num_epochs: int) -> None:
        self.comparator.on_epoch_end(epoch, num_epochs)

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        return self.comparator.checkpoint_state_dict()

    def load_checkpoint_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.comparator.load_checkpoint_state_dict(state)


def unwrap(model: nn.Module) -> Model:
    """The :class:`~comparators.base.Model` inside accelerate's wrapper and :class:`HeadOnly`
    (an :class:`InBatchComparator` is itself a Model: its checkpoints are its comparator's)."""
    model = extract_model_from_parallel(model)
    if isinstance(model, HeadOnly):
        model = model.wrapped
    return model
