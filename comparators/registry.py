"""The one registry of models: ``@register_model(name, kind=..., options=...)``."""
from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar

from orderlearn.types import Registry

from .base import Model

MODELS = Registry("model")
KINDS = ("comparator", "regressor")
F = TypeVar("F", bound=Callable[..., Any])


def register_model(name: str, kind: str, options: Optional[type] = None) -> Callable[[F], F]:
    """Decorator registering a model factory (or class) under ``name``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return MODELS.register(name, kind=kind, options=options)


def available(kind: Optional[str] = None) -> list[str]:
    return MODELS.names(kind=kind) if kind else MODELS.names()


def kind_of(name: str) -> str:
    return MODELS.metadata(name, "model.name")["kind"]


def options_of(name: str) -> Optional[type]:
    """The options dataclass of model ``name`` (None when it declares none)."""
    return MODELS.metadata(name, "model.name")["options"]


def factory_of(name: str) -> Callable[..., Model]:
    return MODELS.get(name, "model.name")


def create(name: str, **kwargs: Any) -> Model:
    """Build the model registered as ``name``; an unknown name or option is a ValueError naming it."""
    factory = factory_of(name)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise ValueError(f"model {name!r}: {exc}") from None
        raise
