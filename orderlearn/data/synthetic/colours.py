"""Colour arithmetic on RGB triples, shared by the painter and the appearance sampler.

Kept apart because both :mod:`.faces` (shading a part: a darker skin line, a lip parting)
and :mod:`.appearance` (greying hair, desaturating old skin) need the same integer
rounding, and those roundings decide the bytes of every generated image.
"""
from __future__ import annotations

RGB = tuple[int, int, int]


def scale_rgb(c: RGB, f: float) -> RGB:
    """``c`` brightened (``f > 1``) or darkened (``f < 1``), each channel clipped to 0..255."""
    return tuple(int(max(0, min(255, round(v * f)))) for v in c)  # type: ignore[return-value]


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """The colour ``t`` of the way from ``a`` (``t = 0``) to ``b`` (``t = 1``)."""
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def desaturate(c: RGB, t: float) -> RGB:
    """``c`` moved ``t`` of the way to its own luma grey (Rec. 601 weights)."""
    grey = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
    return tuple(int(round(v + (grey - v) * t)) for v in c)  # type: ignore[return-value]
