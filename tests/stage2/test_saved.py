"""The stage-2 classifier saved as data (XGBoost boosters + JSON) predicts what the fitted one does."""

import numpy as np
import pytest
from sklearn.datasets import make_classification

from pneumoscope.errors import PneumoscopeError
from pneumoscope.stage2 import classifier as clf
from pneumoscope.stage2.saved import PortableClassifier


@pytest.fixture(scope="module")
def problem():
    X, y = make_classification(n_samples=160, n_features=12, n_informative=5, weights=[0.6, 0.4], random_state=1)
    return X.astype(np.float32), y


@pytest.mark.parametrize("calibration", ["none", "isotonic", "sigmoid"])
def test_round_trip_predicts_like_the_fitted_classifier(problem, calibration):
    X, y = problem
    fitted = clf.fit({"n_estimators": 30}, X, y, seed=0, calibration=calibration, k=3)
    spec, boosters = PortableClassifier.from_fitted(fitted).to_data()
    assert isinstance(spec, dict) and all(isinstance(b, bytes) for b in boosters)
    assert len(boosters) == (1 if calibration == "none" else 3)
    again = PortableClassifier.from_data(spec, boosters)
    np.testing.assert_allclose(again.predict_proba(X), fitted.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("spec,boosters,needle", [
    ({"format": "something else", "members": []}, [], "not a saved classifier"),
    ({"format": "pneumoscope-stage2-classifier/1", "members": [{"calibration": None}]}, [], "incomplete"),
    ([1, 2], [], "not a saved classifier"),
])
def test_damaged_saved_classifiers_are_refused(spec, boosters, needle):
    with pytest.raises(PneumoscopeError, match=needle):
        PortableClassifier.from_data(spec, boosters)
