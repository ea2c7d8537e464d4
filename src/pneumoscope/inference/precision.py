"""Reduced precision chosen by what it does to the answer (accuracy control, as OpenVINO's NNCF
keeps int8 only while a validation metric holds).

The candidates this machine has: ``bf16`` (PyTorch autocast, channels_last) where the hardware runs
it natively (AVX512-BF16 or AMX CPUs, CUDA), ``fp16`` on CUDA, and ``int8`` on CPU — ONNX Runtime
static quantisation (QDQ, per-channel int8 weights, uint8 activations) calibrated on up to
``inference.calibration_images`` of the run's own training images. Each is judged against eager
float32 on up to ``inference.max_validation_images`` of the run's validation images, through
everything ``predict`` does after the network: ``dice_kaggle`` and ``dice_pos`` of the masks with the
run's post-processing rule, and the stage-2 decision of every image. A precision is *accepted*
when both metrics drop by at most ``inference.max_metric_drop`` (0.005) and no decision changes.

The one calibrated int8 model is judged on each runtime that runs it — ``int8`` on OpenVINO (1.6x
faster than ONNX Runtime on AVX-512 VNNI here, and its kernels can be held to AVX2 to measure that
CPU), ``int8-onnx`` on ONNX Runtime (``int8`` where OpenVINO is not installed) — because the runtimes
round differently: on a real run one of them flipped a stage-2 decision and the other did not. Each
entry names its backend; only a backend judged and accepted is offered.

The precision record (a derived file of the weights, written by folders/derived.py) holds every measurement; the
``auto`` backend offers only accepted precisions, float32 stays the reference and the fallback, and
a run whose validation images cannot be read is recorded as such: float32 only, and said. Reduced
precision rounds differently on different instruction sets (int8 on AVX2 multiplies through 16-bit
sums that can saturate, VNNI does not), so a record holds for the :func:`arithmetic` it was judged
with, and the run keeps one record per arithmetic: a run folder shared by two kinds of machines is
judged once on each, on the same int8 model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..errors import PneumoscopeError, one_line
from ..files import file_sha256
from ..folders import Run
from ..stage1.metrics import metrics_of, per_image_counts
from .backends import OnnxBackend, OpenVinoBackend, TorchBackend, bf16_supported, openvino_available
from .machine import arithmetic

REDUCED = ("bf16", "fp16", "int8")
@dataclass
class Evidence:
    """What precision is judged on: validation images at the model size (uint8), their masks and
    metadata, and the training images that calibrate int8."""

    images: np.ndarray
    truths: np.ndarray
    metas: list[dict]
    calibration: np.ndarray


def evidence(run: Run, cfg: Config) -> Evidence:
    """The run's validation and calibration images (one line saying why when there are none)."""
    from ..data.prepare import prepare_data
    from ..stage1.pipeline import split_of_rows

    split = run.read_split()
    if split is None:
        raise PneumoscopeError("the run has no split, so no validation images")
    try:
        cache, _ = prepare_data(cfg)
    except (PneumoscopeError, OSError) as exc:
        raise PneumoscopeError(f"its training data cannot be read here ({one_line(exc)[:160]})") from exc
    part = split_of_rows(cache, split)
    has_mask = cache.index["has_mask"].to_numpy() if "has_mask" in cache.index else np.ones(len(part), bool)
    val = np.flatnonzero((part == "val") & has_mask)[: cfg.inference.max_validation_images]
    train = np.flatnonzero(part == "train")[: cfg.inference.calibration_images]
    if len(val) == 0 and "fold" in split.columns:  # a fold ensemble: every image trained a member; none is left out
        seen = np.flatnonzero((part == "train") & has_mask)  # calibrate on some, judge the drop on the others
        n_cal = min(cfg.inference.calibration_images, len(seen) // 2)
        train, val = seen[:n_cal], seen[n_cal:][: cfg.inference.max_validation_images]
    if len(val) == 0:
        raise PneumoscopeError("its split has no validation images with masks")
    metas = [{"sex": str(r.get("sex", "") or ""), "age": r.get("age"), "view": str(r.get("view", "") or "")}
             for r in cache.index.iloc[val].to_dict("records")]
    return Evidence(np.asarray(cache.images[val]), np.asarray(cache.masks[val]), metas,
                    np.asarray(cache.images[train if len(train) else val]))


def build_int8(onnx_path: Path, out: Path, calibration_x: np.ndarray) -> Path:
    """ONNX Runtime static int8 of a float32 export: QDQ, per-channel int8 weights, uint8
    activations, ranges calibrated on ``calibration_x`` (standardised network inputs)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"image": x[None]} for x in calibration_x])

        def get_next(self):
            return next(self.items, None)

    tmp = out.with_name(out.name + ".tmp")
    quiet = logging.getLogger()  # ONNX Runtime's quantiser advises pre-processing on the root logger; not needed here
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        quantize_static(str(onnx_path), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        tmp.replace(out)
    finally:
        quiet.setLevel(level)
        tmp.unlink(missing_ok=True)
    return out


def _scores(probs: np.ndarray, cls: np.ndarray | None, ev: Evidence, rule, stage2, u8: np.ndarray) -> tuple[dict, np.ndarray | None]:
    """dice_kaggle and dice_pos with the rule applied, and the stage-2 decisions (None without stage 2)."""
    m = metrics_of(per_image_counts(rule.apply(probs), ev.truths), np.arange(len(probs)))
    decisions = None
    if stage2 is not None:
        decisions = stage2.probability(u8, probs, cls, ev.metas) >= stage2.threshold
    return {"dice_kaggle": round(m["dice_kaggle"], 6), "dice_pos": None if m["dice_pos"] != m["dice_pos"] else round(m["dice_pos"], 6)}, decisions


def candidates(run: Run, model: torch.nn.Module, device: torch.device, x_calib: np.ndarray, say) -> dict[str, object]:
    """The reduced-precision backends this machine can run, by precision name."""
    out: dict[str, object] = {}
    if device.type == "cuda":
        out["fp16"] = TorchBackend(model, device, "fp16", True)
    if bf16_supported(device):
        out["bf16"] = TorchBackend(model, device, "bf16", True)
    if device.type == "cpu":
        from .export import export_onnx

        int8 = run.current_int8()  # judged on another machine already: the same model, judged here too
        if int8 is None:
            onnx = run.current_onnx() or export_onnx(run)[0]
            say(f"calibrating int8 on {len(x_calib)} training image(s) ...")
            int8 = build_int8(onnx, run.int8_path, x_calib)
        if openvino_available():
            out["int8"] = OpenVinoBackend(int8, name="openvino-int8")
        out["int8-onnx" if out.get("int8") else "int8"] = OnnxBackend(int8, name="onnx-int8")
    return out


def judge(run: Run, model: torch.nn.Module, device: torch.device, stage2=None, say=lambda line: None) -> dict:
    """Judge every reduced precision on the run's validation images, save and return the record."""
    from ..config import from_dict
    from ..data.transforms import model_input
    from ..stage1.postprocess import Rule, load_rule

    cfg = from_dict(run.weights_config())
    max_drop = cfg.inference.max_metric_drop
    try:
        ev = evidence(run, cfg)
    except PneumoscopeError as exc:
        record = {"available": False, "reason": str(exc), "max_drop": max_drop, "precisions": {},
                  "arithmetic": arithmetic(device)}
        run.write_precision(record)
        return record
    say(f"judging reduced precision on {len(ev.images)} validation image(s) (once per run) ...")
    rule = load_rule(run) or Rule(cfg.train.threshold, 0.0, cfg.train.threshold)
    x, x_calib = model_input(ev.images), model_input(ev.calibration)
    reference = TorchBackend(model, device, "fp32", False)
    probs, cls = reference(x)
    ref_scores, ref_decisions = _scores(probs, cls, ev, rule, stage2, ev.images)
    record = {"available": True, "max_drop": max_drop, "validation_images": len(ev.images),
              "calibration_images": len(ev.calibration), "device": str(device), "arithmetic": arithmetic(device),
              "reference": {"precision": "fp32", **ref_scores, "ms_per_image": _ms(reference, x)}, "precisions": {}}
    for name, backend in candidates(run, model, device, x_calib, say).items():
        try:
            probs, cls = backend(x)
        except Exception as exc:  # a runtime that cannot run this model here (e.g. OpenVINO under an ISA limit)
            why = f"failed here ({exc.__class__.__name__}: {one_line(exc)[:160]})"
            say(f"precision {name} ({backend.name}): {why}; not used")
            record["precisions"][name] = {"drop": {}, "decision_flips": None, "accepted": False, "reason": why,
                                          "backend": backend.name, "ms_per_image": None}
            continue
        scores, decisions = _scores(probs, cls, ev, rule, stage2, ev.images)
        drops = {k: round(ref_scores[k] - scores[k], 6) for k in scores if scores[k] is not None and ref_scores[k] is not None}
        flips = 0 if decisions is None else int((decisions != ref_decisions).sum())
        reason = verdict(drops, flips, max_drop)
        record["precisions"][name] = {**scores, "drop": drops, "decision_flips": flips, "accepted": reason == "accepted",
                                      "reason": reason, "backend": backend.name, "ms_per_image": _ms(backend, x)}
    if run.int8_path.is_file():
        record["int8_sha256"] = file_sha256(run.int8_path)
    run.write_precision(record)
    return record


def verdict(drops: dict[str, float], flips: int, max_drop: float) -> str:
    """``accepted``, or why not: the metric that dropped most beyond ``max_drop``, or the decision flips."""
    worst = max(drops.values(), default=0.0)
    if worst > max_drop:
        return f"{max(drops, key=drops.get)} drops {worst:.4f} > {max_drop:g}"
    if flips:
        return f"{flips} stage-2 decision(s) change"
    return "accepted"


def _ms(backend, x: np.ndarray) -> float:
    """Best of two calls on (at most 4 of) ``x``, per image."""
    probe, best = x[:4], float("inf")
    for _ in range(2):
        t = time.perf_counter()
        backend(probe)
        best = min(best, time.perf_counter() - t)
    return round(best * 1000 / len(probe), 2)


def ran(entry: dict) -> bool:
    """Whether a precision's backend ran here (one that failed has a reason and no timing)."""
    return entry.get("ms_per_image") is not None


def describe(name: str, entry: dict, record: dict) -> str:
    """One line: what the validation images said of a precision."""
    if not ran(entry):
        return f"{name} ({entry.get('backend', '?')}): {entry['reason']}"
    drops = ", ".join(f"{k} {'-' if v > 0 else '+'}{abs(v):.4f}" for k, v in entry["drop"].items())
    return (f"{name} ({entry.get('backend', '?')}) on {record['validation_images']} validation image(s): {drops}, "
            f"{entry['decision_flips']} decision "
            f"flip(s): {entry['reason']} (max drop {record['max_drop']:g})")


def precision_notes(backend: str, record: dict | None, asked: str) -> list[str]:
    """Which precision predict uses and why, from the precision record (one line)."""
    if record is None:
        return [] if asked == "fp32" else ["float32: reduced precision not judged (the run is being written)"]
    if not record["available"]:
        return [f"float32: reduced precision not judged ({record['reason']})"]
    used = next((p for p in ("int8", "bf16", "fp16") if p in backend), "fp32")
    if used != "fp32":
        key, entry = next(((k, e) for k, e in record["precisions"].items() if e.get("backend") == backend),
                          (used, record["precisions"].get(used)))
        said = describe(key, entry, record) if entry else f"{used} was not judged on this machine's validation run"
        return [f"precision {used}{' (forced by --precision)' if asked == used else ''}: {said}"]
    others = [f"{n} ({e.get('backend', '?')}) {e['reason']}" for n, e in record["precisions"].items()]  # short: one line
    return ["precision fp32" + (": " + "; ".join(others) + " (pneumoscope export --run RUN shows what was measured)"
                                if others else " (no reduced precision on this machine)")]


def table(record: dict) -> list[str]:
    """The record as lines of a table (what export prints)."""
    if not record["available"]:
        return [f"reduced precision not judged: {record['reason']}; float32 only"]
    ref = record["reference"]
    lines = [f"precision on {record['validation_images']} validation image(s) (int8 calibrated on "
             f"{record['calibration_images']} training image(s)); accepted when dice_kaggle and dice_pos drop <= "
             f"{record['max_drop']:g} and no stage-2 decision changes:",
             f"  {'precision':<10}{'backend':<16}{'ms/img':>8}{'dice_kaggle':>13}{'dice_pos':>10}  verdict",
             f"  {'fp32':<10}{'torch-fp32':<16}{ref['ms_per_image']:>8.1f}{ref['dice_kaggle']:>13.4f}"
             f"{_num(ref['dice_pos']):>10}  reference"]
    for name, e in record["precisions"].items():
        if not ran(e):
            lines.append(f"  {name:<10}{e['backend']:<16}{'-':>8}{'-':>13}{'-':>10}  {e['reason']}")
            continue
        lines.append(f"  {name:<10}{e['backend']:<16}{e['ms_per_image']:>8.1f}{e['dice_kaggle']:>13.4f}{_num(e['dice_pos']):>10}  "
                     f"{e['reason']}" + (f" ({e['decision_flips']} flips)" if e["accepted"] is False and e["decision_flips"] else ""))
    if not record["precisions"]:
        lines.append("  (no reduced precision on this machine)")
    return lines


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"
