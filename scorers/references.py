"""Where the comparator places each reference: its position, fitted on validation comparisons.

BT scoring reads a reference's *known* score r as its position on the scale. But a trained
comparator does not compare a face with that number: it compares it with its own picture of
the reference, which sits at some r̃ ≠ r (the reference's rating is noisy, the comparator's
view of that face is biased). Against the full bank these per-reference offsets average out;
against the 16–32 references an active selection asks (or a small bank) they do not, and they
are the main reason a few well-chosen comparisons fall short of the whole bank.

The comparator's answers for validation images (true scores v known) against reference i pin
r̃_i down: it is the BT estimate of the reference itself, with the validation images as its
references and every answer seen from the reference's side (FIRST ↔ SECOND):

    r̃_i = argmin_r  −Σ_v Σ_c W[v, i, c̄] · log P_c(r − v)      (c̄: c with FIRST and SECOND swapped)

— the very problem :class:`~scorers.exact.ExactBTScorer` solves (convex, exact), hard or soft as
the scorer scoring the test images, under the same link. Test images are then scored against
r̃ instead of r. Everything is fitted on validation images carved from the training files.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from orderlearn.types import swap_first_second

from .exact import ExactBTScorer
from .link import Link


def fit_reference_positions(probs: torch.Tensor, truth: torch.Tensor, link: Link | dict | None = None,
                            soft: bool = False, low: float = 1.0, high: float = 5.0,
                            mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Positions r̃ [R] (float64) of the references from validation × reference answers.

    ``probs`` [V, R, K]: the comparator's answers for (validation image v, reference i) in the form
    the scorer reads; ``truth`` [V]: the validation images' true scores. A reference the
    comparator places above (below) every validation image gets ``high`` (``low``). ``mask``
    [V, R]: the answers to use (references × references leave each reference's own pair out).
    """
    if probs.dim() != 3 or truth.dim() != 1 or probs.shape[0] != truth.shape[0]:
        raise ValueError(f"fit_reference_positions: probs [V, R, K] and truth [V] must agree, got "
                         f"{tuple(probs.shape)} and {tuple(truth.shape)}")
    if probs.shape[0] == 0:
        raise ValueError("fit_reference_positions: no validation comparisons to fit the positions on")
    seen_by_reference = swap_first_second(probs).transpose(0, 1).contiguous()  # [R, V, K]
    scorer = ExactBTScorer(link=link, low=low, high=high, soft=soft)
    seen_mask = None if mask is None else mask.transpose(0, 1).contiguous()
    return scorer.score(seen_by_reference.double(), truth.to(torch.float64), seen_mask).value


@dataclass
class Calibration:
    """What :func:`calibrate` fitted: the link, and the references' positions (None: not fitted)."""

    link: Link
    positions: Optional[torch.Tensor]


def calibrate(probs: torch.Tensor, truth: torch.Tensor, bank_scores: torch.Tensor, link: Link,
              fit_link: bool, fit_positions: bool, soft: bool = False, low: float = 1.0,
              high: float = 5.0, mask: Optional[torch.Tensor] = None) -> Calibration:
    """The link (:meth:`Link.fit`, starting from ``link``) and/or the references' positions, from
    validation × bank answers ``probs`` [V, R, K] with true scores ``truth`` [V].

    With both, the link is fitted on the known scores, the positions under it, then the link once
    more on the positions and the positions under that link: one alternation, because each
    depends on the other (a steeper link moves references less). ``mask`` [V, R]: only these
    answers are used (a bank calibrated on itself leaves out each reference against itself).
    """
    positions: Optional[torch.Tensor] = None
    for _ in range(2 if fit_link and fit_positions else 1):
        if fit_link:
            places = bank_scores.to(torch.float64) if positions is None else positions
            delta = truth.to(torch.float64)[:, None] - places[None, :]
            answers = probs.double()
            if mask is not None:
                delta, answers = delta[mask], answers[mask]
            link = link.fit(delta.reshape(-1), answers.reshape(-1, probs.shape[-1]))
        if fit_positions:
            positions = fit_reference_positions(probs, truth, link, soft, low, high, mask)
    return Calibration(link, positions)
