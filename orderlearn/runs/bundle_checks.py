"""What a bundle is trusted with, checked when it loads: it stays inside its folder, it is what
``orderlearn export`` wrote, and its tensors are sound.

A bundle comes from elsewhere (a colleague, the hub), so loading it must neither read nor write
outside it, nor score silently wrong when a file was damaged or edited:

- **A closed world.** Every file a bundle names (``scorer.json``'s checkpoints and bank file,
  ``bundle.json``'s thumbnails and alignment template, each line of the checksum list) is a
  *relative path inside the bundle*: parts that are plain names (no ``..``, ``.``, empty part,
  backslash or colon; not absolute) and a path that, links followed, resolves inside the bundle
  folder (a hub snapshot: inside its repository's cache folder, :func:`bundle_root`). Anything else is a :class:`DataError` naming the file and the key
  (:func:`bundle_path`). The names in ``references.json`` are labels, never opened: plain file
  names with no folder (:mod:`.bundle_format`).
- **Checksums.** ``export`` writes :data:`CHECKSUMS_FILE`, one line ``<sha256>  <path>`` per file
  of the bundle (``sha256sum``'s format: ``sha256sum -c checksums.sha256`` checks a bundle by
  hand). Loading verifies every line (:func:`verify_checksums`): a changed, truncated or missing
  file is an error naming it; the files the loader reads must all be listed (:func:`require_listed`).
  A file the bundle does not list (a hub repository's ``.gitattributes``) is never read.
- **Sound tensors.** Every tensor of the weights and the bank embeddings is finite, the bank
  embeddings and the thumbnails have one row per reference, and the alignment template can map a
  face (:func:`check_template`). The other values (the scoring recipe, the references, the
  manifest) are range-checked where they are read.
"""
from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from orderlearn.data.alignment import AlignmentTemplate
from orderlearn.errors import DataError
from orderlearn.files import atomic_write_text

CHECKSUMS_FILE = "checksums.sha256"
SHA256 = re.compile(r"[0-9a-f]{64}")
REEXPORT = "re-export the run with `orderlearn export RUN --out NEW_FOLDER`"
MAX_THUMBNAIL = 512  # px, the largest --thumbnail-size
MIN_LANDMARK_SPREAD = 1.0  # px: RMS distance of the template's landmarks from their centre


# ---------------------------------------------------------------------------- a closed world
def bundle_path(bundle: Path, name: Any, file: str, key: str) -> Path:
    """``bundle / name`` for a file the bundle names in its ``file`` at ``key``, or a DataError
    when ``name`` is not a relative path inside the bundle (see the module docstring)."""
    bad = (not isinstance(name, str) or not name or name.startswith("/") or "\\" in name or ":" in name
           or any(part in ("", ".", "..") for part in name.split("/")))
    if bad:
        raise DataError(f"{bundle / file}: {key} {name!r} is not a file inside the bundle; a bundle names "
                        "only its own files, by relative paths without '..'")
    path = bundle / name
    if not path.resolve().is_relative_to(bundle_root(bundle)):
        raise DataError(f"{path}: named by {file} ({key}), a link to {path.resolve()} outside the bundle")
    return path


def bundle_root(bundle: Path) -> Path:
    """The folder a bundle's files may resolve into: the bundle folder, or for a hub snapshot
    (``.../models--OWNER--NAME/snapshots/REVISION``, whose files are links into that repository's ``blobs`` folder) that
    repository's cache folder."""
    bundle = Path(bundle).resolve()
    repo = bundle.parent.parent
    if bundle.parent.name == "snapshots" and repo.name.startswith("models--") and (repo / "blobs").is_dir():
        return repo
    return bundle


# ---------------------------------------------------------------------------- checksums
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(bundle: Path, files: Iterable[Path]) -> Path:
    """:data:`CHECKSUMS_FILE` over ``files`` (relative to ``bundle``; the list itself left out)."""
    names = sorted(Path(f).as_posix() for f in files if Path(f).as_posix() != CHECKSUMS_FILE)
    return atomic_write_text(bundle / CHECKSUMS_FILE, "".join(f"{sha256_of(bundle / n)}  {n}\n" for n in names))


def verify_checksums(bundle: Path) -> set[str]:
    """The files :data:`CHECKSUMS_FILE` lists, each checked against its sha256 (a DataError naming
    the first file that is missing or differs)."""
    file = bundle / CHECKSUMS_FILE
    if not file.is_file():
        raise DataError(f"{bundle}: no {CHECKSUMS_FILE}, so its files cannot be verified; {REEXPORT}")
    listed: set[str] = set()
    for number, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or not SHA256.fullmatch(digest):
            raise DataError(f"{file}: line {number} is not '<sha256>  <file>'")
        path = bundle_path(bundle, name, CHECKSUMS_FILE, f"line {number}")
        if not path.is_file():
            raise DataError(f"{path}: listed in {CHECKSUMS_FILE} but missing from the bundle")
        if sha256_of(path) != digest:
            raise DataError(f"{path}: its sha256 differs from the one in {CHECKSUMS_FILE} (changed or damaged "
                            "since export); fetch the bundle again or " + REEXPORT)
        listed.add(name)
    return listed


def require_listed(bundle: Path, listed: set[str], names: Iterable[str]) -> None:
    """Every file the loader reads (``names``) was verified: listed in the checksums."""
    for name in names:
        if name not in listed:
            raise DataError(f"{bundle / name}: read by the bundle but not listed in {CHECKSUMS_FILE}; {REEXPORT}")


# ---------------------------------------------------------------------------- tensors
def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors on the CPU (a DataError naming it when it is not one)."""
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DataError(f"{path}: not a readable safetensors file ({exc})") from None


def check_finite(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise DataError(f"{path}: tensor {key!r} holds NaN or infinite values")


def check_weights(path: Path) -> None:
    """A checkpoint file of the bundle is readable and finite (which tensors it holds is checked
    against the model when it loads)."""
    check_finite(read_tensors(path), path)


def bank_embeddings(path: Path, checkpoints: int, references: int) -> list[torch.Tensor]:
    """Per checkpoint, the stored bank: ``checkpoint_<i>`` [references, ...], finite."""
    stored = read_tensors(path)
    check_finite(stored, path)
    missing = [f"checkpoint_{i}" for i in range(checkpoints) if f"checkpoint_{i}" not in stored]
    if missing:
        raise DataError(f"{path}: no {missing[0]} (one entry per checkpoint of scorer.json, {checkpoints})")
    embeddings = [stored[f"checkpoint_{i}"] for i in range(checkpoints)]
    for i, emb in enumerate(embeddings):
        if emb.ndim == 0 or emb.shape[0] != references:
            rows = emb.shape[0] if emb.ndim else 0
            raise DataError(f"{path}: checkpoint_{i} has {rows} rows for {references} references")
    return embeddings


def thumbnails(path: Path, references: int) -> torch.Tensor:
    """The references' thumbnails: uint8 [references, H, W, 3], one per reference."""
    stored = read_tensors(path)
    if "thumbnails" not in stored:
        raise DataError(f"{path}: no 'thumbnails' tensor")
    thumbs = stored["thumbnails"]
    if thumbs.dtype != torch.uint8 or thumbs.ndim != 4 or thumbs.shape[-1] != 3:
        raise DataError(f"{path}: thumbnails of {thumbs.dtype} {list(thumbs.shape)}, not uint8 [references, H, W, 3]")
    if thumbs.shape[0] != references:
        raise DataError(f"{path}: {thumbs.shape[0]} thumbnails for {references} references")
    if not (1 <= thumbs.shape[1] <= MAX_THUMBNAIL and 1 <= thumbs.shape[2] <= MAX_THUMBNAIL):
        raise DataError(f"{path}: thumbnails of {thumbs.shape[1]} x {thumbs.shape[2]} px, not 1..{MAX_THUMBNAIL}")
    return thumbs


# ---------------------------------------------------------------------------- the alignment template
def check_template(template: AlignmentTemplate, path: Path) -> AlignmentTemplate:
    """A template a face can be mapped onto: a sane image size, finite landmarks inside it, not all
    at one place (the similarity transform onto them would collapse the face to a point)."""
    if not (8 <= template.width <= 4096 and 8 <= template.height <= 4096):
        raise DataError(f"{path}: an image of {template.width} x {template.height} px, not 8..4096")
    points = template.points()
    if not all(math.isfinite(v) for v in points.ravel()):
        raise DataError(f"{path}: landmarks that are not finite numbers")
    inside = (points[:, 0] >= 0) & (points[:, 0] <= template.width) & (points[:, 1] >= 0) & (points[:, 1] <= template.height)
    if not inside.all():
        raise DataError(f"{path}: landmarks outside the {template.width} x {template.height} image")
    spread = float(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean() ** 0.5)
    if spread < MIN_LANDMARK_SPREAD:
        raise DataError(f"{path}: a degenerate template (the landmarks lie {spread:.3g} px around one point)")
    if template.faces < 1:
        raise DataError(f"{path}: measured over {template.faces} faces")
    return template
