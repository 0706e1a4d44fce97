"""Comparators and regressors by name: ``comparators.create("siamese", backbone=...)``.

Adding a model is one module with a ``build(**kwargs)`` factory plus one line in
:data:`_REGISTRY` (or a call to :func:`register` from user code); the training loop never
changes. Each entry says whether the model is a ``comparator`` or a ``regressor``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from .base import Comparator, Regressor, RegressorOutput


@dataclass(frozen=True)
class Entry:
    kind: str  # "comparator" | "regressor"
    target: str  # "module:function" (imported on first use, so optional deps stay optional)


_REGISTRY: dict[str, Entry] = {
    "siamese": Entry("comparator", "comparators.siamese:build"),
    "llava": Entry("comparator", "comparators.llava:build"),
    "embedding-regressor": Entry("regressor", "comparators.direct_head:build"),
    "adashare-aff": Entry("regressor", "comparators.regressors.adashare_aff:build"),
    "relative-position": Entry("regressor", "comparators.regressors.relative_position:build"),
    "dual-label-distribution": Entry("regressor", "comparators.regressors.dual_label_distribution:build"),
    "comboloss": Entry("regressor", "comparators.regressors.comboloss:build"),
    "plain": Entry("regressor", "comparators.regressors.plain:build"),
}


def register(name: str, kind: str, factory: Callable[..., nn.Module] | str) -> None:
    """Register ``factory`` (a callable or ``"module:function"``) under ``name``."""
    if kind not in ("comparator", "regressor"):
        raise ValueError(f"kind must be 'comparator' or 'regressor', got {kind!r}")
    if callable(factory):
        _FACTORIES[name] = factory
        factory = f"{factory.__module__}:{factory.__qualname__}"
    _REGISTRY[name] = Entry(kind, factory)


_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def available(kind: str | None = None) -> list[str]:
    return sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)


def kind_of(name: str) -> str:
    return _entry(name).kind


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name``; bad options raise an error naming them."""
    entry = _entry(name)
    factory = _FACTORIES.get(name)
    if factory is None:
        module, _, function = entry.target.partition(":")
        factory = getattr(importlib.import_module(module), function)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        if "unexpected keyword" in str(exc) or "got an unexpected" in str(exc):
            raise ValueError(f"model {name!r}: {exc}") from None
        raise


def _entry(name: str) -> Entry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {available()}")
    return _REGISTRY[name]


__all__ = ["Comparator", "Regressor", "RegressorOutput", "available", "create", "kind_of", "register"]
