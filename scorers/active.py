"""Active reference selection: ask the comparator only the comparisons that pin a score down.

Scoring against a full bank costs R comparator calls per test image (R ≈ 350 in LMOL, each an
LMM forward pass). Most are uninformative: a reference 2 points below the test image is answered
FIRST with near certainty and barely moves the estimate. What a comparison with reference r tells
about s is its Fisher information under the link, I(s − r) = E_c[−d² log P_c/ds²]
(:meth:`Link.fisher_information`), which peaks within about ±τ of s. For one parameter, the
Laplace precision after a batch is the current precision plus Σ I over the batch, so the expected
reduction of posterior variance is maximised by the references with the largest information
*expected under the current posterior*, E_post[I(s − r)].

The posterior is kept exactly, on a coarse grid (step 0.01 by default) over the scorer's range:
∝ exp(−NLL) with the base scorer's hard/soft class weights and its Gaussian prior if it has one
(flat otherwise). That matters early on: after a few hard labels the maximum-likelihood estimate
sits on a range edge and a Laplace width there is meaningless, while the grid posterior still
says where the score can be. The expected information is then one matrix product,
post [M, G] @ I [G, R].

Batches: a batch of b questions asked at once should not all probe the same point while the
posterior is wide. So the posterior is cut into b slices of equal mass and slot j takes the
unused reference with the largest information expected under slice j (a soft b-section of the
plausible range); once the posterior is narrow the slices are adjacent and this is the plain
top-b rule. References are never repeated.

``init="median"``: the first batch is aimed at the median reference score (posterior taken as a
point there); ``init="spread"``: at the flat prior, i.e. spread over the range.

All test images take a step together (one ``compare_fn`` call per round for every image still
running); an image stops at ``budget`` comparisons, when no reference is left, or when the base
scorer's std falls below ``stop_std``. The returned scores are the base scorer's on the
comparisons made. Costs: per round, the grid log-likelihood is updated with the new answers only
(O(b·G) per image) and the references are ranked by one product [M·b, G] @ [G, R]; the base
scorer runs once per image, when it stops (every round only with ``stop_std``, which needs its
std), and a scorer that accepts per-image reference sets (``per_image_refs``, the exact scorer)
scores only the comparisons made, not the masked full bank. Rescoring every image every round
used to take most of a row's time (80–90 s of a 64-comparison row on 1100 images).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .base import GaussianPrior, Scorer, Scores
from .likelihood import class_weights, effective_tie_width, log_prob_table

CompareFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``compare_fn(test_indices LongTensor[M], ref_indices LongTensor[M]) -> probs [M, K]`` for the
pairs (test, reference), K = 3 (FIRST, SECOND, SIMILAR) or 2."""


@dataclass
class ActiveResult:
    """Scores plus what the selection spent: comparisons per image and which were made."""

    scores: Scores
    num_comparisons: torch.Tensor  # long [N]
    mask: torch.Tensor  # bool [N, R]
    probs: torch.Tensor  # [N, R, K], zeros where not asked


def compare_from_probs(probs: torch.Tensor) -> CompareFn:
    """A ``compare_fn`` that reads a precomputed [N, R, K] tensor (simulation, re-analysis)."""

    def compare(test_idx: torch.Tensor, ref_idx: torch.Tensor) -> torch.Tensor:
        return probs[test_idx.to(probs.device), ref_idx.to(probs.device)]

    return compare


class ActiveScorer:
    """Iterative, vectorised reference selection around a BT scorer (exact BT recommended)."""

    def __init__(self, scorer: Scorer, budget: int = 32, batch: int = 4, stop_std: Optional[float] = None,
                 init: str = "median", grid_step: float = 0.01) -> None:
        if budget < 1:
            raise ValueError(f"ActiveScorer: budget must be >= 1, got {budget}")
        if batch < 1:
            raise ValueError(f"ActiveScorer: batch must be >= 1, got {batch}")
        if stop_std is not None and not stop_std > 0:
            raise ValueError(f"ActiveScorer: stop_std must be None or > 0, got {stop_std}")
        if init not in ("median", "spread"):
            raise ValueError(f"ActiveScorer: init must be 'median' or 'spread', got {init!r}")
        if not grid_step > 0:
            raise ValueError(f"ActiveScorer: grid_step must be > 0, got {grid_step}")
        self.scorer = scorer
        self.budget, self.batch = int(budget), int(batch)
        self.stop_std = stop_std
        self.init = init
        self.grid_step = float(grid_step)

    # -- the selection posterior -------------------------------------------------------------
    def _grid(self, device: torch.device) -> torch.Tensor:
        low, high = self.scorer.low, self.scorer.high
        n = int(round((high - low) / self.grid_step)) + 1
        return torch.linspace(low, high, n, dtype=torch.float64, device=device)

    def log_likelihood(self, answers: torch.Tensor, chosen: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Log-likelihood on the selection grid of a batch of answers: [M, G].

        ``answers`` [M, b, K] are comparator probabilities of image m against references
        ``chosen`` [M, b]; they are weighted like the base scorer does (hard/soft). ``table``
        [R, 3, G] holds log P_c(g − r) for the bank. Summing these over rounds gives each image's
        log-posterior incrementally, at O(b·G) per image and round instead of O(R·G).
        """
        w = class_weights(answers, self.scorer.soft)
        effective_tie_width(self.scorer.link, w, answers.shape[2])  # SIMILAR answers need τ > 0
        m, b = chosen.shape
        rows = table[chosen].reshape(m, b * 3, table.shape[2])  # [M, b·3, G]
        return torch.bmm(w.reshape(m, 1, b * 3), rows).squeeze(1)

    def bank_table(self, grid: torch.Tensor, refs: torch.Tensor, num_classes: int) -> torch.Tensor:
        """log P_c(g − r) for every reference and grid point: [R, 3, G] (SIMILAR zero for K = 2)."""
        tau = self.scorer.link.tie_width if num_classes == 3 else 0.0
        return log_prob_table(self.scorer.link, grid[None, :] - refs[:, None], tau).permute(0, 2, 1).contiguous()

    def _slices(self, post: torch.Tensor, b: int) -> torch.Tensor:
        """b equal-mass slices of each posterior, renormalised: [M, b, G] (a slice with no grid
        point — a posterior narrower than one point per slice — falls back to the whole)."""
        mid_cdf = post.cumsum(1) - 0.5 * post
        seg = (mid_cdf * b).long().clamp(0, b - 1)  # [M, G]: the slice of each grid point
        parts = post.new_zeros(post.shape[0], b, post.shape[1]).scatter_(1, seg.unsqueeze(1), post.unsqueeze(1))
        mass = parts.sum(2, keepdim=True)
        return torch.where(mass > 0, parts / mass.clamp_min(1e-300), post[:, None, :])

    def select(self, post: torch.Tensor, asked: torch.Tensor, info: torch.Tensor, b: int) -> torch.Tensor:
        """Reference indices [M, b]: slot j takes the unasked reference of largest expected
        information under posterior slice j (no reference twice).

        ``info`` [G, R] may be float32: that is ample for ranking references and halves the cost
        of the largest product here, slices [M, b, G] @ info.
        """
        gain = self._slices(post, b).to(info.dtype) @ info  # [M, b, R]
        gain.masked_fill_(asked.unsqueeze(1), -torch.inf)
        rows = torch.arange(gain.shape[0], device=gain.device)
        picks = []
        for j in range(b):
            pick = gain[:, j].argmax(1)
            picks.append(pick)
            gain[rows, j + 1:, pick] = -torch.inf  # later slots may not take it again
        return torch.stack(picks, dim=1)

    # -- the loop ------------------------------------------------------------------------------
    def score(self, compare_fn: CompareFn, ref_scores: torch.Tensor, num_tests: int,
              num_classes: int = 3, prior: Optional[GaussianPrior] = None) -> ActiveResult:
        """Score test images 0..num_tests−1 of ``compare_fn`` against the bank ``ref_scores``.

        ``prior``: a per-image Gaussian (a regressor's opinion of each face): the first batch is
        aimed at it whatever ``init`` says, the posterior that selects later batches includes it,
        and the base scorer scores under it."""
        if ref_scores.dim() != 1 or ref_scores.numel() == 0:
            raise ValueError(f"ref_scores must be a non-empty tensor [R], got shape {tuple(ref_scores.shape)}")
        if num_tests < 1:
            raise ValueError(f"num_tests must be >= 1, got {num_tests}")
        if num_classes not in (2, 3):
            raise ValueError(f"num_classes must be 2 or 3, got {num_classes}")
        device = ref_scores.device
        refs = ref_scores.to(torch.float64)
        n, r = int(num_tests), refs.shape[0]
        budget = min(self.budget, r)
        low, high = self.scorer.low, self.scorer.high
        grid = self._grid(device)
        info = self.scorer.link.fisher_information(grid[:, None] - refs[None, :], num_classes).float()  # [G, R]
        aimed = prior is not None  # a per-image prior aims the first batch, whatever `init` says
        # the base scorer's fixed prior too, resolved once on the whole bank: the base scorer then
        # scores each image's few comparisons under the prior the full bank would give
        prior = self.scorer.effective_prior(refs, n, prior)
        log_prior = torch.zeros_like(grid) if prior is None else prior.log_density(grid)  # [G] flat, or [N, G]
        table = self.bank_table(grid, refs, num_classes)  # [R, 3, G]
        if aimed:
            start = torch.softmax(log_prior, dim=1)  # [N, G]
        elif self.init == "median":
            start = torch.zeros_like(grid)
            start[(grid - refs.median()).abs().argmin()] = 1.0
        else:
            start = torch.softmax(log_prior, dim=-1)  # the flat or the fixed prior: [G] or [N, G]

        value = torch.full((n,), float(refs.median().clamp(low, high)), dtype=torch.float64, device=device)
        std = torch.full((n,), float("inf"), dtype=torch.float64, device=device)
        lower = torch.full_like(value, low)
        upper = torch.full_like(value, high)
        mask = torch.zeros(n, r, dtype=torch.bool, device=device)
        probs = torch.zeros(n, r, num_classes, dtype=torch.float64, device=device)
        asked = torch.zeros(n, budget, dtype=torch.long, device=device)  # references in asking order
        used = torch.zeros(n, dtype=torch.long, device=device)
        loglik = torch.zeros(n, grid.shape[0], dtype=torch.float64, device=device)
        running = torch.ones(n, dtype=torch.bool, device=device)
        while bool(running.any()):
            idx = running.nonzero().squeeze(1)
            u = int(used[idx[0]])  # all running images have asked the same number so far
            b = min(self.batch, budget - u)
            image_prior = log_prior[idx] if log_prior.dim() == 2 else log_prior
            if u == 0:
                post = start[idx] if start.dim() == 2 else start.expand(idx.shape[0], -1)
            else:
                post = torch.softmax(loglik[idx] + image_prior, dim=1)
            choice = self.select(post, mask[idx], info, b)  # [M, b]
            tests = idx.repeat_interleave(b)
            chosen = choice.reshape(-1)
            answer = torch.as_tensor(compare_fn(tests, chosen))
            if answer.shape != (tests.shape[0], num_classes):
                raise ValueError(f"compare_fn returned shape {tuple(answer.shape)}, expected "
                                 f"[{tests.shape[0]}, {num_classes}]")
            answer = answer.to(device=device, dtype=torch.float64)
            probs[tests, chosen] = answer
            mask[tests, chosen] = True
            asked[idx, u:u + b] = choice
            used[idx] += b
            loglik[idx] += self.log_likelihood(answer.reshape(-1, b, num_classes), choice, table)
            done = used[idx] >= budget
            # the base scorer's answer is only needed where an image stops (or, with stop_std,
            # to decide whether it stops): rescoring every image every round took most of the time
            scored = idx if self.stop_std is not None else idx[done]
            if scored.numel():
                sub = self._score_made(self.scorer, probs, refs, mask, asked, used, scored,
                                       None if prior is None else prior.take(scored))
                value[scored] = sub.value.to(torch.float64)
                if sub.std is not None:
                    std[scored] = sub.std.to(torch.float64)
                elif self.stop_std is not None:
                    raise ValueError(f"stop_std needs a scorer with std; {type(self.scorer).__name__} gives none")
                if sub.lower is not None and sub.upper is not None:
                    lower[scored], upper[scored] = sub.lower.to(torch.float64), sub.upper.to(torch.float64)
            if self.stop_std is not None:
                done |= std[idx] < self.stop_std
            running[idx[done]] = False
        return ActiveResult(Scores(value, std, lower, upper), used, mask, probs)

    @staticmethod
    def _score_made(scorer: Scorer, probs: torch.Tensor, refs: torch.Tensor, mask: torch.Tensor,
                    asked: torch.Tensor, used: torch.Tensor, rows: torch.Tensor,
                    prior: Optional[GaussianPrior] = None) -> Scores:
        """The base scorer on the comparisons made by the images ``rows`` (all have asked equally
        many): only those comparisons when it takes per-image references, else the masked bank;
        ``prior``: those images' per-image prior."""
        if scorer.per_image_refs:
            made = asked[rows, :int(used[rows[0]])]
            return scorer.score(probs[rows[:, None], made], refs[made], prior=prior)
        return scorer.score(probs[rows], refs, mask[rows], prior=prior)
