"""Monotone maps from one scale to another, fitted on a few labelled references.

On a new scale (a user's own references) both routes are re-anchored on the same N labelled
references: the direct route's outputs, in the run's units, need a map onto the new scale; the
order-learned route is on the new scale already, but its scores are pulled towards the middle
of the references where the comparator is unsure, and the same kind of map can straighten that.
One owner for both, so they are fitted and chosen the same way:

- ``identity``: the scores as they are (only offered where they are on the target scale);
- ``linear``: least squares y = a·x + b (N ≥ 2; a may be negative: a reversed scale);
- ``isotonic``: the non-decreasing step fit of pool-adjacent-violators, read between the
  pooled blocks' centres by linear interpolation and flat beyond the end blocks (N ≥ 3).

:func:`choose_map` keeps the candidate with the lowest leave-one-out mean absolute error on the
references (each reference predicted by the map fitted on the others); a tie keeps the earlier
candidate in the order asked, so list the simplest first. Under 3 references only ``linear`` and
``identity`` are fitted (leave-one-out of a step fit would leave one point).

A map is a few numbers (:meth:`MonotoneMap.to_dict`), so a scoring recipe can carry it into a
bundle; :meth:`MonotoneMap.from_dict` checks such a record before it is used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch

from scorers.base import Scores

KINDS = ("identity", "linear", "isotonic")
Values = Union[Sequence[float], torch.Tensor, np.ndarray]


@dataclass(frozen=True)
class MonotoneMap:
    """One fitted map (module docstring): ``kind`` and its numbers; ``leave_one_out_mae``: each
    candidate's error when it was chosen by :func:`choose_map` (not part of the map itself)."""

    kind: str
    slope: float = 1.0  # linear
    intercept: float = 0.0  # linear
    knots_x: tuple[float, ...] = ()  # isotonic: the blocks' mean inputs, increasing
    knots_y: tuple[float, ...] = ()  # isotonic: the blocks' mean outputs, non-decreasing
    leave_one_out_mae: dict[str, float] = field(default_factory=dict, compare=False)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """The map of ``values`` (float64 array of any shape)."""
        values = np.asarray(values, dtype=np.float64)
        if self.kind == "identity":
            return values.copy()
        if self.kind == "linear":
            return self.slope * values + self.intercept
        if len(self.knots_x) == 1:
            return np.full(values.shape, self.knots_y[0])
        return np.interp(values, self.knots_x, self.knots_y)

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.apply(values.double().cpu().numpy()), dtype=torch.float64)

    def map_scores(self, scores: Scores, low: float, high: float) -> Scores:
        """``scores`` on the target scale, clamped to [``low``, ``high``]: the value and the interval's
        ends through the map (it keeps their order where it increases), the std times the map's
        slope around each value (the secant over value ± std)."""
        def mapped(t: torch.Tensor) -> torch.Tensor:
            return self(t).to(t.device).clamp(low, high)

        if self.kind == "identity":
            return scores
        value = mapped(scores.value)
        std, lower, upper = scores.std, scores.lower, scores.upper
        if std is not None:
            rise = self(scores.value + std) - self(scores.value - std)
            std = (rise.abs() / 2).to(std.device)
        if lower is not None and upper is not None:
            ends = torch.stack([mapped(lower), mapped(upper)])
            lower, upper = ends.min(0).values, ends.max(0).values
        return Scores(value, std, lower, upper)

    def to_dict(self) -> dict[str, Any]:
        """The map as a JSON record (what :meth:`from_dict` reads)."""
        record: dict[str, Any] = {"kind": self.kind}
        if self.kind == "linear":
            record.update(slope=self.slope, intercept=self.intercept)
        if self.kind == "isotonic":
            record.update(knots_x=list(self.knots_x), knots_y=list(self.knots_y))
        return record

    @classmethod
    def from_dict(cls, record: Any) -> "MonotoneMap":
        """A map from its JSON record; ValueError saying what is wrong with a record no fit writes."""
        if not isinstance(record, dict) or record.get("kind") not in KINDS:
            raise ValueError(f"{record!r} is not a map record (kind: one of {', '.join(KINDS)})")
        kind = record["kind"]
        if kind == "linear":
            slope, intercept = record.get("slope"), record.get("intercept")
            if not (_finite(slope) and _finite(intercept)):
                raise ValueError(f"a linear map needs finite slope and intercept, got {slope!r} and {intercept!r}")
            return cls(kind, slope=float(slope), intercept=float(intercept))
        if kind == "isotonic":
            xs, ys = record.get("knots_x"), record.get("knots_y")
            if not (isinstance(xs, list) and isinstance(ys, list) and xs and len(xs) == len(ys)
                    and all(_finite(v) for v in xs + ys)):
                raise ValueError("an isotonic map needs knots_x and knots_y: equal-length lists of finite numbers")
            if any(b <= a for a, b in zip(xs, xs[1:])) or any(b < a for a, b in zip(ys, ys[1:])):
                raise ValueError("an isotonic map needs increasing knots_x and non-decreasing knots_y")
            return cls(kind, knots_x=tuple(map(float, xs)), knots_y=tuple(map(float, ys)))
        return cls(kind)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fit_identity(x: np.ndarray, y: np.ndarray) -> MonotoneMap:
    return MonotoneMap("identity")


def fit_linear(x: np.ndarray, y: np.ndarray) -> MonotoneMap:
    """Least-squares y = a·x + b; all x equal: the mean of y."""
    if np.ptp(x) == 0:
        return MonotoneMap("linear", slope=0.0, intercept=float(y.mean()))
    slope, intercept = np.polyfit(x, y, 1)
    return MonotoneMap("linear", slope=float(slope), intercept=float(intercept))


def fit_isotonic(x: np.ndarray, y: np.ndarray) -> MonotoneMap:
    """The non-decreasing fit, interpolated between the blocks' mean x (module docstring). Equal
    x are pooled into one block first, so the knots' inputs increase strictly."""
    order = np.lexsort((y, x))
    xs, ys = x[order], y[order]
    distinct, start = np.unique(xs, return_index=True)
    counts = np.diff(np.append(start, len(xs)))
    means_in = np.array([ys[s:s + c].mean() for s, c in zip(start, counts)])
    # pool-adjacent-violators over the distinct inputs, each weighted by how many references it holds
    means: list[float] = []
    weights: list[int] = []
    centres: list[float] = []
    for value, weight, at in zip(means_in, counts, distinct):
        means.append(float(value))
        weights.append(int(weight))
        centres.append(float(at) * weight)
        while len(means) > 1 and means[-2] > means[-1]:
            total = weights[-2] + weights[-1]
            means[-2] = (means[-2] * weights[-2] + means[-1] * weights[-1]) / total
            centres[-2] += centres[-1]
            weights[-2] = total
            for stack in (means, weights, centres):
                stack.pop()
    knots_x = tuple(float(c / w) for c, w in zip(centres, weights))
    return MonotoneMap("isotonic", knots_x=knots_x, knots_y=tuple(means))


FITS: dict[str, Callable[[np.ndarray, np.ndarray], MonotoneMap]] = {
    "identity": fit_identity, "linear": fit_linear, "isotonic": fit_isotonic}


def leave_one_out_residuals(kind: str, x: Values, y: Values) -> np.ndarray:
    """y_i − f_{−i}(x_i) for every reference i, f_{−i} the ``kind`` map fitted on every reference
    but i: the map's out-of-sample errors on the references (their RMS is the width of a prior
    centred on the mapped score, :mod:`orderlearn.runs.fused`)."""
    xs = torch.as_tensor(x, dtype=torch.float64).cpu().numpy().reshape(-1)
    ys = torch.as_tensor(y, dtype=torch.float64).cpu().numpy().reshape(-1)
    keep = np.ones(len(xs), dtype=bool)
    residuals = np.empty(len(xs))
    for i in range(len(xs)):
        keep[i] = False
        residuals[i] = ys[i] - float(FITS[kind](xs[keep], ys[keep]).apply(xs[i:i + 1])[0])
        keep[i] = True
    return residuals


def leave_one_out_mae(kind: str, x: Values, y: Values) -> float:
    """Mean |y_i − f_{−i}(x_i)|, f_{−i} the ``kind`` map fitted on every reference but i."""
    return float(np.abs(leave_one_out_residuals(kind, x, y)).mean())


def keeps_order(fitted: MonotoneMap) -> bool:
    """Whether ``fitted`` increases somewhere: identity, a linear map of positive slope, an isotonic
    map of two levels or more. A flat map scores every face alike (no ranking left)."""
    if fitted.kind == "linear":
        return fitted.slope > 0
    if fitted.kind == "isotonic":
        return fitted.knots_y[-1] > fitted.knots_y[0]
    return True


def choose_map(x: Values, y: Values, kinds: Sequence[str] = ("linear", "isotonic"),
               increasing: bool = False) -> MonotoneMap:
    """The map from ``x`` to ``y`` among ``kinds`` with the lowest leave-one-out MAE (module
    docstring), fitted on every reference; ValueError for fewer than 2 pairs or non-finite values.

    ``increasing``: only maps that keep the order of ``x`` are candidates (:func:`keeps_order`, on
    the fit to every reference). Where ``x`` is already on the target scale's orientation (the
    order-learned route's scores), a flat or decreasing map fits the references' mean better only
    by throwing the comparator's ranking away; on a few references that happens (the leave-one-out
    scores of 10 references can correlate negatively with their scores), and it leaves a route
    that scores every face alike. Without ``increasing`` (the direct route's map) a negative slope
    is allowed: the new scale may run the other way."""
    unknown = [k for k in kinds if k not in FITS]
    if unknown or not kinds:
        raise ValueError(f"map kinds {list(kinds)}: choose from {list(FITS)}")
    xs = torch.as_tensor(x, dtype=torch.float64).cpu().numpy().reshape(-1)
    ys = torch.as_tensor(y, dtype=torch.float64).cpu().numpy().reshape(-1)
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"a monotone map needs at least 2 references with both scores, got {len(xs)} and {len(ys)}")
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise ValueError("a monotone map needs finite scores on both scales")
    candidates = [k for k in kinds if len(xs) >= 3 or k != "isotonic"] or ["linear"]
    if increasing:
        candidates = [k for k in candidates if keeps_order(FITS[k](xs, ys))]
        if not candidates:
            raise ValueError(f"no order-keeping map among {list(kinds)}: every fit to the references is flat or decreasing")
    if len(candidates) == 1:
        return FITS[candidates[0]](xs, ys)
    errors = {kind: leave_one_out_mae(kind, xs, ys) for kind in candidates}
    best = min(candidates, key=lambda kind: (errors[kind], candidates.index(kind)))
    chosen = FITS[best](xs, ys)
    return MonotoneMap(chosen.kind, chosen.slope, chosen.intercept, chosen.knots_x, chosen.knots_y, errors)
