"""Feature fusion: MobileNetV2 ‖ EfficientNet-Lite0 as one backbone name."""
from __future__ import annotations

import torch

import comparators
from comparators.backbones import create_backbone
from comparators.fusion import IMAGENET, Renormalise


def test_each_branch_gets_the_normalisation_its_weights_expect(one_thread):
    pixels = torch.rand(2, 3, 8, 8)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET)
    lite0 = Renormalise((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))((pixels - mean) / std)
    assert torch.allclose(lite0, (pixels - 0.5) / 0.5, atol=1e-6)


def test_the_fused_backbone_concatenates_both_pooled_features_and_any_method_can_name_it(one_thread):
    torch.manual_seed(0)
    fused = create_backbone("mobilenetv2_100_lite0_fusion", "random").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = fused(x)
        parts = [branch(adapt(x)) for branch, adapt in zip(fused.branches, fused.inputs)]
    assert out.shape == (2, 2560) and torch.equal(out, torch.cat(parts, -1))
    model = comparators.create("siamese", backbone="mobilenetv2_100_lite0_fusion", weights="random", image_size=64)
    assert model.project[0].in_features == 2560
    with torch.no_grad():
        assert model(x, x.flip(0)).shape == (2, 3)
