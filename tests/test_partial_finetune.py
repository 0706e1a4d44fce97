"""Partial fine-tuning with a cached trunk (``model.trainable_from``) and cached views."""
from __future__ import annotations

import json

import pytest
import torch

import comparators
from comparators.partial import PartialBackbone, backbone_units, split_index
from comparators.views import ViewAveraged
from orderlearn.config import config_from_dict
from orderlearn.errors import ConfigError

TINY = {"backbone": "mobilenetv2_035", "weights": "random", "image_size": 48}


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def test_bank_references_are_embedded_once_from_their_features():
    """The bank route passes embeddings (``embed_from_features`` already applied) to
    ``embed_references``; applying the top a second time crashed a partially fine-tuned
    siamese comparator (conv2d on [R, 1280])."""
    model = comparators.create("siamese", **TINY, trainable_from="blocks.4").eval()
    images = torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        embeddings = model.embed_from_features(model.forward_features(images))
        refs = model.embed_references(embeddings, torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(refs, embeddings)
