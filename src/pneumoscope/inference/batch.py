"""Prediction of a list of DICOM/PNG files with a trained run, streamed into an output folder (the
entry point that lists the inputs and dispatches is :mod:`.archive`).

The output folder (``predict --out``), owned by :class:`PredictionFolder`:

- ``masks/<name>.png`` (1-bit PNG, 0/255 read as grey, the image's own size), ``overlays/<name>.jpg`` and, with
  ``gradcam``, ``gradcam/<name>.png``;
- ``predictions.csv``: one row per image (its resolved path, size, mask area, max probability,
  P(pneumothorax) with the decision when the run has a stage-2 classifier, and with ``--dicom-out``
  a ``dicom_note``: empty, or what its DICOM results changed or why it has none);
- ``skipped.csv`` for unreadable files (``skip_bad``) and, when asked, a SIIM submission CSV.

Files are decoded by worker threads while the model runs; at most two batches are in memory.
A rerun into the same folder skips images already in ``predictions.csv`` (matched by resolved
path) and survives a killed run: pictures are written before their row, rows are appended
whole or dropped when cut short, and the submission is rebuilt from the rows and masks.

One ``predict`` at a time writes into a folder (its lock, :mod:`..locks`); rows listed twice (by
an older pneumoscope without the lock) are collapsed on the next run. Any file name the filesystem
allows round-trips: the CSVs are read and written as UTF-8 with undecodable bytes kept
(``surrogateescape``) and quoted where they hold commas or newlines; picture names are the file
stem with control and path characters replaced.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from ..data.io import MAX_PIXELS, MIN_SIDE, check_file, encode_jpeg, encode_mask_png, encode_png, is_dicom, read_image
from ..data.rle import encode
from ..errors import PneumoscopeError
from ..files import ENCODING, atomic_write, check_writable_folder, csv_text, write_csv
from .options import PredictOptions
from .overlay import overlay
from .predictor import Predictor

CSV_FIELDS = ["file", "width", "height", "mask_area_px", "max_prob"]
STAGE2_FIELDS = ["p_pneumothorax", "decision"]
DICOM_FIELDS = ["dicom_note"]  # with --dicom-out: what the DICOM results could not take from the source, or why there are none
SKIPPED_FIELDS = ["file", "reason"]
UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\\ud800-\udfff]")  # control and path characters, undecodable bytes


def picture_stem(path: str) -> str:
    """The stem a picture of ``path`` is named after: its file stem with characters that tools
    mangle (newlines, control characters, slashes, bytes that are not UTF-8) replaced by ``_``."""
    return UNSAFE.sub("_", Path(path).stem).strip() or "image"


def _read_csv(path: Path) -> str:
    return path.read_bytes().decode(*ENCODING)


def read_skipped(path: Path) -> list[dict]:
    """The entries of a ``skipped.csv`` (of the folder or of a part) that name a file; none when it is absent."""
    if not path.is_file():
        return []
    return [r for r in csv.DictReader(io.StringIO(_read_csv(path), newline="")) if r.get("file")]


class PredictionFolder:
    """The output folder of ``predict``: what is done, picture names, rows, skipped files (and, under
    ``torchrun``, each process's part of them: :mod:`.ranks`)."""

    OWN = ("masks", "overlays", "gradcam", "predictions.csv", "skipped.csv")  # what a predict writes here

    def __init__(self, root: str | Path, gradcam: bool = False, overlays: bool = True) -> None:
        self.root = Path(root)
        self.gradcam, self.overlays = gradcam, overlays
        check_writable_folder(self.root)
        self._subs = ("masks",) + (("overlays",) if overlays else ()) + (("gradcam",) if gradcam else ())
        self._made = False  # sub-folders are made with the first picture: a failed first call leaves none
        self.csv = self.root / "predictions.csv"
        self.skipped_csv = self.root / "skipped.csv"
        self._names: dict[str, str] = {}  # resolved path -> picture name
        self._taken: set[str] = set()
        self.dicom_notes: list[tuple[str, str]] = []  # (file, note) of this call's DICOM results that say something

    def rows(self) -> list[dict]:
        """The complete rows of ``predictions.csv``, in order; a row cut short by a killed run
        (and any malformed one) is dropped from the file, so its image is predicted again."""
        if not self.csv.is_file():
            return []
        text = _read_csv(self.csv)
        complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
        lines = list(csv.reader(io.StringIO(complete, newline="")))  # quoted newlines stay inside their field
        if not lines:
            return []
        header, body = lines[0], lines[1:]
        good, seen = [], set()
        for r in body:
            if len(r) == len(header) and r[0] and r[0] not in seen and _complete_row(dict(zip(header, r))):
                seen.add(r[0])  # a file listed twice (written by two predicts at once before the lock): once
                good.append(dict(zip(header, r)))
        if len(good) != len(body) or complete != text:
            atomic_write(self.csv, csv_text(header, good))
        return good

    @property
    def parts(self) -> Path:
        """Where the processes of a ``torchrun`` job keep their rows until the last step merges them."""
        return self.root / "parts"

    def part(self, rank: int) -> PredictionFolder:
        """This folder as process ``rank`` of a job writes it: pictures in the shared sub-folders (names
        fixed by :func:`plan` on every process alike), rows and skipped files in ``parts/``."""
        import copy

        view = copy.copy(self)
        view.csv = self.parts / f"rank-{rank:05d}.csv"
        view.skipped_csv = self.parts / f"rank-{rank:05d}.skipped.csv"
        return view

    def part_views(self) -> list[PredictionFolder]:
        """A view per part found on disk (of this job or of an earlier one that was killed)."""
        ranks = sorted({int(p.name[5:10]) for p in self.parts.glob("rank-*.csv") if p.name[5:10].isdigit()})
        return [self.part(r) for r in ranks]

    def all_rows(self) -> list[dict]:
        """The rows of ``predictions.csv`` and of every part, each file once (the first seen)."""
        out, seen = [], set()
        for view in [self, *self.part_views()]:
            for r in view.rows():
                if r["file"] not in seen:
                    seen.add(r["file"])
                    out.append(r)
        return out

    def name_for(self, path: str) -> str:
        """A picture name unique in this folder, the same on every rerun (file stem, then stem_1 ...)."""
        if path not in self._names:
            stem, k = picture_stem(path), 0
            name = stem
            while name in self._taken:
                k += 1
                name = f"{stem}_{k}"
            self._names[path] = name
            self._taken.add(name)
        return self._names[path]

    def write_pictures(self, name: str, image: np.ndarray, mask: np.ndarray, heat: np.ndarray | None,
                       overlay_size: int = 512) -> None:
        """Mask (full size, 1-bit PNG), overlay (JPEG, long side ``overlay_size``; 0: none) and Grad-CAM
        of one image, each written atomically. On two cores every millisecond here is taken from the
        model: an 8-bit mask PNG took 5 ms and a PNG overlay 8 ms, these take 0.5 and 1 ms."""
        if not self._made:
            for sub in self._subs:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self._made = True
        atomic_write(self.root / "masks" / f"{name}.png", encode_mask_png(mask))
        if overlay_size:
            atomic_write(self.root / "overlays" / f"{name}.jpg", encode_jpeg(overlay(image, mask, max_side=overlay_size)))
        if heat is not None:
            from .gradcam import heatmap_overlay

            atomic_write(self.root / "gradcam" / f"{name}.png", encode_png(heatmap_overlay(image, heat)))

    def append(self, fields: list[str], rows: list[dict]) -> None:
        """Append whole rows (header first in a new file) and flush them to disk."""
        new = not self.csv.is_file() or self.csv.stat().st_size == 0
        text = csv_text(fields, rows)
        if not new:
            text = text.split("\n", 1)[1]
        with open(self.csv, "ab") as fh:
            try:
                fh.write(text.encode(*ENCODING))
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:  # e.g. the disk is full: say which file
                raise OSError(exc.errno, exc.strerror, str(self.csv)) from exc

    def write_skipped(self, attempted: set[str], skipped: list[dict]) -> int:
        """Rewrite ``skipped.csv``: earlier entries of files not attempted now, plus this call's."""
        keep = [r for r in read_skipped(self.skipped_csv) if r["file"] not in attempted]
        rows = keep + skipped
        if rows:
            write_csv(self.skipped_csv, SKIPPED_FIELDS, rows)
        else:
            self.skipped_csv.unlink(missing_ok=True)
        return len(rows)

    def has_results(self) -> bool:
        """Whether an earlier predict left anything of its own here."""
        return any((self.root / name).exists() for name in self.OWN)

    def staging(self) -> PredictionFolder:
        """A fresh folder inside this one for a ``--no-resume`` run (earlier stagings, left by a killed
        run, removed: the caller holds this folder's lock)."""
        for old in self.root.glob(".next-*"):
            shutil.rmtree(old, ignore_errors=True)
        return PredictionFolder(self.root / f".next-{os.getpid()}", self.gradcam, self.overlays)

    def take(self, staging: PredictionFolder) -> None:
        """Replace what an earlier predict wrote here by what ``staging`` holds (after its run succeeded)."""
        trash = self.root / f".old-{os.getpid()}"
        trash.mkdir(exist_ok=True)
        for name in self.OWN:
            if (self.root / name).exists():
                os.replace(self.root / name, trash / name)
        for name in self.OWN:
            if (staging.root / name).exists():
                os.replace(staging.root / name, self.root / name)
        shutil.rmtree(trash, ignore_errors=True)

    def write_submission(self, path: Path, rows: list[dict]) -> None:
        """The SIIM submission of every image in the folder (``ImageId`` = file stem, RLE of its mask)."""
        out = []
        for r in rows:
            picture = self.root / "masks" / f"{self.name_for(r['file'])}.png"
            mask = cv2.imdecode(np.fromfile(picture, np.uint8), cv2.IMREAD_GRAYSCALE) if picture.is_file() else None
            if mask is None:
                raise PneumoscopeError(f"{self.root}: the mask of {r['file']} is missing; rerun with --no-resume")
            out.append({"ImageId": Path(r["file"]).stem, "EncodedPixels": encode(mask > 0)})
        path.parent.mkdir(parents=True, exist_ok=True)  # checked before predicting (archive.predict_files)
        write_csv(path, ["ImageId", "EncodedPixels"], out)


def _complete_row(row: dict) -> bool:
    """Whether a row's numbers are numbers (a row cut short can still have every column)."""
    try:
        int(row["width"]), int(row["height"]), int(row["mask_area_px"]), float(row["max_prob"])
        if "decision" in row:
            float(row["p_pneumothorax"])
            return row["decision"] in ("pneumothorax", "normal")
        return True
    except (KeyError, ValueError):
        return False


class Item(NamedTuple):
    """One input as read for prediction."""

    path: Path
    image: np.ndarray | None  # None: not predicted (``error`` says why)
    meta: dict
    error: str
    source: Any = None  # with DICOM results: a results.Source, or why the file cannot have any (str)
    ours: bool = False  # a result pneumoscope made: never predicted, said even without --skip-bad


def _read(path: Path, dicom: bool = False, max_pixels: int = MAX_PIXELS) -> Item:
    from ..data.dicom import read_dicom_dataset
    from ..results.identity import NOT_IMAGES, made_by_pneumoscope

    try:
        checked = check_file(path)
        if not is_dicom(checked):
            return Item(path, *read_image(checked, max_pixels, min_side=MIN_SIDE), "")
        img, meta, ds = read_dicom_dataset(str(checked), str(path), max_pixels, MIN_SIDE)
    except PneumoscopeError as exc:
        own = _own_result(path)  # an SR of ours has no pixels: known by its header
        return Item(path, None, {}, _not_again(path, own) if own else str(exc), None, bool(own))
    own = made_by_pneumoscope(ds)
    if own:
        return Item(path, None, {}, _not_again(path, own), None, True)
    if str(ds.get("SOPClassUID", "")) in NOT_IMAGES:
        return Item(path, None, {}, f"{path}: {NOT_IMAGES[str(ds.SOPClassUID)]}, not a radiograph")
    if not dicom:
        return Item(path, img, meta, "")
    from ..results.source import Source  # results go back as DICOM: the header they reference, read once

    try:
        return Item(path, img, meta, "", Source.of(ds, img, str(path)))
    except PneumoscopeError as exc:  # predicted all the same; its row says why it has no DICOM results
        text = str(exc)
        return Item(path, img, meta, "", "no DICOM results: " + (text[len(str(path)) + 2:] if text.startswith(f"{path}: ") else text))


def _own_result(path: Path) -> str | None:
    """What result of pneumoscope's the DICOM file at ``path`` is, by its header (None: none, or unreadable)."""
    from ..results.identity import made_by_pneumoscope

    try:
        import pydicom

        return made_by_pneumoscope(pydicom.dcmread(str(path), stop_before_pixels=True, force=True))
    except Exception:  # unreadable: its own error says so
        return None


def _not_again(path: Path, kind: str) -> str:
    return f"{path}: pneumoscope's own {kind}, not a radiograph: not predicted again"


def stream(files: list[Path], batch_size: int, workers: int, dicom: bool = False,
           max_pixels: int = MAX_PIXELS) -> Iterator[list[Item]]:
    """Batches of decoded files, decoded ahead by ``workers`` threads (at most two batches held);
    with ``dicom``, each DICOM's header is kept for its DICOM results."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = [pool.submit(_read, f, dicom, max_pixels) for f in files[:batch_size]]
        nxt = batch_size
        while pending:
            ahead = [pool.submit(_read, f, dicom, max_pixels) for f in files[nxt : nxt + batch_size]]
            nxt += batch_size
            yield [fut.result() for fut in pending]
            pending = ahead


def predict_into(folder: PredictionFolder, run: str | Path, files: list[Path], sub_path: Path | None,
                  opts: PredictOptions, say) -> dict:
    """Predict ``files`` into ``folder`` (the caller holds its lock). With ``--no-resume`` over earlier
    results, everything is written into a staging folder first and replaces the earlier results only
    when the whole call succeeded: a failed call leaves the folder as it was."""
    if not opts.resume and folder.has_results():
        staging = folder.staging()
        try:
            out = predict_into(staging, run, files, None, dataclasses.replace(opts, resume=True), say)
            folder.take(staging)
        finally:
            shutil.rmtree(staging.root, ignore_errors=True)
        if sub_path is not None:
            folder.write_submission(sub_path, folder.rows())
        return out
    earlier = folder.rows()
    todo = plan(folder, earlier, files)
    pred = Predictor(run, opts, say) if todo else None
    fields = check_fields(folder, earlier, pred, bool(opts.dicom_out))
    n_done, skipped, seconds = predict_loop(folder, pred, todo, fields, opts)
    n_skipped = folder.write_skipped({str(f) for f in todo}, skipped)
    if sub_path is not None:
        folder.write_submission(sub_path, folder.rows())
    return summary(n_done, len(skipped), n_skipped, len(files) - len(todo), seconds, pred, skipped, folder.dicom_notes)


def plan(folder: PredictionFolder, earlier: list[dict], files: list[Path]) -> list[Path]:
    """The files still to predict; every picture name fixed first (the earlier rows' replayed, then
    each input's in order), so that names never depend on which process predicts which file."""
    for r in earlier:
        folder.name_for(r["file"])
    for f in files:
        folder.name_for(str(f))
    done = {r["file"] for r in earlier}
    return [f for f in files if str(f) not in done]


def check_fields(folder: PredictionFolder, earlier: list[dict], pred: Predictor | None, dicom: bool = False) -> list[str]:
    """The columns of predictions.csv: the earlier rows' when nothing is left to predict, else the run's
    (with stage 2's when it has a classifier, and the DICOM note with DICOM results); a folder written
    with other columns is refused."""
    fields = list(earlier[0]) if pred is None else (
        CSV_FIELDS + (STAGE2_FIELDS if pred.stage2 is not None else []) + (DICOM_FIELDS if dicom else []))
    if earlier and list(earlier[0]) != fields:
        why = ("without --dicom-out" if "dicom_note" in fields else "with --dicom-out") if (
            "dicom_note" in fields) != ("dicom_note" in earlier[0]) else "with other columns (another run?)"
        raise PneumoscopeError(f"{folder.csv}: written {why}; use another --out or --no-resume")
    return fields


def summary(n_done: int, n_skipped: int, skipped_total: int, already: int, seconds: float, pred: Predictor | None,
            skipped_files: list[dict] = (), dicom_notes: list[tuple[str, str]] = ()) -> dict:
    """What predict_files returns: counts, throughput, the backend's notes, and this process's skipped
    files (rows of skipped.csv) and DICOM notes (file, note)."""
    return {"predicted": n_done, "skipped": n_skipped, "skipped_total": skipped_total, "already_done": already,
            "skipped_files": list(skipped_files), "dicom_notes": list(dicom_notes),
            "seconds": seconds, "images_per_second": n_done / seconds if seconds > 0 and n_done else 0.0,
            "model_seconds": pred.model_seconds if pred is not None else 0.0,
            "notes": pred.notes if pred is not None else []}


def predict_loop(folder: PredictionFolder, pred: Predictor | None, todo: list[Path], fields: list[str],
                 opts: PredictOptions) -> tuple[int, list[dict], float]:
    """Predict ``todo`` into ``folder`` (its rows into ``folder.csv``); returns (predicted, skipped, seconds)."""
    bar = tqdm(total=len(todo), desc="predict", unit="img", disable=None)
    t0, n_done, skipped = time.perf_counter(), 0, []
    workers = opts.workers or max(1, (os.cpu_count() or 2) // 2)
    if opts.dicom_out:  # highdicom and pydicom's code tables only when DICOM results are asked for (~0.13 s)
        from ..results.build import Results, make_results, write_results

    def write(good: list, results: list, heats: list) -> None:  # on the writer thread, batch after batch
        rows = []
        for (f, img, _, source), res, heat in zip(good, results, heats):
            folder.write_pictures(folder.name_for(str(f)), img, res.mask, heat, opts.overlay_size)
            row = {"file": str(f), "width": img.shape[1], "height": img.shape[0], "mask_area_px": res.mask_area_px,
                   "max_prob": round(res.max_prob, 6)}
            if res.p_pneumothorax is not None:
                row["p_pneumothorax"] = round(res.p_pneumothorax, 6)
                row["decision"] = res.decision
            if opts.dicom_out:
                made = Results({}, (source,)) if isinstance(source, str) else make_results(
                    res, source, pred.algorithm, opts.dicom_objects)
                write_results(made, opts.dicom_out, folder.name_for(str(f)))
                row["dicom_note"] = made.note
                if made.note:
                    folder.dicom_notes.append((str(f), made.note))
            rows.append(row)
        folder.append(fields, rows)  # after the pictures: a row means its mask is on disk

    # decode ahead (reader threads), predict (here), encode and write behind (one writer thread, in order)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pneumoscope-write") as writer:
        pending = None
        for batch in stream(todo, opts.batch_size, workers, bool(opts.dicom_out), int(opts.max_megapixels * 1e6)):
            bad = [{"file": str(i.path), "reason": i.error} for i in batch if i.image is None]
            refused = [i for i in batch if i.image is None and not i.ours]
            if refused and not opts.skip_bad:
                raise PneumoscopeError(refused[0].error)
            skipped += bad
            good = [(i.path, i.image, i.meta, i.source) for i in batch if i.image is not None]
            bar.update(len(batch))
            if not good:
                continue
            images = [g[1] for g in good]
            results = pred.predict_batch(images, [g[2] for g in good])
            heats = pred.gradcam(images) if opts.gradcam else [None] * len(good)
            if pending is not None:
                pending.result()  # at most one batch waits to be written (and its errors surface here)
            pending = writer.submit(write, good, results, heats)
            n_done += len(good)
            bar.set_postfix(img_per_s=f"{n_done / (time.perf_counter() - t0):.2f}")
        if pending is not None:
            pending.result()
    bar.close()
    return n_done, skipped, time.perf_counter() - t0
