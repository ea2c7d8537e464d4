"""The node's folder: what arrived, what is queued for each destination, what was sent.

::

    SPOOL/incoming/<study>/<instance>.dcm   received, fsynced before the C-STORE is acknowledged
    SPOOL/outbox/<job>/                     one study's results for one destination, with job.json
    SPOOL/sent/<job>.json                   a delivered job (its sources: never predicted again)
    SPOOL/failed/<study>/<instance>.dcm     instances that could not be read or predicted

A job appears whole (written under a temporary name, then renamed), so a node killed at any
point and restarted finds each study either still incoming or fully queued; the sources a
job lists are never predicted again, and a delivered job is never sent again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..files import json_text


def digest(text: str, n: int = 16) -> str:
    """A short stable name for a UID (file names never carry patient data)."""
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def durable_write(path: Path, data: bytes, folders: threading.Lock | None = None) -> None:
    """Write ``data`` under a temporary name, fsync, rename into place, fsync the folder. With
    ``folders``, the folder is made and the temporary file created under that lock, so that a worker
    removing empty folders under it never removes this one in between."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with folders or contextlib.nullcontext():
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(tmp, "wb")
    try:
        with fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


@dataclass
class Job:
    """One study's results for one destination."""

    job_id: str
    destination: str
    study: str  # digest of the Study Instance UID
    sources: list[str]  # SOP Instance UIDs predicted
    files: list[str]  # result file names in the job folder
    received_at: float  # first instance of the study arrived (epoch seconds)
    queued_at: float
    attempts: int = 0
    next_try: float = 0.0
    last_error: str = ""
    sent_at: float | None = None
    kinds: dict[str, int] = field(default_factory=dict)  # kind -> count, for the log


class Spool:
    """The spool folder (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.incoming, self.outbox = self.root / "incoming", self.root / "outbox"
        self.sent, self.failed = self.root / "sent", self.root / "failed"
        for d in (self.incoming, self.outbox, self.sent, self.failed):
            d.mkdir(parents=True, exist_ok=True)
        self._folders = threading.Lock()  # study folders: made by the receiver, removed by the worker
        for stale in self.outbox.glob(".*.tmp"):  # a job being written when the node was killed: made again
            shutil.rmtree(stale, ignore_errors=True)

    def store(self, study_uid: str, sop_uid: str, data: bytes) -> Path:
        """Keep one received instance (durably: called before the C-STORE is acknowledged)."""
        path = self.incoming / digest(study_uid) / f"{digest(sop_uid, 24)}.dcm"
        durable_write(path, data, self._folders)
        return path

    def remove_if_empty(self, study: Path) -> bool:
        """Remove a study folder that holds nothing (not even an instance being received); whether it went."""
        with self._folders:
            try:
                if any(study.iterdir()):
                    return False
                study.rmdir()
            except OSError:  # gone already, or filled meanwhile
                return False
        return True

    def quiet_studies(self, quiet: float, now: float | None = None) -> list[Path]:
        """Study folders with no new instance for ``quiet`` seconds, oldest first."""
        now = time.time() if now is None else now
        out = []
        for study in self.incoming.iterdir():
            try:
                times = [f.stat().st_mtime for f in study.glob("*.dcm")]
            except OSError:  # an instance moved meanwhile: looked at again next pass
                continue
            if not times:
                self.remove_if_empty(study)
                continue
            if now - max(times) >= quiet:
                out.append((min(times), study))
        return [s for _, s in sorted(out)]

    def done_sources(self) -> set[str]:
        """SOP Instance UIDs already predicted: listed by a queued or a delivered job."""
        done: set[str] = set()
        for path in list(self.outbox.glob("*/job.json")) + list(self.sent.glob("*.json")):
            try:
                done.update(json.loads(path.read_text())["sources"])
            except (OSError, ValueError, KeyError):
                continue
        return done

    def queue(self, job: Job, results: dict[str, Path]) -> Path | None:
        """Put a job in the outbox whole (results copied in, job.json, then one rename). None when
        the same job is already queued or delivered (a study predicted again after a restart)."""
        final = self.outbox / job.job_id
        if final.exists() or (self.sent / f"{job.job_id}.json").exists():
            return None
        tmp = self.outbox / f".{job.job_id}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, src in results.items():
            shutil.copyfile(src, tmp / name)
        job.files = sorted(results)
        durable_write(tmp / "job.json", json_text(asdict(job)).encode())
        os.replace(tmp, final)
        _fsync_dir(self.outbox)
        return final

    def jobs(self) -> list[tuple[Path, Job]]:
        """Queued jobs, oldest first."""
        out = []
        for path in sorted(self.outbox.glob("*/job.json")):
            try:
                out.append((path.parent, Job(**json.loads(path.read_text()))))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(out, key=lambda pj: pj[1].queued_at)

    def update(self, folder: Path, job: Job) -> None:
        """Save a job's attempts and next try."""
        durable_write(folder / "job.json", json_text(asdict(job)).encode())

    def delivered(self, folder: Path, job: Job) -> None:
        """Record a job as sent (its job.json kept under sent/), then drop its files."""
        durable_write(self.sent / f"{job.job_id}.json", json_text(asdict(job)).encode())
        shutil.rmtree(folder, ignore_errors=True)

    def set_aside(self, path: Path) -> Path:
        """Move an instance that could not be used to failed/ (kept for a person to look at)."""
        dest = self.failed / path.parent.name / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        return dest
