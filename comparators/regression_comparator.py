"""Any regressor as a comparator: compare two images through their predicted scores.

The embedding of an image is the regressor's score ``[B, 1]``, a bank reference's embedding is
its known score r, and ``compare`` applies the BT link to δ = ŝ − r, so P(FIRST) = σ(k(δ − τ)),
P(SECOND) = σ(k(−δ − τ)), P(SIMILAR) = the rest. This is the degenerate comparator of docs/design.md: the same bank, scorer and metrics then
score every direct method "through the bank", on the same folds as its direct scores.

The link is the view's own state (:meth:`fit_view` fits k and τ by maximum likelihood of the
true validation × bank labels given the predicted score gaps) and its :meth:`natural_link`:
the scorer uses the same link unless the run calibrates or sets another, which is what makes
soft-label BT through the bank return the regressor's own score (the soft NLL is a sum of
cross-entropies between Link(ŝ − r) and Link(s − r), minimised exactly at s = ŝ).

Its features are the regressor's backbone features when the regressor splits (so frozen
features are computed once and cached), and the score itself otherwise.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from orderlearn.types import labels_from_delta
from scorers import Link

from .comparator import Comparator
from .model import Model

log = logging.getLogger(__name__)
MIN_FITTED_SLOPE = 1e-2  # per score unit: below it a score gap of the whole range moves P(FIRST) by < 1%


class RegressionComparator(Comparator):
    splits = True

    def __init__(self, regressor: Model, link: Link | dict | None = None, num_classes: int = 3):
        super().__init__()
        self.regressor = regressor
        self.link = Link.from_config(link)
        self.num_classes = num_classes
        self.config = regressor.config

    # ------------------------------------------------------------------ features -> embedding
    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        if self.regressor.splits:
            return self.regressor.forward_features(images)
        return self._score(self.regressor(images))

    def feature_modules(self) -> list[nn.Module]:
        return self.regressor.feature_modules() if self.regressor.splits else [self.regressor]

    def feature_key_config(self) -> Any:
        return self.regressor.feature_key_config() if self.regressor.splits else self.config

    def embed_from_features(self, features: torch.Tensor) -> torch.Tensor:
        if self.regressor.splits:
            return self._score(self.regressor.forward_head(features))
        return features

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self._score(self.regressor(images))

    def embed_references(self, features: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """A reference's known score: the view answers Link(ŝ − r), the regressor's predicted
        score against the reference's true one (not against what the regressor predicts for it)."""
        return scores.to(torch.float32).reshape(-1, 1)

    @staticmethod
    def _score(output: Any) -> torch.Tensor:
        return output.score.float().reshape(-1, 1)

    def compare(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the link, which are valid logits (softmax returns them exactly)."""
        delta = (emb_a - emb_b).reshape(-1).double()
        return self.link.log_probs(delta, self.num_classes).float()

    # ------------------------------------------------------------------ the view's own state
    def natural_link(self) -> Optional[Link]:
        return self.link

    def view_state(self) -> dict[str, Any]:
        return {"link": {"slope": self.link.slope, "tie_width": self.link.tie_width}}

    def load_view_state(self, state: Mapping[str, Any]) -> None:
        self.link = Link.from_config(state.get("link"))

    def fit_view(self, features: torch.Tensor, scores: torch.Tensor, ref_features: torch.Tensor,
                 ref_scores: torch.Tensor, margin: float) -> None:
        """Fit k and τ on validation × bank pairs: true labels (from the true score gaps and the
        pair margin) given the predicted gaps of the embeddings ``features``/``ref_features``."""
        predicted = features.reshape(-1, 1).double() - ref_features.reshape(1, -1).double()
        labels = torch.from_numpy(labels_from_delta((scores.reshape(-1, 1) - ref_scores.reshape(1, -1)).double().numpy(), margin))
        self.fit_link(predicted, labels)
        log.info("regressor's comparator link fitted on %d validation x bank pairs: slope %.3f, tie width %.3f",
                 labels.numel(), self.link.slope, self.link.tie_width)

    def fit_link(self, predicted_delta: torch.Tensor, labels: torch.Tensor) -> Link:
        """Fit k and τ by maximum likelihood of the true labels given predicted score gaps.

        A regressor with no signal on validation drives the slope to ~0 (every comparison a coin
        toss) and the scorer would return a constant; the configured link is kept instead, with
        a warning, so the bank route stays as informative as the direct one.
        """
        fitted = self.link.fit(predicted_delta.reshape(-1).double(), labels.reshape(-1).long(), self.num_classes)
        if fitted.slope < MIN_FITTED_SLOPE:
            log.warning("fitted link slope %.2e: the regressor's score gaps do not predict the labels; keeping %s", fitted.slope, self.link)
            return self.link
        self.link = fitted
        return self.link

    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        return self.regressor.preprocess()
