"""Comparators and regressors by name: ``comparators.create("siamese", backbone=...)``.

Adding a model is one module whose factory (or class) carries the decorator::

    @register_model("my-comparator", kind="comparator", options=MyOptions, paper="Author et al., Title, Venue Year")
    def build(**kwargs) -> MyComparator: ...

``kind`` is ``comparator`` or ``regressor``, declared here and nowhere else (a run config's
``task`` is checked against it); ``options`` is the dataclass of the model's own options, which
a run config's ``model:`` section is validated against when the config is loaded, before any
data is read; ``paper`` is the method's paper in one line, which ``orderlearn models`` lists (the
meaning of each option is the comment on its field). A model over one timm backbone inherits its shared options (backbone, weights,
image size, augmentation, ``trainable_from``, ``test_flip``) and their checks from
:class:`~comparators.backbone_options.BackboneOptions`. The training loop and the pipeline
never change. The built-in models are imported here so they register themselves; their
optional heavy dependencies (peft, bitsandbytes) are imported inside their functions.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar

from .backbone_options import BackboneOptions
from .base import Comparator, Model, Regressor, RegressorOutput
from .registry import MODELS, available, create, factory_of, kind_of, options_of, paper_of, register_model
from . import direct_head, llava, siamese  # noqa: E402,F401  (built-in models register themselves)
from .regressors import adashare_aff, comboloss, dual_label_distribution, plain, relative_position  # noqa: E402,F401

__all__ = ["BackboneOptions", "Comparator", "MODELS", "Model", "Regressor", "RegressorOutput", "available", "create",
           "factory_of", "kind_of", "options_of", "paper_of", "register_model"]
