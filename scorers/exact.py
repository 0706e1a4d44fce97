"""Exact BT scoring: minimise the convex NLL of eq. (12) by safeguarded Newton, all images at once.

Why convex: every log P_c(δ) of the ordered-logistic link is a sum of log-sigmoids of affine
functions of δ (see :mod:`scorers.link`; the SIMILAR term log(1 − σ(u₁) − σ(u₂)) equals
logσ(−u₁) + logσ(−u₂) + log(1 − e^{−2kτ}) exactly), and logσ is concave because
(logσ)'' = −σ(u)σ(−u) < 0. A nonnegative weighted sum of concave functions is concave, so
NLL(s) = −Σ_i Σ_c W_ic log P_c(s − r_i) is convex, with curvature
k² Σ_i [(w_F + w_M)σ(u₁)σ(−u₁) + (w_S + w_M)σ(u₂)σ(−u₂)] ≥ 0 (derived in
:mod:`scorers.likelihood`; tests/test_scorers.py also checks it numerically). A Gaussian prior
adds (s − μ)²/(2σ_p²), which keeps it convex (MAP estimate).

The minimiser is searched in [low, high]: if the slope at ``low`` is ≥ 0 the answer is ``low``,
if the slope at ``high`` is ≤ 0 it is ``high`` (a test image that beats every reference thus gets
the finite score ``high`` rather than +∞), otherwise the slope changes sign inside and a Newton
step s − g/h is taken whenever it stays strictly inside the current sign-change bracket, else
the bracket is bisected. The bracket shrinks at every iteration, so this always converges
(quadratically near the optimum, at worst like bisection).

Uncertainty (Laplace): std = 1/sqrt(NLL''(ŝ)) including the prior's curvature; 95% interval
ŝ ± 1.96 std clipped to [low, high]. At a range edge the posterior is truncated and this is only
a rough width.

Besides the shared bank ``ref_scores`` [R], this scorer accepts one reference set per image,
``ref_scores`` [N, R] (nothing in the Newton iteration couples images); the active scorer uses
that to score only the comparisons it made.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .base import Scorer, Scores
from .likelihood import check_inputs, class_weights, effective_tie_width, nll_derivatives
from .link import Link
from .registry import register

Z95 = 1.959963984540054


@register("bt-exact")
class ExactBTScorer(Scorer):
    """Exact (or MAP with ``prior_std``) BT scorer by vectorised safeguarded Newton.

    ``prior_mean`` defaults to the mean reference score: the bank is drawn from the training
    distribution, so its mean is the natural centre on the task's own scale, whatever loose
    [low, high] was configured (with per-image reference sets: the mean of all of them).
    """

    per_image_refs = True  # score() accepts ref_scores [N, R]

    def __init__(self, link: Link | dict | None = None, low: float = 1.0, high: float = 5.0,
                 soft: bool = False, prior_std: Optional[float] = None, prior_mean: Optional[float] = None,
                 tol: float = 1e-10, max_iter: int = 200) -> None:
        if not high > low:
            raise ValueError(f"ExactBTScorer: high ({high}) must be greater than low ({low})")
        if prior_std is not None and not (math.isfinite(prior_std) and prior_std > 0):
            raise ValueError(f"ExactBTScorer: prior_std must be None or > 0, got {prior_std}")
        if prior_mean is not None and not math.isfinite(prior_mean):
            raise ValueError(f"ExactBTScorer: prior_mean must be finite, got {prior_mean}")
        self.link = Link.from_config(link)
        self.low, self.high = float(low), float(high)
        self.soft = bool(soft)
        self.prior_std = None if prior_std is None else float(prior_std)
        self.prior_mean = None if prior_mean is None else float(prior_mean)
        self.tol, self.max_iter = float(tol), int(max_iter)
        self.last_iterations = 0  # Newton/bisection iterations of the last call (for benchmarks)

    def objective(self, s: torch.Tensor, probs: torch.Tensor, ref_scores: torch.Tensor,
                  mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Objective (NLL + prior), slope and curvature at s [N]: three [N] float64 tensors."""
        check_inputs(probs, ref_scores, per_image=True)
        w = class_weights(probs, self.soft, mask)
        refs = ref_scores.to(device=w.device, dtype=torch.float64)
        return self._derivatives(s.to(device=w.device, dtype=torch.float64), w, refs, probs.shape[2])

    def _derivatives(self, s: torch.Tensor, w: torch.Tensor, refs: torch.Tensor, num_classes: int,
                     with_value: bool = True):
        tau = effective_tie_width(self.link, w, num_classes)
        f, g, h = nll_derivatives(s, refs, w, self.link, tau, with_value)
        if self.prior_std is not None:
            mu = self.prior_mean if self.prior_mean is not None else float(refs.mean())
            prec = 1.0 / self.prior_std ** 2
            if f is not None:
                f = f + 0.5 * prec * (s - mu) ** 2
            g = g + prec * (s - mu)
            h = h + prec
        return f, g, h

    def score(self, probs: torch.Tensor, ref_scores: torch.Tensor,
              mask: Optional[torch.Tensor] = None) -> Scores:
        check_inputs(probs, ref_scores, per_image=True)
        w = class_weights(probs, self.soft, mask)
        refs = ref_scores.to(device=w.device, dtype=torch.float64)
        k = probs.shape[2]
        n = w.shape[0]

        def deriv(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            _, g, h = self._derivatives(s, w, refs, k, with_value=False)
            return g, h

        lo = torch.full((n,), self.low, dtype=torch.float64, device=w.device)
        hi = torch.full((n,), self.high, dtype=torch.float64, device=w.device)
        g_lo, _ = deriv(lo)
        g_hi, _ = deriv(hi)
        at_low = g_lo >= 0  # NLL non-decreasing on the whole range (also: no information at all)
        at_high = (g_hi <= 0) & ~at_low
        s = torch.where(at_low, lo, torch.where(at_high, hi, 0.5 * (lo + hi)))
        active = ~(at_low | at_high)
        iterations = 0
        while bool(active.any()) and iterations < self.max_iter:
            iterations += 1
            g, h = deriv(s)
            lo = torch.where(active & (g < 0), s, lo)
            hi = torch.where(active & (g > 0), s, hi)
            step = g / h
            newton = s - step
            # converged before stepping: a Newton step below tol (it may round to s itself, which
            # would fail the strict bracket test below), a collapsed bracket, or a zero slope
            converged = ((h > 0) & (step.abs() <= self.tol)) | ((hi - lo) <= self.tol) | (g == 0)
            ok = (h > 0) & torch.isfinite(newton) & (newton > lo) & (newton < hi)
            s_new = torch.where(ok, newton, 0.5 * (lo + hi))
            s = torch.where(active & ~converged, s_new, s)
            active = active & ~converged
        self.last_iterations = iterations
        if bool(active.any()):
            raise RuntimeError(f"ExactBTScorer: {int(active.sum())} images did not converge in {self.max_iter} iterations")
        _, h = deriv(s)
        std = torch.where(h > 0, h.clamp_min(1e-300).rsqrt(), torch.full_like(h, math.inf))
        lower = (s - Z95 * std).clamp(self.low, self.high)
        upper = (s + Z95 * std).clamp(self.low, self.high)
        return Scores(s, std, lower, upper)
