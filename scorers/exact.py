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
step s − g/h is taken whenever it stays strictly inside the current sign-change bracket (and
shrinks faster than bisection would), else the bracket is bisected. The bracket shrinks at every
iteration, so this always converges (quadratically near the optimum, at worst like bisection).

Speed (N = 1100 × R = 350 in milliseconds): an evaluation of slope and curvature is a few passes
over N × R numbers, so the cost is the number of such passes. Against a shared bank the edges and
a one-coarse-step bracket come from one small matrix product with a per-class derivative table
(:meth:`ExactBTScorer._start_shared`), and Newton starts from a cubic fit inside it, converging
in about three evaluations instead of seven plus two edge checks; an evaluation uses the two-term
form of :class:`scorers.likelihood.NewtonTerms` (one sigmoid per term, no [N, R, 3] strides), and
images that have converged are dropped from later evaluations.

Uncertainty (Laplace): std = 1/sqrt(NLL''(ŝ)) including the prior's curvature; 95% interval
ŝ ± 1.96 std clipped to [low, high]. At a range edge the posterior is truncated and this is only
a rough width.

Besides the shared bank ``ref_scores`` [R], this scorer accepts one reference set per image,
``ref_scores`` [N, R] (nothing in the Newton iteration couples images); the active scorer uses
that to score only the comparisons it made.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .base import GaussianPrior, Scorer, Scores
from .likelihood import (NewtonTerms, boundary_derivative_table, boundary_weights, check_inputs, class_weights,
                         effective_tie_width, nll_derivatives)
from .link import Link
from .registry import register


Z95 = 1.959963984540054


@register("bt-exact")
class ExactBTScorer(Scorer):
    """Exact (or MAP with ``prior_std``) BT scorer by vectorised safeguarded Newton.

    ``prior_mean`` defaults to the mean reference score: the bank is drawn from the training
    distribution, so its mean is the natural centre on the task's own scale, whatever loose
    [low, high] was configured (with per-image reference sets: the mean of all of them).

    Options (a config's ``scorer:`` keys; the range is ``data.score_low``/``score_high``):

    ``link``: the link's ``slope`` and ``tie_width`` (None: the link's defaults below)
    ``soft``: weight each label by its probability (expected log-likelihood) instead of the most likely label
    ``prior_std``: std of a Gaussian prior on the score (MAP); None: no prior (maximum likelihood)
    ``prior_mean``: mean of that prior (None: the mean reference score)
    ``tol``: Newton's stopping tolerance on the score
    ``max_iter``: most Newton steps per image
    """

    per_image_refs = True  # score() accepts ref_scores [N, R]
    START_POINTS = 21  # coarse grid that brackets the minimiser against a shared bank (0.2 apart on [1, 5])
    SAFETY = 10.0  # margin on Newton's predicted error before a step is taken as the last one

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
        prior = self.effective_prior(refs, s.shape[0])
        if prior is not None:
            mu, prec = prior.mean.to(s), prior.precision
            if f is not None:
                f = f + 0.5 * prec * (s - mu) ** 2
            g = g + prec * (s - mu)
            h = h + prec
        return f, g, h

    def score(self, probs: torch.Tensor, ref_scores: torch.Tensor,
              mask: Optional[torch.Tensor] = None, prior: Optional[GaussianPrior] = None) -> Scores:
        """MAP (or maximum-likelihood) scores; ``prior``: a per-image Gaussian replacing the scorer's own."""
        check_inputs(probs, ref_scores, per_image=True)
        tau = self._tie_width(probs, mask)
        terms = boundary_weights(probs, self.soft, mask)  # [N, 2R]: no [N, R, 3] class weights on the way
        refs = ref_scores.to(device=terms.device, dtype=torch.float64)
        prior = self._prior(refs, probs.shape[0], prior)
        start = self._start_shared(terms, refs, tau, prior) if refs.dim() == 1 else self._start_per_image(probs, mask, refs, tau, prior)

        def accurate(rows: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            w = class_weights(probs[rows.to(probs.device)], self.soft, None if mask is None else mask[rows.to(mask.device)])
            _, g, h = nll_derivatives(x, refs[rows] if refs.dim() == 2 else refs, w, self.link, tau, with_value=False)
            return g, h

        newton = NewtonTerms.from_boundary_weights(terms, refs, self.link, tau, start.sums)
        s, h = self._solve(newton, start, prior, accurate)
        std = torch.where(h > 0, h.clamp_min(1e-300).rsqrt(), torch.full_like(h, math.inf))
        lower = (s - Z95 * std).clamp(self.low, self.high)
        upper = (s + Z95 * std).clamp(self.low, self.high)
        return Scores(s, std, lower, upper)

    def _tie_width(self, probs: torch.Tensor, mask: Optional[torch.Tensor]) -> float:
        """The tau of the formulas (:func:`effective_tie_width`); the class weights it needs to reject
        SIMILAR answers under a zero tie width are only built in that corner."""
        if probs.shape[2] == 2:
            return 0.0
        if self.link.tie_width == 0:  # raises when SIMILAR answers are present
            return effective_tie_width(self.link, class_weights(probs, self.soft, mask), 3)
        return self.link.tie_width

    def _prior(self, refs: torch.Tensor, num_images: int,
               given: Optional[GaussianPrior] = None) -> Optional[tuple[torch.Tensor, float]]:
        """(mean [N], precision) of the prior (:meth:`~scorers.base.Scorer.effective_prior`), or None
        for the plain maximum likelihood."""
        prior = self.effective_prior(refs, num_images, given)
        if prior is None:
            return None
        return prior.mean.to(device=refs.device, dtype=torch.float64), prior.precision

    def _start_shared(self, terms: torch.Tensor, refs: torch.Tensor, tau: float,
                      prior: Optional[tuple[float, float]]) -> "_Start":
        """Bracket and start of every image against the shared bank, from a coarse grid.

        The slope and curvature of every image at START_POINTS points of [low, high] (0.2 apart on
        [1, 5]: 41 points cost more in the product than the better start saved) are one
        small matrix product (A [N, 2R] @ two-term derivative table [2R, 2G],
        :func:`boundary_derivative_table`, as accurate as the per-class form). The slope is
        nondecreasing (convexity), so its first sign change brackets the minimiser within one
        coarse step, and it also settles the edges exactly: slope >= 0 at ``low`` means ``low``,
        slope < 0 at ``high`` means ``high``. Inside the bracket the start is the root of the
        cubic through the slopes and curvatures at both ends, close enough for Newton to
        converge in two passes over the data (from the middle of the range it took seven, plus
        two for the edges).
        """
        n = terms.shape[0]
        grid = torch.linspace(self.low, self.high, self.START_POINTS, dtype=torch.float64, device=terms.device)
        slope_t, curv_t = boundary_derivative_table(self.link, grid[:, None] - refs[None, :], tau)  # [G, 2R] each
        # two more columns give NewtonTerms its per-image sums Σ A₁ and Σ A in the same product
        ones = torch.ones(2, terms.shape[1], dtype=torch.float64, device=terms.device)
        ones[0, terms.shape[1] // 2:] = 0
        both = terms @ torch.cat([slope_t, curv_t, ones]).T  # [N, 2G + 2]
        g = grid.shape[0]
        slope, curv = both[:, :g], both[:, g:2 * g]
        if prior is not None:
            mu, precision = prior
            slope = slope + precision * (grid - (mu[:, None] if torch.is_tensor(mu) else mu))
            curv = curv + precision
        nonneg = slope >= 0
        # first grid point with slope >= 0 (G when there is none: the minimiser is `high`)
        first = torch.where(nonneg.any(1), nonneg.to(torch.uint8).argmax(1), grid.shape[0])
        at_low, at_high = first == 0, first == grid.shape[0]
        j = first.clamp(1, grid.shape[0] - 1)
        rows = torch.arange(n, device=terms.device)
        lo, hi = grid[j - 1], grid[j]
        g_lo, g_hi = slope[rows, j - 1], slope[rows, j]
        h_lo, h_hi = curv[rows, j - 1], curv[rows, j]
        s = _hermite_root(lo, hi, g_lo, g_hi, h_lo, h_hi)
        s = torch.where(g_hi == 0, hi, s)  # a grid point is the exact root
        done_value = torch.where(at_low, grid[0], grid[-1])
        done_curv = torch.where(at_low, curv[:, 0], curv[:, -1])
        return _Start(torch.where(at_low | at_high, done_value, s), lo, hi, at_low | at_high, done_curv,
                      sums=(both[:, 2 * g], both[:, 2 * g + 1]))

    def _start_per_image(self, probs: torch.Tensor, mask: Optional[torch.Tensor], refs: torch.Tensor, tau: float,
                         prior: Optional[tuple[float, float]]) -> "_Start":
        """Bracket and start with one reference set per image: the edges are checked in the
        accurate per-class form (:func:`nll_derivatives`), the start is the middle of the range."""
        w = class_weights(probs, self.soft, mask)
        n = w.shape[0]
        edges = []
        for edge in (self.low, self.high):
            x = torch.full((n,), edge, dtype=torch.float64, device=w.device)
            _, g, h = nll_derivatives(x, refs, w, self.link, tau, with_value=False)
            if prior is not None:
                mu, precision = prior
                g, h = g + precision * (edge - mu), h + precision
            edges.append((x, g, h))
        (x_lo, g_lo, h_lo), (x_hi, g_hi, h_hi) = edges
        at_low = g_lo >= 0  # non-decreasing on the whole range (also: no information at all)
        at_high = (g_hi <= 0) & ~at_low
        s = torch.where(at_low, x_lo, torch.where(at_high, x_hi, 0.5 * (x_lo + x_hi)))
        return _Start(s, x_lo, x_hi, at_low | at_high, torch.where(at_low, h_lo, h_hi))

    def _solve(self, terms: NewtonTerms, start: "_Start", prior: Optional[tuple[float, float]],
               accurate: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Minimiser and curvature there, for every image: bracketed, safeguarded Newton.

        ``start`` brackets each minimiser by a slope sign change (g(lo) < 0 < g(hi), or a range
        edge) and settles the images whose minimiser is a range edge. A Newton step is taken when
        it stays strictly inside the bracket, which shrinks at every iteration (g < 0 moves lo
        up, g > 0 moves hi down); otherwise the bracket is bisected. Only images still running
        are evaluated: converged ones are dropped from ``terms``, so late iterations are cheap.
        Images whose objective is too flat for the fast form's rounding (:meth:`NewtonTerms.untrusted`)
        are evaluated by ``accurate(rows, s)`` (the per-class form) instead.

        Stopping without a confirming evaluation: near the root Newton's error after a step is
        about |NLL‴| / (2 NLL″) · step². With the third derivative estimated from the
        curvature's change between the image's last two evaluations (the start's bracket, 0.1
        wide, is too coarse for it on a steep link), an image whose step lands inside its bracket
        with a predicted error below tol / SAFETY takes that step and stops; that saves the
        third of three passes over the data. The
        curvature returned is then extrapolated along that step (NLL″ + NLL‴·step, a relative
        error of order step² in the std); otherwise it is the one evaluated at the final point.
        """
        s, lo, hi = start.s.clone(), start.lo.clone(), start.hi.clone()
        curvature = start.curvature.clone()
        prev_x, prev_h = torch.full_like(s, math.nan), torch.full_like(s, math.nan)
        last_move = hi - lo  # length of each image's previous move (for the slow-progress rule)
        running = ~start.done
        rows = running.nonzero().squeeze(1)
        taken = None  # positions of `rows` inside `terms` when terms hold more images than rows
        if rows.numel() < len(terms):  # some settled at a range edge: copy the rest only if few remain
            terms, taken = (terms.take(rows), None) if 4 * rows.numel() <= 3 * len(terms) else (terms, rows)
        iterations = 0
        while rows.numel() and iterations < self.max_iter:
            iterations += 1
            x = s[rows]
            if taken is not None:  # terms still hold some converged images: evaluate, then drop them
                at = torch.zeros(len(terms), dtype=torch.float64, device=x.device)
                at[taken] = x
                g, h = terms.slope_curvature(at)
                flat = terms.untrusted(h)[taken]
                g, h = g[taken], h[taken]
            else:
                g, h = terms.slope_curvature(x)
                flat = terms.untrusted(h)
            if bool(flat.any()):
                g[flat], h[flat] = accurate(rows[flat], x[flat])
            if prior is not None:
                mu, precision = prior
                g = g + precision * (x - (mu[rows] if torch.is_tensor(mu) else mu))
                h = h + precision
            curvature[rows] = h
            px, ph = prev_x[rows], prev_h[rows]
            moved = torch.isfinite(px) & (x != px)
            rate = torch.where(moved, (h - ph) / (x - px), torch.zeros_like(h))  # NLL‴ (signed), where measured
            prev_x[rows], prev_h[rows] = x, h
            b_lo = torch.where(g < 0, x, lo[rows])
            b_hi = torch.where(g > 0, x, hi[rows])
            step = g / h
            newton = x - step
            # converged before stepping: a Newton step below tol (it may round to s itself, which
            # would fail the strict bracket test below), a collapsed bracket, or a zero slope
            converged = ((h > 0) & (step.abs() <= self.tol)) | ((b_hi - b_lo) <= self.tol) | (g == 0)
            # Newton only while it converges: a step longer than half the previous move means
            # the curvature misleads (a nearly flat stretch), and bisection then guarantees progress
            inside = ((h > 0) & torch.isfinite(newton) & (newton > b_lo) & (newton < b_hi)
                      & (2 * step.abs() <= last_move[rows]))
            nxt = torch.where(inside, newton, 0.5 * (b_lo + b_hi))
            lands = inside & moved & ~converged & (self.SAFETY * rate.abs() * step * step <= 2 * self.tol * h)
            converged = converged | lands
            # the curvature at the point it lands on, to first order (the std's relative error ~ step²)
            curvature[rows] = torch.where(lands, h - rate * step, h)
            lo[rows], hi[rows] = b_lo, b_hi
            last_move[rows] = (nxt - x).abs()
            s[rows] = torch.where(converged & ~lands, x, nxt)
            if bool(converged.any()):
                keep = (~converged).nonzero().squeeze(1)
                rows = rows[keep]
                taken = keep if taken is None else taken[keep]
                # copying the terms of the running images costs about a third of an evaluation:
                # worth it once a good share has converged, not for a few stragglers
                if 4 * taken.numel() <= 3 * len(terms):
                    terms, taken = terms.take(taken), None
        self.last_iterations = iterations
        if rows.numel():
            raise RuntimeError(f"ExactBTScorer: {rows.numel()} images did not converge in {self.max_iter} iterations")
        return s, curvature


@dataclass
class _Start:
    """Where the iteration starts, per image: point ``s``, slope-sign bracket [lo, hi], and the
    images already settled at a range edge (``done``, with the curvature there)."""

    s: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    done: torch.Tensor
    curvature: torch.Tensor
    sums: Optional[tuple[torch.Tensor, torch.Tensor]] = None  # (Σ A₁, Σ A) per image, when the start had them


def _hermite_root(lo: torch.Tensor, hi: torch.Tensor, g_lo: torch.Tensor, g_hi: torch.Tensor,
                  h_lo: torch.Tensor, h_hi: torch.Tensor, steps: int = 6) -> torch.Tensor:
    """Root in (lo, hi) of the cubic Hermite interpolant of the slope (values g, derivatives h
    at both ends, g_lo < 0 ≤ g_hi), by a few safeguarded Newton steps on the cubic from the
    secant point. It is only a starting point, so a handful of [N]-sized steps is plenty; the
    cubic is kept as its four coefficients in t = (s − lo) / width and evaluated by Horner's rule
    (fewer [N]-sized operations per step than the Hermite basis)."""
    width = hi - lo
    d_lo, d_hi = h_lo * width, h_hi * width  # derivatives in t
    c1 = d_lo
    c2 = 3 * (g_hi - g_lo) - 2 * d_lo - d_hi
    c3 = 2 * (g_lo - g_hi) + d_lo + d_hi
    t = (-g_lo / (g_hi - g_lo)).clamp(0.0, 1.0).nan_to_num(0.5)
    t_lo, t_hi = torch.zeros_like(t), torch.ones_like(t)
    for _ in range(steps):
        p = ((c3 * t + c2) * t + c1) * t + g_lo
        dp = (3 * c3 * t + 2 * c2) * t + c1
        t_lo, t_hi = torch.where(p < 0, t, t_lo), torch.where(p > 0, t, t_hi)
        nxt = t - p / dp
        ok = (nxt > t_lo) & (nxt < t_hi)  # false for NaN and ±inf too
        t = torch.where(p == 0, t, torch.where(ok, nxt, 0.5 * (t_lo + t_hi)))
    return lo + t * width
