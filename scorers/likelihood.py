"""The BT negative log-likelihood of eqs. (10)–(12), shared by the grid and exact scorers.

Both scorers reduce the comparator output to *class weights* W [N, R, 3] (FIRST, SECOND,
SIMILAR): hard labels are one-hot rows (the published protocol), soft labels are the
probabilities themselves, and an unobserved comparison is a zero row. Then

    NLL_n(s) = −Σ_i Σ_c W[n,i,c] · log P_c(s − r_i)

which is eq. (12) for one-hot W and the expected log-likelihood for soft W. Two-class
comparators use W[..., 2] = 0 and the two-class link, which is the three-class formula with
τ = 0 and no SIMILAR term, so one code path serves both.

Derivatives (u₁ = k(δ − τ), u₂ = k(−δ − τ); ℓ = the summand's log-likelihood):

    ℓ    = w_F logσ(u₁) + w_M logσ(−u₁) + w_S logσ(u₂) + w_M logσ(−u₂) + w_M log(1 − e^{−2kτ})
    ℓ'   = k[w_F σ(−u₁) − w_M σ(u₁)] − k[w_S σ(−u₂) − w_M σ(u₂)]
    −ℓ'' = k²[(w_F + w_M) σ(u₁)σ(−u₁) + (w_S + w_M) σ(u₂)σ(−u₂)]  ≥ 0

The last line is the proof of convexity: with nonnegative weights the curvature of the NLL in s
is a nonnegative sum, so NLL is convex (strictly, once any weight is positive), and the exact
scorer's Newton iteration has a unique minimiser on [low, high].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .link import Link


def check_inputs(probs: torch.Tensor, ref_scores: torch.Tensor, per_image: bool = False) -> None:
    """Raise ValueError naming the bad argument when shapes or values are off.

    ``per_image=True`` also accepts ``ref_scores`` [N, R]: a different reference set per test
    image (the active scorer's compact form); otherwise it must be the shared bank [R].
    """
    if not isinstance(probs, torch.Tensor) or probs.dim() != 3:
        raise ValueError(f"probs must be a tensor [N, R, K], got {getattr(probs, 'shape', type(probs))}")
    if probs.shape[2] not in (2, 3):
        raise ValueError(f"probs must have K = 2 or 3 classes on its last dim, got K = {probs.shape[2]}")
    if per_image and isinstance(ref_scores, torch.Tensor) and ref_scores.dim() == 2:
        if ref_scores.shape != probs.shape[:2]:
            raise ValueError(f"per-image ref_scores has shape {tuple(ref_scores.shape)}, expected [N, R] = "
                             f"{tuple(probs.shape[:2])}")
    elif not isinstance(ref_scores, torch.Tensor) or ref_scores.dim() != 1:
        shape = getattr(ref_scores, "shape", type(ref_scores))
        raise ValueError(f"ref_scores must be a tensor [R]{' or [N, R]' if per_image else ''}, got {shape}")
    elif ref_scores.shape[0] != probs.shape[1]:
        raise ValueError(f"ref_scores has {ref_scores.shape[0]} references but probs has R = {probs.shape[1]}")
    if not torch.isfinite(ref_scores).all():
        raise ValueError("ref_scores contains non-finite values")
    if not torch.isfinite(probs).all() or bool((probs < 0).any()):
        raise ValueError("probs must be finite and nonnegative")


def class_weights(probs: torch.Tensor, soft: bool, mask: torch.Tensor | None = None) -> torch.Tensor:
    """W [N, R, 3] float64 from probs [N, R, K]: one-hot argmax (hard) or the probabilities (soft).

    Hard-label ties go to the lowest class index (torch.argmax returns the first maximum).
    ``mask`` [N, R] bool marks observed comparisons; unobserved rows get zero weight.
    """
    n, r, k = probs.shape
    p = probs.to(torch.float64)
    if soft:
        w = p
    else:
        w = F.one_hot(p.argmax(dim=-1), k).to(torch.float64)
    if k == 2:
        w = torch.cat([w, torch.zeros(n, r, 1, dtype=w.dtype, device=w.device)], dim=-1)
    if mask is not None:
        if mask.shape != (n, r):
            raise ValueError(f"mask must have shape [N, R] = {(n, r)}, got {tuple(mask.shape)}")
        w = w * mask.to(device=w.device, dtype=w.dtype).unsqueeze(-1)
    return w


def effective_tie_width(link: Link, weights: torch.Tensor, num_classes: int) -> float:
    """τ used in the formulas: 0 for two-class data; an error when SIMILAR has zero probability."""
    if num_classes == 2:
        return 0.0
    if link.tie_width == 0 and bool((weights[..., 2] > 0).any()):
        raise ValueError("link tie_width = 0 gives P(SIMILAR) = 0, but SIMILAR comparisons are present; "
                         "use tie_width > 0 or a two-class comparator")
    return link.tie_width


def _similar_constant(k: float, tau: float) -> float:
    return math.log(-math.expm1(-2.0 * k * tau)) if tau > 0 else 0.0  # 0: W_M is all zero then


def log_prob_table(link: Link, delta: torch.Tensor, tau: float) -> torch.Tensor:
    """log P_c(δ) [..., 3] with the SIMILAR column zeroed when τ = 0 (it then has zero weight)."""
    k = link.slope
    u1 = k * (delta - tau)
    u2 = k * (-delta - tau)
    lf = F.logsigmoid(u1)
    ls = F.logsigmoid(u2)
    lm = (lf - u1) + (ls - u2) + _similar_constant(k, tau) if tau > 0 else torch.zeros_like(lf)
    return torch.stack([lf, ls, lm], dim=-1)


def nll_derivatives(
    s: torch.Tensor, ref_scores: torch.Tensor, weights: torch.Tensor, link: Link, tau: float,
    with_value: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """NLL, dNLL/ds and d²NLL/ds² at s [N] for every image at once (each [N], float64).

    ``ref_scores`` is the shared bank [R] or one reference set per image [N, R].

    ``with_value=False`` skips the NLL itself (None), which Newton iterations do not need.
    """
    k = link.slope
    delta = s.unsqueeze(1) - (ref_scores if ref_scores.dim() == 2 else ref_scores.unsqueeze(0))  # [N, R]
    u1 = k * (delta - tau)
    u2 = k * (-delta - tau)
    wf, ws, wm = weights.unbind(-1)
    nll = None
    if with_value:
        lf, ls = F.logsigmoid(u1), F.logsigmoid(u2)
        ll = wf * lf + ws * ls
        if tau > 0:
            ll = ll + wm * ((lf - u1) + (ls - u2) + _similar_constant(k, tau))
        nll = -ll.sum(1)
    s1, s2 = torch.sigmoid(u1), torch.sigmoid(u2)
    n1, n2 = torch.sigmoid(-u1), torch.sigmoid(-u2)  # not 1 − σ(u): keeps tails accurate
    dll = k * (wf * n1 - wm * s1) - k * (ws * n2 - wm * s2)
    curv = k * k * ((wf + wm) * s1 * n1 + (ws + wm) * s2 * n2)
    return nll, -dll.sum(1), curv.sum(1)
