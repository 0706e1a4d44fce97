"""What values a typed config may hold: the checks that run once it is built, before any data is read.

Closed choices (:data:`~orderlearn.config_sections.CHOICES`), value ranges, the second
database, a bank from another dataset (``bank.from``, ``bank.size``, ``bank.draws``), the cached
views, a model's options against the options dataclass it registered, the config's ``task``
against the model's registered kind, a scorer's options against its constructor (it is built
once, so its own checks run), and the loss's class weights. Each
failure is a one-line :class:`ConfigError` that names the dotted key. :func:`check_config`
runs them in a fixed order, so one bad config always reports the same first error.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Optional, Union

from orderlearn.config_files import one_line
from orderlearn.config_sections import (CHOICES, DataConfig, ExperimentConfig, LossConfig, ModelConfig, ScorerConfig,
                                        field_name)
from orderlearn.config_typing import build_section, check_names, coerce, mentioned
from orderlearn.errors import ConfigError

# The smallest synthetic dataset the generator writes: one test image per cross-validation fold
# (orderlearn.data.synthetic.layout.N_FOLDS) and the face painter's smallest canvas, in pixels.
# ``orderlearn synth`` and ``data.synthetic_*`` are checked against the same numbers.
SYNTHETIC_MIN_IMAGES = 5
SYNTHETIC_MIN_SIZE = 16
# Seeds are 0 <= seed < 2**32: what every generator a run seeds accepts (NumPy's legacy seed,
# which accelerate's set_seed calls, refuses a negative seed or one of 2**32 and more).
SEED_LIMIT = 2 ** 32
# The largest learning rate a config may ask for. No optimiser here trains at more than ~1 (SGD
# on a head); a value above 10 is a typo (1e12 for 1e-2) that would train every epoch on a
# non-finite loss.
LR_MAX = 10.0


def check_config(config: ExperimentConfig) -> None:
    """Every check, in order; the first failure is raised."""
    check_choices(config)
    check_ranges(config)
    check_second_database(config)
    check_foreign_bank(config)
    check_direct_prior(config)
    check_views(config)
    options = validate_model_options(config.model)
    check_task_is_model_kind(config)
    validate_scorer_options(config.scorer, config.data)
    check_loss(config.loss, config.task, options)


def check_choices(config: ExperimentConfig) -> None:
    for key, allowed in CHOICES.items():
        value = config
        for part in key.split("."):
            value = getattr(value, part)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {list(allowed)}")


def check_second_database(config: ExperimentConfig) -> None:
    """``data.second``: a dataset section checked as ``data`` is (no third of its own), and
    selection on the loss: a validation PC or MAE would pool the two databases' scores."""
    second = config.data.second
    if second is None:
        return
    if second.second is not None:
        raise ConfigError("data.second.second: a second database has no second of its own")
    check_dataset_section(config, second, "data.second.")
    if config.train.select_metric != "val_loss":
        raise ConfigError(f"train.select_metric: {config.train.select_metric!r} would pool the scores of data and "
                          "data.second; multi-database runs select on val_loss")


def check_dataset_section(config: ExperimentConfig, data: DataConfig, prefix: str) -> None:
    """A dataset section besides ``data`` (``data.second.``, ``bank.from.``) checked as ``data`` is:
    its closed choices (its kind among them), then its value ranges."""
    for key, allowed in CHOICES.items():
        name = key.removeprefix("data.")
        if name != key and getattr(data, name) not in allowed:
            raise ConfigError(f"{prefix}{name}: {getattr(data, name)!r} is not one of {list(allowed)}")
    raise_first_bad(config, data_ranges(data, prefix))


def check_direct_prior(config: ExperimentConfig) -> None:
    """``scorer.direct_prior`` needs a direct route to take the prior from and a comparator to
    refine it: a regressor's bank route compares its own score, so the prior would count it twice."""
    if not config.scorer.direct_prior:
        return
    if config.task != "comparator":
        raise ConfigError("scorer.direct_prior: the fused route refines a direct score by a comparator's judgments; "
                          f"task is {config.task} (its bank route already is its direct score)")
    if not config.direct_baseline:
        raise ConfigError("scorer.direct_prior: the prior is the direct head's score; set direct_baseline: true")


def check_foreign_bank(config: ExperimentConfig) -> None:
    """``bank.from`` (a dataset section, checked as ``data`` is, without a second database of its
    own) with ``bank.size`` references per draw (required, >= 2: the self-calibration's least) and
    ``bank.draws`` (>= 1); without ``bank.from``, ``bank.size`` and ``bank.draws`` mean nothing
    and are refused rather than ignored."""
    bank = config.bank
    if bank.from_ is None:
        for key, value in (("size", bank.size), ("draws", bank.draws)):
            if value is not None:
                raise ConfigError(f"bank.{key}: {value!r} is for a bank drawn from another dataset; set bank.from "
                                  "(a dataset section like data:) or remove bank." + key)
        return
    if bank.from_.second is not None:
        raise ConfigError("bank.from.second: a bank's dataset has no second database")
    check_dataset_section(config, bank.from_, "bank.from.")
    if bank.size is None:
        raise ConfigError("bank.size: bank.from needs the number of references per draw (>= 2)")
    raise_first_bad(config, {
        "bank.size": (bank.size >= 2, "expected >= 2 references per draw"),
        "bank.draws": (bank.draws is None or bank.draws >= 1, "expected >= 1 draw"),
    })


def validate_model_options(model: ModelConfig) -> Optional[Any]:
    """``model.args`` against the registered model's options (names, types, its own checks); the
    typed options (None when the model declares no options dataclass), for the checks that need
    them. Built only for the checks: the factory builds its own from the same values."""
    import inspect

    import comparators

    try:
        factory, options = comparators.factory_of(model.name), comparators.options_of(model.name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    params = inspect.signature(factory).parameters.values()
    extra = {p.name: p for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    fields = {f.name for f in dataclasses.fields(options)} if options is not None else set()
    if options is not None or not any(p.kind is p.VAR_KEYWORD for p in params):
        check_names(model.args, fields | set(extra), "model.")
    check_factory_keywords(factory, {k: v for k, v in model.args.items() if k in set(extra) - fields})
    if options is None:
        return None
    return build_section(options, {k: v for k, v in model.args.items() if k in fields}, "model.")


def check_factory_keywords(factory: Any, args: dict[str, Any]) -> None:
    """The factory's own keyword options (``image_size`` of the LLaVA comparator, say) typed by
    its annotations like an options dataclass's fields, so a word for a number fails at load."""
    try:
        hints = typing.get_type_hints(factory)
    except (NameError, TypeError):  # an annotation that does not resolve: nothing to type against
        return
    for key, value in args.items():
        if key in hints:
            coerce(hints[key], value, f"model.{key}")


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
    check_names(scorer.args, params, "scorer.")
    args = {k: coerce(hints[k], v, f"scorer.{k}") if k in hints else v for k, v in scorer.args.items()}
    try:
        cls(low=data.score_low, high=data.score_high, **{k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v) for k, v in args.items()})
    except (ValueError, TypeError) as exc:
        named = mentioned(str(exc), set(scorer.args)) or mentioned(str(exc), params)
        key = f"scorer.{named[0]}" if len(named) == 1 else "scorer"
        raise ConfigError(f"{key}: {one_line(exc)} (scorer {scorer.name!r})") from None


def check_loss(loss: LossConfig, task: str, model_options: Optional[Any]) -> None:
    """``loss.class_weights``: the weighted loss of a comparator needs one positive weight per
    class the model outputs (its ``num_classes`` when it has that option; 2 or 3 otherwise), else
    the first training batch would fail after the data is read and the model built."""
    if loss.name != "wce" or task != "comparator":
        return
    weights = loss.class_weights
    if not weights:
        raise ConfigError("loss.class_weights: loss wce needs one weight per class (FIRST, SECOND, SIMILAR)")
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise ConfigError(f"loss.class_weights: expected positive weights, got {weights}")
    classes = getattr(model_options, "num_classes", None)
    if classes is not None and len(weights) != classes:
        raise ConfigError(f"loss.class_weights: {len(weights)} weights for a model of {classes} classes "
                          f"(model.num_classes: {classes})")
    if classes is None and len(weights) not in (2, 3):
        raise ConfigError(f"loss.class_weights: expected 2 or 3 weights (FIRST, SECOND[, SIMILAR]), got {weights}")


def check_views(config: ExperimentConfig) -> None:
    from comparators.views import check_views as check_view_names

    train = config.train
    try:
        check_view_names(train.feature_views, "train.feature_views")
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


def check_ranges(config: ExperimentConfig) -> None:
    """The value ranges of the sections' own fields (finiteness of every float is checked as
    the config is typed: :func:`orderlearn.config_typing.coerce`)."""
    checks = {
        **data_ranges(config.data, "data."),
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
        "optim.lr": (0 < config.optim.lr <= LR_MAX, f"expected 0 < lr <= {LR_MAX:g}"),
        "optim.momentum": (0 <= config.optim.momentum < 1, "expected 0 <= momentum < 1"),
        "schedule.gamma": (config.schedule.gamma > 0, "expected a decay factor > 0"),
        **{key: (0 <= seed < SEED_LIMIT, "expected 0 <= seed < 2**32")
           for key, seed in (("seed", config.seed), ("pairs.seed", config.pairs.seed), ("bank.seed", config.bank.seed))},
        "output_dir": (bool(config.output_dir.strip()), "an empty name; set the folder the run writes into"),
        "train.epochs": config.train.epochs > 0,
        "train.batch_size": config.train.batch_size > 0,
        "train.grad_accum": config.train.grad_accum > 0,
        "ensemble_last": 1 <= config.ensemble_last <= config.train.epochs,
        "cs_thresholds": all(math.isfinite(t) and t > 0 for t in config.cs_thresholds),
    }
    raise_first_bad(config, checks)


Check = Union[bool, tuple[bool, str]]  # passed, or (passed, what is expected: said when it fails)


def data_ranges(data: DataConfig, prefix: str) -> dict[str, Check]:
    """The value checks of a dataset section (``data.``, ``data.second.`` or ``bank.from.``), by full key."""
    return {
        f"{prefix}val_fraction": 0.0 <= data.val_fraction < 1.0,
        f"{prefix}val_seed": (0 <= data.val_seed < SEED_LIMIT, "expected 0 <= seed < 2**32"),
        f"{prefix}limit_train": data.limit_train is None or data.limit_train > 0,
        f"{prefix}limit_test": data.limit_test is None or data.limit_test > 0,
        f"{prefix}synthetic_images": data.synthetic_images >= SYNTHETIC_MIN_IMAGES,
        f"{prefix}synthetic_image_size": data.synthetic_image_size >= SYNTHETIC_MIN_SIZE,
        f"{prefix}score_high": data.score_high > data.score_low,
        f"{prefix}score_definition": (data.score_definition == "mean" or (
            data.kind in ("scut", "synthetic") and data.ratings is not None and data.score_low <= 0 <= 100 <= data.score_high),
            f"high_share is a percentage of SCUT-layout ratings: {prefix}kind scut or synthetic, {prefix}ratings set, "
            f"{prefix}score_low <= 0 and {prefix}score_high >= 100"),
    }


def raise_first_bad(config: ExperimentConfig, checks: dict[str, Check]) -> None:
    """A ConfigError naming the first failed check's key, its value and, where the check says
    it, what is expected."""
    for key, check in checks.items():
        ok, expected = check if isinstance(check, tuple) else (check, "")
        if not ok:
            value = config
            for part in key.split("."):
                value = getattr(value, field_name(part))
            raise ConfigError(f"{key}: bad value {value!r}" + (f" ({expected})" if expected else ""))
