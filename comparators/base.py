"""The model contract of orderlearn: :class:`Model`, and its two kinds :class:`Comparator` and
:class:`Regressor`.

Everything the training loop, the pipeline and the feature cache call on a model is declared
here, with a documented default, so nothing outside this file probes a model with
``getattr``/``hasattr``; a new method overrides what it needs and inherits the rest.

A comparator maps two image batches to logits over :class:`~orderlearn.types.PairLabel`
(K = 3: FIRST, SECOND, SIMILAR; K = 2 for two-class comparators: FIRST, SECOND). Where it can,
it splits into ``embed`` (once per image) and ``compare`` (per pair), so a test set of N images
against a bank of R references costs N + R backbone passes. One that only implements
``forward(a, b)`` still works end to end: its "embedding" is the preprocessed image itself and
``compare`` calls ``forward``, one pair at a time through the backbone.

A regressor maps one image batch to a :class:`RegressorOutput` with a ``score`` per image and
owns its loss, so one training loop serves every method of the literature. Where it splits
into ``forward_features`` (the backbone) and ``forward_head`` (timm's names), its features can
be computed once and only the head trained. Its comparator view
(:meth:`Regressor.comparator_view`) is the degenerate comparator of docs/design.md.

The per-image feature function of either kind is :meth:`Model.forward_features` and the part
trained on cached features is :meth:`Model.forward_head`; for a comparator these are ``embed``
and ``compare``.
"""
from __future__ import annotations

from .comparator import Comparator
from .model import Batch, Model
from .regressor import Regressor
from .regressor_output import RegressorOutput

__all__ = ["Batch", "Comparator", "Model", "Regressor", "RegressorOutput"]
