"""Tests of the synthetic dataset generator: exact SCUT layout, determinism, caching,
conflict handling, the rating model and the age mode. Tiny shapes keep it fast."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orderlearn.data import synthetic as syn

N, SIZE, RATERS = 30, 32, 60
CV = "train_test_files/5_folders_cross_validations_files"
SPLIT = "train_test_files/split_of_60%training and 40%testing"


def read_list(path: Path) -> list[tuple[str, float]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        name, score = line.split(" ")
        rows.append((name, float(score)))
    return rows


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def scut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return syn.generate_synthetic_scut(tmp_path_factory.mktemp("s") / "scut", n_images=N, image_size=SIZE, seed=3)


# ---------------------------------------------------------------- pure pieces


def test_the_generator_names_faces_with_the_readers_group_codes() -> None:
    from orderlearn.data import scut

    assert set(syn.SCUT_GROUP_SIZES) == set(syn.CSV_GROUP_ORDER) == set(scut.GROUPS)
    assert (syn.SPLIT_DIR, syn.CV_DIR) == (scut.SPLIT_DIR, scut.CV_DIR)
    assert SPLIT.endswith(scut.SPLIT_DIR) and CV.endswith(scut.CV_DIR)


def test_group_counts_follow_scut_proportions() -> None:
    assert syn.scut_group_counts(5500) == {"AF": 2000, "AM": 2000, "CF": 750, "CM": 750}
    # 1000 * 2000/5500 = 363.6 -> 364; 1000 * 750/5500 = 136.4 -> 136
    assert syn.scut_group_counts(1000) == {"AF": 364, "AM": 364, "CF": 136, "CM": 136}
    # 11 -> exact 4, 4, 1.5, 1.5: the one left over goes to the first tied group (CF)
    assert syn.scut_group_counts(11) == {"AF": 4, "AM": 4, "CF": 2, "CM": 1}


def test_format_score_matches_scut_style() -> None:
    assert syn.format_score(2.15) == "2.15"
    assert syn.format_score(3.0) == "3"
    assert syn.format_score(173 / 60) == "2.883333"
    assert syn.format_score(124 / 60) == "2.066667"


def test_ratings_without_noise_are_rounded_latents() -> None:
    counts = syn.simulate_ratings(np.array([2.4, 5.6, 0.2, 3.6]), np.zeros(60), np.random.default_rng(0), noise_sd=0.0)
    expected = [[0, 60, 0, 0, 0], [0, 0, 0, 0, 60], [60, 0, 0, 0, 0], [0, 0, 0, 60, 0]]
    assert counts.tolist() == expected
    # biases -1, 0, +1 for 20 raters each: a 3.2 face gets 2, 3 and 4 twenty times each
    bias = np.repeat([-1.0, 0.0, 1.0], 20)
    assert syn.simulate_ratings(np.array([3.2]), bias, np.random.default_rng(0), noise_sd=0.0).tolist() == [[0, 20, 20, 20, 0]]


def test_ratings_with_noise_have_scut_like_spread() -> None:
    rng = np.random.default_rng(1)
    counts = syn.simulate_ratings(np.full(400, 3.0), rng.normal(0, syn.RATER_BIAS_SD, 60), rng)
    assert (counts.sum(axis=1) == 60).all()
    levels = np.arange(1, 6)
    mean = counts @ levels / 60
    std = np.sqrt((counts * (levels[None] - mean[:, None]) ** 2).sum(axis=1) / 60)
    assert abs(mean.mean() - 3.0) < 0.15
    assert 0.55 < std.mean() < 0.8  # SCUT-FBP5500's mean per-image rating std is 0.64


def _traits(**kw: float) -> syn.BeautyTraits:
    base = dict(eye_size=0.185, eye_spacing=0.44, asymmetry=0.2, blemish_count=2, face_ratio=0.75, smile=0.0,
                nose_length=0.62)
    base.update(kw)
    return syn.BeautyTraits(**base)  # type: ignore[arg-type]


def test_latent_depends_on_traits_in_the_intended_directions() -> None:
    lat = syn.beauty_latent
    base = lat(_traits())
    assert lat(_traits(blemish_count=10)) < lat(_traits(blemish_count=4)) < base
    assert lat(_traits(eye_size=0.23)) > base > lat(_traits(eye_size=0.14))
    assert lat(_traits(asymmetry=0.8)) < base
    assert lat(_traits(smile=0.8)) > base > lat(_traits(smile=-0.8))
    for off_peak in (dict(eye_spacing=0.32), dict(eye_spacing=0.52), dict(face_ratio=0.64), dict(face_ratio=0.86),
                     dict(nose_length=0.47), dict(nose_length=0.80)):
        assert lat(_traits(**off_peak)) < base, off_peak
    # the smile term is larger on a symmetric face (the interaction, before the sigmoid):
    # (0.7 + 0.35) * tanh(1.28) = 0.8993 versus 0.7 * tanh(1.28) = 0.5996
    smile = [syn.beauty_contributions(_traits(asymmetry=a, smile=0.8))["smile"] for a in (0.0, 1.0)]
    assert smile[0] == pytest.approx(0.8993, abs=1e-4) and smile[1] == pytest.approx(0.5996, abs=1e-4)


def test_latent_stays_in_range_and_is_centred() -> None:
    rng = np.random.default_rng(5)
    values = np.array([syn.beauty_latent(syn.sample_beauty_traits(rng)) for _ in range(3000)])
    assert values.min() > syn.LATENT_MIN and values.max() < syn.LATENT_MAX
    assert 2.8 < values.mean() < 3.3 and 0.55 < values.std() < 0.9
    assert 0.7 < np.mean((values >= 2) & (values <= 4)) < 0.95


def test_painter_is_pure_and_reacts_to_parameters() -> None:
    p = syn.FaceParams(noise_sd=3.0, light_strength=0.2, roll_deg=2.0, wrinkles=0.5, detail_seed=7)
    a = np.asarray(syn.paint_face(p, 48))
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8
    assert np.array_equal(a, np.asarray(syn.paint_face(p, 48)))
    for change in (dict(smile=0.9), dict(eye_size=0.24), dict(blemishes=((0.3, 0.2, 0.02),)), dict(grey_strands=1.0)):
        assert np.abs(a.astype(int) - np.asarray(syn.paint_face(replace(p, **change), 48)).astype(int)).sum() > 0, change
    with pytest.raises(ValueError, match="image size"):
        syn.paint_face(p, 8)


# ---------------------------------------------------------------- SCUT layout


def test_layout_images_and_labels(scut: Path) -> None:
    counts = syn.scut_group_counts(N)
    names = sorted(p.name for p in (scut / "Images").iterdir())
    assert names == sorted(f"{g}{k}.jpg" for g, c in counts.items() for k in range(1, c + 1))
    with Image.open(scut / "Images" / "AF1.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (SIZE, SIZE)
    labels = read_list(scut / "train_test_files" / "All_labels.txt")
    assert sorted(n for n, _ in labels) == names
    raw = (scut / "train_test_files" / "All_labels.txt").read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")
    assert (scut / "README.md").is_file()


def test_rating_csv_counts_and_means(scut: Path) -> None:
    raw = (scut / "ratings" / "rating_distribution.csv").read_bytes()
    assert raw.startswith(b"filename,1,2,3,4,5\r\n") and raw.endswith(b"\r\n")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert rows[0] == ["filename", "1", "2", "3", "4", "5"]
    hist = {r[0]: [int(v) for v in r[1:]] for r in rows[1:]}
    assert len(hist) == N
    # SCUT's row order: groups CF, AF, CM, AM, names sorted as strings within a group
    order = [r[0] for r in rows[1:]]
    assert order == sorted(order, key=lambda n: (syn.CSV_GROUP_ORDER.index(n[:2]), n))
    labels = dict(read_list(scut / "train_test_files" / "All_labels.txt"))
    for name, h in hist.items():
        assert sum(h) == RATERS
        assert abs(sum((i + 1) * c for i, c in enumerate(h)) / RATERS - labels[name]) <= 1e-6


def test_split_files_partition_the_images(scut: Path) -> None:
    names = {p.name for p in (scut / "Images").iterdir()}
    labels = dict(read_list(scut / "train_test_files" / "All_labels.txt"))
    train = read_list(scut / SPLIT / "train.txt")
    test = read_list(scut / SPLIT / "test.txt")
    assert len(train) == round(0.6 * N) and len(test) == N - round(0.6 * N)
    assert {n for n, _ in train} | {n for n, _ in test} == names
    assert not {n for n, _ in train} & {n for n, _ in test}
    assert all(labels[n] == s for n, s in train + test)
    seen: set[str] = set()
    for k in range(1, 6):
        fold_test = read_list(scut / CV / f"cross_validation_{k}" / f"test_{k}.txt")
        fold_train = read_list(scut / CV / f"cross_validation_{k}" / f"train_{k}.txt")
        t, r = {n for n, _ in fold_test}, {n for n, _ in fold_train}
        assert len(t) == len(fold_test) == N // 5
        assert not t & seen and not t & r and t | r == names
        assert all(labels[n] == s for n, s in fold_test + fold_train)
        seen |= t
    assert seen == names


def test_meta_records_params_and_latents(scut: Path) -> None:
    meta = json.loads((scut / "meta.json").read_text())
    assert meta["generator"] == syn.GENERATOR_NAME and meta["version"] == syn.GENERATOR_VERSION
    assert meta["params"] == {"n_images": N, "image_size": SIZE, "n_raters": RATERS, "seed": 3}
    assert meta["groups"] == syn.scut_group_counts(N)
    assert set(meta["latent"]) == {p.name for p in (scut / "Images").iterdir()}
    assert set(meta["files"]) == {k for k in all_files(scut) if k != "meta.json"}
    # the recorded traits reproduce the recorded latent
    for name, traits in meta["traits"].items():
        assert syn.beauty_latent(syn.BeautyTraits(**traits)) == pytest.approx(meta["latent"][name], abs=1e-5)


def test_scores_vary_and_follow_the_latent(scut: Path) -> None:
    meta = json.loads((scut / "meta.json").read_text())
    labels = dict(read_list(scut / "train_test_files" / "All_labels.txt"))
    names = sorted(labels)
    s = np.array([labels[n] for n in names])
    lat = np.array([meta["latent"][n] for n in names])
    assert s.std() > 0.3 and 1.0 <= s.min() and s.max() <= 5.0
    assert np.corrcoef(s, lat)[0, 1] > 0.95
    assert np.abs(s - lat).mean() < 0.3


def test_generated_set_reads_with_the_scut_reader(scut: Path) -> None:
    from orderlearn.data.scut import read_split

    train, test = read_split(scut, "fold2")
    assert len(train) + len(test) == N
    sample = test[0]
    assert sample.rating_counts is not None and sum(sample.rating_counts) == RATERS
    assert sample.gender in ("female", "male") and sample.group == sample.path.name[:2]


# ---------------------------------------------------------------- determinism and caching


def test_same_arguments_give_byte_identical_files(tmp_path: Path, scut: Path) -> None:
    again = syn.generate_synthetic_scut(tmp_path / "again", n_images=N, image_size=SIZE, seed=3)
    assert all_files(again) == all_files(scut)
    other = syn.generate_synthetic_scut(tmp_path / "other", n_images=N, image_size=SIZE, seed=4)
    assert all_files(other)["Images/AF1.jpg"] != all_files(scut)["Images/AF1.jpg"]


def test_image_does_not_depend_on_dataset_size(tmp_path: Path, scut: Path) -> None:
    bigger = syn.generate_synthetic_scut(tmp_path / "big", n_images=N + 11, image_size=SIZE, seed=3)
    assert (bigger / "Images" / "AM2.jpg").read_bytes() == (scut / "Images" / "AM2.jpg").read_bytes()


def test_existing_complete_dataset_is_reused(tmp_path: Path) -> None:
    root = syn.generate_synthetic_scut(tmp_path / "d", n_images=10, image_size=16, seed=1)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert syn.generate_synthetic_scut(str(root), n_images=10, image_size=16, seed=1) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftover temp folders


def test_conflicting_or_partial_folder_is_an_error(tmp_path: Path) -> None:
    root = syn.generate_synthetic_scut(tmp_path / "d", n_images=10, image_size=16, seed=1)
    with pytest.raises(FileExistsError, match="different content"):
        syn.generate_synthetic_scut(root, n_images=10, image_size=16, seed=2)
    replaced = syn.generate_synthetic_scut(root, n_images=10, image_size=16, seed=2, overwrite=True)
    assert json.loads((replaced / "meta.json").read_text())["params"]["seed"] == 2
    # an interrupted run (no meta.json) is detected, and overwrite repairs it
    (root / "meta.json").unlink()
    with pytest.raises(FileExistsError, match="no meta.json"):
        syn.generate_synthetic_scut(root, n_images=10, image_size=16, seed=2)
    syn.generate_synthetic_scut(root, n_images=10, image_size=16, seed=2, overwrite=True)
    # a missing image also makes the folder incomplete
    (root / "Images" / "AF1.jpg").unlink()
    with pytest.raises(FileExistsError):
        syn.generate_synthetic_scut(root, n_images=10, image_size=16, seed=2)


def test_foreign_folder_is_never_deleted(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        syn.generate_synthetic_scut(root, n_images=10, image_size=16, overwrite=True)
    assert (root / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (syn.generate_synthetic_scut(empty, n_images=10, image_size=16) / "meta.json").is_file()


@pytest.mark.parametrize("kwargs, word", [(dict(n_images=3), "n_images"), (dict(image_size=8), "image_size"),
                                          (dict(n_raters=0), "n_raters"), (dict(seed=-1), "seed"),
                                          (dict(n_images=10.0), "n_images")])
def test_bad_arguments_name_the_argument(tmp_path: Path, kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        syn.generate_synthetic_scut(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- age mode


def test_age_manifest_columns_folds_and_determinism(tmp_path: Path) -> None:
    root = syn.generate_synthetic_ages(tmp_path / "ages", n_images=23, image_size=24, seed=2, age_range=(20, 60))
    raw = (root / "manifest.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(raw)))
    assert list(rows[0]) == ["path", "score", "gender", "fold"] and len(rows) == 23
    for r in rows:
        assert (root / r["path"]).is_file() and not Path(r["path"]).is_absolute()
        assert r["score"] == str(int(r["score"])) and 20 <= int(r["score"]) <= 60
        assert r["gender"] in ("female", "male")
    folds = [int(r["fold"]) for r in rows]
    assert sorted(set(folds)) == [1, 2, 3, 4, 5]
    assert max(folds.count(k) for k in range(1, 6)) - min(folds.count(k) for k in range(1, 6)) <= 1
    assert len({r["score"] for r in rows}) > 5 and len({r["gender"] for r in rows}) == 2
    with Image.open(root / rows[0]["path"]) as im:
        assert im.size == (24, 24) and im.mode == "RGB"
    meta = json.loads((root / "meta.json").read_text())
    assert meta["mode"] == "ages" and meta["params"]["age_range"] == [20, 60]
    apparent = np.array([meta["latent"][r["path"]] for r in rows])
    assert np.corrcoef(apparent, [int(r["score"]) for r in rows])[0, 1] > 0.9
    again = syn.generate_synthetic_ages(tmp_path / "again", n_images=23, image_size=24, seed=2, age_range=(20, 60))
    assert all_files(again) == all_files(root)
    with pytest.raises(FileExistsError):
        syn.generate_synthetic_ages(root, n_images=23, image_size=24, seed=2, age_range=(20, 61))


def test_age_appearance_grows_with_age() -> None:
    """Every age cue the painter draws is stronger on an old face than on a young one."""
    young = syn.age_appearance(18.0, "male", np.random.default_rng(0))
    old = syn.age_appearance(75.0, "male", np.random.default_rng(0))
    for key in ("wrinkles", "grey", "sag", "desat", "eye_bags"):
        assert old[key] > young[key] + 0.3, key
    assert young["wrinkles"] == pytest.approx(0.0, abs=0.2) and young["youth"] > 0.7 and old["youth"] == 0.0


def test_bad_age_range_is_an_error(tmp_path: Path) -> None:
    for bad in ((50, 20), (10,), (1.5, 30)):
        with pytest.raises(ValueError, match="age_range"):
            syn.generate_synthetic_ages(tmp_path / "a", n_images=10, age_range=bad)  # type: ignore[arg-type]
