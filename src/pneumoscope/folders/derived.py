"""The files derived from a run's weights (post-processing rule, ONNX export and its parity report,
the precision record and its int8 model, the backend memo and probe): each is stamped with the id of
the weights it came from and read as absent when the weights changed, so a retraining killed at any
point never pairs new weights with stale artefacts. Mixed into :class:`~pneumoscope.folders.run.Run`,
which supplies the folder, the weights id and the notes channel."""

from __future__ import annotations

import json
from pathlib import Path

from .. import schema
from ..errors import one_line
from ..files import file_sha256, read_json, write_json, write_via_tmp
from . import legacy
from .names import BACKEND_MEMO, BACKEND_PROBE, EXPORT_REPORT, INT8_ONNX, ONNX, POSTPROCESS, PRECISION, REMEDY, S2_SUMMARY, STALE_NOTE


class DerivedFiles:
    """Reading and writing the derived files (see the module's docstring)."""

    root: Path

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
        data = legacy.one_record_precision(data)
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
