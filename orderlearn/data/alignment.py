"""Face detection and alignment: a photo becomes a crop framed like the model's training faces.

Why: a model trained on SCUT-FBP5500 crops has only seen faces at one position, scale and
roll. A photo where the face is small, off-centre or tilted is, to that model, a different kind
of image, and it scores differently for reasons that have nothing to do with the face. So a
photo is first brought into the training frame:

1. MTCNN (``facenet-pytorch``, the optional extra ``align``; its detector weights ship inside
   the package) finds the faces and five landmarks each: both eyes, the nose tip and both
   mouth corners;
2. the similarity transform (rotation, uniform scale, translation; least squares, Umeyama)
   that maps the face's landmarks onto the :class:`AlignmentTemplate` is applied;
3. the crop has the training images' size, so the model's own preprocessing then treats it
   exactly like a training image.

The template is the mean landmark position of the model's own training faces (each face's
landmarks taken relative to its image's width and height, averaged, and placed in an image of
the training images' most common size); :func:`measure_template` measures it once and it is
stored with the model (``alignment.json``).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Protocol, Sequence

import numpy as np
from PIL import Image

from orderlearn.errors import ConfigError, DataError
from orderlearn.files import atomic_write_json
from orderlearn.data.images import load_image

TEMPLATE_FILE = "alignment.json"
TEMPLATE_FORMAT = 1
MIN_FACE_PROBABILITY = 0.9  # MTCNN's own output-net threshold is 0.7; below 0.9 it is mostly texture
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
INSTALL_HINT = ("face alignment needs facenet-pytorch: `pip install --no-deps facenet-pytorch==2.6.0` "
                "(plus `pip install orderlearn[align]`), or pass --align none for images that are already crops")


class AlignmentUnavailableError(ConfigError):
    """Alignment was asked for where it cannot run (no facenet-pytorch, or no template)."""


@dataclass(frozen=True)
class Face:
    """One detected face: its box (x0, y0, x1, y1), detector probability and five landmarks [5, 2]."""

    box: tuple[float, float, float, float]
    probability: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


class FaceDetector(Protocol):
    def detect(self, image: Image.Image) -> list[Face]:
        """Every face in ``image`` (any order)."""


@dataclass(frozen=True)
class AlignmentTemplate:
    """Where the five landmarks sit in a training image of ``width`` x ``height`` pixels."""

    width: int
    height: int
    landmarks: tuple[tuple[float, float], ...]  # LANDMARK_NAMES order, pixels
    faces: int  # how many training faces the mean was taken over
    format: int = TEMPLATE_FORMAT

    def points(self) -> np.ndarray:
        return np.asarray(self.landmarks, dtype=np.float64)

    def save(self, path: Path) -> Path:
        return atomic_write_json(Path(path), {**asdict(self), "landmark_names": list(LANDMARK_NAMES)}, default=None)

    @classmethod
    def load(cls, path: Path) -> "AlignmentTemplate":
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
            raw.pop("landmark_names", None)
            template = cls(width=int(raw["width"]), height=int(raw["height"]), faces=int(raw["faces"]),
                           landmarks=tuple((float(x), float(y)) for x, y in raw["landmarks"]),
                           format=int(raw.get("format", TEMPLATE_FORMAT)))
        except FileNotFoundError:
            raise DataError(f"alignment template {path} does not exist") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path} is not an alignment template ({exc})") from None
        if template.format != TEMPLATE_FORMAT or len(template.landmarks) != len(LANDMARK_NAMES):
            raise DataError(f"{path}: format {template.format} with {len(template.landmarks)} landmarks; "
                            f"this orderlearn reads format {TEMPLATE_FORMAT} with {len(LANDMARK_NAMES)}")
        return template


class MtcnnDetector:
    """facenet-pytorch's MTCNN on the CPU (a photo costs tens of milliseconds)."""

    def __init__(self, min_face_size: int = 20) -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as exc:
            raise AlignmentUnavailableError(f"{INSTALL_HINT} ({exc})") from None
        self.mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size, device="cpu")

    def detect(self, image: Image.Image) -> list[Face]:
        import torch

        with torch.no_grad():
            boxes, probs, points = self.mtcnn.detect(image, landmarks=True)
        if boxes is None:
            return []
        return [Face(tuple(float(v) for v in box), float(p), np.asarray(pts, dtype=np.float64))
                for box, p, pts in zip(boxes, probs, points)]


def faces_in(detector: FaceDetector, image: Image.Image) -> list[Face]:
    """Confident faces, largest first."""
    faces = [f for f in detector.detect(image) if f.probability >= MIN_FACE_PROBABILITY]
    return sorted(faces, key=lambda f: -f.area)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix M of the similarity (no reflection) minimising Σ‖M·[src; 1] − dst‖² (Umeyama 1991)."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(sigma) @ sign)) / float((s ** 2).sum() / len(src))
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - scale * rotation @ mu_s
    return matrix


def warp(image: Image.Image, matrix: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """``image`` resampled through the 2x3 forward map ``matrix`` into a ``size`` canvas (black outside)."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)[:2].reshape(-1)  # PIL maps output pixels back to input pixels
    return image.transform(size, Image.Transform.AFFINE, data=tuple(inverse), resample=Image.Resampling.BICUBIC)


@dataclass
class AlignedFace:
    crop: Image.Image
    face: Face
    faces_found: int


class FaceAligner:
    """Photos -> crops in the template's frame; one face per photo (the largest, or, with
    ``one_face``, a DataError when there are several)."""

    def __init__(self, template: AlignmentTemplate, detector: Optional[FaceDetector] = None, one_face: bool = False) -> None:
        self.template, self.one_face = template, one_face
        self.detector = detector if detector is not None else MtcnnDetector()

    def align(self, image: Image.Image, name: str = "image") -> AlignedFace:
        faces = faces_in(self.detector, image)
        if not faces:
            raise DataError(f"{name}: no face found")
        if self.one_face and len(faces) > 1:
            raise DataError(f"{name}: {len(faces)} faces found (--one-face asks for exactly one)")
        matrix = similarity_transform(faces[0].landmarks, self.template.points())
        return AlignedFace(warp(image, matrix, (self.template.width, self.template.height)), faces[0], len(faces))

    def align_file(self, path: Path) -> AlignedFace:
        return self.align(load_image(path), str(path))


def measure_template(paths: Sequence[Path], detector: Optional[FaceDetector] = None, limit: int = 200) -> AlignmentTemplate:
    """Mean landmark positions of the faces in (at most ``limit`` of) ``paths``: each face's
    landmarks relative to its image size, averaged, in an image of the most common size.
    Images without a confident face are skipped; none at all is a DataError."""
    detector = detector if detector is not None else MtcnnDetector()
    relative, sizes = [], Counter()
    for path in list(paths)[:limit]:
        image = load_image(path)
        faces = faces_in(detector, image)
        if faces:
            relative.append(faces[0].landmarks / np.array(image.size, dtype=np.float64))
            sizes[image.size] += 1
    if not relative:
        raise DataError(f"no face found in any of {min(len(paths), limit)} training images: no alignment template "
                        "(score such images with --align none)")
    (width, height), _ = sizes.most_common(1)[0]
    mean = np.mean(relative, axis=0) * np.array([width, height], dtype=np.float64)
    return AlignmentTemplate(int(width), int(height), tuple((float(x), float(y)) for x, y in mean), len(relative))


REFRAMINGS = ("padded", "shifted", "scaled_down", "scaled_up", "rotated_left", "rotated_right")
BACKGROUND = (128, 128, 128)


def reframe(image: Image.Image, how: str) -> Image.Image:
    """A copy of a face crop framed the way a user's photo might be: ``padded`` (centred on a
    canvas 1.5× its size), ``shifted`` (off-centre on that canvas), ``scaled_down`` (0.7× on a
    canvas of its own size), ``scaled_up`` (1.2×, centre cropped back), ``rotated_left`` /
    ``rotated_right`` (±10° about its centre). How robust alignment is gets measured on these."""
    w, h = image.size
    if how in ("padded", "shifted"):
        canvas = Image.new("RGB", (int(1.5 * w), int(1.5 * h)), BACKGROUND)
        canvas.paste(image, ((canvas.width - w) // 2, (canvas.height - h) // 2) if how == "padded" else (w // 10, h // 2 - h // 10))
        return canvas
    if how in ("scaled_down", "scaled_up"):
        factor = 0.7 if how == "scaled_down" else 1.2
        scaled = image.resize((round(w * factor), round(h * factor)), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", (w, h), BACKGROUND)
        canvas.paste(scaled, ((w - scaled.width) // 2, (h - scaled.height) // 2))
        return canvas
    if how in ("rotated_left", "rotated_right"):
        return image.rotate(10 if how == "rotated_left" else -10, resample=Image.Resampling.BICUBIC, fillcolor=BACKGROUND)
    raise ValueError(f"unknown reframing {how!r}; choose from {list(REFRAMINGS)}")
