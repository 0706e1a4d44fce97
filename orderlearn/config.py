"""Experiment configs: dataclasses loaded from YAML, validated on load, saved with every run.

Unknown keys and wrongly typed values are errors that name the key (``train.epoch``: did
you mean ``train.epochs``?). ``model`` and ``scorer`` keep their own keyword arguments in
``args``; those are validated here too, when the config is loaded and before any data is read:
a model's options against the options dataclass it registered (plus its factory's own keyword
parameters), a scorer's against its constructor, with the same did-you-mean messages, and
then the component's own range checks run (the scorer is built once; the model's options
dataclass is instantiated, which builds nothing heavy).

A config file may name a ``base:`` and hold only its differences (``orderlearn/config_files.py``
resolves the chain); ``-o`` overrides apply to the resolved config, which is what gets validated
and what a run folder saves, so a saved ``config.yaml`` loads on its own.
"""
from __future__ import annotations

import dataclasses
import math
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from orderlearn.config_files import BASE_KEY, UNSET_KEY, apply_overrides, file_setting, one_line, resolve_file
from orderlearn.errors import ConfigError


@dataclass
class DataConfig:
    """Where samples come from and how validation is carved from the training files."""

    kind: str = "synthetic"  # synthetic | scut | manifest
    root: Optional[str] = None  # dataset folder, manifest file, or where to write synthetic data
    split: str = "fold1"  # scut: 60-40 | fold1..fold5; manifest: foldK (fold column) or "split"
    ratings: Optional[str] = "auto"  # scut: auto | path to All_Ratings.xlsx / rating_distribution.csv
    val_fraction: float = 0.1
    val_seed: int = 0
    limit_train: Optional[int] = None  # use a seeded subset of the training files (small real-data runs)
    limit_test: Optional[int] = None
    train_groups: Optional[list[str]] = None  # keep only these groups' training files (SCUT: AF, AM, CF, CM; from the file name)
    test_groups: Optional[list[str]] = None  # keep only these groups' test files (the cross-group protocol)
    synthetic_images: int = 1000
    synthetic_image_size: int = 128
    score_low: float = 1.0
    score_high: float = 5.0
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

    name: str = "siamese"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class PairsConfig:
    """Which pairs a comparator trains on: a fixed, seeded list (``balanced-3``, ``balanced-2``,
    ``imbalanced-4-4-2``: ``total`` pairs) or ``in-batch``: every step embeds a batch of
    ``train.batch_size`` images once and trains on the ordered pairs among them, sampled to the
    class mix ``in_batch_mix`` (a fixed recipe's proportions, or ``all`` pairs). Validation
    pairs are always a fixed recipe's ``val_total`` (``in_batch_mix``'s, ``balanced-3`` for ``all``)."""

    recipe: str = "balanced-3"
    in_batch_mix: str = "balanced-3"  # in-batch only: balanced-3 | balanced-2 | imbalanced-4-4-2 | all
    total: int = 90_000
    val_total: int = 6_000
    margin: float = 0.2
    seed: int = 0


@dataclass
class LossConfig:
    name: str = "ce"  # ce | wce | ce+kl
    class_weights: Optional[list[float]] = None  # wce: per class (FIRST, SECOND, SIMILAR)
    kl_weight: float = 1.0  # λ_KL of LMOL eq. 9


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.9  # sgd only
    amsgrad: bool = False  # adam/adamw (the DLD authors' code uses it)


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # constant | step | cosine
    step_size: int = 30  # step: epochs between decays
    gamma: float = 0.1
    warmup_epochs: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 64
    eval_batch_size: int = 128
    grad_accum: int = 1
    mixed_precision: str = "auto"  # auto (bf16 on a GPU that has it) | no | bf16 | fp16
    channels_last: bool = False  # conv weights and activations in channels-last memory format (timm's --channels-last)
    num_workers: int = 0
    frozen_backbone: bool = False  # embed once, train only the head (with model.trainable_from: the top stages too)
    feature_views: list[str] = field(default_factory=lambda: ["identity"])  # frozen_backbone: cached views of each training image (comparators/views.py: identity, hflip, rotate10, hflip+zoom115, ...)
    views_per_epoch: str = "all"  # all: every cached view of every face per epoch | one: each face once, in a view drawn per epoch
    max_steps_per_epoch: Optional[int] = None
    select_metric: str = "val_loss"  # val_loss, val_mae (lower) | val_accuracy, val_pc (higher; val_mae/val_pc: regressors)
    log_every: int = 50
    tracker: str = "tensorboard"  # tensorboard | none


@dataclass
class BankConfig:
    bin_width: float = 0.1
    per_bin: int = 10
    seed: int = 0


@dataclass
class ScorerConfig:
    """The scorer by name (its own options in ``args``) and how comparisons reach it."""

    name: str = "bt-grid"
    both_orders: bool = False  # also compare (ref, test) and combine (geometric mean) with (test, ref)
    calibrate_link: bool = False  # fit the link's slope and tie width on validation x bank comparisons
    calibrate_references: bool = False  # fit where the comparator places each reference (scorers.references)
    reverse_pass: bool = True  # also compare (ref, test) for the forward/reverse agreement metric
    calibrate_intervals: bool = False  # scale the posterior std so 95% intervals cover 95% of validation scores
    budget: Optional[int] = None  # comparisons per image, chosen by active reference selection (None: the whole bank)
    active_batch: int = 4  # references asked per image and round when budget is set
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentConfig:
    """Everything one run needs; ``task`` says whether ``model`` is a comparator or a regressor."""

    name: str = "experiment"
    seed: int = 0
    output_dir: str = "runs/experiment"
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
        return dataclasses.asdict(self)

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


CHOICES = {
    "data.kind": ("synthetic", "scut", "manifest"),
    "data.duplicates": ("error", "drop-training-copies"),
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


def load_config(path: Union[str, Path], overrides: Optional[list[str]] = None) -> ExperimentConfig:
    """Read a YAML config, resolve its ``base:`` chain, apply ``key.sub=value`` overrides (values
    parsed as YAML) and validate the result; every error is a one-line ConfigError naming the
    file and the key. The returned config is the resolved one (what a run folder saves)."""
    path = Path(path)
    raw = resolve_file(path, canonical_sections)
    raw = apply_overrides(raw, overrides, canonical_sections)
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        message = one_line(exc)
        raise ConfigError(f"{path}: {message}{_where_set(path, message, overrides)}") from None


def _where_set(path: Path, message: str, overrides: Optional[list[str]]) -> str:
    """`` (set in base.yaml)`` when the key an error names comes from a base file, else ''."""
    match = re.match(r"unknown key '([^']+)'|([\w.]+)[:\[ ]", message)
    key = match and (match.group(1) or match.group(2))
    if not key or any(o.partition("=")[0].strip() in (key, key.replace(".", ".args.", 1)) for o in overrides or []):
        return ""
    source = file_setting(path, key, canonical_sections)
    return f" (set in {source})" if source is not None and source != path else ""


def canonical_sections(raw: dict[str, Any]) -> dict[str, Any]:
    """``model`` and ``scorer`` with their component's options under ``args``.

    A file may write them flat (``model: {name: siamese, backbone: resnet18}``) or under
    ``args``; merging a variant into its base and applying ``-o model.image_size=..`` or
    ``-o model.args.image_size=..`` must all address the same option, so every layer is put into
    the ``args`` spelling first. A key given both ways in one layer is an error naming it."""
    raw = dict(raw)
    for section in OPEN_SECTIONS:
        body = raw.get(section)
        if not isinstance(body, dict):
            continue  # _build names the section when it is not a mapping
        own = {f.name for f in dataclasses.fields(type(getattr(ExperimentConfig(), section)))} - {"args"}
        flat = {k: v for k, v in body.items() if k not in own and k != "args"}
        if not flat:
            continue
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise ConfigError(f"{section}.args: expected a mapping, got {args!r}")
        twice = sorted(flat.keys() & args.keys(), key=str)
        if twice:
            key = twice[0]
            raise ConfigError(f"{section}.{key}: given twice, as {section}.{key} and {section}.args.{key}")
        raw[section] = {k: v for k, v in body.items() if k in own} | {"args": {**args, **flat}}
    return raw


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """A validated config from one resolved mapping (no ``base``: files are resolved by load_config)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: a config must be a mapping of keys, got {type(raw).__name__}")
    if BASE_KEY in raw or UNSET_KEY in raw:
        key = BASE_KEY if BASE_KEY in raw else UNSET_KEY
        raise ConfigError(f"{key}: only a config file can inherit (load it with load_config)")
    raw = canonical_sections(raw)
    config = _build(ExperimentConfig, raw, "")
    for key, allowed in CHOICES.items():
        value = config
        for part in key.split("."):
            value = getattr(value, part)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {list(allowed)}")
    _check_ranges(config)
    _check_second_database(config)
    _check_views(config)
    validate_model_options(config.model)
    check_task_is_model_kind(config)
    validate_scorer_options(config.scorer, config.data)
    return config


def _check_second_database(config: ExperimentConfig) -> None:
    """``data.second``: a dataset section checked as ``data`` is (no third of its own), and
    selection on the loss: a validation PC or MAE would pool the two databases' scores."""
    second = config.data.second
    if second is None:
        return
    if second.second is not None:
        raise ConfigError("data.second.second: a second database has no second of its own")
    for key, allowed in CHOICES.items():
        name = key.removeprefix("data.")
        if name != key and getattr(second, name) not in allowed:
            raise ConfigError(f"data.second.{name}: {getattr(second, name)!r} is not one of {list(allowed)}")
    _raise_first_bad(config, _data_ranges(second, "data.second."))
    if config.train.select_metric != "val_loss":
        raise ConfigError(f"train.select_metric: {config.train.select_metric!r} would pool the scores of data and "
                          "data.second; multi-database runs select on val_loss")


def validate_model_options(model: ModelConfig) -> None:
    """``model.args`` against the registered model's options (names, types, its own checks)."""
    import inspect

    import comparators

    try:
        factory, options = comparators.factory_of(model.name), comparators.options_of(model.name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    params = inspect.signature(factory).parameters.values()
    extra = {p.name: p for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    if options is None:
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            _check_names(model.args, set(extra), "model.")
        return
    fields = {f.name for f in dataclasses.fields(options)}
    _check_names(model.args, fields | set(extra), "model.")
    typed = _build(options, {k: v for k, v in model.args.items() if k in fields}, "model.")
    del typed  # built only for its checks: the factory builds its own from the same values


def check_task_is_model_kind(config: ExperimentConfig) -> None:
    """``task`` must be the kind the model declared when it registered (comparator or regressor)."""
    import comparators

    kind = comparators.kind_of(config.model.name)
    if config.task != kind:
        raise ConfigError(f"task: {config.task!r}, but model {config.model.name!r} is a {kind}; set task: {kind}")


def validate_scorer_options(scorer: ScorerConfig, data: DataConfig) -> None:
    """``scorer.args`` against the scorer's constructor, then its own checks (it is built once)."""
    import inspect

    import scorers

    try:
        cls = scorers.SCORERS.get(scorer.name, "scorer.name")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    hints = typing.get_type_hints(cls.__init__)
    params = {n for n in inspect.signature(cls.__init__).parameters if n != "self"} - {"low", "high"}
    _check_names(scorer.args, params, "scorer.")
    args = {k: _coerce(hints[k], v, f"scorer.{k}") if k in hints else v for k, v in scorer.args.items()}
    try:
        cls(low=data.score_low, high=data.score_high, **{k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v) for k, v in args.items()})
    except (ValueError, TypeError) as exc:
        mentioned = _mentioned(str(exc), set(scorer.args)) or _mentioned(str(exc), params)
        key = f"scorer.{mentioned[0]}" if len(mentioned) == 1 else "scorer"
        raise ConfigError(f"{key}: {one_line(exc)} (scorer {scorer.name!r})") from None


def _check_views(config: ExperimentConfig) -> None:
    from comparators.views import check_views

    train = config.train
    try:
        check_views(train.feature_views, "train.feature_views")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if train.feature_views != ["identity"] and not train.frozen_backbone:
        raise ConfigError("train.feature_views: cached views need train.frozen_backbone: true "
                          "(a trained backbone sees augmentations through model.augment instead)")
    if train.views_per_epoch == "one":
        if len(train.feature_views) < 2:
            raise ConfigError(f"train.views_per_epoch: one draws among several cached views; train.feature_views "
                              f"holds {train.feature_views}")
        if config.task == "comparator" and config.pairs.recipe != "in-batch":
            raise ConfigError(f"train.views_per_epoch: one is for images (a regressor, or pairs.recipe: in-batch); "
                              f"fixed pairs (pairs.recipe: {config.pairs.recipe}) draw one view per pair once")


def _check_names(args: dict[str, Any], names: set[str], prefix: str) -> None:
    for key in args:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known keys: {sorted(names)}"
            raise ConfigError(f"unknown key '{prefix}{key}'{hint}")


def _check_ranges(config: ExperimentConfig) -> None:
    checks = {
        **_data_ranges(config.data, "data."),
        "pairs.total": config.pairs.total > 0,
        "pairs.val_total": config.pairs.val_total > 0,
        "train.eval_batch_size": config.train.eval_batch_size > 0,
        "train.num_workers": config.train.num_workers >= 0,
        "train.log_every": config.train.log_every > 0,
        "train.max_steps_per_epoch": config.train.max_steps_per_epoch is None or config.train.max_steps_per_epoch > 0,
        "bank.bin_width": config.bank.bin_width > 0,
        "scorer.budget": config.scorer.budget is None or config.scorer.budget > 0,
        "scorer.active_batch": config.scorer.active_batch > 0,
        "bank.per_bin": config.bank.per_bin > 0,
        "loss.kl_weight": config.loss.kl_weight >= 0,
        "optim.weight_decay": config.optim.weight_decay >= 0,
        "schedule.step_size": config.schedule.step_size > 0,
        "schedule.warmup_epochs": config.schedule.warmup_epochs >= 0,
        "pairs.margin": config.pairs.margin >= 0,
        "optim.lr": config.optim.lr > 0,
        "train.epochs": config.train.epochs > 0,
        "train.batch_size": config.train.batch_size > 0,
        "train.grad_accum": config.train.grad_accum > 0,
        "ensemble_last": 1 <= config.ensemble_last <= config.train.epochs,
        "cs_thresholds": all(math.isfinite(t) and t > 0 for t in config.cs_thresholds),
    }
    _raise_first_bad(config, checks)


def _data_ranges(data: DataConfig, prefix: str) -> dict[str, bool]:
    """The value checks of a dataset section (``data.`` or ``data.second.``), by full key."""
    return {
        f"{prefix}val_fraction": 0.0 <= data.val_fraction < 1.0,
        f"{prefix}limit_train": data.limit_train is None or data.limit_train > 0,
        f"{prefix}limit_test": data.limit_test is None or data.limit_test > 0,
        f"{prefix}synthetic_images": data.synthetic_images > 0,
        f"{prefix}synthetic_image_size": data.synthetic_image_size > 0,
        f"{prefix}score_high": data.score_high > data.score_low,
    }


def _raise_first_bad(config: ExperimentConfig, checks: dict[str, bool]) -> None:
    """A ConfigError naming the first failed check's key and its value."""
    for key, ok in checks.items():
        if not ok:
            value = config
            for part in key.split("."):
                value = getattr(value, part)
            raise ConfigError(f"{key}: bad value {value!r}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Dataclass ``cls`` from a mapping: unknown keys and wrong types name the key; a ValueError
    from the dataclass's own checks becomes a ConfigError naming the section."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    _check_names(raw, {f.name for f in dataclasses.fields(cls)}, prefix)
    kwargs = {key: _coerce(hints[key], value, f"{prefix}{key}") for key, value in raw.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(_keyed(str(exc), {f.name for f in dataclasses.fields(cls)}, prefix)) from None


def _keyed(message: str, names: set[str], prefix: str) -> str:
    """``"lr: must be > 0"`` from a component becomes ``"optim.lr: must be > 0"``; a message that
    names one of the section's fields elsewhere (``"Link slope must be > 0"``) is keyed by it."""
    message = one_line(message)
    head, sep, _ = message.partition(":")
    if sep and head.strip() in names:
        return prefix + message.lstrip()
    mentioned = _mentioned(message, names)
    if len(mentioned) == 1:
        return f"{prefix}{mentioned[0]}: {message}"
    return f"{prefix.rstrip('.') or 'config'}: {message}"


def _mentioned(message: str, names: set[str]) -> list[str]:
    """The ``names`` that occur in ``message`` as whole words (which argument a check is about)."""
    return sorted(n for n in names if re.search(rf"(?<![\w.]){re.escape(n)}(?![\w])", message))


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{key}.")
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        if len(options) > 2 and dataclasses.is_dataclass(options[0]) and isinstance(value, dict):
            return _build(options[0], value, f"{key}.")  # e.g. a scorer's link: Link | dict | None
        scalars = [o for o in options if o in (int, str, bool, float)]
        if len(scalars) > 1 and type(value) in scalars:  # e.g. a unit name or an index: str | int
            return value
        hint = next(o for o in options if o is not type(None))
        if dataclasses.is_dataclass(hint):  # an optional section, e.g. data.second
            return _build(hint, value, f"{key}.")
        origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        items = typing.get_args(hint)
        if len(items) == 2 and items[1] is Ellipsis:
            return tuple(_coerce(items[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(items) != len(value):
            raise ConfigError(f"{key}: expected {len(items)} values, got {value!r}")
        return tuple(_coerce(t, v, f"{key}[{i}]") for i, (t, v) in enumerate(zip(items, value)))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML reads 1e-3 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, str, bool, float) and type(value) is hint:
        return value
    raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
