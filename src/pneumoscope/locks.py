"""One writer per folder: an OS file lock that dies with its process.

A command that writes into a run folder, a study folder or a prediction folder holds the
folder's lock while it works (``flock`` on ``<folder>/.pneumoscope.lock``, released by the
kernel when the process ends, however it ends). A second writer is refused at once with one
line naming the folder, the process holding it and what that process is doing (read from
``.pneumoscope.lock.json``, written by the holder after it took the lock).

Within one process the lock is re-entrant (a study trains its runs while holding them; stage 2
writes into a run that its own training holds), so nested ``hold`` calls on one folder nest.
Readers never take the lock; :func:`holder` tells them whether a writer is at work.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import PneumoscopeError

LOCK = ".pneumoscope.lock"
OWNER = ".pneumoscope.lock.json"

_held: dict[str, list] = {}  # resolved folder -> [fd, depth]
_guard = threading.Lock()

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class FolderBusyError(PneumoscopeError):
    """Another process is writing into the folder."""


def _key(folder: Path) -> str:
    return str(folder.resolve())


def _owner_text(folder: Path) -> str:
    try:
        info = json.loads((folder / OWNER).read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"process {int(info['pid'])} ({info['what']}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def holder(folder: str | Path) -> str | None:
    """Who is writing into ``folder`` now ("process 123 (train-seg, since ...)"), or None when no
    other process holds its lock. Takes the lock for an instant to find out; changes nothing."""
    folder = Path(folder)
    if _key(folder) in _held or not (folder / LOCK).is_file():
        return None
    try:
        fd = os.open(folder / LOCK, os.O_RDWR)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            _unlock(fd)
            return None
        return _owner_text(folder)
    finally:
        os.close(fd)


@contextmanager
def hold(folder: str | Path, what: str) -> Iterator[None]:
    """Hold ``folder``'s write lock (creating the folder) for the ``with`` block; ``what`` says
    what this process does there ("train-seg", "predict"), for the message a second writer gets."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise PneumoscopeError(f"{folder}: is a file, not a folder; choose another")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    key = _key(folder)
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
        else:
            fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                os.close(fd)
                raise FolderBusyError(f"{folder}: in use by {_owner_text(folder)}; wait for it to finish or use another folder")
            _held[key] = [fd, 1]
            tmp = folder / (OWNER + ".tmp")
            tmp.write_text(json.dumps({"pid": os.getpid(), "what": what, "since": time.time()}))
            os.replace(tmp, folder / OWNER)
    try:
        yield
    finally:
        with _guard:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                (folder / OWNER).unlink(missing_ok=True)
                _unlock(entry[0])
                os.close(entry[0])
                if created and {p.name for p in folder.iterdir()} <= {LOCK}:  # a failed first call leaves no folder
                    (folder / LOCK).unlink(missing_ok=True)
                    try:
                        folder.rmdir()
                    except OSError:
                        pass


def is_held_here(folder: str | Path) -> bool:
    """Whether this process holds ``folder``'s lock."""
    return _key(Path(folder)) in _held
