"""A generated dataset on disk as a cache: reuse a finished folder, build a new one
atomically, and never destroy what this generator did not write.

Why apart: generating takes minutes at full size and several processes (tests, CLI runs)
may ask for the same folder at once. So a dataset is built in a private sibling folder and
renamed into place, with ``meta.json`` written last: a folder without it is an interrupted
run. A later call with the same identity (generator, version, mode, parameters) returns the
finished folder untouched; a different or broken one is an error unless ``overwrite``, and
even then only a folder that looks like ours (:data:`~.layout.LAYOUT_NAMES`) is replaced.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Union

from orderlearn.files import atomic_write_json

from .layout import LAYOUT_NAMES

PathLike = Union[str, Path]


def is_complete(root: Path, identity: dict[str, Any]) -> bool:
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


def describe_folder(root: Path) -> str:
    """Why ``root`` cannot be reused, in words for the error message."""
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        return "it has no meta.json (not a generated dataset, or an interrupted run)"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return (f"its meta.json says generator={meta.get('generator')!r} version={meta.get('version')!r} "
                f"mode={meta.get('mode')!r} params={meta.get('params')!r}, or files listed there are missing")
    except (OSError, ValueError):
        return "its meta.json is unreadable"


# How a caller of this module replaces a folder it refuses; ``orderlearn synth`` words it as its
# own option in place of this sentence.
REPLACE_HINT = "Pass overwrite=True to replace it, or choose another folder."


def materialise(root: PathLike, identity: dict[str, Any], overwrite: bool,
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
    if is_complete(root, identity):
        return root
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{root} exists with different content: {describe_folder(root)}; expected "
                f"{identity}. {REPLACE_HINT}")
        ours = (root / "meta.json").is_file() or all(e.name in LAYOUT_NAMES for e in root.iterdir())
        if not ours:
            foreign = sorted(e.name for e in root.iterdir() if e.name not in LAYOUT_NAMES)[:5]
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
        atomic_write_json(tmp / "meta.json", meta, sort_keys=True, default=None, newline=True)
        if root.exists():
            if is_complete(root, identity):  # a concurrent run finished first
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
            if not is_complete(root, identity):  # not a concurrent run that just finished
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
