import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import cross_val_score

from pneumoscope.errors import PneumoscopeError
from pneumoscope.stage2 import classifier as clf


@pytest.fixture(scope="module")
def problem():
    X, y = make_classification(n_samples=240, n_features=30, n_informative=6, weights=[0.7, 0.3],
                               flip_y=0.05, random_state=4)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def noisy_problem():
    """Few informative features, a quarter of the labels flipped: XGBoost's defaults (depth 6,
    learning rate 0.3) overfit it, so the search has something to find."""
    X, y = make_classification(n_samples=400, n_features=60, n_informative=3, n_redundant=0, weights=[0.7, 0.3],
                               flip_y=0.25, class_sep=0.6, random_state=4)
    return X[:240].astype(np.float32), y[:240]


@pytest.mark.slow
def test_search_finds_better_parameters_and_reports_their_real_score(noisy_problem):
    X, y = noisy_problem
    res = clf.tune(X, y, n_iter=8, k=3, scoring="average_precision", seed=0)
    assert res.n_candidates == 8 and res.params and set(res.params) <= set(clf.search_space(1.0))
    assert res.best_score >= res.default_score + 0.03  # measured: 0.398 -> 0.466
    # The reported scores are what the chosen and the default parameters really score on the same folds.
    folds = clf.folds_for(y, 3, 0)
    for params, reported in ((res.params, res.best_score), ({}, res.default_score)):
        again = cross_val_score(clf.make_xgb(params, clf.positive_weight(y), 0), X, y, cv=folds, scoring="average_precision")
        assert again.mean() == pytest.approx(reported, abs=1e-9)
    model = clf.fit(res.params, X, y, seed=0)
    assert model.predict_proba(X[:5]).shape == (5, 2)


def test_defaults_are_kept_when_no_candidate_beats_them(problem, monkeypatch):
    X, y = problem
    hopeless = {"n_estimators": [1], "max_depth": [1], "learning_rate": [0.001]}  # one stump barely learns
    monkeypatch.setattr(clf, "search_space", lambda pos_weight: hopeless)
    res = clf.tune(X, y, n_iter=1, k=3, scoring="average_precision", seed=0)
    assert res.params == {} and res.best_score == res.default_score


def test_default_model_uses_class_ratio(problem):
    X, y = problem
    m = clf.make_xgb({}, clf.positive_weight(y))
    assert m.get_params()["scale_pos_weight"] == pytest.approx((y == 0).sum() / (y == 1).sum())
    assert m.get_params()["tree_method"] == "hist" and m.get_params()["max_depth"] == 6


def test_threshold_max_f1_and_sensitivity():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.4, 0.7, 0.9])
    # thresholds 0.4 -> P 3/4 R 1 F1 .857; 0.6 -> P 2/3 R 2/3; 0.7 -> P 1 R 2/3 F1 .8
    assert clf.choose_threshold(y, p, "max_f1") == pytest.approx(0.4)
    assert clf.choose_threshold(y, p, "sensitivity", 0.6) == pytest.approx(0.7)  # 2 of 3 positives
    assert clf.choose_threshold(y, p, "sensitivity", 1.0) == pytest.approx(0.4)
    with pytest.raises(PneumoscopeError):
        clf.choose_threshold(y, p, "bogus")


def test_metrics_hand_computed():
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.8, 0.9, 0.3])
    m = clf.classification_metrics(y, p, 0.5)
    assert m["confusion"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 1}
    assert m["per_class"]["pneumothorax"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["normal"]["recall"] == pytest.approx(2 / 3)
    assert m["sensitivity"] == pytest.approx(0.5) and m["specificity"] == pytest.approx(2 / 3)
    assert m["roc_auc"] == pytest.approx(5 / 6)  # 5 of 6 (positive, negative) pairs ranked right


def test_expected_calibration_error():
    y = np.array([1, 0, 1, 1])
    p = np.array([0.75, 0.75, 0.75, 0.75])  # one bin: accuracy .75, confidence .75
    assert clf.expected_calibration_error(y, p) == pytest.approx(0.0)
    assert clf.expected_calibration_error(np.array([0, 1]), np.array([0.9, 0.1])) == pytest.approx(0.9)


def test_calibrated_fit(problem):
    X, y = problem
    model = clf.fit({}, X, y, calibration="isotonic", k=3)
    p = model.predict_proba(X)[:, 1]
    assert ((p >= 0) & (p <= 1)).all()
    with pytest.raises(PneumoscopeError):
        clf.fit({}, X, y, calibration="platt")


def test_one_class_is_refused():
    with pytest.raises(PneumoscopeError, match="at least 2 images of each class"):
        clf.folds_for(np.array([1, 1, 1, 0]), 5, 0)
