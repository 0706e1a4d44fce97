"""The sections of an experiment config as dataclasses: what a config holds and its defaults.

One dataclass per YAML section (``data``, ``model``, ``pairs``, ``loss``, ``optim``,
``schedule``, ``train``, ``bank``, ``scorer``) and :class:`ExperimentConfig`, the whole run.
The allowed values of the closed string fields are listed once, in :data:`CHOICES`; the
sections whose keys besides ``name`` are a component's own options, in :data:`OPEN_SECTIONS`.
Turning YAML into these (:mod:`orderlearn.config_typing`) and checking the values
(:mod:`orderlearn.config_checks`) live apart; :mod:`orderlearn.config` loads a file.
"""
from __future__ import annotations

import copy
import dataclasses
import keyword
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml


@dataclass
class DataConfig:
    """Where samples come from and how validation is carved from the training files."""

    kind: str = "synthetic"  # synthetic | scut | manifest
    root: Optional[str] = None  # dataset folder, manifest file, or where to write synthetic data
    split: str = "fold1"  # scut: 60-40 | fold1..fold5; manifest: foldK (fold column) or "split"
    ratings: Optional[str] = "auto"  # scut: auto | path to All_Ratings.xlsx / rating_distribution.csv
    val_fraction: float = 0.1  # share of the training files held out for validation (seeded by val_seed)
    val_seed: int = 0  # seed of the validation split
    limit_train: Optional[int] = None  # use a seeded subset of the training files (small real-data runs)
    limit_test: Optional[int] = None  # use a seeded subset of the test files
    train_groups: Optional[list[str]] = None  # keep only these groups' training files (SCUT: AF, AM, CF, CM; from the file name)
    test_groups: Optional[list[str]] = None  # keep only these groups' test files (the cross-group protocol)
    group_by: str = "group"  # what train_groups / test_groups name: group (SCUT's AF/AM/CF/CM, a manifest's group column) | gender
    # what a face's score is: mean (the listed mean rating, or the manifest's score) | high_share (SCUT
    # layout: the percentage of raters who gave 4 or 5, a scale no model is trained on, for the
    # new-scale protocol; needs the ratings and data.score_low <= 0, data.score_high >= 100)
    score_definition: str = "mean"
    synthetic_images: int = 1000  # synthetic: images generated on first use
    synthetic_image_size: int = 128  # synthetic: side of a generated face, in px
    score_low: float = 1.0  # lowest score of the scale (the scorer's range; ages: the youngest)
    score_high: float = 5.0  # highest score of the scale (> score_low)
    # images with the same bytes under two names: "error" (stop), or "drop-training-copies": drop
    # every training/validation copy of a test image and all but the first of repeated training
    # copies (the test split stays the dataset's own; the run prints what it dropped)
    duplicates: str = "error"
    # multi-database training: a second dataset whose training (and carved validation) images join
    # the model's training and validation, tagged database 1, for a method that learns a task from
    # them (AdaShare-AFF's gender_from: second); the bank, the link and the scored test set are
    # the first dataset's; the second's test files are read once for that task's metrics
    second: Optional["DataConfig"] = None


@dataclass
class ModelConfig:
    """A registered comparator or regressor by ``name``; its own options go to ``args``."""

    name: str = "siamese"  # a registered model (orderlearn models); its kind must be the config's task
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class PairsConfig:
    """Which pairs a comparator trains on: a fixed, seeded list (``balanced-3``, ``balanced-2``,
    ``imbalanced-4-4-2``: ``total`` pairs) or ``in-batch``: every step embeds a batch of
    ``train.batch_size`` images once and trains on the ordered pairs among them, sampled to the
    class mix ``in_batch_mix`` (a fixed recipe's proportions, or ``all`` pairs). Validation
    pairs are always a fixed recipe's ``val_total`` (``in_batch_mix``'s, ``balanced-3`` for ``all``)."""

    recipe: str = "balanced-3"  # balanced-3 | balanced-2 | imbalanced-4-4-2 (a fixed list of pairs) | in-batch
    in_batch_mix: str = "balanced-3"  # in-batch only: balanced-3 | balanced-2 | imbalanced-4-4-2 | all
    total: int = 90_000  # fixed recipes: training pairs drawn
    val_total: int = 6_000  # validation pairs drawn (a fixed recipe's)
    margin: float = 0.2  # θ: |score_a - score_b| <= margin is SIMILAR
    seed: int = 0  # seed of the pair draws


@dataclass
class LossConfig:
    name: str = "ce"  # ce | wce | ce+kl
    class_weights: Optional[list[float]] = None  # wce: per class (FIRST, SECOND, SIMILAR)
    kl_weight: float = 1.0  # λ_KL of LMOL eq. 9


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-3  # learning rate (the model's own groups may set theirs)
    weight_decay: float = 0.01  # decoupled (adamw) or L2 (adam, sgd) weight decay
    momentum: float = 0.9  # sgd only
    amsgrad: bool = False  # adam/adamw (the DLD authors' code uses it)


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # constant | step | cosine
    step_size: int = 30  # step: epochs between decays
    gamma: float = 0.1  # step: factor of each decay
    warmup_epochs: float = 0.0  # linear warm-up from 0, in epochs (fractions allowed)


@dataclass
class TrainConfig:
    epochs: int = 5  # training epochs
    batch_size: int = 64  # pairs (or images) per optimizer step and process, before grad_accum
    eval_batch_size: int = 128  # images per batch when embedding and scoring
    grad_accum: int = 1  # batches accumulated per optimizer step
    mixed_precision: str = "auto"  # auto (bf16 on a GPU that has it) | no | bf16 | fp16
    channels_last: bool = False  # conv weights and activations in channels-last memory format (timm's --channels-last)
    num_workers: int = 0  # DataLoader worker processes (0: load in the main process)
    frozen_backbone: bool = False  # embed once, train only the head (with model.trainable_from: the top stages too)
    feature_views: list[str] = field(default_factory=lambda: ["identity"])  # frozen_backbone: cached views of each training image (comparators/views.py: identity, hflip, rotate10, hflip+zoom115, ...)
    views_per_epoch: str = "all"  # all: every cached view of every face per epoch | one: each face once, in a view drawn per epoch
    max_steps_per_epoch: Optional[int] = None  # cap on the steps of an epoch (None: the whole epoch)
    select_metric: str = "val_loss"  # val_loss, val_mae (lower) | val_accuracy, val_pc (higher; val_mae/val_pc: regressors)
    log_every: int = 50  # steps between logged training losses
    tracker: str = "tensorboard"  # tensorboard | none


@dataclass
class BankConfig:
    """The run's bank (bins of its training faces) and, with ``from``, banks drawn from another
    dataset section after the run (:mod:`orderlearn.runs.foreign_bank`); YAML writes ``from``, the
    field is ``from_`` (a Python keyword)."""

    bin_width: float = 0.1  # width of a score bin the references are drawn from
    per_bin: int = 10  # references drawn per bin (fewer where a bin has fewer)
    seed: int = 0  # seed of the reference draw (and of bank.from's draws)
    # a dataset section (the keys of data:; those it leaves out are data:'s, but second) whose
    # training faces (validation excluded) give, after the run, bank.draws seeded banks of bank.size
    # references on its scale, each scoring its test split by both routes (results.json
    # foreign_bank, report.md); None: the run's own bank only
    from_: Optional[DataConfig] = None
    size: Optional[int] = None  # bank.from only, and required there: references per draw (>= 2)
    draws: Optional[int] = None  # bank.from only: seeded draws of bank.size references (None: 5)


@dataclass
class ScorerConfig:
    """The scorer by name (its own options in ``args``) and how comparisons reach it."""

    name: str = "bt-grid"  # a registered scorer (orderlearn models): bt-grid | bt-exact
    both_orders: bool = False  # also compare (ref, test) and combine (geometric mean) with (test, ref)
    calibrate_link: bool = False  # fit the link's slope and tie width on validation x bank comparisons
    calibrate_references: bool = False  # fit where the comparator places each reference (scorers.references)
    reverse_pass: bool = True  # also compare (ref, test) for the forward/reverse agreement metric
    calibrate_intervals: bool = False  # scale the posterior std so 95% intervals cover 95% of validation scores
    budget: Optional[int] = None  # comparisons per image, chosen by active reference selection (None: the whole bank)
    active_batch: int = 4  # references asked per image and round when budget is set
    # the fused route: also score with each face's direct score as its prior (width: the direct
    # route's validation RMSE), reported as its own route; comparator runs with direct_baseline
    direct_prior: bool = False
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentConfig:
    """Everything one run needs; ``task`` says whether ``model`` is a comparator or a regressor."""

    name: str = "experiment"  # the run's name (its method in orderlearn compare)
    seed: int = 0  # seed of the model's initialisation and the training order
    output_dir: str = "runs/experiment"  # the run folder (a fresh run refuses a non-empty one)
    task: str = "comparator"  # comparator | regressor
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    bank: BankConfig = field(default_factory=BankConfig)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    direct_baseline: bool = True  # also fit a regression head on the comparator's embeddings
    ensemble_last: int = 1  # average the label probabilities of the last K epoch checkpoints
    cs_thresholds: list[float] = field(default_factory=list)  # CS(t) metrics: share of test images within t (ages: [5])
    feature_cache: str = "auto"  # per-image feature cache folder: auto (user cache dir) | none | a path

    def to_dict(self) -> dict[str, Any]:
        """The config as YAML writes it (``bank.from``, not the field's ``from_``)."""
        return yaml_keys(self)

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def config_key(name: str) -> str:
    """The YAML key of a section's field: its name, but for a field named after a Python keyword
    with a trailing underscore, written without it (``from_`` -> ``from``)."""
    bare = name[:-1] if name.endswith("_") else name
    return bare if keyword.iskeyword(bare) else name


def field_name(key: str) -> str:
    """The field a YAML key is held in (``from`` -> ``from_``): :func:`config_key` undone."""
    return f"{key}_" if keyword.iskeyword(key) else key


def yaml_keys(value: Any) -> Any:
    """``dataclasses.asdict`` of ``value``, each field under its YAML key (:func:`config_key`); the
    keys of a plain mapping (a model's ``args``) are left as written."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {config_key(f.name): yaml_keys(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return type(value)(yaml_keys(v) for v in value)
    if isinstance(value, dict):
        return {k: yaml_keys(v) for k, v in value.items()}
    return copy.deepcopy(value)


CHOICES = {
    "data.kind": ("synthetic", "scut", "manifest"),
    "data.duplicates": ("error", "drop-training-copies"),
    "data.group_by": ("group", "gender"),
    "data.score_definition": ("mean", "high_share"),
    "task": ("comparator", "regressor"),
    "loss.name": ("ce", "wce", "ce+kl"),
    "optim.name": ("adamw", "adam", "sgd"),
    "schedule.name": ("constant", "step", "cosine"),
    "train.mixed_precision": ("auto", "no", "bf16", "fp16"),
    "train.select_metric": ("val_loss", "val_accuracy", "val_pc", "val_mae"),
    "train.tracker": ("tensorboard", "none"),
    "train.views_per_epoch": ("all", "one"),
    "pairs.recipe": ("balanced-3", "balanced-2", "imbalanced-4-4-2", "in-batch"),
    "pairs.in_batch_mix": ("balanced-3", "balanced-2", "imbalanced-4-4-2", "all"),
}
OPEN_SECTIONS = ("model", "scorer")  # keys besides `name` are the component's own arguments
