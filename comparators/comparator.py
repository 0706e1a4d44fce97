"""The comparator contract: ``forward(a, b) -> logits[B, K]``, split into embed / compare where it can."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

import torch

from .model import Model

if TYPE_CHECKING:  # pragma: no cover
    from scorers import Link


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

    def embed_references(self, features: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The embeddings ``compare`` reads for bank references, whose scores are known, given
        the references' own embeddings (:meth:`embed_from_features` already applied). Default:
        those embeddings (a comparator judges the image)."""
        return features

    def natural_link(self) -> Optional["Link"]:
        """The link under which this comparator's probabilities are exact, if it has one (a
        regressor's view does); the scorer uses it unless the run calibrates or sets one."""
        return None

    def view_state(self) -> dict[str, Any]:
        """What the bank route needs besides the checkpoint to rebuild this view (JSON-able). It
        changes only what :meth:`compare` answers, never the embeddings: a run computes a face's
        embedding once per checkpoint and its bank and direct routes both read it."""
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
