"""``pneumoscope upgrade-run``: convert a run folder written by pneumoscope 0.1 (pickled
``best.pt`` and ``stage2/classifier.joblib``) to the formats that load without running code.

Loading the old files unpickles them, which can run code: only upgrade runs you trust.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import config as config_mod
from .errors import PneumoscopeError
from .runs import Run
from .stage2.portable import PortableClassifier


def upgrade_run(path: str | Path) -> list[str]:
    """Convert an old run folder in place; returns what was converted. The old files are removed
    only after the new ones are written."""
    import torch

    run = Run(path).require()
    old_best, old_cls = run.legacy_best(), run.legacy_classifier()
    done: list[str] = []
    if old_best is None and old_cls is None:
        raise PneumoscopeError(f"{run.root}: nothing to upgrade (no pickled files of pneumoscope 0.1)")
    if old_best is not None:
        try:
            ck = torch.load(old_best, map_location="cpu", weights_only=False)  # the one trusted unpickling
        except Exception as exc:
            raise PneumoscopeError(f"{old_best}: cannot be read ({' '.join(str(exc).split())[:160]})") from exc
        split = run.read_split()
        if split is None:
            split = pd.DataFrame(columns=["id", "patient_id", "label", "split"])
        run.save_weights(ck["model"], config_mod.from_dict(ck["config"]), split, ck.get("state", {}))
        run.adopt_derived()  # the same weights: the rule, export and summary still hold
        old_best.unlink()
        done.append(f"{old_best.name} -> {run.weights_path().name} (safetensors)")
    if old_cls is not None:
        import joblib

        summary, names, table2 = run.read_stage2_record()
        if summary is None:
            raise PneumoscopeError(f"{run.stage2_dir}: the old classifier has no readable summary; run train-cls again")
        spec, boosters = PortableClassifier.from_fitted(joblib.load(old_cls)).to_data()
        run.save_classifier(spec, boosters, summary, names, table2)
        old_cls.unlink()
        done.append(f"{old_cls.name} -> XGBoost boosters + JSON")
    return done
