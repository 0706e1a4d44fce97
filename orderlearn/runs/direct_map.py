"""The fair direct counterpart on a new scale: the direct score mapped by a monotone fit on the references.

A regressor (or a comparator's direct head) outputs scores in the run's units; on a new scale
it needs its outputs remapped on the same labelled references the order-learned route is
re-anchored with. Two maps are fitted on (direct score, new score) of the N references:

- ``linear``: least squares y = a·x + b (N ≥ 2);
- ``isotonic``: the non-decreasing step fit of pool-adjacent-violators, read between the
  pooled blocks' centres by linear interpolation and flat beyond the end blocks (N ≥ 3).

The one with the lower leave-one-out mean absolute error on the references is kept (each
reference predicted by the map fitted on the others; a tie keeps the linear map). Under 3
references only the linear map is fitted (leave-one-out would leave one point).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from orderlearn.errors import DataError

Fit = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


def fit_linear(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Least-squares y = a·x + b; all x equal: the mean of y."""
    if np.ptp(x) == 0:
        mean = float(y.mean())
        return lambda v: np.full(np.shape(v), mean)
    slope, intercept = np.polyfit(x, y, 1)
    return lambda v: slope * np.asarray(v, dtype=np.float64) + intercept


def pool_adjacent_violators(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blocks of the non-decreasing least-squares fit of ``y`` (in order): each block's mean and size."""
    means: list[float] = []
    sizes: list[int] = []
    for value in y:
        means.append(float(value))
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            size = sizes[-2] + sizes[-1]
            means[-2] = (means[-2] * sizes[-2] + means[-1] * sizes[-1]) / size
            sizes[-2] = size
            means.pop()
            sizes.pop()
    return np.asarray(means), np.asarray(sizes)


def fit_isotonic(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The non-decreasing fit, interpolated between the blocks' mean x (see the module docstring)."""
    order = np.lexsort((y, x))
    xs, ys = x[order], y[order]
    means, sizes = pool_adjacent_violators(ys)
    ends = np.cumsum(sizes)
    centres = np.array([xs[end - size:end].mean() for end, size in zip(ends, sizes)])
    if len(centres) == 1:
        return lambda v: np.full(np.shape(v), means[0])
    return lambda v: np.interp(np.asarray(v, dtype=np.float64), centres, means)


FITS: dict[str, Fit] = {"linear": fit_linear, "isotonic": fit_isotonic}


def leave_one_out_mae(fit: Fit, x: np.ndarray, y: np.ndarray) -> float:
    """Mean |y_i − f_{−i}(x_i)|, f_{−i} fitted on every reference but i."""
    keep = np.ones(len(x), dtype=bool)
    errors = []
    for i in range(len(x)):
        keep[i] = False
        errors.append(abs(float(fit(x[keep], y[keep])(x[i:i + 1])[0]) - y[i]))
        keep[i] = True
    return float(np.mean(errors))


@dataclass
class DirectMap:
    """The chosen map (``kind``), fitted on every reference, and each candidate's leave-one-out MAE."""

    kind: str
    function: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    leave_one_out_mae: dict[str, float]

    def __call__(self, direct: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.function(direct.double().cpu().numpy()), dtype=torch.float64)


def fit_direct_map(direct: Sequence[float] | torch.Tensor, truth: Sequence[float] | torch.Tensor) -> DirectMap:
    """The monotone map from direct scores to the new scale, chosen by leave-one-out (module docstring)."""
    x = torch.as_tensor(direct, dtype=torch.float64).cpu().numpy().reshape(-1)
    y = torch.as_tensor(truth, dtype=torch.float64).cpu().numpy().reshape(-1)
    if len(x) != len(y) or len(x) < 2:
        raise DataError(f"a direct map needs at least 2 references with direct scores, got {len(x)} and {len(y)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DataError("a direct map needs finite direct scores and reference scores")
    if len(x) < 3:
        return DirectMap("linear", fit_linear(x, y), {})
    errors = {name: leave_one_out_mae(fit, x, y) for name, fit in FITS.items()}
    kind = min(errors, key=lambda name: (errors[name], name != "linear"))
    return DirectMap(kind, FITS[kind](x, y), errors)
