"""Scorers: turn a test image's comparisons with a scored reference bank into a score.

``probs [N, R, K]`` holds, for N test images and R references, the comparator's probabilities of
(FIRST, SECOND, SIMILAR) for the pair (test, reference) — FIRST = test better — or (FIRST,
SECOND) for two-class comparators; ``ref_scores [R]`` are the bank's scores.

- :class:`Link` — ordered-logistic likelihood of a label given δ = s_test − s_ref (+ ``fit``)
- :class:`GridBTScorer` (``"bt-grid"``) — the published grid search of eq. (13)
- :class:`ExactBTScorer` (``"bt-exact"``) — Newton on the convex NLL, optional Gaussian prior
- :func:`combine_orders` — merge (test, ref) and (ref, test) probabilities
- :class:`GaussianPrior` — a per-image prior (a regressor's opinion) any scorer above also takes
- :class:`ActiveScorer` — choose the informative references, within a comparison budget
- :func:`fit_reference_positions` — where the comparator places each reference (fitted on validation)
"""
from .active import ActiveResult, ActiveScorer, compare_from_probs
from .base import GaussianPrior, Scorer, Scores
from .exact import ExactBTScorer
from .grid import GridBTScorer
from .link import Link
from .orders import combine_orders
from .references import fit_reference_positions
from .registry import SCORERS, available, create, register

__all__ = [
    "ActiveResult", "ActiveScorer", "ExactBTScorer", "GaussianPrior", "GridBTScorer", "Link", "Scorer", "Scores",
    "SCORERS", "available", "combine_orders", "compare_from_probs", "create", "fit_reference_positions", "register",
]
