"""The painter: one procedural face from a :class:`FaceParams`, pure and deterministic.

Why a module of its own: drawing knows nothing about scores, groups or files. Everything
that varies between faces (geometry, colours, marks, lighting) arrives as plain numbers
in a frozen :class:`FaceParams`; the only randomness (wrinkle/strand jitter, pixel noise)
comes from its ``detail_seed``, so the same parameters always give the same pixels.
How those parameters are chosen for a face is :mod:`.appearance`'s job.

The face is drawn back to front by one small function per part (body, back hair, head,
wrinkles, eyes, nose, mouth, top hair) on a canvas ``SUPERSAMPLE`` times larger, then
reduced (anti-aliasing), rolled, lit and noised.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .colours import RGB, mix, scale_rgb

SUPERSAMPLE = 2  # faces are drawn at 2x and downsampled: cheap anti-aliasing
FACE_FRAMING = 0.31  # sqrt(W * H) / image side: the face fills the frame as in SCUT's crops


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
                fill=scale_rgb(p.skin, 0.82))


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
                  fill=scale_rgb(p.skin, 0.9))
    d.polygon(_head_outline(f.cx, f.cy, f.W, f.H, p), fill=p.skin)
    spot = mix(p.skin, (120, 45, 35), 0.7)
    for u, v, r in p.blemishes:
        bx, by, br = f.cx + u * 0.78 * f.W, f.cy + v * 0.8 * f.H, r * f.W
        d.ellipse((bx - br, by - br, bx + br, by + br), fill=spot)


def _paint_wrinkles(d: ImageDraw.ImageDraw, p: FaceParams, f: _Frame, rng: np.random.Generator) -> None:
    """Forehead lines, crow's feet and nasolabial folds; count, length and darkness grow
    with ``wrinkles`` (age)."""
    if p.wrinkles <= 0.02:
        return
    cx, cy, W, H = f.cx, f.cy, f.W, f.H
    wc = mix(p.skin, scale_rgb(p.skin, 0.55), min(1.0, 0.35 + 0.65 * p.wrinkles))
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
    line_dark = scale_rgb(p.skin, 0.45)
    brow_col = scale_rgb(p.hair, 0.8)
    bw = max(1, round(f.W * (0.028 + 0.065 * p.brow_thickness)))
    for sgn in (-1, 1):
        ex = f.cx + sgn * p.eye_spacing * f.W
        ey = f.eye_y + (p.eye_dy * f.H if sgn > 0 else 0.0)
        ew = p.eye_size * f.W * (p.eye_scale_right if sgn > 0 else 1.0)
        eh = ew * 0.55
        if p.eye_bags > 0.02:
            bag = mix(p.skin, scale_rgb(p.skin, 0.6), 0.3 + 0.7 * p.eye_bags)
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
    d.line([(nx - 0.02 * W, f.eye_y + 0.12 * H), (nx + 0.04 * W, base - 0.04 * H)], fill=scale_rgb(p.skin, 0.82),
           width=f.lw)
    d.arc((nx - nw, base - 0.07 * H, nx + nw, base + 0.03 * H), 10, 170, fill=scale_rgb(p.skin, 0.45), width=f.lw)
    for sgn in (-1, 1):
        d.ellipse((nx + sgn * 0.55 * nw - 0.03 * W, base - 0.025 * H, nx + sgn * 0.55 * nw + 0.03 * W, base),
                  fill=scale_rgb(p.skin, 0.55))


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
    d.line(_rotate(parting, cx, y, p.mouth_tilt_deg), fill=scale_rgb(p.lips, 0.4), width=f.lw + 1)


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
        strand = mix(p.hair, (225, 225, 225), 0.8)
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
