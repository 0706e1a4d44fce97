"""Backbones registered by this project: ``@register_backbone`` on a timm-style entrypoint.

The project's one registry mechanism (:class:`orderlearn.types.Registry`) for backbones; each
entry is also handed to timm's own registry, so ``timm.create_model("ir50")``, pretrained
configs and every config's ``backbone: ir50`` work exactly like a built-in timm model.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from timm.models import register_model as timm_register_model

from orderlearn.types import Registry

BACKBONES = Registry("backbone")
F = TypeVar("F", bound=Callable[..., Any])


def register_backbone(entrypoint: F) -> F:
    """Register a timm-style model entrypoint (``fn(pretrained=False, **kwargs)``) by its name."""
    BACKBONES.register(entrypoint.__name__)(entrypoint)
    return timm_register_model(entrypoint)
