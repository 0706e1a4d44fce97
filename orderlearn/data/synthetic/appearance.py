"""How a face's look is chosen: group palettes, nuisance, the look of an age, and the
assembly of everything into the painter's :class:`~.faces.FaceParams`.

Why apart from the painter and the score: this is where randomness meets the face. The
score traits (:class:`~.scores.BeautyTraits`) and the age look (:func:`age_appearance`) are
the only inputs that carry a score; :func:`face_params` adds gender- and ethnicity-specific
features (hair length, jaw, brows, skin/hair/iris palettes) and nuisance (background,
clothes, pose, lighting, noise) drawn from the image's own random stream, in a fixed order:
changing the order of the draws changes every generated image.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .colours import RGB, desaturate, mix, scale_rgb
from .faces import FaceParams
from .scores import BeautyTraits

# Per-ethnicity palettes; a face picks one entry of each and jitters it.
_SKIN = {
    "asian": ((236, 204, 176), (222, 184, 150), (200, 160, 124), (240, 214, 190)),
    "caucasian": ((246, 214, 196), (232, 190, 165), (214, 170, 140), (250, 226, 212)),
}
_HAIR = {
    "asian": ((20, 16, 14), (38, 28, 22), (58, 40, 28)),
    "caucasian": ((30, 24, 20), (90, 60, 35), (150, 110, 60), (200, 165, 100), (140, 60, 30)),
}
_IRIS = {
    "asian": ((60, 40, 25), (80, 55, 35)),
    "caucasian": ((70, 45, 25), (70, 110, 160), (80, 120, 80), (110, 90, 60)),
}


def _pick(rng: np.random.Generator, palette: Sequence[RGB]) -> RGB:
    """One colour of ``palette``, uniformly."""
    return palette[int(rng.integers(len(palette)))]


def _jitter(rng: np.random.Generator, c: RGB, sd: float) -> RGB:
    """``c`` with independent normal noise of sd ``sd`` on each channel, clipped to 0..255."""
    return tuple(int(np.clip(v + rng.normal(0, sd), 0, 255)) for v in c)  # type: ignore[return-value]


def age_appearance(apparent_age: float, gender: str, rng: np.random.Generator) -> dict[str, float]:
    """How an (apparent) age shows: wrinkles, grey hair, sag, desaturation, eye bags,
    receding hairline (men), youthful eyes below 25. Smooth in age, with individual jitter."""
    A = apparent_age

    def ramp(lo: float, hi: float) -> float:
        return float(np.clip((A - lo) / (hi - lo), 0.0, 1.0))

    return {
        "wrinkles": float(np.clip(ramp(28, 72) ** 1.1 + rng.normal(0, 0.05), 0, 1)),
        "grey": float(np.clip(ramp(35, 75) ** 1.2 * rng.uniform(0.7, 1.15), 0, 1)),
        "sag": float(np.clip(ramp(35, 80) + rng.normal(0, 0.05), 0, 1)),
        "desat": 0.45 * ramp(20, 80),
        "eye_bags": float(np.clip(ramp(30, 75) + rng.normal(0, 0.05), 0, 1)),
        "hairline": ramp(25, 70) * float(rng.uniform(0.2, 1.0)) if gender == "male" else 0.1 * ramp(40, 80),
        "youth": 1.0 - ramp(16, 25),
    }


def face_params(
    rng: np.random.Generator,
    gender: str,
    ethnicity: str,
    traits: BeautyTraits,
    age: dict[str, float],
) -> FaceParams:
    """Combine score traits, group attributes, age look and freshly drawn nuisance into
    painter parameters. Only ``traits`` (beauty) or ``age`` (age mode) carry the score."""
    if gender not in ("female", "male"):
        raise ValueError(f"gender must be 'female' or 'male', got {gender!r}")
    if ethnicity not in _SKIN:
        raise ValueError(f"ethnicity must be one of {sorted(_SKIN)}, got {ethnicity!r}")
    female = gender == "female"
    skin = _jitter(rng, _pick(rng, _SKIN[ethnicity]), 6)
    skin = scale_rgb(desaturate(skin, age["desat"]), 1.0 - 0.12 * age["desat"])
    hair = mix(_jitter(rng, _pick(rng, _HAIR[ethnicity]), 8), (200, 200, 200), age["grey"])
    bg = tuple(int(v) for v in rng.integers(70, 250, size=3))
    lips = _jitter(rng, (205, 95, 105) if female else mix(skin, (170, 90, 85), 0.6), 8)
    asym = traits.asymmetry
    side = 1.0 if rng.random() < 0.5 else -1.0
    blemishes = tuple(
        (float(r * math.cos(th)), float(r * math.sin(th) * 0.9 + 0.1), float(rng.uniform(0.05, 0.085)))
        for r, th in zip(np.sqrt(rng.uniform(0.05, 1.0, traits.blemish_count)),
                         rng.uniform(0, 2 * math.pi, traits.blemish_count))
    )
    return FaceParams(
        center_x=float(0.5 + rng.normal(0, 0.02)),
        center_y=float(0.52 + rng.normal(0, 0.02)),
        scale=float(rng.uniform(0.92, 1.06)),
        roll_deg=float(rng.normal(0, 3.0)),
        face_ratio=traits.face_ratio + 0.03 * age["youth"],
        jaw_square=float(rng.uniform(0.0, 0.3) if female else rng.uniform(0.45, 0.9)),
        chin_point=float(rng.uniform(0.35, 0.7) if female else rng.uniform(0.05, 0.3)),
        sag=age["sag"],
        skin=skin,
        hair=hair,
        iris=_jitter(rng, _pick(rng, _IRIS[ethnicity]), 8),
        lips=lips,
        background=bg,  # type: ignore[arg-type]
        clothes=tuple(int(v) for v in rng.integers(20, 230, size=3)),  # type: ignore[arg-type]
        hair_length=float(rng.uniform(0.55, 1.0) if female else (0.0 if rng.random() < 0.85 else 0.2)),
        hair_style=int(rng.integers(4)),
        hair_volume=float(rng.uniform(0.8, 1.3) if female else rng.uniform(0.6, 1.0)),
        hairline=float(np.clip(age["hairline"] + rng.uniform(0, 0.1), 0, 1)),
        grey_strands=age["grey"],
        eye_size=traits.eye_size + 0.02 * age["youth"],
        eye_spacing=traits.eye_spacing,
        eye_dy=side * 0.12 * asym,
        eye_scale_right=1.0 - 0.35 * asym,
        brow_thickness=float(rng.uniform(0.0, 0.35) if female else rng.uniform(0.55, 1.0)),
        brow_arch=float(rng.uniform(0.5, 1.0) if female else rng.uniform(0.0, 0.35)),
        nose_length=traits.nose_length,
        nose_dx=-side * 0.10 * asym,
        mouth_width=float(rng.uniform(0.33, 0.45)),
        smile=traits.smile,
        mouth_tilt_deg=side * 15.0 * asym,
        lip_fullness=float(rng.uniform(0.5, 1.0) if female else rng.uniform(0.1, 0.5)),
        blemishes=blemishes,
        wrinkles=age["wrinkles"],
        eye_bags=age["eye_bags"],
        light_angle=float(rng.uniform(0, 2 * math.pi)),
        light_strength=float(rng.uniform(0.0, 0.3)),
        noise_sd=float(rng.uniform(1.0, 5.0)),
        detail_seed=int(rng.integers(2**31)),
    )
