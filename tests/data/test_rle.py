import numpy as np
import pandas as pd
import pytest

from pneumoscope.data import rle
from pneumoscope.data.io import read_mask
from pneumoscope.errors import PneumoscopeError
from tests.conftest import shared_path


def test_hand_computed_column_major_relative_offsets():
    # 5 rows x 4 columns; column-major pixels 6,7 (col 1 rows 1-2) and 9,10 (col 1 row 4, col 2 row 0)
    m = np.zeros((5, 4), np.uint8)
    m[1:3, 1] = 1
    m[4, 1] = 1
    m[0, 2] = 1
    assert rle.encode(m) == "6 2 1 2"
    np.testing.assert_array_equal(rle.decode("6 2 1 2", 5, 4), m)


def test_empty_and_full():
    assert rle.encode(np.zeros((3, 3))) == "-1"
    assert rle.decode(" -1", 3, 3).sum() == 0
    assert rle.encode(np.ones((2, 3))) == "0 6"


def test_union_of_rows():
    a = rle.decode("0 2", 4, 4)
    b = rle.decode("1 2", 4, 4)
    u = rle.decode_union(["0 2", "1 2"], 4, 4)
    np.testing.assert_array_equal(u, a | b)
    assert u.sum() == 3


@pytest.mark.parametrize("bad", ["0 17", "3 2 10 5", "1 2 3", "a b", "-2 3"])
def test_bad_rle_is_one_clear_error(bad):
    with pytest.raises(PneumoscopeError):
        rle.decode(bad, 4, 4)


def test_runs_past_image_names_the_extent():
    with pytest.raises(PneumoscopeError, match="runs past the image"):
        rle.decode("10 10", 4, 4)


@pytest.mark.slow
def test_round_trip_every_row_of_the_siim_table():
    table = pd.read_csv(shared_path("siim-rle", "train-rle.csv.gz"))
    assert len(table) == 12954
    col = table.columns[1]
    bad = [s for s in table[col] if rle.encode(rle.decode(s, 1024, 1024)) != s.strip()]
    assert bad == []
    assert table[table.columns[0]].nunique() == 12047


def test_decoded_rle_equals_the_kaggle_png_masks():
    root = shared_path("siim-sample")
    meta = pd.read_csv(root / "train.csv")
    table = pd.read_csv(shared_path("siim-rle", "train-rle.csv.gz"))
    table.columns = table.columns.str.strip()
    groups = table.groupby("ImageId")["EncodedPixels"].apply(list)
    for rec in meta.itertuples():
        png = read_mask(root / "png_masks" / rec.new_filename)
        decoded = rle.decode_union(groups[rec.ImageId], 1024, 1024)
        np.testing.assert_array_equal(decoded, png, err_msg=rec.new_filename)
    assert len(meta) == 30
