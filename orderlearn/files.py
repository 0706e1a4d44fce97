"""Writing files so that they land whole or not at all (a killed process leaves no half file)."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Optional


def atomic_write_bytes(path: Path, data: bytes, sync: bool = False) -> Path:
    """Write ``data`` to a unique temporary file beside ``path``, then rename it into place
    (two writers at once each leave a complete file). ``sync``: flush to disk before the rename,
    for files that must survive a power loss too (checkpoint bookkeeping)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        if sync:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def atomic_write_text(path: Path, text: str, sync: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode(), sync)


def atomic_write_json(path: Path, payload: Any, sync: bool = False, indent: Optional[int] = 1, sort_keys: bool = False,
                      default: Optional[Callable[[Any], Any]] = str, newline: bool = False) -> Path:
    """The project's one JSON writer, atomic like every file here.

    Non-finite floats are written as ``NaN`` (Python's json reads them back). ``default`` turns
    what json cannot write into something it can (``str``: paths and the like; ``float``: numpy
    and torch scalars in metrics; None: such a value is a TypeError). ``newline`` ends the file
    with one, as text files do; ``sync`` as in :func:`atomic_write_bytes`.
    """
    text = json.dumps(payload, indent=indent, sort_keys=sort_keys, default=default)
    return atomic_write_text(path, text + "\n" if newline else text, sync)
