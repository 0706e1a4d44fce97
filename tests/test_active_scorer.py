"""Active selection bookkeeping: the scores returned are the base scorer's on the comparisons
made, whether an image stops on its budget or early on its std (each image is scored once, when
it stops, instead of every round)."""
from __future__ import annotations

import pytest
import torch

from scorers import ActiveScorer, ExactBTScorer, GridBTScorer, Link, compare_from_probs

pytestmark = pytest.mark.usefixtures("one_thread")


def _setup(seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    refs = torch.linspace(1.0, 5.0, 90, dtype=torch.float64)
    true = 1.5 + 3.0 * torch.rand(40, generator=gen, dtype=torch.float64)
    logits = Link(6.0, 0.3).log_probs(true[:, None] - refs[None, :])
    probs = torch.softmax(logits + 0.7 * torch.randn(logits.shape, generator=gen, dtype=torch.float64), -1)
    return refs, probs


@pytest.mark.parametrize("base", [ExactBTScorer(), ExactBTScorer(soft=True, prior_std=0.7), GridBTScorer(step=0.01)])
@pytest.mark.parametrize("stop_std", [None, 0.1])
def test_scores_are_the_base_scorer_on_the_comparisons_made(base, stop_std):
    refs, probs = _setup()
    res = ActiveScorer(base, budget=20, batch=4, stop_std=stop_std).score(compare_from_probs(probs), refs, 40)
    again = base.score(probs, refs, res.mask)  # the masked bank: a different code path for the exact scorer
    assert torch.allclose(res.scores.value, again.value, atol=1e-9)
    assert torch.allclose(res.scores.std, again.std, rtol=1e-5)  # the exact std: to ~1e-6 (ExactBTScorer._solve)
    assert (res.mask.sum(1) == res.num_comparisons).all()
    if stop_std is not None:
        stopped = res.num_comparisons < 20
        assert stopped.any() and (res.scores.std[stopped] < stop_std).all()
        assert (res.scores.std[~stopped] >= stop_std).all()


def test_select_never_repeats_a_reference_and_skips_asked_ones():
    refs, _ = _setup()
    active = ActiveScorer(ExactBTScorer(), budget=8, batch=5)
    grid = active._grid(refs.device)
    info = active.scorer.link.fisher_information(grid[:, None] - refs[None, :]).float()
    post = torch.softmax(-((grid[None, :] - torch.tensor([[2.0], [3.5], [4.9]], dtype=torch.float64)) / 0.02) ** 2, 1)
    asked = torch.zeros(3, refs.numel(), dtype=torch.bool)
    asked[:, 40:50] = True  # a narrow posterior would otherwise pick these first for the middle image
    picks = active.select(post, asked, info, 5)
    for row in range(3):
        assert picks[row].unique().numel() == 5
        assert not asked[row, picks[row]].any()
