"""Convert the SIIM original layout (DICOM + train-rle.csv) to the Kaggle PNG layout."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import BadItemError, PneumoscopeError
from ..files import atomic_write, check_writable_folder
from .cache import load_row
from .io import encode_png
from .layouts import index_dataset
from .transforms import to_uint8


def siim_to_png(dicom_dir: str | Path, rle_csv: str | Path | None, out: str | Path,
                skip_bad: bool = False) -> tuple[pd.DataFrame, list[BadItemError]]:
    """Write ``png_images/``, ``png_masks/`` (0/255) and ``train.csv`` under ``out``.

    ``rle_csv`` defaults to the ``train-rle.csv`` found under ``dicom_dir``. Returns the
    written table and the items skipped (only with ``skip_bad``; otherwise they raise).
    """
    dicom_dir, out = Path(dicom_dir), Path(out)
    check_writable_folder(out)
    index, bad = index_dataset(dicom_dir, "siim", skip_bad, rle_csv=rle_csv)
    (out / "png_images").mkdir(parents=True, exist_ok=True)
    (out / "png_masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, row in index.iterrows():
        try:
            img, mask, _ = load_row(row)
        except BadItemError as exc:
            if not skip_bad:
                raise
            bad.append(exc)
            continue
        label = int(mask.any())
        name = f"{i}_train_{label}_.png"
        atomic_write(out / "png_images" / name, encode_png(to_uint8(img)))
        atomic_write(out / "png_masks" / name, encode_png(mask * 255))
        rows.append({"new_filename": name, "ImageId": row["id"], "has_pneumo": label})
    if not rows:
        first = f" (first: {bad[0]})" if bad else ""
        raise PneumoscopeError(f"{dicom_dir}: no image could be converted; all {len(bad)} skipped{first}")
    table = pd.DataFrame(rows, columns=["new_filename", "ImageId", "has_pneumo"])
    atomic_write(out / "train.csv", table.to_csv(index=False))
    return table, bad

