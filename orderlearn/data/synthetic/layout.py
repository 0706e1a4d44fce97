"""What goes where on disk, in which format: SCUT-FBP5500's official layout and the
manifest of the age variant.

Why apart: readers elsewhere in the project (:mod:`orderlearn.data.scut`,
:mod:`orderlearn.data.manifest`) parse these files exactly as they parse the real datasets, so
every byte of the format is decided here and nowhere else: SCUT's folder and file names,
CRLF in ``rating_distribution.csv`` and LF in the list files, the 6-decimal score format,
SCUT's row order, the 60/40 split and the five folds, the JPEG settings, and the README
written next to the data. Which files a finished folder holds, and so which folders the
generator may replace, is :data:`LAYOUT_NAMES`.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from orderlearn.data.scut import CV_DIR, SPLIT_DIR

from .scores import LATENT_MAX, LATENT_MIN, RATER_BIAS_SD, RATER_NOISE_SD
from .seeds import order_rng

# Written into meta.json and the README: a finished folder is reused only when both match.
# Bump the version whenever the same arguments would give different files.
GENERATOR_NAME = "orderlearn.data.synthetic"
GENERATOR_VERSION = "1.0"
JPEG_QUALITY = 92


# SCUT-FBP5500 group sizes; the order also fixes name order within the generated set.
SCUT_GROUP_SIZES: dict[str, int] = {"AF": 2000, "AM": 2000, "CF": 750, "CM": 750}
CSV_GROUP_ORDER = ("CF", "AF", "CM", "AM")  # the row order of SCUT's rating_distribution.csv
N_FOLDS = 5
TRAIN_FRACTION = 0.6
MANIFEST_HEADER = "path,score,gender,fold"  # the age variant's manifest.csv
LAYOUT_NAMES = {"Images", "ratings", "train_test_files", "README.md", "meta.json", "manifest.csv"}


def scut_group_counts(n_images: int) -> dict[str, int]:
    """SCUT's 2000:2000:750:750 proportions scaled to ``n_images`` (largest remainder)."""
    total = sum(SCUT_GROUP_SIZES.values())
    exact = {g: n_images * s / total for g, s in SCUT_GROUP_SIZES.items()}
    counts = {g: int(math.floor(v)) for g, v in exact.items()}
    order = sorted(exact, key=lambda g: (-(exact[g] - counts[g]), list(SCUT_GROUP_SIZES).index(g)))
    for g in order[: n_images - sum(counts.values())]:
        counts[g] += 1
    return counts


def format_score(x: float) -> str:
    """SCUT's label format: 6 decimals with trailing zeros dropped ('2.15', '3', '2.883333')."""
    return f"{x:.6f}".rstrip("0").rstrip(".")


def write_jpeg(path: Path, img: Image.Image) -> None:
    """One image as a baseline JPEG with fixed settings (same pixels, same bytes)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    path.write_bytes(buf.getvalue())


def write_text(path: Path, text: str) -> None:
    """UTF-8 with "\n" line ends on every platform (write_text would translate them)."""
    path.write_bytes(text.encode("utf-8"))


def encode_lines(rows: Sequence[str], newline: str = "\n") -> bytes:
    """``rows`` as UTF-8, each followed by ``newline`` (the last one too, as in SCUT's files)."""
    return "".join(r + newline for r in rows).encode("utf-8")


def write_scut_lists(tmp: Path, hists: dict[str, np.ndarray], seed: int) -> None:
    """The rating histogram CSV, All_labels.txt, the 60/40 split and the 5 folds.

    Scores are the mean ratings; list files are in seeded random order like SCUT's own.
    """
    names = list(hists)
    n = len(names)
    n_raters = int(next(iter(hists.values())).sum())
    scores = {k: float(np.dot(h, np.arange(1, 6)) / n_raters) for k, h in hists.items()}
    rng = order_rng(seed, "scut", n)

    def listing(subset: Sequence[str]) -> bytes:
        return encode_lines([f"{k} {format_score(scores[k])}" for k in subset])

    def shuffled(subset: Sequence[str]) -> list[str]:
        return [subset[i] for i in rng.permutation(len(subset))]

    (tmp / "ratings").mkdir()
    csv_rows = ["filename,1,2,3,4,5"] + [
        k + "," + ",".join(str(int(c)) for c in hists[k])
        for g in CSV_GROUP_ORDER for k in sorted(x for x in names if x.startswith(g))
    ]
    (tmp / "ratings" / "rating_distribution.csv").write_bytes(encode_lines(csv_rows, "\r\n"))
    ttf = tmp / "train_test_files"
    (ttf / SPLIT_DIR).mkdir(parents=True)
    (ttf / "All_labels.txt").write_bytes(listing(shuffled(names)))
    perm = shuffled(names)
    n_train = int(round(TRAIN_FRACTION * n))
    (ttf / SPLIT_DIR / "train.txt").write_bytes(listing(perm[:n_train]))
    (ttf / SPLIT_DIR / "test.txt").write_bytes(listing(perm[n_train:]))
    perm = shuffled(names)
    folds = [perm[f::N_FOLDS] for f in range(N_FOLDS)]  # sizes differ by at most one
    for f in range(N_FOLDS):
        k = f + 1
        folder = ttf / CV_DIR / f"cross_validation_{k}"
        folder.mkdir(parents=True)
        train = shuffled([x for g in range(N_FOLDS) if g != f for x in folds[g]])
        (folder / f"train_{k}.txt").write_bytes(listing(train))
        (folder / f"test_{k}.txt").write_bytes(listing(folds[f]))


def scut_readme(params: dict[str, int], counts: dict[str, int]) -> str:
    """The README.md of a beauty dataset: how to regenerate it and what its score means."""
    return f"""# Synthetic SCUT-FBP5500 (orderlearn.data.synthetic {GENERATOR_VERSION})

Procedurally painted faces in the layout of SCUT-FBP5500. Regenerate byte-identically with

    from orderlearn.data.synthetic import generate_synthetic_scut
    generate_synthetic_scut(root, n_images={params['n_images']}, image_size={params['image_size']}, n_raters={params['n_raters']}, seed={params['seed']})

Groups: {', '.join(f'{g} {c}' for g, c in counts.items())} (SCUT's 2000:2000:750:750 scaled).
A latent beauty score in [{LATENT_MIN}, {LATENT_MAX}] depends on eye size, eye spacing, symmetry,
blemish count, face width/height ratio, smile and nose proportion; gender, ethnicity, hair,
background, lighting, pose and noise do not affect it. Each of {params['n_raters']} simulated raters gives
round(latent + bias + noise) clipped to 1..5 (bias sd {RATER_BIAS_SD}, noise sd {RATER_NOISE_SD});
the score in All_labels.txt is the mean rating and ratings/rating_distribution.csv holds the counts.
meta.json lists the generator version, the parameters, and the latent score and traits of every image.
"""


def write_age_manifest(tmp: Path, rows: Sequence[tuple[str, int, str, int]]) -> None:
    """``manifest.csv`` of the age variant: one ``path,score,gender,fold`` row per image."""
    lines = [f"{rel},{age},{gender},{fold}" for rel, age, gender, fold in rows]
    (tmp / "manifest.csv").write_bytes(encode_lines([MANIFEST_HEADER] + lines))


def ages_readme(params: dict[str, Any]) -> str:
    """The README.md of an age dataset: how to regenerate it and what its files hold."""
    lo, hi = params["age_range"]
    return f"""# Synthetic ages (orderlearn.data.synthetic {GENERATOR_VERSION})

Procedurally painted faces whose integer age (uniform in {lo}..{hi}) shows through wrinkles,
grey hair, a longer sagging lower face, skin desaturation, eye bags and (men) a receding
hairline. Each face has an apparent age = age + N(0, 3) that drives its look (meta.json
`latent`). Regenerate byte-identically with

    from orderlearn.data.synthetic import generate_synthetic_ages
    generate_synthetic_ages(root, n_images={params['n_images']}, image_size={params['image_size']}, seed={params['seed']}, age_range=({lo}, {hi}))

manifest.csv: path (relative to this folder), score (age), gender (female/male), fold (1..5, balanced).
"""
