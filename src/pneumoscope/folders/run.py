"""The run folder (``train-seg --out``): its config, split, history, weights, resume checkpoint,
metrics and skipped items, with the derived files (:mod:`.derived`), the stage-2 files
(:mod:`.stage2`) and what older versions left (:mod:`.legacy`) mixed in. No other module builds a
path inside a run: it asks a :class:`Run`.

Safe to share: what inference loads is data, not pickles — the best weights in safetensors
(with the config and the split's hash in its header), the stage-2 classifier in XGBoost's
own format plus JSON. Only the resume checkpoint is a torch file, loaded with
``weights_only=True``. Every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from .. import config as config_mod
from .. import locks, schema
from ..config import Config
from ..errors import BadItemError, PneumoscopeError, one_line
from ..files import atomic_write, write_csv, write_json, write_via_tmp
from . import legacy
from .derived import DerivedFiles
from .legacy import LegacyFiles
from .names import BEST, CONFIG, DERIVED, HISTORY, LAST, METRICS, MODEL_CARD, PER_IMAGE, REMEDY, SKIPPED, SPLIT, SPLIT_NAMES
from .stage2 import Stage2Files


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


class Run(DerivedFiles, Stage2Files, LegacyFiles):
    """One stage-1 run folder (``train-seg --out``): config, split, checkpoints, history,
    metrics, post-processing rule, ONNX export, backend memo and the stage-2 classifier."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._config: Config | None = None
        self._weights_meta: tuple[int, dict] | None = None
        self.memo: dict[Any, Any] = {}  # objects built from the best weights (cleared when they change)
        self.notes: list[str] = []  # what a reader should be told once (derived files of other weights ignored)

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    def _p(self, name: str) -> Path:
        return self.root / name

    # -- the folder ---------------------------------------------------------------------
    def writing(self, what: str):
        """Hold the folder's write lock (``with run.writing("train-cls"): ...``): a second writer,
        in another process, is refused with one line naming this one."""
        return locks.hold(self.root, what)

    def writer_elsewhere(self) -> str | None:
        """The process writing into this run now (e.g. training it), when it is not this one."""
        return locks.holder(self.root)

    def _note(self, line: str) -> None:
        if line not in self.notes:
            self.notes.append(line)

    def require(self) -> Run:
        """Raise unless this is a run folder (it has a saved config)."""
        if self.root.exists() and not self.root.is_dir():
            raise PneumoscopeError(f"{self.root}: is a file, not a run folder")
        if not self._p(CONFIG).is_file():
            raise PneumoscopeError(f"{self.root}: not a run folder (no {CONFIG})")
        return self

    def create(self) -> None:
        """Create the folder; remove temporary files a killed command left behind."""
        if self.root.exists() and not self.root.is_dir():
            raise PneumoscopeError(f"{self.root}: is a file, not a folder; choose another --out")
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in (self.root, self.stage2_dir):
            for pattern in ("*.tmp", "*.tmp.onnx"):
                for tmp in folder.glob(pattern):
                    tmp.unlink(missing_ok=True)

    def clear_derived(self) -> list[str]:
        """Remove what was derived from earlier weights (ONNX export, backend choice,
        post-processing rule, stage-2 classifier); returns the names removed."""
        gone = []
        for stale in legacy.old_export_files(self.root):
            stale.unlink()
            gone.append(stale.name)
        for name in DERIVED:
            path = self._p(name)
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
            gone.append(name)
        self.memo.clear()
        return gone

    # -- config -------------------------------------------------------------------------
    def read_config(self) -> Config:
        """The resolved config saved in the run (read once, then remembered)."""
        if self._config is None:
            self.require()
            self._config = config_mod.load(self._p(CONFIG))
        return self._config

    def write_config(self, cfg: Config) -> None:
        """Save the resolved config."""
        atomic_write(self._p(CONFIG), config_mod.dump(cfg))
        self._config = cfg

    def config_sha256(self) -> str:
        """Short hash of the saved config (identifies the model in API answers)."""
        path = self._p(CONFIG)
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else ""

    # -- split --------------------------------------------------------------------------
    @staticmethod
    def split_text(split: pd.DataFrame) -> str:
        """The split as saved (its hash ties the weights to it)."""
        return split.to_csv(index=False)

    def read_split(self) -> pd.DataFrame | None:
        """``id, patient_id, label, split`` of the run's images, or None when there is none."""
        path = self._p(SPLIT)
        if not path.is_file():
            return None
        try:
            split = pd.read_csv(path, dtype={"id": str, "patient_id": str}, keep_default_na=False)
        except (ValueError, pd.errors.ParserError) as exc:
            raise schema.fail(path, None, f"is not a readable CSV ({one_line(exc)[:120]})", REMEDY[SPLIT]) from exc
        for col in ("id", "split"):
            if col not in split.columns:
                raise schema.fail(path, col, "is missing (a column)", REMEDY[SPLIT])
        bad = sorted(set(split["split"]) - set(SPLIT_NAMES))
        if bad:
            raise schema.fail(path, "split", f"holds {bad[0]!r}, not one of {', '.join(SPLIT_NAMES)}", REMEDY[SPLIT])
        return split

    def write_split(self, split: pd.DataFrame) -> None:
        """Save the train/val/test assignment."""
        atomic_write(self._p(SPLIT), self.split_text(split))

    def training_ids(self) -> set[str]:
        """Ids of the images the segmentation model trained on."""
        split = self.read_split()
        return set() if split is None else set(split.loc[split["split"] == "train", "id"])

    # -- history ------------------------------------------------------------------------
    def write_history(self, fields: list[str], rows: list[dict]) -> None:
        """history.csv: one row per epoch."""
        write_csv(self._p(HISTORY), fields, rows)

    def read_history(self) -> pd.DataFrame:
        """The per-epoch history."""
        path = self._p(HISTORY)
        if not path.is_file():
            raise PneumoscopeError(f"{self.root}: no {HISTORY} (was training started?)")
        return pd.read_csv(path)

    # -- weights ------------------------------------------------------------------------
    def has_weights(self) -> bool:
        """Whether best weights are there."""
        return self._p(BEST).is_file()

    def weights_path(self) -> Path:
        """The best weights file, checked to exist."""
        path = self._p(BEST)
        if not path.is_file():
            self._refuse_legacy()
            raise PneumoscopeError(f"{self.root}: no trained weights ({BEST}); was training finished?")
        return path

    def save_weights(self, state_dict: dict, cfg: Config, split: pd.DataFrame, train_state: dict) -> None:
        """Save the best weights (safetensors) with the config, the split's hash and the epoch."""
        from safetensors.torch import save_file

        meta = {"format": "pneumoscope-unet/1", "weights_id": uuid.uuid4().hex,
                "config": json.dumps(config_mod.to_dict(cfg)), "split_sha": _sha(self.split_text(split).encode()),
                "state": json.dumps({k: v for k, v in train_state.items() if k != "history"})}
        tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
        write_via_tmp(self._p(BEST), lambda tmp: save_file(tensors, str(tmp), metadata=meta))
        self.memo.clear()
        self._weights_meta = None

    def weights_meta(self) -> dict:
        """The header of the best weights: weights id, config, split hash, training state."""
        from safetensors import safe_open

        path = self.weights_path()
        stamp = path.stat().st_mtime_ns
        if self._weights_meta is None or self._weights_meta[0] != stamp:
            try:
                with safe_open(str(path), "pt") as fh:
                    meta = fh.metadata() or {}
            except Exception as exc:  # safetensors raises its own error types for cut or foreign files
                raise PneumoscopeError(f"{path}: unreadable weights ({one_line(exc)})") from exc
            if "config" not in meta:
                raise PneumoscopeError(f"{path}: not weights written by pneumoscope (no config in its header)")
            schema.check(meta, schema.WEIGHTS_HEADER, f"{path} (header)", REMEDY[BEST])
            for key in ("config", "state"):
                try:
                    value = json.loads(meta[key])
                except ValueError:
                    value = None
                if not isinstance(value, dict):
                    raise schema.fail(f"{path} (header)", key, "is not a JSON mapping", REMEDY[BEST])
            self._weights_meta = (stamp, meta)
        return self._weights_meta[1]

    def weights_id(self) -> str:
        """Identifies the current best weights (derived files record it)."""
        return self.weights_meta()["weights_id"]

    def weights_config(self) -> dict:
        """The config (as a mapping) the best weights were trained with, read from their header
        without loading them. Refuses weights that do not belong to the saved split (a retraining
        interrupted between writing its split and its first weights)."""
        meta = self.weights_meta()
        split = self.read_split()
        if split is not None and _sha(self.split_text(split).encode()) != meta["split_sha"]:
            raise PneumoscopeError(f"{self.root}: its weights were trained on another split than the saved one "
                                   "(an interrupted retraining?); train again into this folder")
        return json.loads(meta["config"])

    def load_weights(self) -> tuple[dict, dict]:
        """The best weights (state dict) and the config (as a mapping) they were trained with."""
        from safetensors.torch import load_file

        cfg = self.weights_config()
        return load_file(str(self.weights_path())), cfg

    def has_resume_state(self) -> bool:
        """Whether a resume checkpoint is there."""
        return self._p(LAST).is_file()

    def save_resume_state(self, payload: dict) -> None:
        """The resume checkpoint: weights, optimizer, scheduler, early-stopping and RNG state."""
        import torch

        write_via_tmp(self._p(LAST), lambda tmp: torch.save(payload, tmp))

    def load_resume_state(self) -> dict:
        """The resume checkpoint (tensors and plain values only: ``weights_only=True``)."""
        import pickle

        import torch

        path = self._p(LAST)
        if not path.is_file():
            raise PneumoscopeError(f"{self.root}: nothing to resume (no {LAST}); train without --resume")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            text = one_line(exc)
            found = re.search(r"unsupported (GLOBAL \S+|[^.]*)", text, re.IGNORECASE)
            if "Weights only load failed" in text and found:  # torch refused a global: code, not data
                raise PneumoscopeError(f"{path}: not a pneumoscope checkpoint (unsafe pickle refused: {found.group(0)[:120]}); "
                                       "delete it and train without --resume") from exc
            raise PneumoscopeError(f"{path}: cannot resume from it, the file is cut short or corrupt "
                                   f"({text[:160]}); train again without --resume") from exc
        except (RuntimeError, EOFError, OSError, ValueError) as exc:
            raise PneumoscopeError(f"{path}: cannot resume from it, the file is cut short or corrupt "
                                   f"({one_line(exc)[:160]}); train again without --resume") from exc
        if not isinstance(state, dict) or "model" not in state:
            raise PneumoscopeError(f"{path}: not a pneumoscope checkpoint (no model state in it); train again without --resume")
        return state

    # -- metrics and skipped items ------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        """Where the test-split metrics are."""
        return self._p(METRICS)

    def metrics_path_for(self, data: str | None, split: str = "test") -> Path:
        """Where metrics go: the run's own file for its own test split; beside it, named after the
        other dataset and/or the split, for anything else."""
        parts = []
        if data is not None:
            parts.append("".join(c if c.isalnum() or c in "-_" else "-" for c in Path(str(data)).resolve().name).strip("-") or "data")
        if split != "test" or data is not None:
            parts.append(split)
        return self._p("metrics-" + "-".join(parts) + ".json") if parts else self.metrics_path

    def write_metrics(self, metrics: dict, path: Path | None = None) -> Path:
        """Save metrics (to the run's own metrics file unless ``path`` says otherwise); returns the path."""
        path = path or self.metrics_path
        write_json(path, metrics)
        return path

    def read_metrics(self) -> dict:
        """The saved test-split metrics."""
        return json.loads(self.metrics_path.read_text())

    def write_per_image(self, table: pd.DataFrame) -> None:
        """``per_image.csv``: what each test image's metrics are made of (for paired comparisons)."""
        atomic_write(self._p(PER_IMAGE), table.to_csv(index=False))

    def read_per_image(self) -> pd.DataFrame | None:
        """The per-image test results, or None."""
        path = self._p(PER_IMAGE)
        return pd.read_csv(path, dtype={"id": str, "patient_id": str}, keep_default_na=False) if path.is_file() else None

    def write_skipped(self, skipped: list[BadItemError]) -> None:
        """List skipped items (``--skip-bad``) in ``skipped.csv``; nothing is dropped silently."""
        path = self._p(SKIPPED)
        if not skipped:
            path.unlink(missing_ok=True)
            return
        write_csv(path, ["id", "path", "reason"], ({"id": e.item_id, "path": e.path, "reason": e.reason} for e in skipped))

    def write_model_card(self, text: str) -> Path:
        """``MODEL_CARD.md`` (removed with the other derived files when new weights replace these)."""
        atomic_write(self._p(MODEL_CARD), text)
        return self._p(MODEL_CARD)

