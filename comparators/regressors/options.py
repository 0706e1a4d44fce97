"""Building and checking a regressor's options dataclass from a config's ``model:`` keywords.

Shared by every regressor's ``build``, so a typo in a YAML config fails loudly with the list of
valid keys instead of being silently ignored, and ``score_range`` means the same everywhere.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, TypeVar

C = TypeVar("C")


def config_from_kwargs(cls: type[C], kwargs: dict[str, Any]) -> C:
    """Build config dataclass ``cls`` from ``kwargs``; an unknown key is a ValueError naming it."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; valid keys: {sorted(names)}")
    return cls(**kwargs)


def check_score_range(score_range: Optional[Sequence[float]], what: str = "score_range") -> Optional[tuple[float, float]]:
    """Validate an optional ``[lo, hi]`` pair (YAML gives lists) and return it as a tuple."""
    if score_range is None:
        return None
    values = tuple(float(v) for v in score_range)
    if len(values) != 2 or not values[0] < values[1]:
        raise ValueError(f"{what} must be [lo, hi] with lo < hi, got {score_range!r}")
    return values  # type: ignore[return-value]
