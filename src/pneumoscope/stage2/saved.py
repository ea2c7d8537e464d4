"""The stage-2 classifier as data, not a pickle: XGBoost's own model format plus JSON.

A fitted classifier (an ``XGBClassifier``, or scikit-learn's ``CalibratedClassifierCV`` around
one) becomes a list of members, each an XGBoost booster (saved in XGBoost's UBJSON format)
with an optional calibration map: isotonic (its breakpoints) or sigmoid (its two parameters).
P(pneumothorax) is the mean of the members' calibrated probabilities — what scikit-learn
computes — so a run folder can be shared without letting it run code on load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import PneumoscopeError

FORMAT = "pneumoscope-stage2-classifier/1"


@dataclass
class Member:
    """One booster and its calibration (None: the booster's own probability)."""

    booster: Any  # xgboost.Booster
    calibration: dict | None

    def probability(self, X: np.ndarray) -> np.ndarray:
        """Calibrated P(positive) of the rows of ``X``."""
        import xgboost as xgb

        p = self.booster.predict(xgb.DMatrix(np.asarray(X, dtype=np.float32)))
        c = self.calibration
        if c is None:
            return p
        if c["method"] == "isotonic":  # scikit-learn's IsotonicRegression with out_of_bounds="clip"
            return np.interp(p, np.asarray(c["x"]), np.asarray(c["y"]))
        if c["method"] == "sigmoid":  # scikit-learn's _SigmoidCalibration
            return 1.0 / (1.0 + np.exp(c["a"] * p + c["b"]))
        raise PneumoscopeError(f"unknown calibration method {c['method']!r} in the saved classifier")


class PortableClassifier:
    """Mean of calibrated boosters; ``predict_proba`` like a scikit-learn classifier."""

    def __init__(self, members: list[Member]) -> None:
        if not members:
            raise PneumoscopeError("a saved classifier needs at least one booster")
        self.members = members

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, 2): P(normal), P(pneumothorax)."""
        p = np.mean([m.probability(X) for m in self.members], axis=0)
        return np.stack([1.0 - p, p], axis=1)

    @classmethod
    def from_fitted(cls, estimator: Any) -> PortableClassifier:
        """Convert a fitted ``XGBClassifier`` or ``CalibratedClassifierCV`` of XGBClassifiers."""
        from sklearn.calibration import CalibratedClassifierCV
        from xgboost import XGBClassifier

        if isinstance(estimator, XGBClassifier):
            return cls([Member(estimator.get_booster(), None)])
        if isinstance(estimator, CalibratedClassifierCV):
            members = []
            for cc in estimator.calibrated_classifiers_:
                (cal,) = cc.calibrators
                if cc.method == "isotonic":
                    c = {"method": "isotonic", "x": cal.X_thresholds_.tolist(), "y": cal.y_thresholds_.tolist()}
                elif cc.method == "sigmoid":
                    c = {"method": "sigmoid", "a": float(cal.a_), "b": float(cal.b_)}
                else:
                    raise PneumoscopeError(f"cannot save a classifier calibrated by {cc.method!r}")
                members.append(Member(cc.estimator.get_booster(), c))
            return cls(members)
        raise PneumoscopeError(f"cannot save a classifier of type {type(estimator).__name__}")

    def to_data(self) -> tuple[dict, list[bytes]]:
        """The description (JSON-ready) and each member's booster in XGBoost's UBJSON format."""
        spec = {"format": FORMAT, "members": [{"calibration": m.calibration} for m in self.members]}
        return spec, [bytes(m.booster.save_raw("ubj")) for m in self.members]

    @classmethod
    def from_data(cls, spec: dict, boosters: list[bytes], names: list[str] | None = None,
                  n_features: int | None = None) -> PortableClassifier:
        """Rebuild from :meth:`to_data` output. ``names``: what to call each booster in messages;
        ``n_features``: the number of features each booster must take."""
        import xgboost as xgb

        if not isinstance(spec, dict) or spec.get("format") != FORMAT:
            raise PneumoscopeError(f"not a saved classifier of format {FORMAT}")
        if len(boosters) != len(spec["members"]):
            raise PneumoscopeError("the saved classifier is incomplete (boosters missing)")
        members = []
        for i, (m, raw) in enumerate(zip(spec["members"], boosters)):
            name = names[i] if names else f"booster {i}"
            booster = xgb.Booster()
            try:
                booster.load_model(bytearray(raw))
                got = booster.num_features()
            except Exception as exc:  # XGBoostError, or a UnicodeDecodeError of XGBoost quoting the bytes it read
                first = (" ".join(str(exc).split("Stack trace")[0].split())[:120] if isinstance(exc, xgb.core.XGBoostError)
                         else f"{exc.__class__.__name__} while reading it")
                raise PneumoscopeError(f"{name}: not an XGBoost model that loads ({first}); rerun train-cls") from exc
            if n_features is not None and got != n_features:
                raise PneumoscopeError(f"{name}: takes {got} features, the classifier's summary says {n_features}; rerun train-cls")
            members.append(Member(booster, m["calibration"]))
        return cls(members)
