"""Scorers by name, so a config can say ``scorer: {name: bt-exact, link: {slope: 8}}``.

``register(name)`` is the project's one registry decorator (:class:`orderlearn.types.Registry`)
for scorers; ``create(name, **kwargs)`` builds one (a ``link`` kwarg may be a dict
``{"slope": .., "tie_width": ..}``, see :meth:`Link.from_config`); adding a scorer is one new
module plus one decorator line. A run config's ``scorer:`` options are checked against the
scorer's constructor when the config is loaded.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from orderlearn.types import Registry

from .base import Scorer

T = TypeVar("T", bound=type)

SCORERS = Registry("scorer")


def register(name: str) -> Callable[[T], T]:
    """Class decorator registering a scorer under ``name`` (an error if the name is taken)."""
    return SCORERS.register(name)


def available() -> list[str]:
    """Registered scorer names, sorted."""
    return SCORERS.names()


def create(name: str, **kwargs: Any) -> Scorer:
    """Build the scorer registered as ``name`` with ``kwargs``; unknown names are a ValueError."""
    cls = SCORERS.get(name, "scorer.name")
    try:
        return cls(**kwargs)
    except TypeError as err:  # a misspelt option: say which scorer rejected it
        raise ValueError(f"scorer {name!r}: {err}") from err
