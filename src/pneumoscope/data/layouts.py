"""Detect a dataset folder's layout and index it as one table.

Every layout becomes a pandas DataFrame with the columns of ``INDEX_COLUMNS``:

- ``kaggle``: ``png_images/*.png``, ``png_masks/*.png`` and a CSV with
  ``new_filename,ImageId,has_pneumo`` (the Kaggle PNG dataset; ``synth`` writes it too).
- ``siim``: ``*.dcm`` anywhere under the folder plus ``train-rle.csv``
  (``ImageId, EncodedPixels``; several rows for one image are a union).
- ``folder``: images with image-level labels and no masks: ``labels.csv``
  (``file,label`` plus optional ``patient_id,age,sex,view``) or one sub-folder per class.
  An image labelled normal has a known, empty mask (a negative for segmentation); one labelled
  pneumothorax has no mask (left out of segmentation, used by the classifier).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import BadItemError, PneumoscopeError, one_line
from .io import DICOM_SUFFIXES, IMAGE_SUFFIXES

INDEX_COLUMNS = ["id", "image_path", "mask_path", "rle", "label", "patient_id", "sex", "age", "view"]
RLE_SEP = "|"
EMPTY_MASK = "-1"  # an image labelled normal: its pneumothorax mask is known to be empty
POSITIVE_NAMES = {"1", "pneumothorax", "positive", "pos", "true", "yes"}
NEGATIVE_NAMES = {"0", "normal", "negative", "neg", "false", "no", "no finding"}


def _kaggle_csv(root: Path) -> Path | None:
    for csv in sorted(root.glob("*.csv")):
        cols = set(pd.read_csv(csv, nrows=0).columns.str.strip())
        if {"new_filename", "has_pneumo"} <= cols:
            return csv
    return None


def _rle_csv(root: Path) -> Path | None:
    for name in ("train-rle.csv", "train-rle.csv.gz"):
        hits = sorted(root.rglob(name))
        if hits:
            return hits[0]
    return None


def detect_layout(root: str | Path) -> str:
    """Name the layout of a dataset folder, or raise PneumoscopeError saying what was expected."""
    root = Path(root)
    if not root.is_dir():
        raise PneumoscopeError(f"{root}: dataset folder not found")
    if (root / "png_images").is_dir():
        return "kaggle"
    if _rle_csv(root) is not None:
        return "siim"
    if (root / "labels.csv").is_file() or any(
        (root / d).is_dir() for d in ("normal", "pneumothorax", "0", "1")
    ):
        return "folder"
    raise PneumoscopeError(
        f"{root}: unknown dataset layout; expected png_images/ + CSV (kaggle), *.dcm + "
        "train-rle.csv (siim), or labels.csv / normal/ + pneumothorax/ (folder)"
    )


def parse_label(value: object) -> int:
    """Map a label cell (0/1, normal/pneumothorax, ...) to 0, 1, or -1 for unknown."""
    text = str(value).strip().lower()
    if text in POSITIVE_NAMES:
        return 1
    if text in NEGATIVE_NAMES:
        return 0
    return -1


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for col in INDEX_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan if col == "age" else ("" if col != "label" else -1)
    df = df[INDEX_COLUMNS].copy()
    df["label"] = df["label"].astype(int)
    df["age"] = pd.to_numeric(df["age"], errors="coerce")
    for col in ("mask_path", "rle", "patient_id", "sex", "view"):
        df[col] = df[col].fillna("").astype(str)
    return df.reset_index(drop=True)


def _index_kaggle(root: Path) -> tuple[pd.DataFrame, list[BadItemError]]:
    csv = _kaggle_csv(root)
    bad: list[BadItemError] = []
    rows = []
    if csv is None:
        names = sorted(p.name for p in (root / "png_images").glob("*.png"))
        table = pd.DataFrame({"new_filename": names, "ImageId": [Path(n).stem for n in names]})
        table["has_pneumo"] = -1
    else:
        table = pd.read_csv(csv)
        table.columns = table.columns.str.strip()
    for rec in table.itertuples(index=False):
        name = str(rec.new_filename)
        item_id = str(getattr(rec, "ImageId", Path(name).stem))
        image, mask = root / "png_images" / name, root / "png_masks" / name
        if not image.is_file():
            bad.append(BadItemError(item_id, str(image), "image named in the CSV is missing"))
            continue
        rows.append({
            "id": item_id, "image_path": str(image.resolve()),
            "mask_path": str(mask.resolve()) if mask.is_file() else "",
            "label": parse_label(rec.has_pneumo),
        })
    return _frame(rows), bad


def read_rle_table(csv: Path) -> pd.DataFrame:
    """The SIIM RLE table as strings: with its header (``ImageId, EncodedPixels``; the leading
    space of the original is stripped) or without one (the official ``train-rle-sample.csv``:
    two columns, image id and RLE)."""
    try:
        table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PneumoscopeError(f"{csv}: not a readable CSV ({one_line(exc)})") from exc
    table.columns = table.columns.str.strip()
    if not {"ImageId", "EncodedPixels"} <= set(table.columns):
        if len(table.columns) != 2:
            raise PneumoscopeError(f"{csv}: expected columns ImageId, EncodedPixels (or two columns without a header)")
        table = pd.read_csv(csv, dtype=str, keep_default_na=False, header=None, names=["ImageId", "EncodedPixels"])
    table["ImageId"] = table["ImageId"].str.strip()
    return table


def index_siim(root: Path, csv: Path | None = None) -> tuple[pd.DataFrame, list[BadItemError]]:
    """Index DICOMs under ``root`` against an RLE table (default: train-rle.csv under root)."""
    csv = csv or _rle_csv(root)
    if csv is None or not Path(csv).is_file():
        raise PneumoscopeError(f"{csv or root}: RLE table (train-rle.csv) not found")
    table = read_rle_table(Path(csv))
    blank = table["EncodedPixels"].str.strip() == ""
    bad = [BadItemError(i, str(csv), f"ImageId {i}: empty EncodedPixels cell (write -1 for an image without pneumothorax)")
           for i in dict.fromkeys(table.loc[blank, "ImageId"])]
    table = table[~table["ImageId"].isin({b.item_id for b in bad})]
    rles = table.groupby("ImageId")["EncodedPixels"].agg(lambda s: RLE_SEP.join(x.strip() for x in s))
    files = {p.stem: p for p in root.rglob("*") if p.suffix.lower() in DICOM_SUFFIXES}
    rows = []
    for image_id, rle in rles.items():
        path = files.get(image_id)
        if path is None:
            bad.append(BadItemError(image_id, str(root / f"{image_id}.dcm"), "listed in train-rle.csv but no DICOM found"))
            continue
        label = int(any(r.strip() != "-1" for r in rle.split(RLE_SEP)))
        rows.append({"id": image_id, "image_path": str(path.resolve()), "rle": rle, "label": label})
    return _frame(rows), bad


def _index_folder(root: Path) -> tuple[pd.DataFrame, list[BadItemError]]:
    rows, bad = [], []
    labels = root / "labels.csv"
    if labels.is_file():
        table = pd.read_csv(labels, dtype=str).fillna("")
        if not {"file", "label"} <= set(table.columns):
            raise PneumoscopeError(f"{labels}: expected columns file,label")
        for rec in table.to_dict("records"):
            path = root / rec["file"]
            if not path.is_file():
                bad.append(BadItemError(Path(rec["file"]).stem, str(path), "image named in labels.csv is missing"))
                continue
            label = parse_label(rec["label"])
            rows.append({**{k: rec.get(k, "") for k in ("patient_id", "sex", "age", "view")},
                         "id": path.stem, "image_path": str(path.resolve()), "label": label,
                         "rle": EMPTY_MASK if label == 0 else ""})
    else:
        for sub in sorted(d for d in root.iterdir() if d.is_dir()):
            label = parse_label(sub.name)
            for path in sorted(p for p in sub.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
                rows.append({"id": path.stem, "image_path": str(path.resolve()), "label": label,
                             "rle": EMPTY_MASK if label == 0 else ""})
    return _frame(rows), bad


_INDEXERS: dict[str, Callable[[Path], tuple[pd.DataFrame, list[BadItemError]]]] = {
    "kaggle": _index_kaggle, "siim": index_siim, "folder": _index_folder,
}
LAYOUTS = tuple(_INDEXERS)  # the layout registry: what --layout and data.layout accept (besides auto)


def index_dataset(root: str | Path, layout: str = "auto", skip_bad: bool = False,
                  rle_csv: str | Path | None = None) -> tuple[pd.DataFrame, list[BadItemError]]:
    """Index a dataset folder.

    Returns the index and the list of skipped items. Without ``skip_bad`` the first bad
    item raises instead. ``rle_csv`` names the SIIM RLE table when it is not under
    ``root`` (implies the siim layout). The index is empty-checked: a folder with no usable item fails.
    """
    root = Path(root)
    if rle_csv is not None:
        if not root.is_dir():
            raise PneumoscopeError(f"{root}: DICOM folder not found")
        df, bad = index_siim(root, Path(rle_csv))
        return _checked(df, bad, root, "siim", skip_bad)
    name = detect_layout(root) if layout == "auto" else layout
    if name not in _INDEXERS:
        raise PneumoscopeError(f"unknown layout {name!r}; choose one of auto, {', '.join(LAYOUTS)}")
    df, bad = _INDEXERS[name](root)
    return _checked(df, bad, root, name, skip_bad)


def _checked(df: pd.DataFrame, bad: list[BadItemError], root: Path, name: str, skip_bad: bool) -> tuple[pd.DataFrame, list[BadItemError]]:
    if bad and not skip_bad:
        raise bad[0]
    if df["id"].duplicated().any():
        dup = df.loc[df["id"].duplicated(), "id"].iloc[0]
        raise PneumoscopeError(f"{root}: image id {dup!r} appears twice")
    if df.empty:
        raise PneumoscopeError(f"{root}: no usable images found (layout {name})")
    df.attrs["layout"] = name
    return df, bad
