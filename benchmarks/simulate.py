"""Simulated scores and comparators, for the scorer benchmark (no images involved).

The simulated comparator is deliberately imperfect in the ways a trained one is:
- it perceives each image's score with an image-level error (``image_noise``), which is what
  limits PC in practice — the same face is misjudged against every reference;
- its probabilities follow an ordered-logistic link whose slope and tie width differ from the
  scorer's (mis-calibration), plus independent Gaussian noise on each pair's logits.
The defaults put full-bank BT scoring at PC ≈ 0.96, MAE ≈ 0.16 on SCUT-like scores, the regime
of the LMOL reproduction's best model (PC 0.9532, MAE 0.1720).
"""
from __future__ import annotations

from typing import Optional

import torch

from orderlearn.bank.references import select_reference_indices
from scorers.link import Link

#: SCUT-FBP5500: mean rating ≈ 3.0, std ≈ 0.69, observed range ≈ [1.0, 4.75] on the 1..5 scale
SCUT_MEAN, SCUT_STD, SCUT_MIN, SCUT_MAX = 3.0, 0.69, 1.02, 4.75


def scut_like_scores(n: int, generator: torch.Generator, mean: float = SCUT_MEAN, std: float = SCUT_STD,
                     low: float = SCUT_MIN, high: float = SCUT_MAX) -> torch.Tensor:
    """n scores from a normal(mean, std) truncated to [low, high] (rejection), float64."""
    out = torch.empty(0, dtype=torch.float64)
    while out.numel() < n:
        draw = mean + std * torch.randn(2 * n, generator=generator, dtype=torch.float64)
        out = torch.cat([out, draw[(draw >= low) & (draw <= high)]])
    return out[:n]


def binned_reference_indices(scores: torch.Tensor, seed: int, total: Optional[int] = None) -> torch.Tensor:
    """The project's bank rule (:func:`orderlearn.bank.references.select_reference_indices`: bins of 0.1, at most
    10 each); if ``total`` is given and the rule yields more, a seeded random subset of that size."""
    idx = torch.tensor(select_reference_indices(scores.tolist(), seed=seed), dtype=torch.long)
    if total is not None and idx.numel() > total:
        idx = idx[torch.randperm(idx.numel(), generator=torch.Generator().manual_seed(seed))[:total]]
    return idx.sort().values


def simulated_probs(test_scores: torch.Tensor, ref_scores: torch.Tensor, generator: torch.Generator,
                    link: Link = Link(slope=7.0, tie_width=0.25), image_noise: float = 0.2,
                    logit_noise: float = 0.7, num_classes: int = 3) -> torch.Tensor:
    """Comparator probabilities [N, R, K] for pairs (test, reference) (see module doc)."""
    seen_t = test_scores.to(torch.float64) + image_noise * torch.randn(test_scores.shape[0], generator=generator,
                                                                       dtype=torch.float64)
    seen_r = ref_scores.to(torch.float64) + image_noise * torch.randn(ref_scores.shape[0], generator=generator,
                                                                      dtype=torch.float64)
    logits = link.log_probs(seen_t[:, None] - seen_r[None, :], num_classes)
    logits = logits + logit_noise * torch.randn(logits.shape, generator=generator, dtype=torch.float64)
    return torch.softmax(logits, dim=-1)
