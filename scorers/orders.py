"""Combine the comparator's two presentation orders of each pair into one forward probability.

A comparator sees (test, reference) and (reference, test) differently (an LMM has a position
bias; a siamese head is not exactly antisymmetric). ``probs_rev`` are the probabilities for
(reference, test); swapping FIRST and SECOND (PairLabel.reversed) maps them to the forward
frame, and the two are averaged.

Choice: the geometric mean, renormalised (mean of log-probabilities, then softmax). Why:
- it is log-linear pooling, i.e. it treats the two orders as two noisy looks at the same
  comparison and multiplies their evidence, just as the BT likelihood (eq. 11) multiplies
  comparisons;
- a position bias that adds b to the logit of whichever slot is "First" shifts the forward
  FIRST logit and the reversed SECOND-after-swap logit by the same b; the geometric mean then
  gives FIRST and SECOND the same +b/2, so their odds — what decides the sign of δ — are
  exactly bias-free; the arithmetic mean only partly cancels it, because the two orders have
  different normalisers.
Its weakness — one order saying ~0 for a class vetoes it — is bounded by flooring the
probabilities at ``eps`` before the logarithm. ``mode="arithmetic"`` is available for
comparison. Both return ``probs_fwd`` unchanged when the two orders agree.
"""
from __future__ import annotations

import torch

from orderlearn.types import swap_first_second


def combine_orders(probs_fwd: torch.Tensor, probs_rev: torch.Tensor, mode: str = "geometric",
                   eps: float = 1e-12) -> torch.Tensor:
    """Forward-frame probabilities [..., K] from (test, ref) and (ref, test) probabilities."""
    if probs_fwd.shape != probs_rev.shape:
        raise ValueError(f"probs_fwd {tuple(probs_fwd.shape)} and probs_rev {tuple(probs_rev.shape)} differ in shape")
    back = swap_first_second(probs_rev)
    if mode == "arithmetic":
        return 0.5 * (probs_fwd + back)
    if mode != "geometric":
        raise ValueError(f"combine_orders: mode must be 'geometric' or 'arithmetic', got {mode!r}")
    dtype = probs_fwd.dtype if probs_fwd.dtype.is_floating_point else torch.float64
    logs = 0.5 * (probs_fwd.to(dtype).clamp_min(eps).log() + back.to(dtype).clamp_min(eps).log())
    return torch.softmax(logs, dim=-1)
