"""Backbones registered by this project: ``@register_backbone`` on a timm-style entrypoint.

The entry goes to timm's own registry, which is the one every lookup reads
(``timm.create_model("ir50")``, pretrained configs, :func:`comparators.backbones.check_backbone_name`),
so a config's ``backbone: ir50`` works exactly like a built-in timm model.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from timm.models import register_model as timm_register_model

F = TypeVar("F", bound=Callable[..., Any])

REGISTERED: list[str] = []
"""The backbones this project registered, in order (``orderlearn models`` lists them)."""


def register_backbone(entrypoint: F) -> F:
    """Register a timm-style model entrypoint (``fn(pretrained=False, **kwargs)``) under its name."""
    if entrypoint.__name__ not in REGISTERED:
        REGISTERED.append(entrypoint.__name__)
    return timm_register_model(entrypoint)
