"""Convert the SIIM original layout (DICOM + train-rle.csv) to the Kaggle PNG layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import pandas as pd

from ..errors import BadItemError
from .cache import load_row
from .layouts import index_dataset
from .transforms import to_uint8


def siim_to_png(dicom_dir: str | Path, rle_csv: str | Path | None, out: str | Path,
                skip_bad: bool = False) -> tuple[pd.DataFrame, list[BadItemError]]:
    """Write ``png_images/``, ``png_masks/`` (0/255) and ``train.csv`` under ``out``.

    ``rle_csv`` defaults to the ``train-rle.csv`` found under ``dicom_dir``. Returns the
    written table and the items skipped (only with ``skip_bad``; otherwise they raise).
    """
    dicom_dir, out = Path(dicom_dir), Path(out)
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
        cv2.imwrite(str(out / "png_images" / name), to_uint8(img))
        cv2.imwrite(str(out / "png_masks" / name), mask * 255)
        rows.append({"new_filename": name, "ImageId": row["id"], "has_pneumo": label})
    table = pd.DataFrame(rows, columns=["new_filename", "ImageId", "has_pneumo"])
    table.to_csv(out / "train.csv", index=False)
    return table, bad
