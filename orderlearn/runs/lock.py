"""One run per output folder: an exclusive lock held for the whole run.

Two runs writing the same folder interleave their checkpoint files and one of them dies
halfway (or, worse, both finish with each other's weights). :func:`run_lock` takes an
exclusive ``flock`` on ``<folder>/.run.lock`` and writes who holds it (pid, host, start time,
command line) into the file, so a second run fails at once with one line naming the first.

Why ``flock`` rather than a lock file whose mere existence means "locked": the kernel drops the
lock when its process dies, SIGKILL included, so a stale lock of a dead run is taken over by the
next run without any pid guessing (and without the pid-reuse race of "is pid N alive?"). The
holder information in the file is only there for the message.

One lock per run: the run's setup (:func:`orderlearn.runs.recipe.setup`) takes it for the whole
folder, its ``<kind>/`` and ``direct/`` sub-folders included; the training loop takes none.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from orderlearn.errors import ConfigError

LOCK_NAME = ".run.lock"


class RunLockedError(ConfigError):
    """Another live process holds the run folder's lock (the config's ``output_dir`` is in use)."""


def holder_of(folder: Path) -> dict:
    """What the lock file of ``folder`` says about its holder ({} when there is none or it is unreadable)."""
    try:
        return json.loads((Path(folder) / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[Path]:
    """Hold ``folder``'s exclusive run lock for the ``with`` block; creates the folder.

    Raises :class:`RunLockedError` (one line: the folder and the other process's pid, host,
    start time and command) when another live process holds it, this one included (a run
    started inside a run on the same folder). Call it on the main process only: the other
    processes of a multi-process run are the same run.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunLockedError(_locked_message(folder)) from None
    _write_holder(fd)
    try:
        yield folder
    finally:
        os.ftruncate(fd, 0)  # nobody holds it now; a reader must not name this process
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _write_holder(fd: int) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)


def _locked_message(folder: Path) -> str:
    info = holder_of(folder)
    who = (f"pid {info.get('pid', '?')} on {info.get('host', '?')} (started {info.get('started', '?')}: "
           f"{info.get('command', '?')})") if info else "another process"
    return (f"{folder} is in use by {who}; wait for that run to finish, stop it, "
            f"or choose another output_dir")
