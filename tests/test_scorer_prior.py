"""A per-image Gaussian prior (scorers.GaussianPrior): a regressor's opinion of each face that the
scorers start from, so few comparisons refine it instead of starting from nothing (the fused route).

The grid and exact scorers agree under it; it is the fixed prior where every mean is the same; a
wide prior changes nothing and a narrow one pins the score; the active scorer aims its first
questions at it and scores under it; a bad prior is refused with the argument named."""
from __future__ import annotations

import pytest
import torch

from scorers import ActiveScorer, ExactBTScorer, GaussianPrior, GridBTScorer, Link, compare_from_probs

from test_scorers import noisy_probs, sampled_hard_probs


def test_grid_and_exact_agree_under_a_per_image_prior():
    true, refs, probs = noisy_probs(40, 30, seed=3)
    prior = GaussianPrior(true + 0.3 * torch.randn(40, generator=torch.Generator().manual_seed(3), dtype=torch.float64), 0.4)
    grid, exact = GridBTScorer().score(probs, refs, prior=prior), ExactBTScorer().score(probs, refs, prior=prior)
    assert (grid.value - exact.value).abs().max().item() <= 1e-3 + 1e-12
    assert (exact.value - ExactBTScorer().score(probs, refs).value).abs().max().item() > 0.01  # it does move them
    mask = torch.rand(40, 30, generator=torch.Generator().manual_seed(4)) < 0.3
    masked = GridBTScorer().score(probs, refs, mask, prior=prior), ExactBTScorer().score(probs, refs, mask, prior=prior)
    assert (masked[0].value - masked[1].value).abs().max().item() <= 1e-3 + 1e-12


def test_equal_means_are_the_fixed_prior_and_the_width_sets_the_pull():
    true, refs, probs = noisy_probs(30, 25, seed=5)
    same = ExactBTScorer().score(probs, refs, prior=GaussianPrior(torch.full((30,), 2.0, dtype=torch.float64), 0.5))
    fixed = ExactBTScorer(prior_std=0.5, prior_mean=2.0).score(probs, refs)
    assert torch.allclose(same.value, fixed.value, atol=1e-9) and torch.allclose(same.std, fixed.std, rtol=1e-6)
    opinion = torch.linspace(1.5, 4.5, 30, dtype=torch.float64)
    wide = ExactBTScorer().score(probs, refs, prior=GaussianPrior(opinion, 1e4)).value
    assert torch.allclose(wide, ExactBTScorer().score(probs, refs).value, atol=1e-5)
    narrow = ExactBTScorer().score(probs, refs, prior=GaussianPrior(opinion, 1e-3)).value
    assert torch.allclose(narrow, opinion, atol=1e-3)
    assert GridBTScorer().score(probs, refs, prior=GaussianPrior(opinion, 1e-3)).value.sub(opinion).abs().max() <= 1.5e-3


def test_the_active_scorer_aims_at_the_prior_and_scores_under_it():
    gen = torch.Generator().manual_seed(1)
    refs = torch.linspace(1.0, 5.0, 120, dtype=torch.float64)
    true = 1.5 + 3.0 * torch.rand(60, generator=gen, dtype=torch.float64)
    probs = sampled_hard_probs(true, refs, Link(), seed=1)
    opinion = true + 0.25 * torch.randn(60, generator=gen, dtype=torch.float64)
    prior = GaussianPrior(opinion, 0.3)
    first: list[torch.Tensor] = []

    def compare(t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        if not first:
            first.append(refs[r].reshape(60, -1).mean(1))
        return probs[t, r]

    scorer = ExactBTScorer()
    res = ActiveScorer(scorer, budget=8, batch=4).score(compare, refs, 60, prior=prior)
    assert (first[0] - opinion).abs().max().item() < 0.35  # the first batch sits around each image's prior mean
    again = scorer.score(probs, refs, res.mask, prior=prior)  # the base scorer on the comparisons made
    assert torch.allclose(res.scores.value, again.value, atol=1e-8)
    plain = ActiveScorer(scorer, budget=8, batch=4).score(compare_from_probs(probs), refs, 60)
    fused_mae, plain_mae = (res.scores.value - true).abs().mean(), (plain.scores.value - true).abs().mean()
    assert fused_mae < plain_mae  # with 8 comparisons, starting from a decent opinion helps
    grid_res = ActiveScorer(GridBTScorer(), budget=8, batch=4).score(compare_from_probs(probs), refs, 60, prior=prior)
    assert (grid_res.scores.value - res.scores.value).abs().max().item() < 0.05


def test_a_bad_prior_is_refused_with_the_argument_named():
    _, refs, probs = noisy_probs(5, 6, seed=1)
    with pytest.raises(ValueError, match="std must be a finite number > 0"):
        GaussianPrior(torch.zeros(5, dtype=torch.float64), 0.0)
    with pytest.raises(ValueError, match="finite 1-D tensor"):
        GaussianPrior(torch.tensor([1.0, float("nan")]), 1.0)
    for scorer in (GridBTScorer(), ExactBTScorer()):
        with pytest.raises(ValueError, match="4 prior means for 5 images"):
            scorer.score(probs, refs, prior=GaussianPrior(torch.ones(4, dtype=torch.float64), 1.0))


def test_effective_prior_is_the_one_form_of_both_priors():
    """A fixed prior becomes a per-image one around ``prior_mean`` (or the bank's mean); a given
    per-image prior wins and is checked against the image count; no prior stays None (flat)."""
    refs = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    assert ExactBTScorer().effective_prior(refs, 4) is None
    around_bank = ExactBTScorer(prior_std=0.5).effective_prior(refs, 4)
    assert around_bank.mean.tolist() == [7 / 3] * 4 and around_bank.precision == pytest.approx(4.0)
    assert ExactBTScorer(prior_std=0.5, prior_mean=3.0).effective_prior(refs, 2).mean.tolist() == [3.0, 3.0]
    given = GaussianPrior(torch.tensor([1.5, 4.5], dtype=torch.float64), 1.0)
    assert ExactBTScorer(prior_std=0.5).effective_prior(refs, 2, given) is given
    with pytest.raises(ValueError):
        ExactBTScorer().effective_prior(refs, 3, given)
