import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pneumoscope.data import rle
from pneumoscope.data.layouts import detect_layout, index_dataset, parse_label
from pneumoscope.errors import BadItemError, PneumoscopeError
from tests.conftest import shared_path
from tests.helpers import write_dicom


def test_kaggle_layout(tiny_synth):
    assert detect_layout(tiny_synth) == "kaggle"
    df, bad = index_dataset(tiny_synth)
    assert len(df) == 24 and bad == []
    assert df["label"].sum() == 12
    assert df["mask_path"].str.endswith(".png").all()


def test_missing_file_in_csv(tiny_synth, tmp_path):
    root = tmp_path / "k"
    shutil.copytree(tiny_synth, root)
    victim = sorted((root / "png_images").glob("*.png"))[0]
    victim.unlink()
    with pytest.raises(BadItemError, match=victim.name):
        index_dataset(root)
    df, bad = index_dataset(root, skip_bad=True)
    assert len(df) == 23 and len(bad) == 1 and bad[0].path.endswith(victim.name)


def _siim_folder(root, n=3):
    rows = []
    (root / "dicom").mkdir(parents=True)
    for i in range(n):
        write_dicom(root / "dicom" / f"img{i}.dcm", np.full((32, 32), 100 + i, np.uint8), patient_id=f"p{i}")
        m = np.zeros((32, 32), np.uint8)
        if i:
            m[4:8, 10:20] = 1
        rows.append({"ImageId": f"img{i}", " EncodedPixels": " " + rle.encode(m)})
    rows.append({"ImageId": "img2", " EncodedPixels": " " + rle.encode(np.pad(np.ones((2, 2), np.uint8), ((20, 10), (20, 10))))})
    pd.DataFrame(rows).to_csv(root / "train-rle.csv", index=False)
    return root


def test_siim_layout_union_and_labels(tmp_path):
    root = _siim_folder(tmp_path / "s")
    assert detect_layout(root) == "siim"
    df, _ = index_dataset(root)
    assert df.set_index("id")["label"].to_dict() == {"img0": 0, "img1": 1, "img2": 1}
    assert df.set_index("id").loc["img2", "rle"].count("|") == 1


def test_siim_row_without_dicom(tmp_path):
    root = _siim_folder(tmp_path / "s")
    (root / "dicom" / "img1.dcm").unlink()
    with pytest.raises(BadItemError, match="no DICOM"):
        index_dataset(root)


def test_plain_folder_with_class_subfolders(tmp_path):
    for cls in ("normal", "pneumothorax"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / cls / f"{cls}.png")
    df, _ = index_dataset(tmp_path)
    assert df.attrs["layout"] == "folder"
    assert df.set_index("id")["label"].to_dict() == {"normal": 0, "pneumothorax": 1}


def test_real_nih_labelled_folder():
    df, bad = index_dataset(shared_path("nih-sample"))
    assert df.attrs["layout"] == "folder" and bad == []
    assert len(df) == 90 and df["label"].sum() == 30
    assert df["patient_id"].nunique() == 90 and set(df["sex"]) == {"M", "F"}


def test_real_siim_sample():
    df, _ = index_dataset(shared_path("siim-sample"))
    assert len(df) == 30 and (df["label"] == 1).all()


def test_unknown_layout_and_labels(tmp_path):
    with pytest.raises(PneumoscopeError, match="unknown dataset layout"):
        detect_layout(tmp_path)
    assert parse_label("Pneumothorax") == 1 and parse_label("No Finding") == 0 and parse_label("?") == -1
