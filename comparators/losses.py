"""Losses for any comparator (LMOL eqs. 6–9): CE, weighted CE, and CE + λ·KL consistency.

The KL term asks the prediction for the reversed pair (b, a) to be the label-reversed
prediction for (a, b): with M the permutation that swaps FIRST and SECOND,
L_KL = 1/(2B) Σ_b [KL(M p_b^f ‖ p_b^r) + KL(M p_b^r ‖ p_b^f)]  (eq. 8).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from orderlearn.types import swap_first_second


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Eq. 6/7: −1/B Σ_n w_{y_n} log p_{n, y_n} (plain mean over the batch, as the paper writes)."""
    nll = -F.log_softmax(logits.float(), dim=-1).gather(1, labels[:, None]).squeeze(1)
    if weights is not None:
        nll = nll * weights.to(nll.device)[labels]
    return nll.mean()


def kl_consistency(logits_forward: torch.Tensor, logits_reverse: torch.Tensor) -> torch.Tensor:
    """Eq. 8, symmetric KL between reversed-forward and reverse predictions."""
    log_f = F.log_softmax(logits_forward.float(), dim=-1)
    log_r = F.log_softmax(logits_reverse.float(), dim=-1)
    log_mf, log_mr = swap_first_second(log_f), swap_first_second(log_r)  # M p
    kl_1 = (log_mf.exp() * (log_mf - log_r)).sum(-1)
    kl_2 = (log_mr.exp() * (log_mr - log_f)).sum(-1)
    return 0.5 * (kl_1 + kl_2).mean()


class ComparatorLoss:
    """The configured comparator objective; ``needs_reverse`` tells the loop to run (b, a) too."""

    def __init__(self, name: str = "ce", class_weights: Optional[Sequence[float]] = None, kl_weight: float = 1.0):
        if name not in ("ce", "wce", "ce+kl"):
            raise ValueError(f"unknown comparator loss {name!r}; choose ce, wce or ce+kl")
        if name == "wce" and not class_weights:
            raise ValueError("loss 'wce' needs class_weights (one per class: FIRST, SECOND, SIMILAR)")
        self.name = name
        self.weights = torch.tensor(class_weights, dtype=torch.float32) if name == "wce" else None
        self.kl_weight = kl_weight
        self.needs_reverse = name == "ce+kl"

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, logits_reverse: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        if self.weights is not None and len(self.weights) != logits.shape[-1]:
            raise ValueError(f"{len(self.weights)} class weights for {logits.shape[-1]} classes")
        loss = weighted_cross_entropy(logits, labels, self.weights)
        if self.needs_reverse:
            if logits_reverse is None:
                raise ValueError("ce+kl needs the logits of the reversed pairs")
            loss = loss + self.kl_weight * kl_consistency(logits, logits_reverse)
        return loss
