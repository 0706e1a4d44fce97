"""The two entry points: a SCUT-FBP5500 look-alike (:func:`generate_synthetic_scut`) and
an age dataset (:func:`generate_synthetic_ages`).

Why this module is short: each entry point only checks its arguments, walks the images in
a fixed order drawing from each image's own stream (:mod:`.seeds`), and hands the pieces
on: traits and the score to :mod:`.scores`, the look to :mod:`.appearance`, the pixels to
:mod:`.faces`, the files to :mod:`.layout`, the folder's life cycle to :mod:`.cache`. The
order of the draws inside an image's stream is part of the data: changing it changes the
files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from orderlearn.data.scut import GROUPS

from .appearance import age_appearance, face_params
from .cache import PathLike, materialise
from .faces import paint_face
from .layout import (GENERATOR_NAME, GENERATOR_VERSION, N_FOLDS, ages_readme, scut_group_counts,
                     scut_readme, write_age_manifest, write_jpeg, write_scut_lists, write_text)
from .scores import (LATENT_MAX, LATENT_MIN, RATER_BIAS_SD, RATER_NOISE_SD, BeautyTraits, beauty_latent,
                     sample_beauty_traits, simulate_ratings)
from .seeds import image_rng, order_rng, rater_rng


def _check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int, or a ValueError naming the argument, before any file is touched."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def generate_synthetic_scut(
    root: PathLike,
    n_images: int = 1000,
    image_size: int = 128,
    n_raters: int = 60,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic beauty dataset in SCUT-FBP5500's exact layout and return ``root``.

    Files: ``Images/{AF,AM,CF,CM}{k}.jpg``, ``ratings/rating_distribution.csv`` (CRLF,
    ``filename,1,2,3,4,5``), ``train_test_files/All_labels.txt`` (``NAME.jpg score``), the
    60/40 split and the five cross-validation folds under SCUT's folder names, plus
    ``README.md`` and ``meta.json`` (version, params, latent score and traits of every
    image). Same arguments give byte-identical files; a finished folder is reused.
    """
    n_images = _check_int("n_images", n_images, N_FOLDS)
    image_size = _check_int("image_size", image_size, 16)
    n_raters = _check_int("n_raters", n_raters, 1)
    seed = _check_int("seed", seed, 0)
    params = {"n_images": n_images, "image_size": image_size, "n_raters": n_raters, "seed": seed}
    identity = {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "mode": "scut", "params": params}

    def build(tmp: Path) -> dict[str, Any]:
        counts = scut_group_counts(n_images)
        rater_bias = rater_rng(seed, n_raters).normal(0.0, RATER_BIAS_SD, size=n_raters)
        (tmp / "Images").mkdir()
        latents: dict[str, float] = {}
        traits: dict[str, BeautyTraits] = {}
        hists: dict[str, np.ndarray] = {}
        for gi, (group, count) in enumerate(counts.items()):
            gender, ethnicity = GROUPS[group]
            for k in range(1, count + 1):
                name = f"{group}{k}.jpg"
                rng = image_rng(seed, "scut", gi, k)
                traits[name] = sample_beauty_traits(rng)
                # a nuisance age (wrinkles, grey); no "youth": it would enlarge the eyes and widen
                # the face, and both are scored traits
                look = {**age_appearance(float(rng.uniform(18, 40)), gender, rng), "youth": 0.0}
                fp = face_params(rng, gender, ethnicity, traits[name], look)
                write_jpeg(tmp / "Images" / name, paint_face(fp, image_size))
                latents[name] = beauty_latent(traits[name])
                hists[name] = simulate_ratings(np.array([latents[name]]), rater_bias, rng)[0]
        write_scut_lists(tmp, hists, seed)
        write_text(tmp / "README.md", scut_readme(params, counts))
        return {
            **identity,
            "groups": counts,
            "rater_model": {"bias_sd": RATER_BIAS_SD, "noise_sd": RATER_NOISE_SD,
                            "rater_bias": [round(float(b), 6) for b in rater_bias]},
            "latent_range": [LATENT_MIN, LATENT_MAX],
            "latent": {n: round(v, 6) for n, v in latents.items()},
            "traits": {n: {k: v if isinstance(v, int) else round(v, 6) for k, v in vars(t).items()}
                       for n, t in traits.items()},
        }

    return materialise(root, identity, overwrite, build)


def generate_synthetic_ages(
    root: PathLike,
    n_images: int = 1000,
    image_size: int = 128,
    seed: int = 0,
    age_range: tuple[int, int] = (16, 77),
    overwrite: bool = False,
) -> Path:
    """Write a synthetic age dataset: ``Images/*.jpg``, ``manifest.csv`` with columns
    ``path,score,gender,fold`` (score = integer age, uniform in ``age_range``; folds 1..5
    balanced and seeded), ``README.md`` and ``meta.json`` (apparent age per image)."""
    n_images = _check_int("n_images", n_images, N_FOLDS)
    image_size = _check_int("image_size", image_size, 16)
    seed = _check_int("seed", seed, 0)
    if (not isinstance(age_range, (tuple, list)) or len(age_range) != 2
            or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in age_range)
            or not 0 <= age_range[0] < age_range[1]):
        raise ValueError(f"age_range must be two integers (low, high) with 0 <= low < high, got {age_range!r}")
    lo, hi = int(age_range[0]), int(age_range[1])
    params = {"n_images": n_images, "image_size": image_size, "seed": seed, "age_range": [lo, hi]}
    identity = {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "mode": "ages", "params": params}

    def build(tmp: Path) -> dict[str, Any]:
        (tmp / "Images").mkdir()
        fold_of = np.empty(n_images, dtype=np.int64)
        fold_of[order_rng(seed, "ages", n_images).permutation(n_images)] = np.arange(n_images) % N_FOLDS + 1
        rows: list[tuple[str, int, str, int]] = []
        apparent: dict[str, float] = {}
        for i in range(n_images):
            rng = image_rng(seed, "ages", 0, i)
            age = int(rng.integers(lo, hi + 1))
            gender = "female" if rng.random() < 0.5 else "male"
            ethnicity = "asian" if rng.random() < 0.5 else "caucasian"
            seen = float(age + rng.normal(0.0, 3.0))
            fp = face_params(rng, gender, ethnicity, sample_beauty_traits(rng), age_appearance(seen, gender, rng))
            rel = f"Images/{i + 1:05d}.jpg"
            write_jpeg(tmp / rel, paint_face(fp, image_size))
            rows.append((rel, age, gender, int(fold_of[i])))
            apparent[rel] = round(seen, 6)
        write_age_manifest(tmp, rows)
        write_text(tmp / "README.md", ages_readme(params))
        return {**identity, "latent": apparent}

    return materialise(root, identity, overwrite, build)
