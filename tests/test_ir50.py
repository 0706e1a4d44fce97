"""IR-50 backbone: shapes at 112 px, timm registry, classifier reset, checkpoint formats."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import timm
import torch

import comparators.ir50  # noqa: F401  (registers ir50 / ir50_poster)
from comparators.backbones import WeightsNotFoundError, create_backbone, normalisation
from comparators.ir50 import IR50, convert_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only add contention


TINY = dict(widths=(8, 8, 16, 16), depths=(1, 1, 2, 1))


def _unit_params(cin: int, cout: int) -> int:
    """Parameters of one improved residual unit (BN, conv3x3, PReLU, conv3x3, BN [+ 1x1 conv, BN])."""
    n = 2 * cin + 9 * cin * cout + cout + 9 * cout * cout + 2 * cout
    return n + (cin * cout + 2 * cout if cin != cout else 0)


def test_full_ir50_gives_512x7x7_at_112px_and_has_the_arcface_layout():
    # the full-size network on the meta device: real shapes and parameter counts, no compute
    with torch.device("meta"):
        model = create_backbone("ir50", weights="random")
        fmap = model.forward_features(torch.empty(2, 3, 112, 112))
        pooled = model(torch.empty(2, 3, 112, 112))
    assert model.num_features == 512 and model.num_classes == 0
    assert fmap.shape == (2, 512, 7, 7) and pooled.shape == (2, 512)
    # ArcFace IR-50 body: stem (3x3 conv 3->64, BN, PReLU) + units (3, 4, 14, 3) x (64, 128, 256, 512)
    expected = 3 * 64 * 9 + 2 * 64 + 64
    cin = 64
    for width, depth in zip((64, 128, 256, 512), (3, 4, 14, 3)):
        for _ in range(depth):
            expected += _unit_params(cin, width)
            cin = width
    assert sum(p.numel() for p in model.parameters()) == expected == 30_727_360


def test_reduced_variant_through_create_backbone_keeps_the_strides():
    torch.manual_seed(0)
    model = create_backbone("ir50", weights="random", **TINY)
    assert isinstance(model, IR50) and model.num_features == 16
    x = torch.randn(2, 3, 112, 112)
    assert model.forward_features(x).shape == (2, 16, 7, 7)
    torch.testing.assert_close(model(x), model.forward_features(x).mean(dim=(2, 3)))
    assert [f["reduction"] for f in model.feature_info] == [1, 2, 4, 8, 16]


def test_features_only_gives_the_stem_and_every_stage():
    model = timm.create_model("ir50_poster", features_only=True, widths=(8, 8, 16), depths=(1, 1, 2))
    shapes = [tuple(f.shape) for f in model(torch.randn(1, 3, 112, 112))]
    assert shapes == [(1, 8, 112, 112), (1, 8, 56, 56), (1, 8, 28, 28), (1, 16, 14, 14)]


def test_poster_variant_drops_the_last_block():
    torch.manual_seed(0)
    model = create_backbone("ir50_poster", weights="random", widths=(8, 8, 16), depths=(1, 1, 2))
    assert model.num_features == 16
    assert model.forward_features(torch.randn(2, 3, 112, 112)).shape == (2, 16, 14, 14)


def test_num_classes_and_reset_classifier():
    torch.manual_seed(0)
    model = create_backbone("ir50", weights="random", **TINY)
    model.reset_classifier(5)
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 5)
    feats = model.forward_features(x)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 16)
    model.reset_classifier(0)
    assert model(x).shape == (2, 16)
    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(-1)


def test_normalisation_is_arcface_and_pretrained_fails_loudly():
    assert normalisation("ir50") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with pytest.raises(WeightsNotFoundError, match="ir50"):
        create_backbone("ir50", weights="imagenet", **TINY)


def test_bad_layout_is_rejected():
    with pytest.raises(ValueError, match="equal length"):
        IR50(widths=(8, 8), depths=(1,))
    with pytest.raises(ValueError, match=">= 1"):
        IR50(widths=(8, 0), depths=(1, 1))


def _face_evolve_checkpoint(model: IR50) -> "OrderedDict[str, torch.Tensor]":
    """A face.evoLVe-style file: the body plus ArcFace's embedding layer (output_layer.*)."""
    state = OrderedDict((k, v.clone()) for k, v in model.state_dict().items())
    state["output_layer.0.weight"] = torch.ones(16)
    state["output_layer.3.weight"] = torch.ones(4, 16 * 7 * 7)
    return state


def test_face_evolve_checkpoint_loads_into_the_truncated_variant(tmp_path):
    torch.manual_seed(1)
    full = IR50(**TINY)
    path = tmp_path / "ir50.pth"
    torch.save(_face_evolve_checkpoint(full), path)
    poster = create_backbone("ir50_poster", weights=str(path), widths=(8, 8, 16), depths=(1, 1, 2))
    # units 0..3 are the first three stages; unit 4 (the removed last block) is dropped
    for key, value in poster.state_dict().items():
        torch.testing.assert_close(value, full.state_dict()[key])
    # and the full variant takes the whole file (output_layer is not part of the extractor)
    again = create_backbone("ir50", weights=str(path), **TINY)
    torch.testing.assert_close(again.body[4].res_layer[1].weight, full.body[4].res_layer[1].weight)


def test_poster_checkpoint_names_are_mapped(tmp_path):
    torch.manual_seed(2)
    source = IR50(widths=(8, 8, 16), depths=(1, 1, 2))
    poster_names = OrderedDict()
    starts = {0: (1, 0), 1: (2, 0), 2: (3, 0), 3: (3, 1)}  # global unit -> (POSTER++ body, local index)
    for key, value in source.state_dict().items():
        if key.startswith("body."):
            unit, rest = key[len("body."):].split(".", 1)
            stage, local = starts[int(unit)]
            key = f"body{stage}.{local}.{rest}"
        poster_names[key] = value.clone()
    assert "body3.1.res_layer.1.weight" in poster_names
    converted = convert_state_dict(poster_names, (1, 1, 2))
    assert set(converted) == set(source.state_dict())
    path = tmp_path / "poster.pth"
    torch.save({"state_dict": poster_names}, path)
    model = create_backbone("ir50_poster", weights=str(path), widths=(8, 8, 16), depths=(1, 1, 2))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key])


def test_wrong_architecture_checkpoint_fails(tmp_path):
    other = IR50(widths=(8, 8, 32, 16), depths=(1, 1, 2, 1))
    path = tmp_path / "other.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(RuntimeError, match="does not fit this backbone: shape mismatch"):
        create_backbone("ir50", weights=str(path), **TINY)


def test_gradients_reach_the_stem():
    torch.manual_seed(0)
    model = create_backbone("ir50", weights="random", **TINY)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert model.input_layer[0].weight.grad is not None
    assert model.input_layer[0].weight.grad.abs().sum() > 0
