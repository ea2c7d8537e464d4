"""The stage-2 folder of a run (``stage2/``): the classifier's description and XGBoost boosters, its
summary (threshold, metrics; written last, it marks completion and carries the weights id), the feature
names, Table 2 and the feature cache. Mixed into :class:`~pneumoscope.folders.run.Run`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import schema
from ..errors import PneumoscopeError
from ..files import atomic_write, json_text, read_json
from .names import REMEDY, S2_BOOSTER, S2_CLASSIFIER, S2_FEATURE_NAMES, S2_FEATURES, S2_SUMMARY, S2_TABLE2, STAGE2


class Stage2Files:
    """Reading and writing ``stage2/`` (see the module's docstring)."""

    root: Path

    @property
    def stage2_dir(self) -> Path:
        """The stage-2 folder."""
        return self._p(STAGE2)

    def has_classifier(self) -> bool:
        """Whether a stage-2 classifier of the current weights is there (an old pickled one raises)."""
        if self._read_derived(self.stage2_dir / S2_SUMMARY, schema.STAGE2_SUMMARY) is not None:
            if not (self.stage2_dir / S2_CLASSIFIER).is_file():
                raise schema.fail(self.stage2_dir / S2_CLASSIFIER, None, "is missing beside its summary", REMEDY[S2_CLASSIFIER])
            return True
        self._refuse_legacy()
        return False

    def feature_cache(self) -> Path:
        """Stem of the stage-2 feature cache files (the key is appended to it)."""
        self.stage2_dir.mkdir(parents=True, exist_ok=True)
        return self.stage2_dir / S2_FEATURES

    def save_classifier(self, spec: dict, boosters: list[bytes], summary: dict, feature_names: list[str],
                        table2: pd.DataFrame) -> None:
        """Save the classifier (its description and XGBoost boosters), its summary (threshold,
        metrics), the feature names and Table 2. The summary is written last: it marks completion."""
        d = self.stage2_dir
        d.mkdir(parents=True, exist_ok=True)
        for i, raw in enumerate(boosters):
            atomic_write(d / S2_BOOSTER.format(i), raw)
        atomic_write(d / S2_CLASSIFIER, json_text({**spec, "n_boosters": len(boosters)}))
        atomic_write(d / S2_FEATURE_NAMES, json.dumps(feature_names))
        atomic_write(d / S2_TABLE2, table2.to_csv(index=False, float_format="%.4f"))
        self._write_derived(d / S2_SUMMARY, summary)

    def read_stage2_record(self) -> tuple[dict | None, list[str], pd.DataFrame]:
        """Summary, feature names and Table 2 as saved, whichever weights they came from."""
        d = self.stage2_dir
        names = read_json(d / S2_FEATURE_NAMES)
        table2 = pd.read_csv(d / S2_TABLE2) if (d / S2_TABLE2).is_file() else pd.DataFrame()
        summary = read_json(d / S2_SUMMARY)
        return summary if isinstance(summary, dict) else None, names if isinstance(names, list) else [], table2

    def load_classifier(self) -> tuple[dict, list[bytes], dict]:
        """The classifier's description, its boosters and its summary."""
        d = self.stage2_dir
        if not self.has_classifier():
            raise PneumoscopeError(f"{self.root}: no stage-2 classifier for its current weights (run train-cls first)")
        summary = self._read_derived(d / S2_SUMMARY, schema.STAGE2_SUMMARY)
        path, remedy = d / S2_CLASSIFIER, REMEDY[S2_CLASSIFIER]
        spec = schema.check_classifier(read_json(path), path, remedy)
        boosters = []
        for i in range(spec["n_boosters"]):
            booster = d / S2_BOOSTER.format(i)
            if not booster.is_file():
                raise schema.fail(booster, None, "is missing", remedy)
            boosters.append(booster.read_bytes())
        names = read_json(d / S2_FEATURE_NAMES)
        if not isinstance(names, list) or len(names) != summary["n_features"] or not all(isinstance(n, str) for n in names):
            raise schema.fail(d / S2_FEATURE_NAMES, None, f"is not a list of {summary['n_features']} feature names", remedy)
        return spec, boosters, summary

    def booster_name(self, i: int) -> Path:
        """Where the ``i``-th booster of the stage-2 classifier is."""
        return self.stage2_dir / S2_BOOSTER.format(i)
