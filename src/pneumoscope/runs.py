"""The run folder: every file name in it, and how each file is written and read.

A *run* is what ``train-seg`` writes (one U-Net and what was derived from it); a *study* is
what ``run`` writes (one run per encoder under ``seg/``, the tables, plots and the report).
No other module builds a path inside either: they ask a :class:`Run` or a :class:`Study`.

Safe to share: what inference loads is data, not pickles — the best weights in safetensors
(with the config and the split's hash in its header), the stage-2 classifier in XGBoost's
own format plus JSON. Only the resume checkpoint is a torch file, loaded with
``weights_only=True``. Every file is written to a temporary name and renamed.

Derived files (post-processing rule, ONNX export, backend memo, stage-2 classifier) record the
id of the weights they came from and are ignored when the weights changed, so a retraining
killed at any point never pairs new weights with stale artefacts.
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

from . import config as config_mod
from . import locks, schema
from .config import Config
from .errors import BadItemError, PneumoscopeError, one_line
from .files import atomic_write, file_sha256, json_text, read_json, write_csv, write_json, write_via_tmp

CONFIG = "config.yaml"
SPLIT = "split.csv"
HISTORY = "history.csv"
METRICS = "metrics.json"
SKIPPED = "skipped.csv"
POSTPROCESS = "postprocess.json"
ONNX = "model.onnx"
EXPORT_REPORT = "export.json"
BACKEND_MEMO = "backend.json"
BACKEND_PROBE = "backend-probe.npz"
PRECISION = "precision.json"  # which reduced precisions the validation images accept (inference/precision.py)
INT8_ONNX = "model-int8.onnx"
STAGE2 = "stage2"
BEST = "best.safetensors"
LAST = "last.pt"
S2_CLASSIFIER = "classifier.json"
S2_BOOSTER = "booster-{}.ubj"
S2_SUMMARY = "stage2.json"
S2_FEATURE_NAMES = "feature_names.json"
S2_TABLE2 = "table2.csv"
S2_FEATURES = "features.npz"
MODEL_CARD = "MODEL_CARD.md"
PER_IMAGE = "per_image.csv"
LEGACY_BEST, LEGACY_CLASSIFIER = "best.pt", "classifier.joblib"  # pickles written by pneumoscope 0.1

# What was derived from a run's weights: removed when new weights replace them.
DERIVED = (ONNX, EXPORT_REPORT, BACKEND_MEMO, BACKEND_PROBE, POSTPROCESS, STAGE2, MODEL_CARD, PRECISION, INT8_ONNX)
SPLIT_NAMES = ("train", "val", "test")

# Derived files that change answers: what to say when they belong to other weights, and what to
# do when they are damaged. (The export, backend memo and probe are caches, rebuilt silently.)
STALE_NOTE = {POSTPROCESS: "the post-processing rule was searched for other weights: the plain threshold is used "
                           "(rerun train-seg to search it again)",
              S2_SUMMARY: "stage 2 was fitted on other weights: no P(pneumothorax) (rerun train-cls)"}
REMEDY = {POSTPROCESS: "delete it to use the plain threshold, or rerun train-seg",
          S2_SUMMARY: "rerun train-cls", S2_CLASSIFIER: "rerun train-cls", S2_FEATURE_NAMES: "rerun train-cls",
          EXPORT_REPORT: "delete it (the export is made again when needed)",
          BACKEND_MEMO: "delete it (the backend is chosen again when needed)",
          PRECISION: "delete it (reduced precision is judged again when needed, or by pneumoscope export)",
          BEST: "train again into this folder", SPLIT: "train again into this folder"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


class Run:
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
        for stale in self.root.glob(f"{ONNX}*.data"):  # weights beside an export of pneumoscope <= 0.2.0
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

    def legacy_best(self) -> Path | None:
        """The pickled best checkpoint of pneumoscope 0.1, when it has not been converted."""
        path = self._p(LEGACY_BEST)
        return path if path.is_file() and not self.has_weights() else None

    def legacy_classifier(self) -> Path | None:
        """The pickled stage-2 classifier of pneumoscope 0.1, when it has not been converted."""
        path = self.stage2_dir / LEGACY_CLASSIFIER
        return path if path.is_file() and not (self.stage2_dir / S2_CLASSIFIER).is_file() else None

    def legacy_files(self) -> list[str]:
        """Pickled files of an older pneumoscope that this version no longer loads."""
        return [str(p.relative_to(self.root)) for p in (self.legacy_best(), self.legacy_classifier()) if p is not None]

    def _refuse_legacy(self) -> None:
        old = self.legacy_files()
        if old:
            raise PneumoscopeError(f"{self.root}: written by an older pneumoscope (pickled {', '.join(old)}, which can run "
                                   f"code when loaded); if you trust it, convert it once: pneumoscope upgrade-run --run {self.root} --trust-pickles")

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

    # -- derived files, tied to the weights ----------------------------------------------
    def _write_derived(self, path: Path, data: dict) -> None:
        write_json(path, {**data, "weights_id": self.weights_id()})

    def _of_current_weights(self, weights_id: object) -> bool:
        """Whether a derived file stamped with ``weights_id`` belongs to the current best weights."""
        return self.has_weights() and weights_id == self.weights_id()

    def _read_derived(self, path: Path, fields: dict | None = None) -> dict | None:
        """A derived file checked against its schema: None when it is missing or belongs to other
        weights (said once in :attr:`notes` for the files that change answers); a damaged one raises."""
        if not path.is_file():
            return None
        remedy = REMEDY.get(path.name, "delete it")
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:  # every file here is written whole (tmp + rename)
            raise schema.fail(path, None, f"is not valid JSON ({one_line(exc)[:80]})", remedy) from exc
        schema.check(data, {"weights_id": schema.WEIGHTS_ID}, path, remedy)
        if not self._of_current_weights(data["weights_id"]):
            if path.name in STALE_NOTE:
                self._note(f"{self.root}: {STALE_NOTE[path.name]}")
            return None
        return schema.check(data, fields, path, remedy) if fields else data

    def adopt_derived(self) -> list[str]:
        """Stamp the derived files with the current weights id (only for the same weights saved
        anew, as by ``upgrade-run``); returns the names stamped."""
        stamped = []
        for path in (self._p(POSTPROCESS), self._p(EXPORT_REPORT), self._p(BACKEND_MEMO), self.stage2_dir / S2_SUMMARY):
            data = read_json(path) if path.is_file() else None
            if isinstance(data, dict):
                self._write_derived(path, {k: v for k, v in data.items() if k != "weights_id"})
                stamped.append(path.name)
        return stamped

    def read_postprocess(self) -> dict | None:
        """The post-processing rule searched on validation (with its scores), or None."""
        rule = self._read_derived(self._p(POSTPROCESS), schema.POSTPROCESS)
        if rule is not None and rule["bottom"] > rule["top"]:
            raise schema.fail(self._p(POSTPROCESS), "bottom", f"is {rule['bottom']}, above top {rule['top']}", REMEDY[POSTPROCESS])
        return rule

    def write_postprocess(self, rule: dict) -> None:
        """Save the post-processing rule."""
        self._write_derived(self._p(POSTPROCESS), rule)

    @property
    def onnx_path(self) -> Path:
        """Where the ONNX export of the best weights goes."""
        return self._p(ONNX)

    def current_onnx(self) -> Path | None:
        """The ONNX export when it exists, passed its parity check and is of the current weights."""
        report = self._read_derived(self._p(EXPORT_REPORT), schema.EXPORT_REPORT)
        ok = report is not None and report.get("passed") and self.onnx_path.is_file()
        if ok and isinstance(report.get("sha256"), str):  # the file the parity check passed, not another
            self._check_sha256(self.onnx_path, report["sha256"], EXPORT_REPORT,
                               "delete it (it is exported again when needed) or run pneumoscope export")
        return self.onnx_path if ok else None

    @staticmethod
    def _check_sha256(path: Path, digest: str, record: str, remedy: str) -> None:
        """A model file must be the one its record measured: one line naming it when it is not."""
        if file_sha256(path) != digest:
            raise schema.fail(path, None, f"does not match the sha256 its {record} records (damaged or replaced)", remedy)

    def write_export_report(self, report: dict) -> None:
        """What the export's parity check measured."""
        self._write_derived(self._p(EXPORT_REPORT), report)

    def _precision_file(self) -> dict | None:
        """``precision.json``: one record per machine arithmetic (``records``), the one written last
        (``latest``) and the sha256 of the int8 model every record judged. A file of one record (as
        written before records were kept per machine) reads as that one record."""
        data = self._read_derived(self._p(PRECISION))
        if data is None:
            return None
        path, remedy = self._p(PRECISION), REMEDY[PRECISION]
        if "records" not in data:  # one record: its own arithmetic (none recorded: matches no machine)
            data = {"records": {str(data.get("arithmetic", "")): data}, "latest": str(data.get("arithmetic", "")),
                    "int8_sha256": data.get("int8_sha256")}
        records = data["records"]
        if not isinstance(records, dict) or not records:
            raise schema.fail(path, "records", f"is {records!r:.60}, not a mapping of records", remedy)
        for key, record in records.items():
            schema.check(record, schema.PRECISION, path, remedy, f"records.{key}.")
        return data

    def read_precision(self, arithmetic: str | None = None) -> dict | None:
        """What the validation images said of each reduced precision with this ``arithmetic`` (see
        ``inference.precision.arithmetic``; None: the record written last). None: not judged."""
        data = self._precision_file()
        if data is None:
            return None
        record = data["records"].get(data.get("latest") if arithmetic is None else arithmetic)
        return None if record is None else {**record, "int8_sha256": data.get("int8_sha256")}

    def write_precision(self, record: dict) -> None:
        """Save a precision record beside the other machines' (tied to the weights, like every derived
        file). Records that judged another int8 model than this one's are dropped: that file is gone."""
        old = self._precision_file() or {"records": {}}
        digest = record.get("int8_sha256")
        keep = {k: v for k, v in old["records"].items() if old.get("int8_sha256") == digest or digest is None}
        key = str(record.get("arithmetic", ""))
        keep[key] = {k: v for k, v in record.items() if k != "int8_sha256"}
        self._write_derived(self._p(PRECISION), {"records": keep, "latest": key,
                                                 "int8_sha256": digest if digest is not None else old.get("int8_sha256")})

    @property
    def int8_path(self) -> Path:
        """Where the int8 ONNX model calibrated on the run's training images goes."""
        return self._p(INT8_ONNX)

    def current_int8(self) -> Path | None:
        """The int8 model the precision record judged (its sha256 checked), or None."""
        digest = (self._precision_file() or {}).get("int8_sha256")
        if not isinstance(digest, str) or not self.int8_path.is_file():
            return None
        self._check_sha256(self.int8_path, digest, PRECISION, REMEDY[PRECISION] + f"; delete {INT8_ONNX} too")
        return self.int8_path

    def read_backend_memo(self) -> dict:
        """Backend choices remembered per machine (for the current weights)."""
        memo = self._read_derived(self._p(BACKEND_MEMO)) or {}
        for key, entry in memo.items():
            if key != "weights_id":
                schema.check(entry, {"backend": schema.Text()}, self._p(BACKEND_MEMO), REMEDY[BACKEND_MEMO], f"{key}.")
        return memo

    def write_backend_memo(self, memo: dict) -> None:
        """Save the backend choices."""
        self._write_derived(self._p(BACKEND_MEMO), {k: v for k, v in memo.items() if k != "weights_id"})

    def read_backend_probe(self) -> tuple | None:
        """The probe images of the backend choice and eager float32's probabilities on them (for
        re-verifying a remembered backend without running PyTorch), or None."""
        import numpy as np

        path = self._p(BACKEND_PROBE)
        try:
            with np.load(path) as data:
                if not self._of_current_weights(str(data["weights_id"])):
                    return None
                return data["x"], data["ref"]
        except (OSError, KeyError, ValueError):  # missing, cut short or foreign
            return None

    def write_backend_probe(self, x, ref) -> None:
        """Save the probe and its float32 reference (written to a temporary name, then renamed)."""
        import numpy as np

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, x=x, ref=ref, weights_id=np.array(self.weights_id()))

        write_via_tmp(self._p(BACKEND_PROBE), write)

    # -- stage 2 ------------------------------------------------------------------------
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


def holds_a_model(folder: str | Path) -> bool:
    """Whether ``folder`` is a run folder (trained weights) or a study folder (its config and runs)."""
    folder = Path(folder)
    return (folder / BEST).is_file() or ((folder / CONFIG).is_file() and (folder / "seg").is_dir())


def _data_of(cfg: Config) -> tuple[str, ...]:
    """The data a config trains on, as resolved folder names (empty: the synthetic phantoms)."""
    paths = ([cfg.data.path] if cfg.data.path else []) + list(cfg.data.extra_paths)
    return tuple(str(Path(p).expanduser().resolve()) for p in paths)


class Study:
    """A study folder (``pneumoscope run --out``): one run per encoder, tables, plots, report."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._runs: dict[str, Run] = {}

    def create(self) -> None:
        """Create the folder and its sub-folders."""
        if self.root.exists() and not self.root.is_dir():
            raise PneumoscopeError(f"{self.root}: is a file, not a folder; choose another --out")
        for sub in ("", "tables", "plots"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def seg_run(self, encoder: str) -> Run:
        """The stage-1 run of one encoder (the same object each time, so what it loaded is reused)."""
        return self._runs.setdefault(encoder, Run(self.root / "seg" / encoder))

    def check_data(self, cfg: Config) -> None:
        """Refuse a folder that holds a study of other data (its config says which): a study on
        user data never replaces the demo's, nor one study another's."""
        path = self.root / CONFIG
        if not path.is_file():
            return
        try:
            earlier = config_mod.load(path)
        except PneumoscopeError:
            return  # a config no longer valid: the new study replaces it
        if _data_of(earlier) != _data_of(cfg):
            what = ", ".join(_data_of(earlier)) or "the synthetic phantoms"
            raise PneumoscopeError(f"{self.root}: holds a study of other data ({what}); name another --out, or delete it")

    def write_config(self, cfg: Config) -> None:
        """Save the resolved config of the study."""
        atomic_write(self.root / CONFIG, config_mod.dump(cfg))

    def write_table(self, name: str, table: pd.DataFrame) -> Path:
        """``tables/<name>.csv``."""
        path = self.root / "tables" / f"{name}.csv"
        atomic_write(path, table.to_csv(index=False, float_format="%.4f"))
        return path

    def write_metrics(self, metrics: dict) -> None:
        """The study's ``metrics.json``."""
        write_json(self.root / METRICS, metrics)

    def plot_path(self, name: str) -> Path:
        """``plots/<name>.png``."""
        return self.root / "plots" / f"{name}.png"

    @property
    def model_card_path(self) -> Path:
        """The study's copy of its best run's ``MODEL_CARD.md``."""
        return self.root / MODEL_CARD

    def write_report(self, page: str) -> Path:
        """``report.html``."""
        path = self.root / "report.html"
        atomic_write(path, page)
        return path
