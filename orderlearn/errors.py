"""Errors raised for bad input. Each names the file (and line or key) and the problem."""
from __future__ import annotations


class DataError(ValueError):
    """A dataset file is missing, malformed or inconsistent."""


class ConfigError(ValueError):
    """A config has an unknown key or a bad value."""


class WeightsNotFoundError(RuntimeError):
    """Pretrained weights were asked for and no source could provide them (raised by
    ``comparators.backbones``; defined here so the command line catches it without importing
    torch)."""


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite: the run stops at that step (naming the epoch
    and step) instead of training on, and writing checkpoints of, a broken model."""
