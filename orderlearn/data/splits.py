"""One entry point from a :class:`DataConfig` to samples: train / validation / test.

Validation is the manifest's ``val`` rows when it has them, else carved from the training
files (seeded, ``data.val_fraction``). A run reads each database once
(:func:`load_run_data`) and hands the test split only to the phases that score it;
:func:`load_training` and :func:`load_test` read one part for tools and tests.

Both entry points read and check the whole split, test files included, so bad input stops a
run when the data are read, before any training: every score is finite and inside
``data.score_low..data.score_high``, no image is listed twice (by path; a test image listed
for training would also enter the reference bank), no test image has the same content as a
training or validation image under another name, and train and validation hold the two images
each that pairs need.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from orderlearn.data import manifest, scut
from orderlearn.config import DataConfig
from orderlearn.errors import ConfigError, DataError
from orderlearn.types import ScoredImage

DEFAULT_SYNTHETIC_ROOT = Path("runs") / "data" / "synthetic-scut"
MIN_IMAGES = 2  # a pair needs two images, in train and in validation


@dataclass
class TrainingSplits:
    train: list[ScoredImage]
    val: list[ScoredImage]
    second: Optional["TrainingSplits"] = None  # data.second's train / validation (database 1), when set

    def for_the_model(self) -> "TrainingSplits":
        """What the model trains and is selected on: both databases' images (the bank, the link and
        the direct head use ``train`` / ``val``, the first database's, alone)."""
        if self.second is None:
            return self
        return TrainingSplits(self.train + self.second.train, self.val + self.second.val)


@dataclass
class DatasetSplits:
    """What a dataset gives: train, test, and validation when it marks its own (else None)."""

    train: list[ScoredImage]
    val: Optional[list[ScoredImage]]
    test: list[ScoredImage]
    source: str  # the file or folder read, for messages


def dataset_root(config: DataConfig) -> Path:
    """The dataset folder (synthetic data is generated there on first use)."""
    if config.kind == "synthetic":
        from orderlearn.data.synthetic import generate_synthetic_scut

        root = Path(config.root) if config.root else DEFAULT_SYNTHETIC_ROOT / f"n{config.synthetic_images}-s{config.synthetic_image_size}"
        return generate_synthetic_scut(root, n_images=config.synthetic_images, image_size=config.synthetic_image_size)
    if not config.root:
        raise DataError(f"data.root is required for data.kind={config.kind!r}")
    return Path(config.root)


def _read(config: DataConfig) -> DatasetSplits:
    root = dataset_root(config)
    score_range = (config.score_low, config.score_high)
    if config.kind in ("synthetic", "scut"):
        train, test = scut.read_split(root, config.split, config.ratings, score_range)
        splits = DatasetSplits(train, None, test, str(root))
    else:
        parts = manifest.split_manifest(manifest.read_manifest(root, score_range), _manifest_test_fold(config.split))
        splits = DatasetSplits(parts.train, parts.val or None, parts.test, str(root))
    if config.duplicates == "drop-training-copies":
        splits = drop_training_copies(splits)  # leaves no content shared across parts
    else:
        check_no_shared_content(splits)
    splits.train = _of_groups(splits.train, config.train_groups, config.group_by, "data.train_groups", splits.source)
    splits.test = _of_groups(splits.test, config.test_groups, config.group_by, "data.test_groups", splits.source)
    if config.score_definition != "mean":
        splits.train, splits.test = (_rescored(part, config.score_definition, splits.source) for part in (splits.train, splits.test))
        splits.val = None if splits.val is None else _rescored(splits.val, config.score_definition, splits.source)
    return splits


def _of_groups(samples: list[ScoredImage], groups: Optional[list[str]], group_by: str, key: str,
               source: str) -> list[ScoredImage]:
    """The samples of ``groups`` (all when None), by ``group_by`` (``group`` or ``gender``): the
    cross-group protocol trains on some groups' training files (validation is carved from those)
    and tests on other groups' test files."""
    if groups is None:
        return samples
    unknown = [s.path.name for s in samples if getattr(s, group_by) is None]
    if unknown:
        where = ("SCUT-FBP5500 file names (AF, AM, CF, CM) or a manifest's group column" if group_by == "group"
                 else "SCUT-FBP5500 file names or a manifest's gender column")
        raise ConfigError(f"{key}: {source} gives no {group_by} for {unknown[0]} (and {len(unknown) - 1} more); "
                          f"it comes from {where}")
    kept = [s for s in samples if getattr(s, group_by) in groups]
    if not kept:
        present = sorted({getattr(s, group_by) for s in samples})
        raise ConfigError(f"{key}: no image of {group_by} {groups} in {source} ({group_by}s there: {present})")
    return kept


def _rescored(samples: list[ScoredImage], definition: str, source: str) -> list[ScoredImage]:
    """The samples under another definition of their score (``data.score_definition``):
    ``high_share``, the percentage of the raters who gave 4 or 5 (the rating histogram's two top
    bins). Its std is left unknown: the histogram's std is in the ratings' units."""
    rescored = []
    for sample in samples:
        counts = sample.rating_counts
        if not counts or sum(counts) == 0:
            raise DataError(f"data.score_definition: {definition} needs every image's rating counts; {source} has none "
                            f"for {sample.name} (data.ratings names the ratings file)")
        rescored.append(dataclasses.replace(sample, score=100.0 * sum(counts[3:]) / sum(counts), std=None))
    return rescored


def _manifest_test_fold(split: str) -> Optional[int]:
    """``foldK`` -> K (the fold column's test fold); anything else uses the split column."""
    if not split.startswith("fold"):
        return None
    number = split.removeprefix("fold")
    if not number.isdigit() or int(number) < 1:
        raise ConfigError(f"data.split: {split!r} is not foldK with K >= 1 (or 'split' for the manifest's split column)")
    return int(number)


PartFile = tuple[str, ScoredImage]  # ("test" | "validation" | "training", sample)


def same_content_groups(splits: DatasetSplits) -> list[list[PartFile]]:
    """Groups of two or more images (any parts) whose files have the same bytes, each in the
    order test, validation, training and, inside a part, the reader's order.

    Only files whose sizes collide are hashed, so a dataset of distinct files costs one
    ``stat`` per image.
    """
    parts = {"test": splits.test, "validation": splits.val or [], "training": splits.train}  # the order messages name them
    by_size: dict[int, list[PartFile]] = defaultdict(list)
    for part, samples in parts.items():
        for sample in samples:
            by_size[sample.path.stat().st_size].append((part, sample))
    groups: list[list[PartFile]] = []
    for files in by_size.values():
        if len(files) < 2:
            continue
        by_digest: dict[bytes, list[PartFile]] = defaultdict(list)
        for part, sample in files:
            by_digest[hashlib.blake2b(sample.path.read_bytes(), digest_size=16).digest()].append((part, sample))
        groups += [same for same in by_digest.values() if len(same) > 1]
    return groups


def check_no_shared_content(splits: DatasetSplits) -> None:
    """No two parts (train, validation, test) share an image file's bytes under different names.

    Paths listed twice are caught by the readers; this catches the copy under another name,
    which would leak a test face into training and the reference bank.
    """
    shared = [same for same in same_content_groups(splits) if len({part for part, _ in same}) > 1]
    if shared:
        first = min(shared, key=lambda same: str(same[0][1].path))
        (part_a, sample_a) = first[0]
        (part_b, sample_b) = next(f for f in first if f[0] != part_a)
        more = (f" ({len(shared)} such groups in {splits.source}; keep one image of each, or set "
                "data.duplicates: drop-training-copies)") if len(shared) > 1 else ""
        raise DataError(f"{part_a} image {sample_a.path} has the same content as {part_b} image {sample_b.path}{more}")


def drop_training_copies(splits: DatasetSplits) -> DatasetSplits:
    """``data.duplicates: drop-training-copies``: the test split stays the dataset's own; every
    training or validation image with a test image's bytes is dropped (it would leak that test
    face into training and the bank), and of training-side images sharing bytes only the first
    is kept (so carving validation cannot put one face on both sides). Says what it dropped.

    A real set needs this: All-Age-Faces lists 186 groups of byte-identical images under
    different serial numbers, 95 of them across the authors' train and test lists, often with
    different ages.
    """
    leaked: list[tuple[ScoredImage, ScoredImage]] = []  # (dropped, the test image it copies)
    repeated: list[tuple[ScoredImage, ScoredImage]] = []  # (dropped, the training image kept)
    for same in same_content_groups(splits):
        tests = [sample for part, sample in same if part == "test"]
        training_side = [sample for part, sample in same if part != "test"]
        if tests:
            leaked += [(sample, tests[0]) for sample in training_side]
        elif training_side:
            repeated += [(sample, training_side[0]) for sample in training_side[1:]]
    dropped = {id(sample) for sample, _ in leaked + repeated}
    if dropped:
        examples = [f"{a.path.name} = {b.path.name}" for a, b in (leaked + repeated)[:3]]
        _say(f"data: data.duplicates=drop-training-copies dropped {len(leaked)} training/validation image(s) with a "
             f"test image's content and {len(repeated)} repeated training cop{'y' if len(repeated) == 1 else 'ies'} "
             f"from {splits.source} (e.g. {', '.join(examples)})")
    keep = lambda samples: [s for s in samples if id(s) not in dropped]  # noqa: E731
    return DatasetSplits(keep(splits.train), None if splits.val is None else keep(splits.val), splits.test, splits.source)


@dataclass
class RunData:
    """Every image a run uses, each database read and checked once: what the model trains and
    is selected on (``training``), the test images (``test``, for the final numbers only) and,
    with ``data.second``, that database's test images (``second_test``, tagged database 1)."""

    training: TrainingSplits
    test: list[ScoredImage]
    second_test: Optional[list[ScoredImage]] = None

    @property
    def tests(self) -> list[list[ScoredImage]]:
        """The test sets whose tasks a model reports: the first database's, then the second's."""
        return [self.test] + ([self.second_test] if self.second_test is not None else [])


def load_run_data(config: DataConfig) -> RunData:
    """A run's images: each database read once (the test files with it, so bad input stops the
    run before training), validation carved from the training files, the test split kept apart
    for the phases that score it."""
    own = _read(config)
    data = RunData(_own_training(own, config), _test_of(own, config))
    if config.second is not None:
        second = _read(config.second)
        tag = lambda samples: [dataclasses.replace(s, database=1) for s in samples]  # noqa: E731
        split = _own_training(second, config.second)
        data.training.second = TrainingSplits(tag(split.train), tag(split.val))
        data.second_test = tag(_test_of(second, config.second))
        _say(f"second database: {len(split.train)} train, {len(split.val)} validation images ({config.second.kind})")
    return data


def load_training(config: DataConfig) -> TrainingSplits:
    """Train and validation: the manifest's ``val`` rows, else a seeded ``val_fraction`` of train;
    with ``data.second``, that database's own train and validation too (tagged database 1)."""
    return load_run_data(config).training


def _own_training(splits: DatasetSplits, config: DataConfig) -> TrainingSplits:
    rng = np.random.default_rng(config.val_seed)
    train = splits.train
    if config.limit_train is not None:
        train = [train[i] for i in sorted(rng.choice(len(train), min(config.limit_train, len(train)), replace=False))]
    if splits.val is not None:
        _require_images(len(train), f"{splits.source}: the train rows give {len(train)} training images")
        _require_images(len(splits.val), f"{splits.source}: the val rows give {len(splits.val)} validation image"
                        + ("" if len(splits.val) == 1 else "s"))
        _say(f"validation: {len(splits.val)} images from the manifest's val rows (data.val_fraction is not used)")
        return TrainingSplits(train, splits.val)
    order = rng.permutation(len(train))
    n_val = int(round(config.val_fraction * len(train)))
    if min(len(train) - n_val, n_val) < MIN_IMAGES:
        limited = f" (data.limit_train={config.limit_train})" if config.limit_train is not None else ""
        raise DataError(f"{splits.source}: {len(train)} training images{limited} with data.val_fraction={config.val_fraction} "
                        f"leave {len(train) - n_val} for training and {n_val} for validation; "
                        f"need at least {MIN_IMAGES} in each")
    val = [train[i] for i in sorted(order[:n_val])]
    rest = [train[i] for i in sorted(order[n_val:])]
    return TrainingSplits(rest, val)


def _require_images(count: int, what: str) -> None:
    if count < MIN_IMAGES:
        raise DataError(f"{what}; need at least {MIN_IMAGES}")


def _say(line: str) -> None:
    """Print once per job (the main process of a multi-process launch), like the run's other lines."""
    if os.environ.get("RANK", "0") == "0":
        print(line)


def load_test(config: DataConfig) -> list[ScoredImage]:
    """The test files of the configured split (read once, for the final numbers)."""
    return _test_of(_read(config), config)


def _test_of(splits: DatasetSplits, config: DataConfig) -> list[ScoredImage]:
    test = splits.test
    if config.limit_test is not None:
        rng = np.random.default_rng(config.val_seed + 1)
        test = [test[i] for i in sorted(rng.choice(len(test), min(config.limit_test, len(test)), replace=False))]
    return test
