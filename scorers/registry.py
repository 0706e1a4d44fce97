"""Scorers by name, so a config can say ``scorer: {name: bt-exact, link: {slope: 8}}``.

``register(name)`` is a class decorator; ``create(name, **kwargs)`` builds one (a ``link`` kwarg
may be a dict ``{"slope": .., "tie_width": ..}``, see :meth:`Link.from_config`); adding a scorer
is one new module plus one decorator line.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from .base import Scorer

T = TypeVar("T", bound=type)

_REGISTRY: dict[str, type] = {}


def register(name: str) -> Callable[[T], T]:
    """Class decorator registering a scorer under ``name`` (an error if the name is taken)."""

    def deco(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"scorer name {name!r} is already registered to {_REGISTRY[name].__name__}")
        _REGISTRY[name] = cls
        return cls

    return deco


def available() -> list[str]:
    """Registered scorer names, sorted."""
    return sorted(_REGISTRY)


def create(name: str, **kwargs: Any) -> Scorer:
    """Build the scorer registered as ``name`` with ``kwargs``; unknown names are a ValueError."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown scorer {name!r}; available: {', '.join(available())}")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as err:  # a misspelt option: say which scorer rejected it
        raise ValueError(f"scorer {name!r}: {err}") from err
