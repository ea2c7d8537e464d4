"""The node at work: receive (SCP thread), predict quiet studies (worker thread), send queued
results with retries and back-off (sender thread). One log line per study and per delivery."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PneumoscopeError, one_line
from . import LOG
from .destinations import Destination, check_ae_title
from .spool import Job, Spool, digest

log = logging.getLogger(LOG)


@dataclass
class NodeOptions:
    """How the node runs (the ``pneumoscope listen`` flags)."""

    ae_title: str = "PNEUMOSCOPE"
    host: str = "127.0.0.1"
    port: int = 11112
    allow: tuple[str, ...] = ()  # calling AE titles allowed (empty: any)
    destinations: tuple[Destination, ...] = ()
    quiet: float = 5.0  # seconds without a new instance before a study is predicted
    kinds: tuple[str, ...] = ("seg", "sr", "sc")
    retry: float = 2.0  # first retry after this many seconds, doubling up to max_retry
    max_retry: float = 300.0
    log_phi: bool = False  # patient and study identifiers in the log

    def check(self) -> NodeOptions:
        """One line for an option no node can use."""
        check_ae_title(self.ae_title, "--ae-title")
        for title in self.allow:
            check_ae_title(title, "--allow-aet")
        if not 0 <= self.port <= 65535:
            raise PneumoscopeError(f"--port {self.port}: must be 0-65535")
        if not self.destinations:
            raise PneumoscopeError("no --send-to: name at least one destination (AE@host:port or a DICOMweb URL)")
        if not (0 <= self.quiet < float("inf") and 0 < self.retry < float("inf") and 0 < self.max_retry < float("inf")):
            raise PneumoscopeError(f"--quiet-seconds {self.quiet:g} and --retry-seconds {self.retry:g}: finite numbers, "
                                   "the first >= 0, the second > 0")
        return self


class Node:
    """A running DICOM node: :meth:`start`, then :meth:`stop` (or :meth:`serve` until a signal)."""

    def __init__(self, run: str | Path, spool: str | Path, opts: NodeOptions, predictor: Any = None) -> None:
        from ..inference.predictor import Predictor

        self.opts = opts.check()
        self.spool = Spool(spool)
        self.predictor = predictor or Predictor(run)
        self.manufacturer = self.predictor.algorithm.manufacturer
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._said: set[tuple[str, str]] = set()
        self._done = self.spool.done_sources()  # read once: only this node adds to it, as it queues jobs
        self.server: Any = None
        self.port = opts.port

    # --- receiving -------------------------------------------------------------------------------
    def _ignored(self, study: str, why: str) -> None:
        key = (digest(study), why)
        if key not in self._said:  # once per study and reason
            self._said.add(key)
            log.info("study %s: ignored %s", self._study_name(study), why)

    def _study_name(self, study_uid: str) -> str:
        return study_uid if self.opts.log_phi else digest(study_uid, 12)

    def start(self) -> int:
        """Open the SCP and start the worker and sender threads; returns the port listened on."""
        from .scp import handlers, storage_ae

        ae = storage_ae(self.opts.ae_title, list(self.opts.allow))
        try:
            self.server = ae.start_server((self.opts.host, self.opts.port), block=False,
                                          evt_handlers=handlers(self.spool.store, self.manufacturer, self._ignored))
        except OSError as exc:
            raise PneumoscopeError(f"cannot listen on {self.opts.host}:{self.opts.port} ({exc.strerror or exc})") from exc
        self.port = self.server.server_address[1]
        for name, loop in (("predict", self._predict_loop), ("send", self._send_loop)):
            t = threading.Thread(target=loop, name=f"pneumoscope-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self.port

    def stop(self) -> None:
        """Stop receiving, let the current study or delivery finish, stop the threads."""
        self._stop.set()
        if self.server is not None:
            self.server.shutdown()
        for t in self._threads:
            t.join(timeout=60)

    def serve(self) -> None:
        """Run until SIGINT or SIGTERM."""
        import signal

        def on_signal(number: int, _frame) -> None:
            log.info("%s received: finishing the current study or delivery, then stopping", signal.Signals(number).name)
            self._stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        while not self._stop.wait(0.5):
            pass
        self.stop()
        log.info("stopped")

    # --- predicting ------------------------------------------------------------------------------
    def _predict_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.process_ready()
            except Exception as exc:  # never let one bad pass stop the node
                log.exception("prediction pass failed: %s", exc)
            self._stop.wait(0.5)

    def process_ready(self) -> int:
        """Predict every quiet study; returns how many were processed."""
        studies = self.spool.quiet_studies(self.opts.quiet)
        for folder in studies:
            if self._stop.is_set():
                break
            self._process(folder, self._done)
        return len(studies)

    def _process(self, folder: Path, done: set[str]) -> None:
        import pydicom

        from ..data.dicom import read_dicom_dataset
        from ..data.io import MIN_SIDE
        from ..dicom_results.build import make_results, write_results
        from ..dicom_results.source import Source

        t0 = time.time()
        files = sorted(folder.glob("*.dcm"))
        first = min(f.stat().st_mtime for f in files)
        work = Path(tempfile.mkdtemp(prefix="work-", dir=self.spool.root))
        made: dict[str, Path] = {}
        sources, bad, again, findings = [], [], 0, []
        study_uid = ""
        try:
            for f in files:
                try:
                    head = pydicom.dcmread(str(f), stop_before_pixels=True, force=True)
                    sop, study_uid = str(head.get("SOPInstanceUID", "") or ""), str(head.get("StudyInstanceUID", "") or study_uid)
                    if sop in done:
                        again += 1
                        continue
                    img, meta, ds = read_dicom_dataset(str(f), f.name, int(self.predictor.opts.max_megapixels * 1e6), MIN_SIDE)
                    source = Source.of(ds, img, f.name)
                    res = self.predictor.predict_batch([img], [meta])[0]
                    results = make_results(res, source, self.predictor.algorithm, self.opts.kinds)
                    if not results.objects:
                        raise PneumoscopeError(results.note)
                    if results.notes:
                        log.info("study %s: an instance's results: %s", self._study_name(study_uid), results.note)
                    made.update({p.name: p for p in write_results(results, work, digest(sop, 24)).values()})
                    sources.append(sop)
                    findings.append(res.decision or ("mask" if res.mask.any() else "no mask"))
                except (PneumoscopeError, OSError, ValueError) as exc:
                    bad.append((f, str(exc)))
                except Exception as exc:  # anything else one instance raises must not stall its study forever
                    bad.append((f, f"{exc.__class__.__name__}: {one_line(exc)[:200]}"))
            kinds = {k: sum(1 for n in made if n.endswith(f".{k}.dcm")) for k in self.opts.kinds}
            for dest in self.opts.destinations:
                job = Job(digest(dest.key + ",".join(sorted(sources)), 24), str(dest), folder.name, sources, [], first, time.time(),
                          kinds=kinds)
                if sources:
                    self.spool.queue(job, made)
            done.update(sources)
            for f, reason in bad:
                kept = self.spool.set_aside(f)
                log.warning("study %s: could not predict an instance (%s), kept in %s", self._study_name(study_uid),
                            reason.replace(str(f), f.name) if self.opts.log_phi else _no_names(reason, f), kept.parent.name)
            for f in files:
                f.unlink(missing_ok=True)
            self.spool.remove_if_empty(folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        summary = ", ".join(f"{n} {k}" for k, n in kinds.items() if n) or "nothing"
        sent = (f"queued {summary} for {', '.join(str(d) for d in self.opts.destinations)}" if sources
                else "nothing to send (no instance predicted)")
        log.info("study %s: %d received, %d predicted%s, %d unreadable%s in %.1f s; %s",
                 self._study_name(study_uid), len(files), len(sources), f" ({', '.join(findings)})" if findings else "",
                 len(bad), f", {again} done before" if again else "", time.time() - t0, sent)

    # --- sending ---------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.send_ready()
            except Exception as exc:
                log.exception("delivery pass failed: %s", exc)
            self._stop.wait(0.5)

    def send_ready(self) -> int:
        """Try every queued job that is due; returns how many were delivered."""
        delivered = 0
        by_name = {str(d): d for d in self.opts.destinations}
        for folder, job in self.spool.jobs():
            if self._stop.is_set() or job.next_try > time.time():
                continue
            dest = by_name.get(job.destination)
            if dest is None:  # the node was restarted without this destination: kept for a later start
                continue
            t = time.time()
            try:
                dest.send([folder / n for n in job.files], self.opts.ae_title)
            except OSError as exc:
                job.attempts += 1
                wait = min(self.opts.max_retry, self.opts.retry * 2 ** (job.attempts - 1))
                job.next_try, job.last_error = time.time() + wait, str(exc)
                self.spool.update(folder, job)
                log.warning("study %s: sending to %s failed (attempt %d: %s); next try in %.0f s", job.study[:12],
                            job.destination, job.attempts, exc, wait)
                continue
            job.sent_at = time.time()
            self.spool.delivered(folder, job)
            delivered += 1
            log.info("study %s: sent %d objects to %s in %.2f s; %.1f s from first C-STORE to results stored",
                     job.study[:12], len(job.files), job.destination, job.sent_at - t, job.sent_at - job.received_at)
        return delivered


def _no_names(reason: str, path: Path) -> str:
    """An error line without the file's name (it is a digest anyway) and without patient data."""
    return reason.replace(str(path), "instance").replace(path.name, "instance")
