"""Deterministic synthetic face datasets: a SCUT-FBP5500 look-alike and an age dataset.

Why this exists: the real benchmarks cannot ship with the project, yet every piece of
the pipeline (readers, pair sampling, comparators, Bradley-Terry scorers, metrics) needs
data whose ground truth is known and *learnable but not trivial*. So faces are painted
procedurally with PIL, and the score depends only on visible properties:

* beauty mode (:func:`generate_synthetic_scut`): a latent beauty score is a smooth
  nonlinear function of eye size, eye spacing, facial symmetry, blemish count, face
  width/height ratio, smile curvature and nose proportion (:func:`beauty_latent`);
  60 simulated raters each give ``round(latent + bias + noise)`` clipped to 1..5, and
  the mean of their ratings is the score, exactly as SCUT-FBP5500 averages its raters.
  Gender (AF/AM/CF/CM file group) changes hair length, jaw and brows; ethnicity changes the
  skin/hair palette; background, lighting, pose, noise also vary. None of these enter
  the score, so a model must learn the face, not the nuisance.
* age mode (:func:`generate_synthetic_ages`): the integer age shows through wrinkles,
  grey hair, sagging (a longer lower face), skin desaturation, eye bags and a receding
  hairline, each with person-to-person variation ("apparent age" != age).

Both modes share one painter (:func:`paint_face`) driven by a :class:`FaceParams`.
Everything is seeded per image from ``(seed, mode, group, index)`` so the same arguments
give byte-identical files, and image ``i`` does not change when ``n_images`` grows.
A finished dataset carries ``meta.json`` (written last): a later call with the same
arguments returns the folder untouched, an interrupted or different folder is an error.
"""
from __future__ import annotations

import io
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw

PathLike = Union[str, Path]
RGB = tuple[int, int, int]

GENERATOR_NAME = "orderlearn.synthetic"
GENERATOR_VERSION = "1.0"
JPEG_QUALITY = 92
SUPERSAMPLE = 2  # faces are drawn at 2x and downsampled: cheap anti-aliasing
FACE_FRAMING = 0.31  # sqrt(W * H) / image side: the face fills the frame as in SCUT's crops

# SCUT-FBP5500 group sizes; the order also fixes name order within the generated set.
SCUT_GROUP_SIZES: dict[str, int] = {"AF": 2000, "AM": 2000, "CF": 750, "CM": 750}
GROUP_ATTRIBUTES: dict[str, tuple[str, str]] = {
    "AF": ("female", "asian"),
    "AM": ("male", "asian"),
    "CF": ("female", "caucasian"),
    "CM": ("male", "caucasian"),
}
CSV_GROUP_ORDER = ("CF", "AF", "CM", "AM")  # the row order of SCUT's rating_distribution.csv
SPLIT_DIR = "split_of_60%training and 40%testing"
CV_DIR = "5_folders_cross_validations_files"
N_FOLDS = 5
TRAIN_FRACTION = 0.6

# Score range of the latent (SCUT's observed range is 1.02..4.75; the bulk lies in 2..4).
LATENT_MIN, LATENT_MAX = 1.3, 4.7
# Rater model: rating = clip(round(latent + bias_r + noise), 1, 5). With these values the
# per-image rating std is ~0.65 on average, like SCUT's 0.64 (measured on the real files).
RATER_BIAS_SD = 0.25
RATER_NOISE_SD = 0.55

_MODE_TAGS = {"scut": 1, "ages": 2}
_LAYOUT_NAMES = {"Images", "ratings", "train_test_files", "README.md", "meta.json", "manifest.csv"}


# --------------------------------------------------------------------------------------
# The painter
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceParams:
    """Everything the painter needs, in canvas-relative units; no randomness inside.

    Geometry is relative to the canvas side (1.0) or to the head's half-width ``W`` /
    half-height ``H``; colours are final RGB. ``detail_seed`` seeds the jitter of
    wrinkles/strands and the pixel noise, so :func:`paint_face` is a pure function.
    """

    # pose and framing (nuisance)
    center_x: float = 0.5
    center_y: float = 0.5
    scale: float = 1.0
    roll_deg: float = 0.0
    # head shape
    face_ratio: float = 0.75  # W / H of the head
    jaw_square: float = 0.3  # 0 round .. 1 square lower face
    chin_point: float = 0.3  # 0 broad .. 1 pointed chin
    sag: float = 0.0  # 0 .. 1: lower face lengthens and widens (age)
    # colours
    skin: RGB = (224, 186, 160)
    hair: RGB = (60, 40, 30)
    iris: RGB = (90, 60, 40)
    lips: RGB = (190, 100, 100)
    background: RGB = (200, 200, 210)
    clothes: RGB = (60, 80, 120)
    # hair
    hair_length: float = 0.0  # 0 short .. 1 shoulder length (back hair)
    hair_style: int = 0  # 0 straight, 1 side-swept, 2 curly, 3 fringe
    hair_volume: float = 1.0
    hairline: float = 0.0  # 0 normal .. 1 receded
    grey_strands: float = 0.0  # 0 .. 1 density of light strands drawn over the hair
    # eyes and brows
    eye_size: float = 0.18  # eye half-width / W
    eye_spacing: float = 0.41  # half distance between eye centres / W
    eye_dy: float = 0.0  # vertical offset of the right eye / H (asymmetry)
    eye_scale_right: float = 1.0  # right-eye size factor (asymmetry)
    brow_thickness: float = 0.5  # 0 thin .. 1 thick
    brow_arch: float = 0.5  # 0 straight .. 1 arched
    # nose and mouth
    nose_length: float = 0.62  # nose base position between eye line (0) and mouth (1)
    nose_dx: float = 0.0  # sideways shift / W (asymmetry)
    mouth_width: float = 0.42  # mouth half-width / W
    smile: float = 0.0  # -1 frown .. 1 smile (corner lift)
    mouth_tilt_deg: float = 0.0  # asymmetry
    lip_fullness: float = 0.5
    # skin marks (age/beauty)
    blemishes: tuple[tuple[float, float, float], ...] = ()  # (u, v, radius / W), u, v in the unit disk
    wrinkles: float = 0.0  # 0 .. 1
    eye_bags: float = 0.0  # 0 .. 1
    # photometric nuisance
    light_angle: float = 0.0  # direction of the lighting gradient, radians
    light_strength: float = 0.0  # 0 .. ~0.3 relative brightness change across the image
    noise_sd: float = 0.0  # pixel noise sd in 0..255 units
    detail_seed: int = 0


def _scale_rgb(c: RGB, f: float) -> RGB:
    return tuple(int(max(0, min(255, round(v * f)))) for v in c)  # type: ignore[return-value]


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def _head_outline(cx: float, cy: float, w: float, h: float, p: FaceParams, n: int = 96) -> list[tuple[float, float]]:
    """Closed head polygon: an ellipse on top, a superellipse below whose squareness,
    chin and length follow ``jaw_square``, ``chin_point`` and ``sag``."""
    pts = []
    low_exp = 2.0 / (2.0 + 1.6 * p.jaw_square)
    h_low = h * (1.0 + 0.16 * p.sag)
    for k in range(n):
        t = 2 * math.pi * k / n
        c, s = math.cos(t), math.sin(t)
        if s <= 0:  # upper half (image y grows downwards)
            x, y = w * c, h * s
        else:
            x = w * math.copysign(abs(c) ** low_exp, c)
            y = h_low * s ** low_exp
            x *= 1.0 - 0.35 * p.chin_point * s**4 + 0.08 * p.sag * s * (1 - s)
        pts.append((cx + x, cy + y))
    return pts


def _curve(x0: float, x1: float, y0: float, bend: float, n: int = 12) -> list[tuple[float, float]]:
    """Points of a parabola from x0 to x1 at height y0 whose middle is displaced by ``bend``."""
    out = []
    for k in range(n + 1):
        t = k / n
        out.append((x0 + (x1 - x0) * t, y0 + bend * 4 * t * (1 - t)))
    return out


def _rotate(pts: Sequence[tuple[float, float]], ox: float, oy: float, deg: float) -> list[tuple[float, float]]:
    a = math.radians(deg)
    ca, sa = math.cos(a), math.sin(a)
    return [(ox + (x - ox) * ca - (y - oy) * sa, oy + (x - ox) * sa + (y - oy) * ca) for x, y in pts]


@dataclass(frozen=True)
class _Frame:
    """Canvas geometry shared by the part painters: the head's centre and half-axes in
    pixels of the supersampled canvas, and the face's horizontal guide lines."""

    S: float  # canvas side
    lw: int  # base line width
    cx: float
    cy: float
    W: float  # head half-width
    H: float  # head half-height (upper half; the lower half grows with sag)
    eye_y: float
    mouth_y: float
    ear_y: float

    @classmethod
    def of(cls, p: FaceParams, S: int) -> "_Frame":
        base = FACE_FRAMING * S * p.scale  # W * H is constant: the ratio does not change the face's area
        cx, cy = p.center_x * S, p.center_y * S
        W, H = base * math.sqrt(p.face_ratio), base / math.sqrt(p.face_ratio)
        return cls(S=S, lw=max(1, round(S / 160)), cx=cx, cy=cy, W=W, H=H,
                   eye_y=cy - 0.1 * H, mouth_y=cy + 0.52 * H, ear_y=cy - 0.02 * H)


def _paint_body(d: ImageDraw.ImageDraw, p: FaceParams, f: _Frame) -> None:
    """Clothes (a big ellipse) and the neck."""
    shoulder_y = f.cy + f.H * (1.0 + 0.16 * p.sag) + 0.10 * f.S
    d.ellipse((f.cx - 0.55 * f.S, shoulder_y, f.cx + 0.55 * f.S, shoulder_y + 0.7 * f.S), fill=p.clothes)
    d.rectangle((f.cx - 0.42 * f.W, f.cy + 0.3 * f.H, f.cx + 0.42 * f.W, shoulder_y + 0.06 * f.S),
                fill=_scale_rgb(p.skin, 0.82))


def _paint_back_hair(d: ImageDraw.ImageDraw, p: FaceParams, f: _Frame) -> None:
    """Long hair behind the head, framing the face and falling towards the shoulders."""
    if p.hair_length <= 0.05:
        return
    top = f.cy - f.H * (1.10 + 0.08 * p.hair_volume)
    bottom = f.cy + f.H * (0.25 + 1.25 * p.hair_length)
    hw = f.W * (1.18 + 0.12 * p.hair_volume)
    d.ellipse((f.cx - hw, top, f.cx + hw, f.cy + 0.6 * f.H), fill=p.hair)
    d.rounded_rectangle((f.cx - hw, f.cy - 0.2 * f.H, f.cx + hw, bottom), radius=0.35 * f.W, fill=p.hair)


def _paint_head(d: ImageDraw.ImageDraw, p: FaceParams, f: _Frame) -> None:
    """Ears, the head outline, and blemishes (reddish-brown spots: skin smoothness)."""
    for sgn in (-1, 1):
        ex = f.cx + sgn * 0.96 * f.W
        d.ellipse((ex - 0.13 * f.W, f.ear_y - 0.17 * f.H, ex + 0.13 * f.W, f.ear_y + 0.17 * f.H),
                  fill=_scale_rgb(p.skin, 0.9))
    d.polygon(_head_outline(f.cx, f.cy, f.W, f.H, p), fill=p.skin)
    spot = _mix(p.skin, (120, 45, 35), 0.7)
    for u, v, r in p.blemishes:
        bx, by, br = f.cx + u * 0.78 * f.W, f.cy + v * 0.8 * f.H, r * f.W
        d.ellipse((bx - br, by - br, bx + br, by + br), fill=spot)


def _paint_wrinkles(d: ImageDraw.ImageDraw, p: FaceParams, f: _Frame, rng: np.random.Generator) -> None:
    """Forehead lines, crow's feet and nasolabial folds; count, length and darkness grow
    with ``wrinkles`` (age)."""
    if p.wrinkles <= 0.02:
        return
    cx, cy, W, H = f.cx, f.cy, f.W, f.H
    wc = _mix(p.skin, _scale_rgb(p.skin, 0.55), min(1.0, 0.35 + 0.65 * p.wrinkles))
    ww = max(1, round(f.lw * (0.8 + 0.8 * p.wrinkles)))
    n_lines = 1 + int(round(3 * p.wrinkles))
    top, bot = cy - 0.72 * H, cy - 0.42 * H
    for k in range(n_lines):
        y = bot - (bot - top) * (k + 0.5) / n_lines + rng.normal(0, 0.01 * H)
        half = W * (0.35 + 0.15 * rng.random())
        d.line(_curve(cx - half, cx + half, y, -0.03 * H * rng.uniform(0.5, 1.5)), fill=wc, width=ww)
    n_feet = int(round(3 * p.wrinkles))
    for sgn in (-1, 1):
        ox = cx + sgn * (p.eye_spacing + p.eye_size * 1.15) * W
        for k in range(n_feet):
            ang = (k - (n_feet - 1) / 2) * 0.35
            L = 0.12 * W * (0.6 + 0.6 * p.wrinkles)
            d.line([(ox, f.eye_y), (ox + sgn * L * math.cos(ang), f.eye_y + L * math.sin(ang))], fill=wc, width=ww)
        fold = [(cx + sgn * 0.2 * W, cy + 0.2 * H), (cx + sgn * 0.33 * W, cy + 0.42 * H),
                (cx + sgn * (p.mouth_width + 0.06) * W, f.mouth_y + 0.06 * H)]
        d.line(fold, fill=wc, width=ww)


def _paint_eyes(d: ImageDraw.ImageDraw, p: FaceParams, f: _Frame) -> None:
    """Eyes (white, iris, pupil, lid line), eye bags and brows; the right eye carries the
    asymmetry (``eye_dy``, ``eye_scale_right``)."""
    line_dark = _scale_rgb(p.skin, 0.45)
    brow_col = _scale_rgb(p.hair, 0.8)
    bw = max(1, round(f.W * (0.028 + 0.065 * p.brow_thickness)))
    for sgn in (-1, 1):
        ex = f.cx + sgn * p.eye_spacing * f.W
        ey = f.eye_y + (p.eye_dy * f.H if sgn > 0 else 0.0)
        ew = p.eye_size * f.W * (p.eye_scale_right if sgn > 0 else 1.0)
        eh = ew * 0.55
        if p.eye_bags > 0.02:
            bag = _mix(p.skin, _scale_rgb(p.skin, 0.6), 0.3 + 0.7 * p.eye_bags)
            d.arc((ex - ew, ey - eh * 0.2, ex + ew, ey + eh * (1.6 + 0.8 * p.eye_bags)), 20, 160, fill=bag,
                  width=max(1, round(f.lw * (0.8 + p.eye_bags))))
        d.ellipse((ex - ew, ey - eh, ex + ew, ey + eh), fill=(245, 245, 240), outline=line_dark, width=f.lw)
        ir = eh * 0.9
        d.ellipse((ex - ir, ey - ir, ex + ir, ey + ir), fill=p.iris)
        pr = ir * 0.45
        d.ellipse((ex - pr, ey - pr, ex + pr, ey + pr), fill=(15, 10, 10))
        d.arc((ex - ew, ey - eh, ex + ew, ey + eh), 180, 360, fill=(25, 20, 20), width=f.lw + 1)
        by = ey - eh - 0.13 * f.H
        d.line(_curve(ex - 1.2 * ew, ex + 1.2 * ew, by, -0.10 * f.H * p.brow_arch), fill=brow_col, width=bw)


def _paint_nose(d: ImageDraw.ImageDraw, p: FaceParams, f: _Frame) -> None:
    """Bridge line, base arc and nostrils; the base sits ``nose_length`` of the way from
    the eye line to the mouth."""
    W, H = f.W, f.H
    nx = f.cx + p.nose_dx * W
    base = f.eye_y + p.nose_length * (f.mouth_y - f.eye_y)
    nw = 0.13 * W
    d.line([(nx - 0.02 * W, f.eye_y + 0.12 * H), (nx + 0.04 * W, base - 0.04 * H)], fill=_scale_rgb(p.skin, 0.82),
           width=f.lw)
    d.arc((nx - nw, base - 0.07 * H, nx + nw, base + 0.03 * H), 10, 170, fill=_scale_rgb(p.skin, 0.45), width=f.lw)
    for sgn in (-1, 1):
        d.ellipse((nx + sgn * 0.55 * nw - 0.03 * W, base - 0.025 * H, nx + sgn * 0.55 * nw + 0.03 * W, base),
                  fill=_scale_rgb(p.skin, 0.55))


def _paint_mouth(d: ImageDraw.ImageDraw, p: FaceParams, f: _Frame) -> None:
    """Lips around a parabola whose middle drops with ``smile`` (the corners lift),
    tilted by ``mouth_tilt_deg`` (asymmetry)."""
    cx, y = f.cx, f.mouth_y
    mw = p.mouth_width * f.W
    bend = 0.13 * f.H * p.smile
    thick = (0.025 + 0.04 * p.lip_fullness) * f.H
    parting = _curve(cx - mw, cx + mw, y - 0.3 * thick, bend)
    lower = _curve(cx - mw, cx + mw, y, bend + 1.6 * thick)
    upper = _curve(cx - mw, cx + mw, y, bend - 1.3 * thick)
    d.polygon(_rotate(upper + lower[::-1], cx, y, p.mouth_tilt_deg), fill=p.lips)
    d.line(_rotate(parting, cx, y, p.mouth_tilt_deg), fill=_scale_rgb(p.lips, 0.4), width=f.lw + 1)


def _paint_top_hair(d: ImageDraw.ImageDraw, p: FaceParams, f: _Frame, rng: np.random.Generator) -> None:
    """Hair cap above the hairline (an ellipse chord), sideburns, a style-specific fringe
    and light strands for greying."""
    cx, W, H = f.cx, f.W, f.H
    hairline_y = f.cy - H * (0.55 + 0.3 * p.hairline)
    a, b = W * 1.07, H * (1.10 + 0.08 * p.hair_volume)
    cy0 = f.cy - 0.02 * H
    phi = math.degrees(math.asin(max(-1.0, min(1.0, (cy0 - hairline_y) / b))))
    arc = [(cx + a * math.cos(t), cy0 + b * math.sin(t)) for t in np.radians(np.linspace(180 + phi, 360 - phi, 48))]
    d.polygon(arc, fill=p.hair)  # the chord, as a polygon (Pillow's chord misdraws float angles)
    x_left = cx - a * math.cos(math.radians(phi))
    x_right = cx + a * math.cos(math.radians(phi))
    for xs, sgn in ((x_left, -1), (x_right, 1)):  # sideburns down to the ears
        d.polygon([(xs, hairline_y), (cx + sgn * 1.03 * W, f.ear_y - 0.12 * H), (cx + sgn * 0.9 * W, f.ear_y - 0.12 * H),
                   (xs - sgn * 0.13 * W, hairline_y)], fill=p.hair)
    if p.hair_style == 1:  # side-swept
        d.polygon([(x_left, hairline_y), (cx + 0.25 * W, hairline_y + 0.22 * H), (x_right, hairline_y - 0.02 * H),
                   (cx, hairline_y - 0.1 * H)], fill=p.hair)
    elif p.hair_style == 2:  # curly: bumps along the outer arc
        r = 0.2 * W * p.hair_volume
        for k in range(9):
            t = math.radians(180 + phi + (180 - 2 * phi) * k / 8)
            px, py = cx + a * math.cos(t), cy0 + b * math.sin(t)
            d.ellipse((px - r, py - r, px + r, py + r), fill=p.hair)
    elif p.hair_style == 3:  # fringe of small triangles below the hairline
        n, span = 7, x_right - x_left
        for k in range(n):
            x0, x1 = x_left + span * k / n, x_left + span * (k + 1) / n
            d.polygon([(x0, hairline_y - 0.02 * H), (x1, hairline_y - 0.02 * H), ((x0 + x1) / 2, hairline_y + 0.12 * H)],
                      fill=p.hair)
    if p.grey_strands > 0.02:
        strand = _mix(p.hair, (225, 225, 225), 0.8)
        for _ in range(int(round(30 * p.grey_strands))):
            t = math.radians(180 + phi + (180 - 2 * phi) * rng.random())
            rr = rng.uniform(0.55, 0.98)
            px, py = cx + a * rr * math.cos(t), cy0 + b * rr * math.sin(t)
            if py < hairline_y:
                d.line([(px, py), (px + rng.normal(0, 0.06 * W), py + rng.uniform(0.03, 0.1) * H)], fill=strand,
                       width=f.lw)


def _photometric(img: Image.Image, p: FaceParams, rng: np.random.Generator) -> Image.Image:
    """Lighting gradient across the image and luminance noise (nuisance)."""
    if not (p.light_strength or p.noise_sd):
        return img
    size = img.size[0]
    arr = np.array(img, dtype=np.float32)
    if p.light_strength:
        g = np.linspace(-0.5, 0.5, size, dtype=np.float32)
        proj = math.cos(p.light_angle) * g[None, :] + math.sin(p.light_angle) * g[:, None]
        arr *= (1.0 + np.float32(p.light_strength) * proj)[:, :, None]
    if p.noise_sd:
        # one noise field for all channels: a third of the cost of RGB noise
        arr += rng.standard_normal(size=(size, size, 1), dtype=np.float32) * np.float32(p.noise_sd)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def paint_face(p: FaceParams, size: int) -> Image.Image:
    """Paint one face as a ``size`` x ``size`` RGB image (pure: same params, same pixels).

    The face is drawn at ``SUPERSAMPLE`` times the size, back to front (body, back hair,
    head, wrinkles, eyes, nose, mouth, top hair), box-reduced (anti-aliasing), rolled,
    then lit and noised.
    """
    if size < 16:
        raise ValueError(f"image size must be >= 16 pixels, got {size}")
    S = size * SUPERSAMPLE
    rng = np.random.default_rng(p.detail_seed)
    f = _Frame.of(p, S)
    img = Image.new("RGB", (S, S), p.background)
    d = ImageDraw.Draw(img)
    _paint_body(d, p, f)
    _paint_back_hair(d, p, f)
    _paint_head(d, p, f)
    _paint_wrinkles(d, p, f, rng)
    _paint_eyes(d, p, f)
    _paint_nose(d, p, f)
    _paint_mouth(d, p, f)
    _paint_top_hair(d, p, f, rng)
    if SUPERSAMPLE != 1:
        img = img.reduce(SUPERSAMPLE)
    if p.roll_deg:  # rotating after the reduction costs a quarter of rotating the canvas
        img = img.rotate(p.roll_deg, resample=Image.BILINEAR, center=(f.cx / SUPERSAMPLE, f.cy / SUPERSAMPLE),
                         fillcolor=p.background)
    return _photometric(img, p, rng)


# --------------------------------------------------------------------------------------
# Sampling: beauty traits (the score), nuisance appearance, age appearance
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeautyTraits:
    """The visible properties the latent beauty score is a function of."""

    eye_size: float  # eye half-width / head half-width, 0.13 .. 0.24 (bigger is better)
    eye_spacing: float  # 0.30 .. 0.52, best at 0.44
    asymmetry: float  # 0 .. 1 (0 = symmetric)
    blemish_count: int  # 0 .. ~20
    face_ratio: float  # head width / height, 0.62 .. 0.88, best at 0.75
    smile: float  # -1 .. 1
    nose_length: float  # 0.45 .. 0.85 of the eye-mouth distance, best at 0.62


# Normalisation of the raw latent z (its mean and sd under sample_beauty_traits, measured
# by Monte Carlo over 200k draws) and the gain of the final sigmoid. These are design
# constants of the generator: changing them changes the data, so bump GENERATOR_VERSION.
_Z_MEAN = -1.9873
_Z_SD = 1.2949
_SIGMOID_GAIN = 1.0


def beauty_contributions(t: BeautyTraits) -> dict[str, float]:
    """Each trait's contribution to the raw latent z (smooth; saturating or peaked)."""
    return {
        "eye_size": 1.1 * math.tanh((t.eye_size - 0.185) / 0.035),
        "eye_spacing": 0.6 * (1.0 - ((t.eye_spacing - 0.44) / 0.08) ** 2),
        "symmetry": -2.1 * t.asymmetry,
        "skin": -1.2 * math.log1p(t.blemish_count) / math.log1p(8.0),
        "face_ratio": -0.45 * ((t.face_ratio - 0.75) / 0.08) ** 2,
        # a smile helps more on a symmetric face: the smooth interaction term
        "smile": (0.7 + 0.35 * (1.0 - t.asymmetry)) * math.tanh(1.6 * t.smile),
        "nose": -0.4 * ((t.nose_length - 0.62) / 0.14) ** 2,
    }


def beauty_latent(t: BeautyTraits) -> float:
    """Latent beauty in (LATENT_MIN, LATENT_MAX): a sigmoid of the standardised sum of
    :func:`beauty_contributions`, so it saturates smoothly at both ends."""
    z = sum(beauty_contributions(t).values())
    u = _SIGMOID_GAIN * (z - _Z_MEAN) / _Z_SD
    return LATENT_MIN + (LATENT_MAX - LATENT_MIN) / (1.0 + math.exp(-u))


def sample_beauty_traits(rng: np.random.Generator) -> BeautyTraits:
    """Draw traits independently of group and nuisance (so the score ignores both)."""
    return BeautyTraits(
        eye_size=float(rng.uniform(0.13, 0.24)),
        eye_spacing=float(rng.uniform(0.30, 0.52)),
        asymmetry=float(rng.beta(1.2, 2.5)),
        blemish_count=int(min(20, rng.poisson(rng.uniform(0.0, 8.0)))),
        face_ratio=float(rng.uniform(0.62, 0.88)),
        smile=float(rng.uniform(-1.0, 1.0)),
        nose_length=float(rng.uniform(0.45, 0.85)),
    )


_SKIN = {
    "asian": ((236, 204, 176), (222, 184, 150), (200, 160, 124), (240, 214, 190)),
    "caucasian": ((246, 214, 196), (232, 190, 165), (214, 170, 140), (250, 226, 212)),
}
_HAIR = {
    "asian": ((20, 16, 14), (38, 28, 22), (58, 40, 28)),
    "caucasian": ((30, 24, 20), (90, 60, 35), (150, 110, 60), (200, 165, 100), (140, 60, 30)),
}
_IRIS = {
    "asian": ((60, 40, 25), (80, 55, 35)),
    "caucasian": ((70, 45, 25), (70, 110, 160), (80, 120, 80), (110, 90, 60)),
}


def _pick(rng: np.random.Generator, palette: Sequence[RGB]) -> RGB:
    return palette[int(rng.integers(len(palette)))]


def _jitter(rng: np.random.Generator, c: RGB, sd: float) -> RGB:
    return tuple(int(np.clip(v + rng.normal(0, sd), 0, 255)) for v in c)  # type: ignore[return-value]


def _desaturate(c: RGB, t: float) -> RGB:
    grey = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
    return tuple(int(round(v + (grey - v) * t)) for v in c)  # type: ignore[return-value]


def age_appearance(apparent_age: float, gender: str, rng: np.random.Generator) -> dict[str, float]:
    """How an (apparent) age shows: wrinkles, grey hair, sag, desaturation, eye bags,
    receding hairline (men), youthful eyes below 25. Smooth in age, with individual jitter."""
    A = apparent_age

    def ramp(lo: float, hi: float) -> float:
        return float(np.clip((A - lo) / (hi - lo), 0.0, 1.0))

    return {
        "wrinkles": float(np.clip(ramp(28, 72) ** 1.1 + rng.normal(0, 0.05), 0, 1)),
        "grey": float(np.clip(ramp(35, 75) ** 1.2 * rng.uniform(0.7, 1.15), 0, 1)),
        "sag": float(np.clip(ramp(35, 80) + rng.normal(0, 0.05), 0, 1)),
        "desat": 0.45 * ramp(20, 80),
        "eye_bags": float(np.clip(ramp(30, 75) + rng.normal(0, 0.05), 0, 1)),
        "hairline": ramp(25, 70) * float(rng.uniform(0.2, 1.0)) if gender == "male" else 0.1 * ramp(40, 80),
        "youth": 1.0 - ramp(16, 25),
    }


def face_params(
    rng: np.random.Generator,
    gender: str,
    ethnicity: str,
    traits: BeautyTraits,
    age: dict[str, float],
) -> FaceParams:
    """Combine score traits, group attributes, age look and freshly drawn nuisance into
    painter parameters. Only ``traits`` (beauty) or ``age`` (age mode) carry the score."""
    if gender not in ("female", "male"):
        raise ValueError(f"gender must be 'female' or 'male', got {gender!r}")
    if ethnicity not in _SKIN:
        raise ValueError(f"ethnicity must be one of {sorted(_SKIN)}, got {ethnicity!r}")
    female = gender == "female"
    skin = _jitter(rng, _pick(rng, _SKIN[ethnicity]), 6)
    skin = _scale_rgb(_desaturate(skin, age["desat"]), 1.0 - 0.12 * age["desat"])
    hair = _mix(_jitter(rng, _pick(rng, _HAIR[ethnicity]), 8), (200, 200, 200), age["grey"])
    bg = tuple(int(v) for v in rng.integers(70, 250, size=3))
    lips = _jitter(rng, (205, 95, 105) if female else _mix(skin, (170, 90, 85), 0.6), 8)
    asym = traits.asymmetry
    side = 1.0 if rng.random() < 0.5 else -1.0
    blemishes = tuple(
        (float(r * math.cos(th)), float(r * math.sin(th) * 0.9 + 0.1), float(rng.uniform(0.05, 0.085)))
        for r, th in zip(np.sqrt(rng.uniform(0.05, 1.0, traits.blemish_count)),
                         rng.uniform(0, 2 * math.pi, traits.blemish_count))
    )
    return FaceParams(
        center_x=float(0.5 + rng.normal(0, 0.02)),
        center_y=float(0.52 + rng.normal(0, 0.02)),
        scale=float(rng.uniform(0.92, 1.06)),
        roll_deg=float(rng.normal(0, 3.0)),
        face_ratio=traits.face_ratio + 0.03 * age["youth"],
        jaw_square=float(rng.uniform(0.0, 0.3) if female else rng.uniform(0.45, 0.9)),
        chin_point=float(rng.uniform(0.35, 0.7) if female else rng.uniform(0.05, 0.3)),
        sag=age["sag"],
        skin=skin,
        hair=hair,
        iris=_jitter(rng, _pick(rng, _IRIS[ethnicity]), 8),
        lips=lips,
        background=bg,  # type: ignore[arg-type]
        clothes=tuple(int(v) for v in rng.integers(20, 230, size=3)),  # type: ignore[arg-type]
        hair_length=float(rng.uniform(0.55, 1.0) if female else (0.0 if rng.random() < 0.85 else 0.2)),
        hair_style=int(rng.integers(4)),
        hair_volume=float(rng.uniform(0.8, 1.3) if female else rng.uniform(0.6, 1.0)),
        hairline=float(np.clip(age["hairline"] + rng.uniform(0, 0.1), 0, 1)),
        grey_strands=age["grey"],
        eye_size=traits.eye_size + 0.02 * age["youth"],
        eye_spacing=traits.eye_spacing,
        eye_dy=side * 0.12 * asym,
        eye_scale_right=1.0 - 0.35 * asym,
        brow_thickness=float(rng.uniform(0.0, 0.35) if female else rng.uniform(0.55, 1.0)),
        brow_arch=float(rng.uniform(0.5, 1.0) if female else rng.uniform(0.0, 0.35)),
        nose_length=traits.nose_length,
        nose_dx=-side * 0.10 * asym,
        mouth_width=float(rng.uniform(0.33, 0.45)),
        smile=traits.smile,
        mouth_tilt_deg=side * 15.0 * asym,
        lip_fullness=float(rng.uniform(0.5, 1.0) if female else rng.uniform(0.1, 0.5)),
        blemishes=blemishes,
        wrinkles=age["wrinkles"],
        eye_bags=age["eye_bags"],
        light_angle=float(rng.uniform(0, 2 * math.pi)),
        light_strength=float(rng.uniform(0.0, 0.3)),
        noise_sd=float(rng.uniform(1.0, 5.0)),
        detail_seed=int(rng.integers(2**31)),
    )


def simulate_ratings(
    latents: np.ndarray,
    rater_bias: np.ndarray,
    rng: np.random.Generator,
    noise_sd: float = RATER_NOISE_SD,
) -> np.ndarray:
    """Histogram [N, 5] of ratings ``clip(round(latent + bias_r + noise), 1, 5)``, one per
    rater and image: how SCUT-FBP5500's 60 volunteers are simulated."""
    latents = np.asarray(latents, dtype=np.float64).reshape(-1, 1)
    bias = np.asarray(rater_bias, dtype=np.float64).reshape(1, -1)
    noise = rng.normal(0.0, noise_sd, size=(latents.shape[0], bias.shape[1])) if noise_sd > 0 else 0.0
    ratings = np.clip(np.rint(latents + bias + noise), 1, 5).astype(np.int64)
    return np.stack([(ratings == k).sum(axis=1) for k in range(1, 6)], axis=1)


# --------------------------------------------------------------------------------------
# Layout helpers
# --------------------------------------------------------------------------------------


def scut_group_counts(n_images: int) -> dict[str, int]:
    """SCUT's 2000:2000:750:750 proportions scaled to ``n_images`` (largest remainder)."""
    total = sum(SCUT_GROUP_SIZES.values())
    exact = {g: n_images * s / total for g, s in SCUT_GROUP_SIZES.items()}
    counts = {g: int(math.floor(v)) for g, v in exact.items()}
    order = sorted(exact, key=lambda g: (-(exact[g] - counts[g]), list(SCUT_GROUP_SIZES).index(g)))
    for g in order[: n_images - sum(counts.values())]:
        counts[g] += 1
    return counts


def format_score(x: float) -> str:
    """SCUT's label format: 6 decimals with trailing zeros dropped ('2.15', '3', '2.883333')."""
    return f"{x:.6f}".rstrip("0").rstrip(".")


def _image_rng(seed: int, mode: str, group: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _MODE_TAGS[mode], group, index]))


def _jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    return buf.getvalue()


def _write_text(path: Path, text: str) -> None:
    """UTF-8 with "\n" line ends on every platform (write_text would translate them)."""
    path.write_bytes(text.encode("utf-8"))


def _lines(rows: Sequence[str], newline: str = "\n") -> bytes:
    return "".join(r + newline for r in rows).encode("utf-8")


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------
# Cache / atomic writing
# --------------------------------------------------------------------------------------


def _is_complete(root: Path, identity: dict[str, Any]) -> bool:
    """True when ``root`` holds a finished dataset made with the same generator and params."""
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if any(meta.get(k) != v for k, v in identity.items()):
        return False
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        return False
    for rel, size in files.items():
        p = root / rel
        if not p.is_file() or p.stat().st_size != size:
            return False
    return True


def _describe(root: Path) -> str:
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        return "it has no meta.json (not a generated dataset, or an interrupted run)"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return (f"its meta.json says generator={meta.get('generator')!r} version={meta.get('version')!r} "
                f"mode={meta.get('mode')!r} params={meta.get('params')!r}, or files listed there are missing")
    except (OSError, ValueError):
        return "its meta.json is unreadable"


def _materialise(root: PathLike, identity: dict[str, Any], overwrite: bool,
                 build: Callable[[Path], dict[str, Any]]) -> Path:
    """Build a dataset into a private sibling folder and rename it into place.

    ``build(tmp)`` writes every file and returns the meta dict; meta.json is written
    last, so a folder without it is an interrupted run. An existing complete dataset
    with the same identity is returned as is (cache); anything else at ``root`` is an
    error unless ``overwrite``, and even then only folders that look like ours are deleted.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a directory")
    if _is_complete(root, identity):
        return root
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{root} exists with different content: {_describe(root)}; expected "
                f"{identity}. Pass overwrite=True to replace it, or choose another folder.")
        ours = (root / "meta.json").is_file() or all(e.name in _LAYOUT_NAMES for e in root.iterdir())
        if not ours:
            foreign = sorted(e.name for e in root.iterdir() if e.name not in _LAYOUT_NAMES)[:5]
            raise FileExistsError(f"refusing to overwrite {root}: it holds files this generator never writes {foreign}")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        meta = build(tmp)
        meta["files"] = {
            p.relative_to(tmp).as_posix(): p.stat().st_size
            for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        _write_text(tmp / "meta.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
        if root.exists():
            if _is_complete(root, identity):  # a concurrent run finished first
                shutil.rmtree(tmp)
                return root
            if any(root.iterdir()):
                trash = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
                root.rename(trash)
                shutil.rmtree(trash)
            else:
                root.rmdir()
        try:
            tmp.rename(root)
        except OSError:
            if not _is_complete(root, identity):  # not a concurrent run that just finished
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


# --------------------------------------------------------------------------------------
# Beauty mode: SCUT-FBP5500 layout
# --------------------------------------------------------------------------------------


def generate_synthetic_scut(
    root: PathLike,
    n_images: int = 1000,
    image_size: int = 128,
    n_raters: int = 60,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic beauty dataset in SCUT-FBP5500's exact layout and return ``root``.

    Files: ``Images/{AF,AM,CF,CM}{k}.jpg``, ``ratings/rating_distribution.csv`` (CRLF,
    ``filename,1,2,3,4,5``), ``train_test_files/All_labels.txt`` (``NAME.jpg score``), the
    60/40 split and the five cross-validation folds under SCUT's folder names, plus
    ``README.md`` and ``meta.json`` (version, params, latent score and traits of every
    image). Same arguments give byte-identical files; a finished folder is reused.
    """
    n_images = _check_int("n_images", n_images, N_FOLDS)
    image_size = _check_int("image_size", image_size, 16)
    n_raters = _check_int("n_raters", n_raters, 1)
    seed = _check_int("seed", seed, 0)
    params = {"n_images": n_images, "image_size": image_size, "n_raters": n_raters, "seed": seed}
    identity = {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "mode": "scut", "params": params}

    def build(tmp: Path) -> dict[str, Any]:
        counts = scut_group_counts(n_images)
        rater_rng = np.random.default_rng(np.random.SeedSequence([seed, _MODE_TAGS["scut"], 99, n_raters]))
        rater_bias = rater_rng.normal(0.0, RATER_BIAS_SD, size=n_raters)
        (tmp / "Images").mkdir()
        latents: dict[str, float] = {}
        traits: dict[str, BeautyTraits] = {}
        hists: dict[str, np.ndarray] = {}
        for gi, (group, count) in enumerate(counts.items()):
            gender, ethnicity = GROUP_ATTRIBUTES[group]
            for k in range(1, count + 1):
                name = f"{group}{k}.jpg"
                rng = _image_rng(seed, "scut", gi, k)
                traits[name] = sample_beauty_traits(rng)
                # a nuisance age (wrinkles, grey); no "youth": it would enlarge the eyes and widen
                # the face, and both are scored traits
                look = {**age_appearance(float(rng.uniform(18, 40)), gender, rng), "youth": 0.0}
                fp = face_params(rng, gender, ethnicity, traits[name], look)
                (tmp / "Images" / name).write_bytes(_jpeg_bytes(paint_face(fp, image_size)))
                latents[name] = beauty_latent(traits[name])
                hists[name] = simulate_ratings(np.array([latents[name]]), rater_bias, rng)[0]
        _write_scut_lists(tmp, hists, seed)
        _write_text(tmp / "README.md", _scut_readme(params, counts))
        return {
            **identity,
            "groups": counts,
            "rater_model": {"bias_sd": RATER_BIAS_SD, "noise_sd": RATER_NOISE_SD,
                            "rater_bias": [round(float(b), 6) for b in rater_bias]},
            "latent_range": [LATENT_MIN, LATENT_MAX],
            "latent": {n: round(v, 6) for n, v in latents.items()},
            "traits": {n: {k: v if isinstance(v, int) else round(v, 6) for k, v in vars(t).items()}
                       for n, t in traits.items()},
        }

    return _materialise(root, identity, overwrite, build)


def _write_scut_lists(tmp: Path, hists: dict[str, np.ndarray], seed: int) -> None:
    """The rating histogram CSV, All_labels.txt, the 60/40 split and the 5 folds.

    Scores are the mean ratings; list files are in seeded random order like SCUT's own.
    """
    names = list(hists)
    n = len(names)
    n_raters = int(next(iter(hists.values())).sum())
    scores = {k: float(np.dot(h, np.arange(1, 6)) / n_raters) for k, h in hists.items()}
    rng = np.random.default_rng(np.random.SeedSequence([seed, _MODE_TAGS["scut"], 7, n]))

    def listing(subset: Sequence[str]) -> bytes:
        return _lines([f"{k} {format_score(scores[k])}" for k in subset])

    def shuffled(subset: Sequence[str]) -> list[str]:
        return [subset[i] for i in rng.permutation(len(subset))]

    (tmp / "ratings").mkdir()
    csv_rows = ["filename,1,2,3,4,5"] + [
        k + "," + ",".join(str(int(c)) for c in hists[k])
        for g in CSV_GROUP_ORDER for k in sorted(x for x in names if x.startswith(g))
    ]
    (tmp / "ratings" / "rating_distribution.csv").write_bytes(_lines(csv_rows, "\r\n"))
    ttf = tmp / "train_test_files"
    (ttf / SPLIT_DIR).mkdir(parents=True)
    (ttf / "All_labels.txt").write_bytes(listing(shuffled(names)))
    perm = shuffled(names)
    n_train = int(round(TRAIN_FRACTION * n))
    (ttf / SPLIT_DIR / "train.txt").write_bytes(listing(perm[:n_train]))
    (ttf / SPLIT_DIR / "test.txt").write_bytes(listing(perm[n_train:]))
    perm = shuffled(names)
    folds = [perm[f::N_FOLDS] for f in range(N_FOLDS)]  # sizes differ by at most one
    for f in range(N_FOLDS):
        k = f + 1
        folder = ttf / CV_DIR / f"cross_validation_{k}"
        folder.mkdir(parents=True)
        train = shuffled([x for g in range(N_FOLDS) if g != f for x in folds[g]])
        (folder / f"train_{k}.txt").write_bytes(listing(train))
        (folder / f"test_{k}.txt").write_bytes(listing(folds[f]))


def _scut_readme(params: dict[str, int], counts: dict[str, int]) -> str:
    return f"""# Synthetic SCUT-FBP5500 (orderlearn.synthetic {GENERATOR_VERSION})

Procedurally painted faces in the layout of SCUT-FBP5500. Regenerate byte-identically with

    from orderlearn.synthetic import generate_synthetic_scut
    generate_synthetic_scut(root, n_images={params['n_images']}, image_size={params['image_size']}, n_raters={params['n_raters']}, seed={params['seed']})

Groups: {', '.join(f'{g} {c}' for g, c in counts.items())} (SCUT's 2000:2000:750:750 scaled).
A latent beauty score in [{LATENT_MIN}, {LATENT_MAX}] depends on eye size, eye spacing, symmetry,
blemish count, face width/height ratio, smile and nose proportion; gender, ethnicity, hair,
background, lighting, pose and noise do not affect it. Each of {params['n_raters']} simulated raters gives
round(latent + bias + noise) clipped to 1..5 (bias sd {RATER_BIAS_SD}, noise sd {RATER_NOISE_SD});
the score in All_labels.txt is the mean rating and ratings/rating_distribution.csv holds the counts.
meta.json lists the generator version, the parameters, and the latent score and traits of every image.
"""


# --------------------------------------------------------------------------------------
# Age mode
# --------------------------------------------------------------------------------------


def generate_synthetic_ages(
    root: PathLike,
    n_images: int = 1000,
    image_size: int = 128,
    seed: int = 0,
    age_range: tuple[int, int] = (16, 77),
    overwrite: bool = False,
) -> Path:
    """Write a synthetic age dataset: ``Images/*.jpg``, ``manifest.csv`` with columns
    ``path,score,gender,fold`` (score = integer age, uniform in ``age_range``; folds 1..5
    balanced and seeded), ``README.md`` and ``meta.json`` (apparent age per image)."""
    n_images = _check_int("n_images", n_images, N_FOLDS)
    image_size = _check_int("image_size", image_size, 16)
    seed = _check_int("seed", seed, 0)
    if (not isinstance(age_range, (tuple, list)) or len(age_range) != 2
            or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in age_range)
            or not 0 <= age_range[0] < age_range[1]):
        raise ValueError(f"age_range must be two integers (low, high) with 0 <= low < high, got {age_range!r}")
    lo, hi = int(age_range[0]), int(age_range[1])
    params = {"n_images": n_images, "image_size": image_size, "seed": seed, "age_range": [lo, hi]}
    identity = {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "mode": "ages", "params": params}

    def build(tmp: Path) -> dict[str, Any]:
        (tmp / "Images").mkdir()
        fold_rng = np.random.default_rng(np.random.SeedSequence([seed, _MODE_TAGS["ages"], 7, n_images]))
        fold_of = np.empty(n_images, dtype=np.int64)
        fold_of[fold_rng.permutation(n_images)] = np.arange(n_images) % N_FOLDS + 1
        rows, apparent = [], {}
        for i in range(n_images):
            rng = _image_rng(seed, "ages", 0, i)
            age = int(rng.integers(lo, hi + 1))
            gender = "female" if rng.random() < 0.5 else "male"
            ethnicity = "asian" if rng.random() < 0.5 else "caucasian"
            seen = float(age + rng.normal(0.0, 3.0))
            fp = face_params(rng, gender, ethnicity, sample_beauty_traits(rng), age_appearance(seen, gender, rng))
            rel = f"Images/{i + 1:05d}.jpg"
            (tmp / rel).write_bytes(_jpeg_bytes(paint_face(fp, image_size)))
            rows.append(f"{rel},{age},{gender},{int(fold_of[i])}")
            apparent[rel] = round(seen, 6)
        (tmp / "manifest.csv").write_bytes(_lines(["path,score,gender,fold"] + rows))
        _write_text(tmp / "README.md", _ages_readme(params))
        return {**identity, "latent": apparent}

    return _materialise(root, identity, overwrite, build)


def _ages_readme(params: dict[str, Any]) -> str:
    lo, hi = params["age_range"]
    return f"""# Synthetic ages (orderlearn.synthetic {GENERATOR_VERSION})

Procedurally painted faces whose integer age (uniform in {lo}..{hi}) shows through wrinkles,
grey hair, a longer sagging lower face, skin desaturation, eye bags and (men) a receding
hairline. Each face has an apparent age = age + N(0, 3) that drives its look (meta.json
`latent`). Regenerate byte-identically with

    from orderlearn.synthetic import generate_synthetic_ages
    generate_synthetic_ages(root, n_images={params['n_images']}, image_size={params['image_size']}, seed={params['seed']}, age_range=({lo}, {hi}))

manifest.csv: path (relative to this folder), score (age), gender (female/male), fold (1..5, balanced).
"""
