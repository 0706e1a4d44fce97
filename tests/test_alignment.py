"""Face alignment: the similarity transform, the template of the training faces, the aligner's
one-face rules, and on real SCUT-FBP5500 faces that re-framed copies (padded, shifted, scaled,
rotated ±10°) align back onto the original's frame."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orderlearn.data.alignment import (REFRAMINGS, AlignmentTemplate, Face, FaceAligner, measure_template,
                                  reframe, similarity_transform, warp)
from orderlearn.data.images import load_image
from orderlearn.errors import DataError

TEMPLATE = AlignmentTemplate(100, 120, ((35.0, 50.0), (65.0, 50.0), (50.0, 70.0), (38.0, 90.0), (62.0, 90.0)), faces=1)


def similarity(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), shift[0]], [scale * math.sin(a), scale * math.cos(a), shift[1]]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_similarity_transform_recovers_rotation_scale_and_shift():
    src = TEMPLATE.points()
    truth = similarity(17.0, 1.7, (12.0, -30.0))
    assert np.allclose(similarity_transform(src, apply(truth, src)), truth, atol=1e-9)
    mirrored = src * np.array([-1.0, 1.0])  # a reflection is never chosen: the best proper similarity is
    fitted = similarity_transform(src, mirrored)
    assert np.linalg.det(fitted[:, :2]) > 0


def test_warp_moves_a_point_where_the_matrix_says():
    image = Image.new("RGB", (80, 80))
    image.putpixel((20, 30), (255, 255, 255))
    matrix = similarity(0.0, 2.0, (5.0, 7.0))
    out = np.asarray(warp(image, matrix, (200, 200)).convert("L"), dtype=float)
    y, x = np.unravel_index(out.argmax(), out.shape)
    assert abs(x - (2 * 20 + 5)) <= 1.5 and abs(y - (2 * 30 + 7)) <= 1.5


def test_template_round_trip_and_bad_files(tmp_path):
    TEMPLATE.save(tmp_path / "alignment.json")
    assert AlignmentTemplate.load(tmp_path / "alignment.json") == TEMPLATE
    (tmp_path / "bad.json").write_text('{"width": 10}')
    with pytest.raises(DataError, match="bad.json is not an alignment template"):
        AlignmentTemplate.load(tmp_path / "bad.json")
    with pytest.raises(DataError, match="does not exist"):
        AlignmentTemplate.load(tmp_path / "missing.json")


class FixedDetector:
    """Faces at given places, whatever the image (the aligner's rules without a network)."""

    def __init__(self, faces: list[Face]) -> None:
        self.faces = faces

    def detect(self, image: Image.Image) -> list[Face]:
        return list(self.faces)


def face_at(points: np.ndarray, box: tuple[float, float, float, float], p: float = 0.99) -> Face:
    return Face(box, p, np.asarray(points, dtype=np.float64))


def test_measure_template_averages_relative_landmarks_in_the_most_common_size(tmp_path):
    for i, size in enumerate([(200, 100), (200, 100), (50, 50)]):
        Image.new("RGB", size).save(tmp_path / f"{i}.png")
    relative = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])

    class Relative:
        def detect(self, image: Image.Image) -> list[Face]:
            return [face_at(relative * np.array(image.size), (0, 0, *image.size))]

    template = measure_template(sorted(tmp_path.glob("*.png")), Relative())
    assert (template.width, template.height, template.faces) == (200, 100, 3)
    assert np.allclose(template.points(), relative * [200, 100])
    with pytest.raises(DataError, match="no face found in any of 3 training images"):
        measure_template(sorted(tmp_path.glob("*.png")), FixedDetector([]))


def test_aligner_takes_the_largest_face_and_refuses_several_with_one_face():
    image = Image.new("RGB", (300, 300))
    small = face_at(TEMPLATE.points() * 0.5, (0, 0, 50, 60))
    big = face_at(TEMPLATE.points() * 2.0 + 20, (20, 20, 220, 260))
    weak = face_at(TEMPLATE.points(), (0, 0, 290, 290), p=0.5)  # below the confidence floor: not a face
    aligned = FaceAligner(TEMPLATE, FixedDetector([small, big, weak])).align(image, "two.png")
    assert aligned.face is big and aligned.faces_found == 2 and aligned.crop.size == (100, 120)
    with pytest.raises(DataError, match="two.png: 2 faces found"):
        FaceAligner(TEMPLATE, FixedDetector([small, big]), one_face=True).align(image, "two.png")
    with pytest.raises(DataError, match="blank.png: no face found"):
        FaceAligner(TEMPLATE, FixedDetector([weak])).align(image, "blank.png")


# ------------------------------------------------------------------ real faces, real MTCNN
def scut_faces(root: Path, count: int) -> list[Path]:
    lines = (root / "train_test_files" / "split_of_60%training and 40%testing" / "test.txt").read_text().split("\n")
    return [root / "Images" / line.split()[0] for line in lines[:count]]


@pytest.fixture(scope="module")
def real_aligner(scut_root) -> FaceAligner:
    pytest.importorskip("facenet_pytorch")
    lines = (scut_root / "train_test_files" / "split_of_60%training and 40%testing" / "train.txt").read_text().split("\n")
    template = measure_template([scut_root / "Images" / line.split()[0] for line in lines[:30]])
    return FaceAligner(template)


def central_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute pixel difference over the middle 64% of the frame (the face)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    h, w = x.shape[:2]
    return float(np.abs(x - y)[h // 5: h - h // 5, w // 5: w - w // 5].mean())


def test_reframed_real_faces_align_back_onto_the_original_frame(scut_root, real_aligner):
    aligned_gaps, raw_gaps = {}, {}
    for path in scut_faces(scut_root, 3):
        photo = load_image(path)
        reference = real_aligner.align(photo).crop
        assert reference.size == (real_aligner.template.width, real_aligner.template.height)
        for how in REFRAMINGS:
            copy = reframe(photo, how)
            aligned_gaps[path.name, how] = central_difference(real_aligner.align(copy, f"{path.name} {how}").crop, reference)
            raw_gaps[path.name, how] = central_difference(copy.resize(photo.size, Image.Resampling.BICUBIC), photo)
    # without alignment a re-framed copy is a different picture (measured: 20-100 grey levels);
    # aligned, it is the same picture up to resampling and landmark noise (3-15 where the whole
    # face stays in the frame; a face cut by the frame edge, scaled_up, gets poorer landmarks)
    whole_face = [k for k in aligned_gaps if k[1] != "scaled_up"]
    assert all(aligned_gaps[k] < raw_gaps[k] for k in whole_face)
    assert np.mean([aligned_gaps[k] for k in whole_face]) < 0.3 * np.mean([raw_gaps[k] for k in whole_face])


def test_a_photo_stored_sideways_with_an_exif_tag_is_aligned_upright(scut_root, real_aligner, tmp_path):
    photo = load_image(scut_faces(scut_root, 1)[0])
    sideways = photo.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the viewer rotates it back (a sideways phone photo)
    sideways.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    assert load_image(tmp_path / "phone.jpg").size == photo.size
    upright = real_aligner.align_file(tmp_path / "phone.jpg").crop
    assert central_difference(upright, real_aligner.align(photo).crop) < 15
