"""Writing files so that a killed process leaves the old file or the new one, never half of one."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .errors import PneumoscopeError

# Text files hold file names, and a Linux file name may be any bytes: those that are not UTF-8 are
# kept as they are (Python's surrogateescape), so every name round-trips.
ENCODING = ("utf-8", "surrogateescape")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def tmp_name(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed into place."""
    return path.with_name(path.name + ".tmp")


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and a rename. When the write
    fails (a full disk), the temporary file is removed and the error names ``path``."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data.encode(*ENCODING) if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())

    write_via_tmp(path, write)


def write_via_tmp(path: str | Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` then rename ``tmp`` to ``path``. When writing fails (e.g. "No space left on
    device"), the temporary file is removed and the OSError names ``path``."""
    path = Path(path)
    tmp = tmp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None or Path(exc.filename) == tmp:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file (read in 1 MB blocks)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def json_text(data: Any) -> str:
    """Strict JSON text (NaN and infinity written as null)."""
    return json.dumps(_clean(data), indent=2) + "\n"


def write_json(path: str | Path, data: Any) -> None:
    """Strict JSON, written atomically."""
    atomic_write(path, json_text(data))


def read_json(path: str | Path) -> Any | None:
    """The parsed JSON file, or None when it is missing or unreadable (e.g. cut short)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def csv_text(fields: list[str], rows: Iterable[dict]) -> str:
    """A CSV with a header, as text."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_csv(path: str | Path, fields: list[str], rows: Iterable[dict]) -> None:
    """A CSV with a header, written atomically."""
    atomic_write(path, csv_text(fields, rows))


def check_writable_folder(path: str | Path, what: str = "--out") -> Path:
    """Raise PneumoscopeError (one line) unless ``path`` is, or can be created as, a writable folder.

    Nothing is created: this only checks, so a command can refuse before it starts work."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PneumoscopeError(f"{what} {path}: is a file, not a folder")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise PneumoscopeError(f"{what} {path}: cannot be created ({probe} is a file)")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise PneumoscopeError(f"{what} {path}: not writable ({probe}: {exc.strerror})") from exc
    return path
