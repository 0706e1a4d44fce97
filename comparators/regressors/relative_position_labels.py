"""The ordered label set ``l_1 < ... < l_n`` of expected-value refinement and relative positions.

Why one object: the relative-age-position paper (Amirullaeva & Han, IEEE Access 2024) uses the
same ``n`` labels three times - as the values multiplied by the softmax in Eq. 1, as the rows
of the reference map ``R ∈ R^{n×c}`` (Sec. III-D1) and as the ``n`` relative-position classes of
Eq. 7 (Fig. 2: the position of a label is its rank in the dataset's label list, so position 0
is the smallest label). Keeping them in one place guarantees the three agree.

Any ordinal target fits: integer ages (``label_min=1, label_max=101, label_step=1`` for AgeDB)
or beauty scores binned (``1.0 .. 5.0`` step ``0.1``), or an explicit ``label_values`` list. A
continuous target is assigned to its *nearest* label (ties go to the lower one); integer ages
on an integer grid map exactly, as in the paper.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

# The project's default target: beauty ratings 1..5 binned at 0.1 (the reference bank's bin width).
DEFAULT_LABEL_RANGE = (1.0, 5.0, 0.1)


class LabelSpace:
    """``n`` strictly increasing label values; maps targets to their position index."""

    def __init__(self, values: Sequence[float]) -> None:
        vals = [float(v) for v in values]
        if len(vals) < 2:
            raise ValueError(f"label_values needs at least 2 labels, got {vals}")
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"label_values must be finite, got {vals}")
        if any(b <= a for a, b in zip(vals, vals[1:])):
            raise ValueError(f"label_values must be strictly increasing, got {vals}")
        self.values = torch.tensor(vals, dtype=torch.float32)
        # boundaries between neighbouring labels: a target goes to the nearest label
        self.midpoints = (self.values[1:] + self.values[:-1]) / 2

    @classmethod
    def from_range(cls, label_min: float, label_max: float, label_step: float) -> "LabelSpace":
        """Labels ``label_min, label_min + step, ..., label_max`` (the range must hold whole steps)."""
        if not label_step > 0:
            raise ValueError(f"label_step must be > 0, got {label_step}")
        if not label_max > label_min:
            raise ValueError(f"label_max ({label_max}) must be > label_min ({label_min})")
        count = round((label_max - label_min) / label_step)
        if abs(label_min + count * label_step - label_max) > 1e-6 * max(1.0, abs(label_max)):
            raise ValueError(
                f"label range {label_min}..{label_max} is not a whole number of label_step {label_step}"
            )
        # round away float noise (3.3000000000000003) so label values print and compare cleanly
        return cls([round(label_min + k * label_step, 10) for k in range(count + 1)])

    @classmethod
    def from_config(
        cls,
        label_values: Optional[Sequence[float]],
        label_min: Optional[float],
        label_max: Optional[float],
        label_step: Optional[float],
    ) -> "LabelSpace":
        """Explicit ``label_values``, or a full ``label_min/max/step`` range, or the beauty default."""
        given = {"label_min": label_min, "label_max": label_max, "label_step": label_step}
        set_keys = [k for k, v in given.items() if v is not None]
        if label_values is not None:
            if set_keys:
                raise ValueError(f"give either label_values or label_min/max/step, not both (also got {set_keys})")
            return cls(label_values)
        if not set_keys:
            return cls.from_range(*DEFAULT_LABEL_RANGE)
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise ValueError(f"a label range needs label_min, label_max and label_step; missing {missing}")
        return cls.from_range(float(label_min), float(label_max), float(label_step))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return int(self.values.numel())

    def position_of(self, targets: torch.Tensor) -> torch.Tensor:
        """Position (class index 0..n-1, Fig. 2) of each target: the index of its nearest label."""
        if not torch.isfinite(targets).all():
            raise ValueError("targets must be finite to be assigned a label position (got nan/inf)")
        return torch.bucketize(targets.float(), self.midpoints.to(targets.device), right=False)
