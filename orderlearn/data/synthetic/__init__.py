"""Deterministic synthetic face datasets: a SCUT-FBP5500 look-alike and an age dataset.

Why this exists: the real benchmarks cannot ship with the project, yet every piece of
the pipeline (readers, pair sampling, comparators, Bradley-Terry scorers, metrics) needs
data whose ground truth is known and *learnable but not trivial*. So faces are painted
procedurally with PIL, and the score depends only on visible properties:

* beauty mode (:func:`generate_synthetic_scut`): a latent beauty score is a smooth
  nonlinear function of eye size, eye spacing, facial symmetry, blemish count, face
  width/height ratio, smile curvature and nose proportion (:func:`beauty_latent`);
  60 simulated raters each give ``round(latent + bias + noise)`` clipped to 1..5, and
  the mean of their ratings is the score, exactly as SCUT-FBP5500 averages its raters.
  Gender (AF/AM/CF/CM file group) changes hair length, jaw and brows; ethnicity changes the
  skin/hair palette; background, lighting, pose, noise also vary. None of these enter
  the score, so a model must learn the face, not the nuisance.
* age mode (:func:`generate_synthetic_ages`): the integer age shows through wrinkles,
  grey hair, sagging (a longer lower face), skin desaturation, eye bags and a receding
  hairline, each with person-to-person variation ("apparent age" != age).

Both modes share one painter (:func:`paint_face`) driven by a :class:`FaceParams`.
Everything is seeded per image from ``(seed, mode, group, index)`` so the same arguments
give byte-identical files, and image ``i`` does not change when ``n_images`` grows.
A finished dataset carries ``meta.json`` (written last): a later call with the same
arguments returns the folder untouched, an interrupted or different folder is an error.

Where to look, one job per module:

* :mod:`.faces` -- how a face is drawn from its :class:`FaceParams` (pure, no sampling);
* :mod:`.scores` -- how a beauty score is made: traits, latent, simulated raters;
* :mod:`.appearance` -- how a face's look is chosen: palettes, nuisance, the look of an age;
* :mod:`.seeds` -- every random stream, and what it is keyed by;
* :mod:`.layout` -- the files: SCUT-FBP5500's layout, the age manifest, READMEs;
* :mod:`.cache` -- a finished folder reused, a new one built atomically;
* :mod:`.generate` -- the two entry points, tying the above together.
"""
from __future__ import annotations

from .appearance import age_appearance, face_params
from .cache import PathLike
from .colours import RGB
from .faces import FACE_FRAMING, SUPERSAMPLE, FaceParams, paint_face
from .generate import generate_synthetic_ages, generate_synthetic_scut
from .layout import (CSV_GROUP_ORDER, CV_DIR, GENERATOR_NAME, GENERATOR_VERSION, JPEG_QUALITY,
                     N_FOLDS, SCUT_GROUP_SIZES, SPLIT_DIR, TRAIN_FRACTION, format_score, scut_group_counts)
from .scores import (LATENT_MAX, LATENT_MIN, RATER_BIAS_SD, RATER_NOISE_SD, BeautyTraits, beauty_contributions,
                     beauty_latent, sample_beauty_traits, simulate_ratings)

__all__ = [
    "generate_synthetic_scut", "generate_synthetic_ages",
    "FaceParams", "paint_face", "SUPERSAMPLE", "FACE_FRAMING",
    "BeautyTraits", "beauty_contributions", "beauty_latent", "sample_beauty_traits", "simulate_ratings",
    "LATENT_MIN", "LATENT_MAX", "RATER_BIAS_SD", "RATER_NOISE_SD",
    "age_appearance", "face_params",
    "scut_group_counts", "format_score", "GENERATOR_NAME", "GENERATOR_VERSION", "JPEG_QUALITY",
    "SCUT_GROUP_SIZES", "CSV_GROUP_ORDER", "SPLIT_DIR", "CV_DIR", "N_FOLDS", "TRAIN_FRACTION",
    "PathLike", "RGB",
]
