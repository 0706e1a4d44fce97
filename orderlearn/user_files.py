"""Why a file a user named cannot be read, in words: the one place that tells a folder, a missing
file, a symbolic link loop, a link to nothing and a file that is not text apart.

``Path.is_file()`` is False for all of those alike, so a reader that only asks it says "does not
exist" of a folder and of a loop; the readers of user files (a scores CSV, a compare table, the
photos to score) ask :func:`why_not_a_file` instead and put its phrase after the file's name.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Optional


def why_not_a_file(path: Path) -> Optional[str]:
    """None when ``path`` is a regular file (after its links); else a phrase that completes
    ``f"{path} {phrase}"``: ``is a folder, not a file``, ``does not exist``, ``is a symbolic
    link loop``, ``is a symbolic link to T, which does not exist``, ``cannot be read (...)``."""
    path = Path(path)
    try:
        if path.is_file():
            return None
        if path.is_dir():
            return "is a folder, not a file"
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if exc.errno == errno.ENOENT:
            if path.is_symlink():
                return f"is a symbolic link to {os.readlink(path)}, which does not exist"
            return "does not exist"
        return f"cannot be read ({exc.strerror or exc})"
    return "is not a regular file"  # a device, a socket, a pipe


def not_text(path: Path, exc: Exception) -> str:
    """The message for a file read as a CSV that is not one (a photo, a binary, NUL bytes)."""
    if isinstance(exc, UnicodeDecodeError):
        detail = f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start} is not {exc.encoding} text"
    else:
        detail = str(exc)
    return f"{path}: not a CSV text file ({detail})"
