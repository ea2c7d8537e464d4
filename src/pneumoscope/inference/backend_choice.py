"""Choose the inference backend on this machine: fastest among those that match float32.

Candidates: PyTorch float32 (channels_last), ONNX Runtime and OpenVINO float32 (of the export that
passed its parity check), the reduced precisions the run's validation images accepted (bf16/fp16
autocast; int8 on each runtime it was judged and accepted on, OpenVINO, ONNX Runtime: :mod:`.precision`) and eager
float32 PyTorch itself, which is always valid. Float32 paths are
compared with eager float32 on a probe of the real inputs: they must agree within 1e-4 and give the
same masks wherever the reference is decided (more than 1e-3 from a threshold). A reduced precision
forced without a precision record is held to mask Dice >= 0.995 on every probe image. A path that
fails is dropped and the reason said. The fastest passing one is kept,
remembered per machine in the run folder and re-verified on each call's probe.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import PneumoscopeError, one_line
from ..folders import Run
from ..stage1.metrics import per_image_dice
from .agreement import DICE_MIN, FP32_TOLERANCE, masks_agree
from .backends import OnnxBackend, OpenVinoBackend, TorchBackend, bf16_supported, openvino_available
from .machine import machine_key


def _ms_per_image(backend, x: np.ndarray, calls: int = 2) -> float:
    """Best of ``calls`` timed calls, per image. The backend has already run once on ``x`` (its parity
    check or the reference), its warm-up; one timed call alone was noisy enough on a busy 2-core
    machine to pick a backend 1.7x slower than the best (ONNX Runtime's second run still plans memory)."""
    best = float("inf")
    for _ in range(calls):
        t = time.perf_counter()
        backend(x)
        best = min(best, time.perf_counter() - t)
    return best * 1000 / len(x)


def verify(candidate, reduced: bool | str, ref_prob: np.ndarray, x: np.ndarray,
           thresholds: tuple[float, ...] = (0.5,)) -> tuple[bool, str]:
    """Does ``candidate`` reproduce float32 on ``x``? Returns (ok, what was measured).

    Float32 paths: max |probability difference| below 1e-4 and the same masks wherever the reference
    is decided. Reduced precision: mask Dice >= 0.995 against float32 on every image."""
    prob, _ = candidate(x)
    if reduced == JUDGED:
        return True, "judged on the validation images"
    if reduced:
        dice = min(float(per_image_dice(prob > t, ref_prob > t).min()) for t in thresholds)
        return dice >= DICE_MIN, f"min mask Dice {dice:.4f}"
    diff = float(np.abs(prob - ref_prob).max())
    same = masks_agree(prob, ref_prob, thresholds)
    return diff < FP32_TOLERANCE and same, f"max |diff| {diff:.2e}, masks {'agree' if same else 'differ'}"


JUDGED = "judged"  # a reduced precision the validation images accepted (or one forced): no probe rule applies


def accepted(record: dict | None) -> set[str]:
    """The reduced precisions a precision record accepts."""
    return {k for k, v in (record or {}).get("precisions", {}).items() if v.get("accepted")}


def int8_runtimes(record: dict | None, only_accepted: bool = False) -> list[str]:
    """The backends the record judged int8 on (``openvino-int8``, ``onnx-int8``): the only ones offered."""
    return [str(e.get("backend", "onnx-int8")) for k, e in (record or {}).get("precisions", {}).items()
            if k.startswith("int8") and (e.get("accepted") or not only_accepted)]


def _file_backend(name: str, path: Path, threads: int | None):
    """An ONNX Runtime or OpenVINO backend of an exported file, by backend name."""
    return (OpenVinoBackend if name.startswith("openvino-") else OnnxBackend)(path, threads, name=name)


@dataclass(frozen=True)
class Request:
    """What a backend is chosen for: the device, what the user asked (backend, precision, compile),
    what the run has (its ONNX export and int8 model, its precision record) and how the masks are cut."""

    device: torch.device
    backend: str = "auto"  # auto, torch, onnx, openvino
    precision: str = "auto"  # auto, fp32, bf16, fp16, int8
    compile: bool = False
    onnx_path: Path | None = None  # the run's float32 export (None: no ONNX candidates)
    int8_path: Path | None = None  # the run's calibrated int8 model
    record: dict | None = None  # the run's precision record for this machine (:mod:`.precision`)
    threads: int | None = None
    thresholds: tuple[float, ...] = (0.5,)  # where masks are cut: a candidate must agree there

    @property
    def key(self) -> str:
        """What a remembered choice holds for: this machine and this request."""
        ok = sorted({*accepted(self.record), *int8_runtimes(self.record, only_accepted=True)})  # int8 by runtime
        return (f"{machine_key(self.device)}|{self.backend}|{self.precision}|compile={self.compile}"
                f"|accepted={'+'.join(ok) or 'none'}")


def candidates(model: nn.Module, request: Request) -> list[tuple[object, bool | str]]:
    """(backend, check) pairs for the request, preferred first; check is False (a float32 path),
    True (reduced precision judged by agreement on the probe: no record) or :data:`JUDGED`.

    With a precision ``record`` (:mod:`.precision`), ``auto`` offers only the reduced precisions it
    accepted; a forced ``--precision`` is offered whatever the record says (the caller says what)."""
    r = request
    device, backend, precision, compile, record, threads = r.device, r.backend, r.precision, r.compile, r.record, r.threads
    onnx_path, int8_path = r.onnx_path, r.int8_path
    out: list[tuple[object, bool | str]] = []
    ok = accepted(record)
    if backend in ("auto", "torch"):
        for name in ("bf16", "fp16"):
            native = bf16_supported(device) if name == "bf16" else device.type == "cuda"
            if precision == name or (precision == "auto" and name in ok and native):
                out.append((TorchBackend(model, device, name, True, compile), JUDGED if record is not None else True))
        if precision in ("auto", "fp32"):
            out.append((TorchBackend(model, device, "fp32", True, compile), False))
    if int8_path is not None and precision in ("int8", "auto"):
        for name in int8_runtimes(record, only_accepted=precision == "auto"):
            if backend in ("auto", name.split("-")[0]):
                out.append((_file_backend(name, int8_path, threads), JUDGED))
    if onnx_path is not None and precision in ("auto", "fp32"):
        if backend in ("auto", "openvino") and device.type == "cpu" and openvino_available():
            out.append((OpenVinoBackend(onnx_path, threads), False))
        if backend in ("auto", "onnx"):
            out.append((OnnxBackend(onnx_path, threads), False))
    if not out:
        raise PneumoscopeError(f"no {backend} backend with precision {precision} on {device.type}")
    return out


def choose(model: nn.Module | Callable[[], nn.Module], x: np.ndarray, request: Request, memo: Run | None = None,
           say=lambda line: None) -> tuple[object, list[str]]:
    """The backend to use and lines saying what was measured or why something fell back.

    Every candidate is checked against eager float32 PyTorch on (at most two images of) the probe
    batch, then the passing ones are timed; eager float32 itself is always valid, so a prediction
    never fails because a faster path did not qualify. ``memo``: the run whose remembered choices
    are read and updated (None: nothing remembered); the probe and float32's output on it are kept
    there, so a remembered choice is re-verified by running only that backend (an ONNX one then
    needs no PyTorch model at all). ``model``: the U-Net, or a function that builds it when needed.
    ``say`` reports progress on a first call."""
    get_model = (lambda: model) if isinstance(model, nn.Module) else model
    device, key = request.device, request.key
    known = memo.read_backend_memo() if memo is not None else {}
    notes: list[str] = []
    if key in known:
        stored = memo.read_backend_probe()
        chosen, how = _reverify(known[key]["backend"], stored, get_model, x, request)
        if chosen is not None:
            return chosen, [f"backend {chosen.name} (remembered for this machine; {how})"]
        notes.append(how)
    probe = x[:2]
    ref = TorchBackend(get_model(), device, "fp32", False)
    ref_prob, _ = ref(probe)
    cands = candidates(get_model(), request)
    say(f"choosing a backend: checking {len(cands) + 1} candidates against float32 on {len(probe)} image(s)")
    timings = {}
    passing = []
    for cand, reduced in cands:
        try:
            ok, how = verify(cand, reduced, ref_prob, probe, request.thresholds)
            if ok:
                timings[cand.name] = _ms_per_image(cand, probe)
        except Exception as exc:  # a runtime that cannot run this model here: one line, out of the running
            notes.append(f"{cand.name} failed here ({exc.__class__.__name__}: {one_line(exc)[:160]}); not used")
            continue
        if not ok:
            notes.append(f"{cand.name} does not match float32 ({how}); not used")
            continue
        passing.append(cand)
    timings[ref.name] = _ms_per_image(ref, probe)
    passing.append(ref)  # always valid
    if request.backend == "auto":
        best = min(passing, key=lambda c: timings[c.name])
    else:
        best = passing[0]
    notes.append(f"backend {best.name}: " + ", ".join(f"{k} {v:.1f} ms/img" for k, v in timings.items()))
    if memo is not None:
        known[key] = {"backend": best.name, "ms_per_image": timings}
        try:
            with memo.writing("predict (backend choice)"):
                memo.write_backend_memo(known)
                memo.write_backend_probe(probe, ref_prob)
        except OSError as exc:  # a read-only run folder: choose again next time
            notes.append(f"backend choice not remembered ({exc.strerror})")
        except PneumoscopeError as exc:  # another process writes into the run (e.g. trains it)
            notes.append(f"backend choice not remembered ({exc})")
    return best, notes


def _reverify(name: str, stored: tuple | None, get_model: Callable[[], nn.Module], x: np.ndarray,
              request: Request) -> tuple[object | None, str]:
    """The remembered backend when it still reproduces float32 (on the stored probe, else on this
    batch's), or (None, why not)."""
    device, backend, record, threads = request.device, request.backend, request.record, request.threads
    if name == "torch-fp32":  # eager float32 is the reference itself
        return TorchBackend(get_model(), device, "fp32", False), "float32 itself"
    if stored is not None:
        probe, ref_prob = stored
    else:
        probe = x[:2]
        ref_prob, _ = TorchBackend(get_model(), device, "fp32", False)(probe)
    path = {"fp32": request.onnx_path, "int8": request.int8_path}.get(name.rsplit("-", 1)[-1])
    family = name.split("-")[0]
    if family in ("onnx", "openvino") and path is not None and backend in ("auto", family):
        if name.endswith("int8") and name not in int8_runtimes(record):  # int8 is judged per runtime
            return None, f"{name} is not an int8 runtime judged; choosing again"
        cands = [(_file_backend(name, path, threads), JUDGED if name.endswith("int8") else False)]
    else:
        cands = [c for c in candidates(get_model(), dataclasses.replace(request, onnx_path=None, int8_path=None))
                 if c[0].name == name]
    if not cands:
        return None, f"{name} is not available now; choosing again"
    cand, reduced = cands[0]
    try:
        ok, how = verify(cand, reduced, ref_prob, probe, request.thresholds)
    except Exception as exc:  # it ran before, not now (another ISA limit, a runtime updated): choose again
        return None, f"{cand.name} failed here ({exc.__class__.__name__}: {one_line(exc)[:160]}); choosing again"
    return (cand, how) if ok else (None, f"{cand.name} rejected on the probe ({how}); choosing again")
