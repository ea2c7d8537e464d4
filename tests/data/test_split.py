import pandas as pd
import pytest

from pneumoscope.data.split import make_split
from pneumoscope.errors import PneumoscopeError


def _index(n=100, pos_every=4, patients=None):
    return pd.DataFrame({"id": [f"i{k}" for k in range(n)],
                         "patient_id": [patients(k) if patients else "" for k in range(n)],
                         "label": [int(k % pos_every == 0) for k in range(n)]})


def test_fractions_stratified_and_deterministic():
    s = make_split(_index(), 0.2, 0.2, seed=1)
    counts = s.split.value_counts().to_dict()
    assert counts == {"train": 60, "val": 20, "test": 20}
    for part in ("train", "val", "test"):
        assert s[s.split == part].label.mean() == pytest.approx(0.25, abs=0.03)
    assert s.equals(make_split(_index(), 0.2, 0.2, seed=1))
    assert not s.split.equals(make_split(_index(), 0.2, 0.2, seed=2).split)


def test_patients_stay_together():
    s = make_split(_index(patients=lambda k: f"p{k // 3}"), 0.2, 0.2, seed=0)
    assert (s.groupby("patient_id").split.nunique() == 1).all()


def test_zero_fraction_and_bad_fractions():
    s = make_split(_index(n=10), 0.2, 0.0)
    assert set(s.split) == {"train", "val"}
    with pytest.raises(PneumoscopeError):
        make_split(_index(n=10), 0.6, 0.5)
