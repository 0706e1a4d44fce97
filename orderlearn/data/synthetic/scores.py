"""How a beauty score is made: visible traits -> a latent score -> 60 simulated raters.

Why the score lives apart from the painter: the ground truth must depend only on what can
be seen, and on nothing else the generator varies (group, hair, background, lighting,
pose, noise). Here is the whole of it:

* :class:`BeautyTraits` are the visible properties, drawn by :func:`sample_beauty_traits`
  independently of everything else;
* :func:`beauty_latent` maps them to a latent score in (``LATENT_MIN``, ``LATENT_MAX``) as a
  smooth nonlinear function (:func:`beauty_contributions` gives each trait's share);
* :func:`simulate_ratings` plays SCUT-FBP5500's raters: each rater gives
  ``round(latent + bias + noise)`` clipped to 1..5, and the dataset's score is the mean.

The age variant needs none of this: its score is the age itself (see :mod:`.appearance`
for how an age shows).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Score range of the latent (SCUT's observed range is 1.02..4.75; the bulk lies in 2..4).
LATENT_MIN, LATENT_MAX = 1.3, 4.7
# Rater model: rating = clip(round(latent + bias_r + noise), 1, 5). With these values the
# per-image rating std is ~0.65 on average, like SCUT's 0.64 (measured on the real files).
RATER_BIAS_SD = 0.25
RATER_NOISE_SD = 0.55


@dataclass(frozen=True)
class BeautyTraits:
    """The visible properties the latent beauty score is a function of."""

    eye_size: float  # eye half-width / head half-width, 0.13 .. 0.24 (bigger is better)
    eye_spacing: float  # 0.30 .. 0.52, best at 0.44
    asymmetry: float  # 0 .. 1 (0 = symmetric)
    blemish_count: int  # 0 .. ~20
    face_ratio: float  # head width / height, 0.62 .. 0.88, best at 0.75
    smile: float  # -1 .. 1
    nose_length: float  # 0.45 .. 0.85 of the eye-mouth distance, best at 0.62


# Normalisation of the raw latent z (its mean and sd under sample_beauty_traits, measured
# by Monte Carlo over 200k draws) and the gain of the final sigmoid. These are design
# constants of the generator: changing them changes the data, so bump GENERATOR_VERSION (in .layout).
_Z_MEAN = -1.9873
_Z_SD = 1.2949
_SIGMOID_GAIN = 1.0


def beauty_contributions(t: BeautyTraits) -> dict[str, float]:
    """Each trait's contribution to the raw latent z (smooth; saturating or peaked)."""
    return {
        "eye_size": 1.1 * math.tanh((t.eye_size - 0.185) / 0.035),
        "eye_spacing": 0.6 * (1.0 - ((t.eye_spacing - 0.44) / 0.08) ** 2),
        "symmetry": -2.1 * t.asymmetry,
        "skin": -1.2 * math.log1p(t.blemish_count) / math.log1p(8.0),
        "face_ratio": -0.45 * ((t.face_ratio - 0.75) / 0.08) ** 2,
        # a smile helps more on a symmetric face: the smooth interaction term
        "smile": (0.7 + 0.35 * (1.0 - t.asymmetry)) * math.tanh(1.6 * t.smile),
        "nose": -0.4 * ((t.nose_length - 0.62) / 0.14) ** 2,
    }


def beauty_latent(t: BeautyTraits) -> float:
    """Latent beauty in (LATENT_MIN, LATENT_MAX): a sigmoid of the standardised sum of
    :func:`beauty_contributions`, so it saturates smoothly at both ends."""
    z = sum(beauty_contributions(t).values())
    u = _SIGMOID_GAIN * (z - _Z_MEAN) / _Z_SD
    return LATENT_MIN + (LATENT_MAX - LATENT_MIN) / (1.0 + math.exp(-u))


def sample_beauty_traits(rng: np.random.Generator) -> BeautyTraits:
    """Draw traits independently of group and nuisance (so the score ignores both)."""
    return BeautyTraits(
        eye_size=float(rng.uniform(0.13, 0.24)),
        eye_spacing=float(rng.uniform(0.30, 0.52)),
        asymmetry=float(rng.beta(1.2, 2.5)),
        blemish_count=int(min(20, rng.poisson(rng.uniform(0.0, 8.0)))),
        face_ratio=float(rng.uniform(0.62, 0.88)),
        smile=float(rng.uniform(-1.0, 1.0)),
        nose_length=float(rng.uniform(0.45, 0.85)),
    )


def simulate_ratings(
    latents: np.ndarray,
    rater_bias: np.ndarray,
    rng: np.random.Generator,
    noise_sd: float = RATER_NOISE_SD,
) -> np.ndarray:
    """Histogram [N, 5] of ratings ``clip(round(latent + bias_r + noise), 1, 5)``, one per
    rater and image: how SCUT-FBP5500's 60 volunteers are simulated."""
    latents = np.asarray(latents, dtype=np.float64).reshape(-1, 1)
    bias = np.asarray(rater_bias, dtype=np.float64).reshape(1, -1)
    noise = rng.normal(0.0, noise_sd, size=(latents.shape[0], bias.shape[1])) if noise_sd > 0 else 0.0
    ratings = np.clip(np.rint(latents + bias + noise), 1, 5).astype(np.int64)
    return np.stack([(ratings == k).sum(axis=1) for k in range(1, 6)], axis=1)
