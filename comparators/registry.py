"""The one registry of models: ``@register_model(name, kind=..., options=...)``."""
from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar

from orderlearn.types import Registry

from .base import Comparator, Model, Regressor

MODELS = Registry("model")
KINDS = {"comparator": Comparator, "regressor": Regressor}  # a model's kind: the base class it implements
F = TypeVar("F", bound=Callable[..., Any])


def register_model(name: str, kind: str, options: Optional[type] = None, paper: Optional[str] = None,
                   backbone: Optional[str] = None) -> Callable[[F], F]:
    """Decorator registering a model factory (or class) under ``name``; ``kind`` is declared
    here once, and a run config's ``task`` is checked against it when the config loads.

    ``paper``: the method's paper in one line (None: a model of this project); ``backbone``:
    what the network is built on, for a model whose ``options`` have no ``backbone`` field (the
    model table of ``orderlearn models`` shows them)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {tuple(KINDS)}, got {kind!r}")
    return MODELS.register(name, kind=kind, options=options, paper=paper, backbone=backbone)


def available(kind: Optional[str] = None) -> list[str]:
    return MODELS.names(kind=kind) if kind else MODELS.names()


def kind_of(name: str) -> str:
    """``comparator`` or ``regressor``: what model ``name`` declared when it registered."""
    return MODELS.metadata(name, "model.name")["kind"]


def options_of(name: str) -> Optional[type]:
    """The options dataclass of model ``name`` (None when it declares none)."""
    return MODELS.metadata(name, "model.name")["options"]


def paper_of(name: str) -> Optional[str]:
    """The paper model ``name`` implements, in one line (None: a model of this project)."""
    return MODELS.metadata(name, "model.name").get("paper")


def factory_of(name: str) -> Callable[..., Model]:
    return MODELS.get(name, "model.name")


def create(name: str, **kwargs: Any) -> Model:
    """Build the model registered as ``name``; an unknown name or option is a ValueError naming it.
    A model that is not the kind it registered as is a TypeError (a bug in its registration)."""
    factory = factory_of(name)
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise ValueError(f"model {name!r}: {exc}") from None
        raise
    kind = kind_of(name)
    if not isinstance(model, KINDS[kind]):
        raise TypeError(f"model {name!r} registered as a {kind} but built a {type(model).__name__}, "
                        f"which is not a {KINDS[kind].__name__}")
    return model
