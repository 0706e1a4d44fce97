"""The published BT protocol: grid search of the NLL over s ∈ [1.0, 5.0] with step 1e-3 (eq. 13).

Because δ = g − r_i depends only on the grid point g and the reference i, the per-class log
likelihoods form one table T[g, i, c] = log P_c(g − r_i) shared by every test image, and the NLL
of all images on all grid points is a single matrix product

    NLL[n, g] = −Σ_{i,c} W[n, i, c] · T[g, i, c]

(W = class weights, see :mod:`scorers.likelihood`). That makes the exhaustive grid cheap and
exact to float64 rounding; the product is chunked over test images to bound memory.

Ties in the argmin go to the lowest grid point (torch.argmin returns the first minimum); with a
convex NLL a tie can only happen between neighbouring points or on a flat stretch, so this only
matters when a test image has no informative comparison, and then the lowest score is returned.

Uncertainty: the posterior under a flat prior on [low, high] (or the per-image Gaussian prior
passed to :meth:`GridBTScorer.score`, whose log-density is then added) is ∝ exp(−NLL) on the grid; ``std``
is its standard deviation and the 95% interval is its highest-posterior-density set (contiguous,
since the NLL is convex), which always contains the grid argmin, also when the estimate sits on
the range's edge (an equal-tailed interval would not).

The grid has at most :data:`MAX_GRID_POINTS` points: the table is [3R, G] float64, about 2 GB
for a 350-reference bank at that size, while a step of 1e-9 on [1, 5] would ask for 32 GB and more.
The bound still takes a 0..100 age range at the published step of 1e-3 (100,001 points).
"""
from __future__ import annotations

from typing import Optional

import torch

from .base import GaussianPrior, Scorer, Scores
from .likelihood import check_inputs, class_weights, effective_tie_width, log_prob_table
from .link import Link
from .registry import register

MAX_GRID_POINTS = 250_001


@register("bt-grid")
class GridBTScorer(Scorer):
    """Grid-search BT scorer (LMOL protocol); ``soft=True`` uses the expected log-likelihood.

    Options (a config's ``scorer:`` keys; the range is ``data.score_low``/``score_high``):

    ``link``: the link's ``slope`` and ``tie_width`` (None: the link's defaults below)
    ``step``: spacing of the grid of candidate scores
    ``soft``: weight each label by its probability (expected log-likelihood) instead of the most likely label
    ``chunk_elements``: the most grid x comparison elements held in memory at once (speed, not numbers)
    ``mass``: posterior mass of the interval around each score (0.95: the 95% interval)
    """

    def __init__(self, link: Link | dict | None = None, low: float = 1.0, high: float = 5.0,
                 step: float = 1e-3, soft: bool = False, chunk_elements: int = 1 << 24,
                 mass: float = 0.95) -> None:
        if not high > low:
            raise ValueError(f"GridBTScorer: high ({high}) must be greater than low ({low})")
        if not step > 0:
            raise ValueError(f"GridBTScorer: step must be > 0, got {step}")
        if not (high - low) / step < MAX_GRID_POINTS:  # also an infinite range
            raise ValueError(f"GridBTScorer: step {step:g} makes {(high - low) / step + 1:.4g} grid points over "
                             f"[{low:g}, {high:g}]; at most {MAX_GRID_POINTS} (step >= {(high - low) / (MAX_GRID_POINTS - 1):.3g})")
        if not 0 < mass < 1:
            raise ValueError(f"GridBTScorer: mass must be in (0, 1), got {mass}")
        self.link = Link.from_config(link)
        self.low, self.high, self.step = float(low), float(high), float(step)
        self.soft = bool(soft)
        self.chunk_elements = int(chunk_elements)
        self.mass = float(mass)

    def grid(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The grid points low, low + step, …, high (float64)."""
        n = int(round((self.high - self.low) / self.step)) + 1
        return torch.linspace(self.low, self.high, n, dtype=torch.float64, device=device)

    def nll(self, probs: torch.Tensor, ref_scores: torch.Tensor,
            mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """NLL of every test image on every grid point: [N, G] float64 (eq. 12)."""
        check_inputs(probs, ref_scores)
        w = class_weights(probs, self.soft, mask)
        table = self._table(w, ref_scores, probs.shape[2])
        return torch.cat([nll for _, nll in self._nll_chunks(w, table)], dim=0)

    def _table(self, w: torch.Tensor, ref_scores: torch.Tensor, num_classes: int) -> torch.Tensor:
        """T[i*3 + c, g] = log P_c(g − r_i), shared by all test images: [R*3, G]."""
        tau = effective_tie_width(self.link, w, num_classes)
        grid = self.grid(w.device)
        refs = ref_scores.to(device=w.device, dtype=torch.float64)
        return log_prob_table(self.link, grid[:, None] - refs[None, :], tau).reshape(grid.shape[0], -1).T

    def _nll_chunks(self, w: torch.Tensor, table: torch.Tensor):
        """Yield (start, NLL[chunk, G]) over chunks of test images."""
        flat = w.reshape(w.shape[0], -1)
        chunk = max(1, self.chunk_elements // table.shape[1])
        for i in range(0, flat.shape[0], chunk):
            yield i, -(flat[i:i + chunk] @ table)

    def score(self, probs: torch.Tensor, ref_scores: torch.Tensor,
              mask: Optional[torch.Tensor] = None, prior: Optional[GaussianPrior] = None) -> Scores:
        """Scores of ``probs`` against ``ref_scores``: the grid argmin of the NLL (minus the log of
        ``prior``, a per-image Gaussian, when given: the posterior mode)."""
        check_inputs(probs, ref_scores)
        prior = self.effective_prior(ref_scores.double(), probs.shape[0], prior)
        w = class_weights(probs, self.soft, mask)
        table = self._table(w, ref_scores, probs.shape[2])
        grid = self.grid(probs.device)
        values, stds, lowers, uppers = [], [], [], []
        for start, nll in self._nll_chunks(w, table):
            if prior is not None:
                nll = nll - prior.take(slice(start, start + nll.shape[0])).log_density(grid)
            values.append(grid[nll.argmin(dim=1)])
            post = torch.softmax(-nll, dim=1)  # flat prior on the grid, or the given one
            mean = post @ grid
            stds.append(((post * (grid[None, :] - mean[:, None]) ** 2).sum(1)).sqrt())
            lo, hi = self._hpd(post, grid)
            lowers.append(lo)
            uppers.append(hi)
        return Scores(torch.cat(values), torch.cat(stds), torch.cat(lowers), torch.cat(uppers))

    def _hpd(self, post: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Smallest set of grid points holding ``mass`` posterior mass; its min and max."""
        sorted_p, _ = post.sort(dim=1, descending=True)
        cum = sorted_p.cumsum(1)
        # index of the last point needed to reach the mass (clamped for rounding at the end)
        last = torch.searchsorted(cum, torch.full((post.shape[0], 1), self.mass, dtype=cum.dtype,
                                                  device=cum.device)).clamp(max=grid.shape[0] - 1)
        threshold = sorted_p.gather(1, last)
        inside = post >= threshold
        big = torch.full_like(post, float("inf"))
        lower = torch.where(inside, grid[None, :].expand_as(post), big).min(1).values
        upper = torch.where(inside, grid[None, :].expand_as(post), -big).max(1).values
        return lower, upper
