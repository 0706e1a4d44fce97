"""Cached views beyond the mirror: rotations, zooms, sharpening and their compositions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from comparators.views import apply_view, check_views
from orderlearn.config import ConfigError, config_from_dict

from builders import TINY_IMAGE

MEAN, STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


def normalise(pixels: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 -> ``[1, 3, H, W]`` normalised as a backbone's preprocessing does."""
    x = torch.from_numpy(pixels.copy()).float().permute(2, 0, 1) / 255
    return ((x - MEAN[:, None, None]) / STD[:, None, None])[None]


def test_sharpen_after_normalisation_is_pils_sharpness_before_it():
    rng = np.random.default_rng(0)
    pixels = rng.integers(100, 156, size=(24, 20, 3), dtype=np.uint8)  # no 8-bit clipping at factor 2
    pil = np.asarray(ImageEnhance.Sharpness(Image.fromarray(pixels)).enhance(2.0))
    ours = apply_view("sharpen", normalise(pixels))
    assert torch.allclose(ours, normalise(pil), atol=0.6 / 255 / 0.224)  # PIL rounds to whole levels
    assert not torch.allclose(ours, normalise(pixels), atol=0.05)


def test_rotation_turns_counter_clockwise_and_composes_left_to_right():
    image = torch.zeros(1, 1, 33, 33)
    image[..., 16, 28] = 1.0  # a dot right of the centre
    turned = apply_view("rotate45", image)
    y, x = divmod(int(turned.flatten().argmax()), 33)
    assert y < 16 and x > 16  # moved up and stays right: counter-clockwise
    batch = torch.randn(2, 3, 16, 16)
    assert torch.equal(apply_view("hflip+rotate10", batch), apply_view("rotate10", batch.flip(-1)))
    # a mirrored face turned one way is the mirror of the face turned the other way
    assert torch.allclose(apply_view("hflip+rotate10", batch), apply_view("rotate-10", batch).flip(-1), atol=1e-5)


def test_zoom_keeps_the_size_and_magnifies_the_centre():
    ramp = torch.linspace(-1, 1, 40).expand(1, 3, 40, 40)
    zoomed = apply_view("zoom125", ramp)
    assert zoomed.shape == ramp.shape
    assert zoomed[..., 0].max() > -0.85 and zoomed[..., -1].min() < 0.85  # the edges are cut away
    assert torch.allclose(zoomed.mean(), ramp.mean(), atol=1e-6)  # centred


@pytest.mark.parametrize("bad", ["rotate", "rotate90", "rotate+10", "zoom100", "zoom95", "hflip+", "mirror", ""])
def test_unknown_view_names_are_refused_with_the_grammar(bad):
    with pytest.raises(ValueError, match="rotate<degrees>"):
        check_views(["identity", bad])
    with pytest.raises(ValueError, match="unknown view"):
        apply_view(bad, torch.zeros(1, 3, 8, 8))


def test_augmented_views_are_checked_when_the_config_loads(synthetic_root):
    base = {"task": "regressor", "data": {"kind": "scut", "root": str(synthetic_root)},
            "model": {"name": "plain", **TINY_IMAGE}}
    with pytest.raises(ConfigError, match="train.feature_views.*rotate<degrees>"):
        config_from_dict({**base, "train": {"frozen_backbone": True, "feature_views": ["identity", "rotate200"]}})
    config = config_from_dict({**base, "train": {"frozen_backbone": True, "views_per_epoch": "one",
                                                 "feature_views": ["identity", "hflip", "rotate10", "hflip+rotate10"]}})
    assert config.train.feature_views == ["identity", "hflip", "rotate10", "hflip+rotate10"]
