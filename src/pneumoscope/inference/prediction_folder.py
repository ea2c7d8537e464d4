"""The output folder of ``predict --out`` (:class:`PredictionFolder`): its files, their reading and writing.

- ``masks/<name>.png`` (1-bit PNG, 0/255 read as grey, the image's own size), ``overlays/<name>.jpg`` and, with
  ``gradcam``, ``gradcam/<name>.png``;
- ``predictions.csv``: one row per image (its resolved path, size, mask area, max probability,
  P(pneumothorax) with the decision when the run has a stage-2 classifier (and ``disagreement``: empty, or
  "positive, not localised" / "segmented, classified normal"), and with ``--dicom-out``
  a ``dicom_note``: empty, or what its DICOM results changed or why it has none);
- ``skipped.csv`` for files not predicted and, when asked, a SIIM submission CSV;
- ``parts/`` under ``torchrun`` (:mod:`.torchrun`), ``.next-<pid>/`` while a ``--no-resume`` call runs.

Pictures are written before their row, rows are appended whole or dropped when cut short, and the
submission is rebuilt from the rows and masks, so a killed run leaves a folder a rerun completes.
Rows listed twice (by an older pneumoscope without the lock) are collapsed on the next run. Any file
name the filesystem allows round-trips: the CSVs are read and written as UTF-8 with undecodable bytes
kept (``surrogateescape``) and quoted where they hold commas or newlines; picture names are the file
stem with control and path characters replaced.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np

from ..data.io import encode_jpeg, encode_mask_png, encode_png
from ..data.rle import encode
from ..errors import PneumoscopeError
from ..files import ENCODING, atomic_write, check_writable_folder, csv_text, write_csv
from ..pictures import heatmap_overlay, overlay, with_caption

CSV_FIELDS = ["file", "width", "height", "mask_area_px", "max_prob"]
STAGE2_FIELDS = ["p_pneumothorax", "decision", "disagreement"]  # disagreement: empty, or the stages' (soundness.disagreement)
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
    ``torchrun``, each process's part of them: :mod:`.torchrun`)."""

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
                       overlay_size: int = 512, caption: str | None = None) -> None:
        """Mask (full size, 1-bit PNG), overlay (JPEG, long side ``overlay_size``; 0: none) and Grad-CAM
        of one image, each written atomically. On two cores every millisecond here is taken from the
        model: an 8-bit mask PNG took 5 ms and a PNG overlay 8 ms, these take 0.5 and 1 ms. ``caption``: the
        result in words, written on the overlay (decision, P(pneumothorax), disagreement of the stages)."""
        if not self._made:
            for sub in self._subs:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self._made = True
        atomic_write(self.root / "masks" / f"{name}.png", encode_mask_png(mask))
        if overlay_size:
            picture = overlay(image, mask, max_side=overlay_size)
            atomic_write(self.root / "overlays" / f"{name}.jpg", encode_jpeg(with_caption(picture, [caption]) if caption else picture))
        if heat is not None:
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
        path.parent.mkdir(parents=True, exist_ok=True)  # checked before predicting (predict.predict_files)
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
