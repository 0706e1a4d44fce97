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
from typing import Optional

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
    # one pass, no temporaries: min >= 0 and max < inf fail for NaN too (comparisons with NaN are false)
    low, high = torch.aminmax(probs) if probs.numel() else (torch.zeros(()), torch.zeros(()))
    if not (bool(low >= 0) and bool(high < math.inf)):
        raise ValueError("probs must be finite and nonnegative")


def class_weights(probs: torch.Tensor, soft: bool, mask: torch.Tensor | None = None) -> torch.Tensor:
    """W [N, R, 3] float64 from probs [N, R, K]: one-hot argmax (hard) or the probabilities (soft).

    Hard-label ties go to the lowest class index, as torch.argmax would break them.
    ``mask`` [N, R] bool marks observed comparisons; unobserved rows get zero weight.
    """
    n, r, k = probs.shape
    if mask is not None and mask.shape != (n, r):
        raise ValueError(f"mask must have shape [N, R] = {(n, r)}, got {tuple(mask.shape)}")
    w = torch.zeros(n, r, 3, dtype=torch.float64, device=probs.device)
    if soft:
        w[..., :k] = probs
    else:
        w[..., :k] = hard_labels(probs)
    if mask is not None:
        w.mul_(mask.to(device=w.device, dtype=w.dtype).unsqueeze(-1))
    return w


def hard_labels(probs: torch.Tensor) -> torch.Tensor:
    """One-hot argmax of probs [..., K] (K = 2 or 3) as bool [..., K], ties to the lowest index.

    Why not ``F.one_hot(probs.argmax(-1))``: an argmax over a last dimension of 2 or 3 runs as
    a slow strided reduction and one_hot allocates int64; two or three comparisons of the class
    planes give the same labels several times faster (the exact scorer's largest setup cost).
    """
    first = probs[..., 0] >= probs[..., 1]
    if probs.shape[-1] == 2:
        return torch.stack([first, ~first], dim=-1)
    first &= probs[..., 0] >= probs[..., 2]
    second = ~first & (probs[..., 1] >= probs[..., 2])
    return torch.stack([first, second, ~(first | second)], dim=-1)


def boundary_weights(probs: torch.Tensor, soft: bool, mask: torch.Tensor | None = None) -> torch.Tensor:
    """A [N, 2R] float64: per (image, reference), the weights of the two sigmoid terms of
    :class:`NewtonTerms` — A₁ = w_F + w_M (the FIRST side of the SIMILAR band), then A₂ = w_M + w_S
    — straight from ``probs`` [N, R, K], without the [N, R, 3] class weights.

    Hard labels: A₁ = "not SECOND", A₂ = "not FIRST" (ties to the lowest class index, as
    :func:`hard_labels`); soft: sums of the probabilities; two classes: A₁ = w_F, A₂ = w_S.
    ``mask`` [N, R] zeroes the unobserved comparisons. Equal to regrouping :func:`class_weights`.
    """
    n, r, k = probs.shape
    if mask is not None and mask.shape != (n, r):
        raise ValueError(f"mask must have shape [N, R] = {(n, r)}, got {tuple(mask.shape)}")
    out = torch.empty(n, 2, r, dtype=torch.float64, device=probs.device)
    p_first, p_second = probs[..., 0], probs[..., 1]
    if soft:
        if k == 3:
            torch.add(p_first, probs[..., 2], out=out[:, 0])
            torch.add(p_second, probs[..., 2], out=out[:, 1])
        else:
            out[:, 0], out[:, 1] = p_first, p_second
    else:
        first = p_first >= p_second
        if k == 3:
            first &= p_first >= probs[..., 2]
            second = ~first & (p_second >= probs[..., 2])
            out[:, 0], out[:, 1] = ~second, ~first
        else:
            out[:, 0], out[:, 1] = first, ~first
    if mask is not None:
        out.mul_(mask.to(device=out.device, dtype=out.dtype).unsqueeze(1))
    return out.view(n, 2 * r)


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


def derivative_table(link: Link, delta: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Slope and curvature of −log P_c(δ) in s (δ = s − r), each [..., 3] for (FIRST, SECOND, SIMILAR).

    With a = σ(u₁), ā = σ(−u₁), b = σ(u₂), b̄ = σ(−u₂), each taken directly (never as 1 − σ, so
    the tails keep full relative precision):

        FIRST:   −k ā,       k² a ā
        SECOND:  +k b̄,       k² b b̄
        SIMILAR: k (a − b),  k² (a ā + b b̄)

    The SIMILAR column has zero weight when τ = 0 (two classes); its values are then unused.
    """
    k = link.slope
    u1 = k * (delta - tau)
    u2 = k * (-delta - tau)
    a, a_ = torch.sigmoid(u1), torch.sigmoid(-u1)
    b, b_ = torch.sigmoid(u2), torch.sigmoid(-u2)
    c1, c2 = a * a_, b * b_
    slope = torch.stack([-k * a_, k * b_, k * (a - b)], dim=-1)
    curvature = torch.stack([k * k * c1, k * k * c2, k * k * (c1 + c2)], dim=-1)
    return slope, curvature


def boundary_derivative_table(link: Link, delta: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Slope and curvature of the two terms of :func:`boundary_weights` at δ [G, R]: each [G, 2R].

    With x₁ = k(δ − τ), x₂ = k(δ + τ): slope −k σ(−x₁) (weight A₁) and +k σ(x₂) (weight A₂),
    curvature k² σ(x)σ(−x) for each, so NLL' = A·slope and NLL'' = A·curvature. Every term is a
    sigmoid taken directly, never 1 − σ: the same accuracy as the per-class form
    (:func:`derivative_table`, of which this is an exact regrouping), so the slope's *sign* is
    right also where the objective is nearly flat (the range edges), at two thirds of its width.
    """
    k = link.slope
    x = torch.cat([k * (delta - tau), k * (delta + tau)], dim=-1)  # [G, 2R]
    up, down = torch.sigmoid(x), torch.sigmoid(-x)
    r = delta.shape[-1]
    slope = torch.cat([-k * down[..., :r], k * up[..., r:]], dim=-1)
    return slope, (k * k) * (up * down)


def nll_derivatives(
    s: torch.Tensor, ref_scores: torch.Tensor, weights: torch.Tensor, link: Link, tau: float,
    with_value: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """NLL, dNLL/ds and d²NLL/ds² at s [N] for every image at once (each [N], float64).

    ``ref_scores`` is the shared bank [R] or one reference set per image [N, R]. This is the
    reference form (every term in full precision); the exact scorer's iteration uses the faster
    :class:`NewtonTerms` and this one where a slope's sign decides (the range edges).

    ``with_value=False`` skips the NLL itself (None), which Newton iterations do not need.
    """
    delta = s.unsqueeze(1) - (ref_scores if ref_scores.dim() == 2 else ref_scores.unsqueeze(0))  # [N, R]
    nll = None
    if with_value:
        nll = -(weights * log_prob_table(link, delta, tau)).sum((1, 2))
    slope, curvature = derivative_table(link, delta, tau)
    return nll, (weights * slope).sum((1, 2)), (weights * curvature).sum((1, 2))


class NewtonTerms:
    """The class weights and reference offsets of many BT problems, laid out for fast slopes.

    Why this layout: the exact scorer evaluates the NLL's slope and curvature at one point per
    image a few times, and at N × R ≈ 4·10⁵ entries an evaluation is bound by passes over
    memory, not by arithmetic. Each reference contributes two sigmoid terms, one per boundary
    of the SIMILAR band: with x₁ = ks − k(r + τ) = u₁ and x₂ = ks − k(r − τ) = −u₂,

        NLL'  = k [Σ_j A_j σ(x_j) − C]          A₁ = w_F + w_M,  A₂ = w_M + w_S,  C = Σ (w_F + w_M)
        NLL'' = k² Σ_j A_j σ(x_j) (1 − σ(x_j))

    (the derivatives of :func:`derivative_table` regrouped with ā = 1 − a, b = 1 − b̄). So an
    evaluation is one subtraction, one sigmoid, one square and one batched product over the
    [M, 2R] terms — about a third of the memory traffic of the per-class form. Its rounding
    error is absolute, ≈ k·R·1e-16 in the slope: negligible next to the curvature wherever the
    minimiser is interior, which is the only place it is used; where a slope's *sign* on a
    nearly flat objective decides (the range edges), the scorer uses the per-class form.
    ``offsets`` are k(r + τ), k(r − τ) as [2R] (shared bank) or [M, 2R] (per-image references).
    :meth:`take` keeps only some images, which is how converged images stop costing anything.
    """

    #: below this share of its worst-case rounding scale (k²·Σ A) a curvature is not trusted
    TRUST = 1e-8

    def __init__(self, weights: torch.Tensor, constant: torch.Tensor, offsets: torch.Tensor, slope: float,
                 mass: torch.Tensor) -> None:
        self.weights, self.constant, self.offsets, self.slope = weights, constant, offsets, float(slope)
        self.mass = mass  # Σ A per image: the scale of the rounding error of both sums

    @classmethod
    def from_boundary_weights(cls, terms: torch.Tensor, ref_scores: torch.Tensor, link: Link, tau: float,
                              sums: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> "NewtonTerms":
        """From :func:`boundary_weights` A [N, 2R] and the bank [R] (or per-image references [N, R]);
        ``sums`` = (Σ A₁, Σ A) per image when already known (the exact scorer's start has them)."""
        r = terms.shape[1] // 2
        k = link.slope
        refs = ref_scores.to(device=terms.device, dtype=torch.float64)
        offsets = torch.cat([k * (refs + tau), k * (refs - tau)], dim=-1)
        constant, mass = sums if sums is not None else (terms[:, :r].sum(1), terms.sum(1))
        return cls(terms, constant, offsets, k, mass)

    def __len__(self) -> int:
        return self.weights.shape[0]

    def take(self, rows: torch.Tensor) -> "NewtonTerms":
        """The same terms for the images ``rows`` only (a LongTensor of positions)."""
        offsets = self.offsets[rows] if self.offsets.dim() == 2 else self.offsets
        return NewtonTerms(self.weights[rows], self.constant[rows], offsets, self.slope, self.mass[rows])

    def slope_curvature(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """dNLL/ds and d²NLL/ds² at s [M] for the M images held (each [M], float64)."""
        k = self.slope
        m, t = self.weights.shape
        values = torch.empty(m, 2, t, dtype=self.weights.dtype, device=s.device)
        sig, square = values[:, 0], values[:, 1]
        torch.sub((k * s).unsqueeze(1), self.offsets, out=sig)
        sig.sigmoid_()
        torch.mul(sig, sig, out=square)
        dots = torch.bmm(values, self.weights.unsqueeze(2)).squeeze(2)  # [M, 2]: Σ A σ, Σ A σ²
        return k * (dots[:, 0] - self.constant), (k * k) * (dots[:, 0] - dots[:, 1])

    def untrusted(self, curvature: torch.Tensor) -> torch.Tensor:
        """Which curvatures [M] are too small for this form's rounding (bool [M]).

        Both sums carry an absolute error of about 1e-16·Σ A; where the curvature is within a
        factor 1e8 of that (a nearly flat objective: every comparison saturated by a steep link),
        the slope's error would move the Newton step by more than 1e-8/k, so those images are
        evaluated in the per-class form instead.
        """
        return curvature <= self.TRUST * (self.slope ** 2) * self.mass
