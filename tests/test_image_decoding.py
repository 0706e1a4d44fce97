"""Issue 31, cases 3 and 4: the one image decoder (``orderlearn.data.images.load_image``) reads a
16-bit greyscale PNG as the 8-bit picture it is (not saturated to white) and turns a photo upright
by its EXIF orientation, as the MTCNN alignment path always did."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from orderlearn.data.images import load_image


def gradient() -> np.ndarray:
    return np.tile(np.linspace(0, 255, 32).round().astype(np.uint8), (24, 1))


def test_a_16_bit_greyscale_png_reads_as_its_8_bit_copy(tmp_path: Path):
    eight = gradient()
    Image.fromarray((eight.astype(np.uint16) * 257)).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    Image.fromarray(eight).save(tmp_path / "flat.png")
    deep, flat = np.asarray(load_image(tmp_path / "deep.png")), np.asarray(load_image(tmp_path / "flat.png"))
    assert deep.shape == flat.shape == (24, 32, 3)
    assert np.abs(deep.astype(int) - flat.astype(int)).max() <= 1


def test_exif_orientation_turns_the_photo_upright(tmp_path: Path):
    upright = np.zeros((20, 40, 3), np.uint8)
    upright[:, :10] = 255  # a white band on the left of a wide picture
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways writes
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    stored.save(tmp_path / "sideways.png", exif=exif)
    read = np.asarray(load_image(tmp_path / "sideways.png"))
    assert read.shape == upright.shape
    assert read[:, :10].mean() > 200 and read[:, 10:].mean() < 50
