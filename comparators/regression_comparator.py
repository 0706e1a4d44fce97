"""Any regressor as a comparator: compare two images through their predicted scores.

``embed(images)`` is the regressor's score ``[B, 1]`` and ``compare`` applies the BT link to
δ = s_a − s_b, so P(FIRST) = σ(k(δ − τ)), P(SECOND) = σ(k(−δ − τ)), P(SIMILAR) = the rest.
This is the degenerate comparator of DESIGN.md: the same bank, scorer and metrics then score
every direct method "through the bank", on the same folds as its direct scores. The link's
slope and tie width are set, or fitted by maximum likelihood on validation pairs
(:meth:`fit_link`).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch

from scorers.link import Link

from .base import Comparator, Regressor

log = logging.getLogger(__name__)
MIN_FITTED_SLOPE = 1e-2  # per score unit: below it a score gap of the whole range moves P(FIRST) by < 1%


class RegressionComparator(Comparator):
    splits = True

    def __init__(self, regressor: Regressor, link: Link | dict | None = None, num_classes: int = 3):
        super().__init__()
        self.regressor = regressor
        self.link = Link.from_config(link)
        self.num_classes = num_classes

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.regressor(images).score.float().reshape(-1, 1)

    def compare(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the link, which are valid logits (softmax returns them exactly)."""
        delta = (emb_a - emb_b).reshape(-1).double()
        return self.link.log_probs(delta, self.num_classes).float()

    def fit_link(self, predicted_a: torch.Tensor, predicted_b: torch.Tensor, labels: torch.Tensor) -> Link:
        """Fit k and τ by maximum likelihood of the true labels given predicted score gaps.

        A regressor with no signal on validation drives the slope to ~0 (every comparison a coin
        toss) and the scorer would return a constant; the configured link is kept instead, with
        a warning, so the bank route stays as informative as the direct one.
        """
        fitted = self.link.fit(predicted_a.reshape(-1).double() - predicted_b.reshape(-1).double(), labels.reshape(-1).long(), self.num_classes)
        if fitted.slope < MIN_FITTED_SLOPE:
            log.warning("fitted link slope %.2e: the regressor's score gaps do not predict the labels; keeping %s", fitted.slope, self.link)
            return self.link
        self.link = fitted
        return self.link

    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        return self.regressor.preprocess()
