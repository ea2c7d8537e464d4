"""A trained run, loaded for prediction: the public Python API and what the CLI and server call.

>>> from pneumoscope import load_run
>>> model = load_run("runs/demo/seg/resnet18")
>>> result = model.predict("scan.dcm")          # a path, or a 2-D array in [0, 1]
>>> result.mask, result.prob, result.p_pneumothorax, result.decision, result.metadata
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .. import config as config_mod
from ..data.io import MIN_SIDE, check_pixels, read_image
from ..data.pixels import scale01
from ..data.transforms import model_input, to_model_size
from ..device import resolve_device
from ..errors import PneumoscopeError
from ..folders import Run, resolve_run
from ..soundness import disagreement
from ..stage1.postprocess import Rule, load_rule
from . import backend_choice
from .backends import with_hflip_tta
from .machine import arithmetic, isa_notes
from .options import PredictOptions
from .precision import judge, precision_notes


@dataclass
class Prediction:
    """What the model says about one radiograph (arrays at the image's own size)."""

    prob: np.ndarray  # float32 (H, W): stage-1 pneumothorax probability per pixel
    mask: np.ndarray  # bool (H, W): the final mask (post-processing rule applied)
    p_pneumothorax: float | None  # stage-2 P(pneumothorax); None when the run has no classifier
    decision: str | None  # "pneumothorax" | "normal" at the run's threshold; None without stage 2
    metadata: dict[str, Any] = field(default_factory=dict)  # DICOM metadata (sex, age, view, ...)
    source: Any = field(default=None, repr=False)  # the file predicted (a path, or the pydicom Dataset; None for an array)
    algorithm: Any = field(default=None, repr=False)  # results.Algorithm: who made this (for DICOM results)

    def __repr__(self) -> str:  # the arrays' sizes, not their values
        h, w = self.mask.shape[:2]
        p = "None" if self.p_pneumothorax is None else f"{self.p_pneumothorax:.3f}"
        return (f"Prediction({w}x{h}, mask {self.mask_area_px} px, max prob {self.max_prob:.3f}, p_pneumothorax {p}, "
                f"decision {self.decision!r}" + (f", {self.disagreement}" if self.disagreement else "") + ")")

    @property
    def mask_area_px(self) -> int:
        """Pixels in the final mask."""
        return int(self.mask.sum())

    @property
    def disagreement(self) -> str | None:
        """"positive, not localised" (stage 2 says pneumothorax, the mask is empty), "segmented,
        classified normal" (a mask, stage 2 says normal), or None when the stages agree or there is no stage 2."""
        return disagreement(self.decision, self.mask_area_px)

    @property
    def max_prob(self) -> float:
        """Highest pixel probability."""
        return float(self.prob.max())

    def to_dicom(self, source: Any = None, kinds: tuple[str, ...] | str = ("seg", "sr", "sc")) -> dict[str, Any]:
        """This result as DICOM objects in the source's study: kind (``seg``, ``sr``, ``sc``) -> pydicom
        Dataset (see :mod:`pneumoscope.dicom_results`). ``source``: the DICOM file predicted (default: the
        path given to ``predict``), its bytes or its pydicom Dataset. A source that cannot have results
        (a PNG, no Study Instance UID): one line, nothing made; what the results could not copy from
        the source as it is comes as a :class:`PneumoscopeWarning`."""
        return self._results(source, kinds).objects

    def _results(self, source: Any, kinds: tuple[str, ...] | str) -> Any:
        from ..dicom_results import parse_kinds
        from ..dicom_results.build import make_results

        if self.algorithm is None:
            raise PneumoscopeError("this Prediction was not made by a Predictor; no algorithm to name in DICOM results")
        source = self.source if source is None else source
        if source is None:
            raise PneumoscopeError("DICOM results need the source DICOM: pass its path, bytes or pydicom Dataset "
                                   "(an array has no study to put them in)")
        made = make_results(self, source, self.algorithm, parse_kinds(kinds))
        if not made.objects:
            raise PneumoscopeError(f"{source if isinstance(source, (str, Path)) else 'the source'}: {made.note}")
        for note in made.notes:
            _warn(f"DICOM results: {note}")
        return made

    def save_dicom(self, folder: str | Path, source: Any = None, kinds: tuple[str, ...] | str = ("seg", "sr", "sc"),
                   stem: str | None = None) -> dict[str, Path]:
        """Write :meth:`to_dicom` into ``folder`` as ``<stem>.<kind>.dcm`` (stem: the source file's); kind -> path."""
        from ..dicom_results.build import write_results

        src = source if source is not None else self.source
        return write_results(self._results(source, kinds), folder,
                             stem or (Path(src).stem if isinstance(src, (str, Path)) else "result"))


class Predictor:
    """A loaded run: stage-1 U-Net on a chosen backend, post-processing rule, stage-2 classifier."""

    def __init__(self, run: str | Path | Run, opts: PredictOptions = PredictOptions(),
                 say: Callable[[str], None] | None = None) -> None:
        opts.check()
        self.say = say or (lambda line: None)  # progress of slow first-call steps (the CLI prints them)
        warn = say or _warn  # what must never go unsaid: a warning for the Python API
        study_note = None
        if not isinstance(run, Run):
            path, study_note = resolve_run(run)  # a study folder: its best run, said below
            run = Run(path)
        self.run = run
        self.run.require()
        self.opts = opts
        busy = self.run.writer_elsewhere()
        self.read_only = busy is not None  # a folder being trained: use what is saved, write nothing into it
        if busy:
            warn(f"{self.run.root}: being written by {busy}; its weights may still change, and nothing is "
                 "written into it (no export, no remembered backend)")
        self.device = resolve_device(opts.device)
        if opts.threads:
            torch.set_num_threads(opts.threads)
        self.config = cfg = config_mod.from_dict(self.run.weights_config())  # the U-Net is built when first needed
        self.size, self.threshold, self.encoder = cfg.data.size, cfg.train.threshold, cfg.model.encoder
        rule = load_rule(self.run) if opts.postprocess else None
        self.rule = rule or Rule(self.threshold, 0.0, self.threshold)
        self.backend = None
        self.notes: list[str] = [study_note] if study_note else []
        self.members = cfg.model.members
        if self.members > 1:
            self.notes.append(f"fold ensemble: the mean of {self.members} U-Nets' probabilities ({self.members} networks per "
                              "image, as many times one model's cost; --fold N predicts with one of them)")
        self.model_seconds = 0.0  # time spent in the backend (the network itself), for throughput reports
        self.stage2 = None
        if self.run.has_classifier():
            from ..stage2.loaded import Stage2Model

            self.stage2 = Stage2Model.load(self.run, self.model, self.device)
        for line in self.run.notes:  # derived files of other weights, ignored: said once, never silently
            warn(line)

    def __repr__(self) -> str:
        backend = getattr(self.backend, "name", None) or f"{self.opts.backend} (chosen at the first image)"
        return (f"Predictor({str(self.run.root)!r}, U-Net {self.encoder}"
                + (f" x{self.members} (fold ensemble)" if self.members > 1 else "") + f" at {self.size} px, backend {backend}, "
                + (f"stage 2 threshold {self.cls_threshold:.3f}" if self.stage2 is not None else "no stage 2") + ")")

    @cached_property
    def model(self) -> torch.nn.Module:
        """The stage-1 U-Net in PyTorch (eval mode), built on first use: a remembered ONNX backend
        without a stage-2 classifier never needs it, nor the import of its libraries."""
        from ..stage1.unet import load_model

        return load_model(self.run, self.device)[0]

    @cached_property
    def algorithm(self) -> Any:
        """The algorithm DICOM results name: pneumoscope's version, the run's weights, its model."""
        from ..dicom_results import Algorithm
        from ..version import __version__

        ensemble = f" x{self.members} (fold ensemble)" if self.members > 1 else ""
        classifier = f" + {self.stage2.describe(self.encoder)}" if self.stage2 is not None else ""
        model = f"U-Net {self.encoder}{ensemble}{classifier}"
        return Algorithm(__version__, self.run.weights_id(), model, self.cls_threshold)

    @property
    def cls_threshold(self) -> float | None:
        """The stage-2 decision threshold (None without a classifier)."""
        return None if self.stage2 is None else self.stage2.threshold

    def prepare(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images at the model size and the standardised network input (N, 1, S, S)."""
        u8 = np.stack([to_model_size(img, self.size) for img in images])
        return u8, model_input(u8)

    def choose_backend(self, image: np.ndarray) -> None:
        """Choose the backend now, on ``image`` (as the first batch would): an ONNX export, a precision
        judgement and the timed choice are done and remembered before other processes need them."""
        self._ensure_backend(self.prepare([array_to_unit(image)])[1])

    def warm_up(self) -> list[str]:
        """Choose the backend now, on a phantom at the model's size, so that a server's or a DICOM
        node's first image does not wait for the export, the precision judgement and the timed choice
        (tens of seconds on a new run). Returns the notes of the choice."""
        from ..data.synth import render

        self.choose_backend(render(max(self.size, 64), True, np.random.default_rng(0)).image)
        return list(self.notes)

    def _ensure_backend(self, x: np.ndarray) -> None:
        if self.backend is not None:
            return
        onnx_path = None
        if self.opts.backend in ("auto", "onnx", "openvino"):
            onnx_path = self.run.current_onnx()
            if onnx_path is None and self.read_only:
                if self.opts.backend in ("onnx", "openvino"):
                    raise PneumoscopeError(f"{self.opts.backend} backend unavailable: {self.run.root} is being written by "
                                           "another process")
            elif onnx_path is None:
                try:
                    from .export import export_onnx

                    self.say("exporting the model to ONNX (once per run; checked against PyTorch) ...")
                    onnx_path, _ = export_onnx(self.run)
                except (PneumoscopeError, OSError) as exc:
                    if self.opts.backend in ("onnx", "openvino"):
                        raise PneumoscopeError(f"{self.opts.backend} backend unavailable: {exc}") from exc
                    self.notes.append(f"onnx unavailable ({exc})")
        record = self._precision_record()
        int8 = self.run.current_int8() if record is not None else None
        if self.opts.precision == "int8" and int8 is None:
            raise PneumoscopeError("--precision int8: no int8 model for these weights (its training images could not be read: "
                                   f"{(record or {}).get('reason', 'not judged')})")
        thresholds = tuple(sorted({self.threshold, self.rule.top, self.rule.bottom}))
        request = backend_choice.Request(self.device, self.opts.backend, self.opts.precision, self.opts.compile, onnx_path,
                                         int8, record, self.opts.threads, thresholds)
        self.backend, notes = backend_choice.choose(lambda: self.model, x, request, None if self.read_only else self.run,
                                                    self.say)
        self.notes += isa_notes() + notes + precision_notes(self.backend.name, record, self.opts.precision)

    def _precision_record(self) -> dict | None:
        """The run's precision record, judged now when missing (once per weights; not for a run
        being written, nor when float32 is asked for)."""
        if self.opts.precision == "fp32":
            return None
        record = self.run.read_precision(arithmetic(self.device))  # each kind of machine has its own
        if record is None and not self.read_only and self.run.read_precision() is not None:
            self.say("reduced precision was judged on another kind of machine only; judging it here too")
        if record is None and not self.read_only:
            try:
                with self.run.writing("predict (precision judgement)"):
                    record = judge(self.run, self.model, self.device, self.stage2, self.say)
            except PneumoscopeError as exc:  # another process writes into the run meanwhile
                self.notes.append(f"reduced precision not judged ({exc}); float32")
        return record

    def predict_batch(self, images: list[np.ndarray], metas: list[dict] | None = None) -> list[Prediction]:
        """Predictions of greyscale images (H, W), each at its own size (arrays as in :func:`array_to_unit`)."""
        if isinstance(images, np.ndarray) and images.ndim == 2:
            raise PneumoscopeError("predict_batch takes a list of 2-D images; for one image use predict(image)")
        images = list(images)
        if not images:
            return []
        metas = metas if metas is not None else [{} for _ in images]
        if len(metas) != len(images):
            raise PneumoscopeError(f"predict_batch: {len(images)} images but {len(metas)} metadata entries")
        cap = int(self.opts.max_megapixels * 1e6)
        for k, img in enumerate(images):  # size first: nothing is converted before it is known to fit
            shape = _array_shape(img)
            check_pixels(f"image {k}", shape[1], shape[0], cap, MIN_SIDE)
        images = [array_to_unit(img) for img in images]
        u8, x = self.prepare(images)
        self._ensure_backend(x)
        t = time.perf_counter()
        probs, cls = with_hflip_tta(self.backend, x) if self.opts.tta == "hflip" else self.backend(x)
        self.model_seconds += time.perf_counter() - t
        p_cls = None if self.stage2 is None else self.stage2.probability(u8, probs, cls, metas)
        out = []
        for k, (p, img, meta) in enumerate(zip(probs, images, metas)):
            full = cv2.resize(p, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
            pk = None if p_cls is None else float(p_cls[k])
            out.append(Prediction(full, self.rule.apply(full), pk, None if pk is None else self.stage2.decide(pk), meta,
                                  algorithm=self.algorithm))
        return out

    def predict(self, image: Any, metadata: dict | None = None) -> Prediction:
        """Prediction of one radiograph: a DICOM/PNG/JPEG path, a pydicom Dataset (its pixels through
        the DICOM display pipeline, as for a file), or a 2-D array (see :func:`array_to_unit`)."""
        dataset = _as_dataset(image)
        if dataset is not None:
            from ..data.dicom import read_dicom_from_dataset

            name = str(dataset.get("SOPInstanceUID", "") or "dataset")
            img, meta, _ = read_dicom_from_dataset(dataset, name, int(self.opts.max_megapixels * 1e6), MIN_SIDE)
            result = self.predict_batch([img], [{**meta, **(metadata or {})}])[0]
            result.source = dataset  # to_dicom() makes its results in this dataset's study
            return result
        if isinstance(image, (str, Path)):
            img, meta = read_image(image, int(self.opts.max_megapixels * 1e6), min_side=MIN_SIDE)
            meta = {**meta, **(metadata or {})}
        elif isinstance(image, (bytes, bytearray, memoryview)) or image is None:
            raise PneumoscopeError(f"predict takes {ACCEPTED}, got "
                                   + ("None" if image is None else f"{type(image).__name__}: to predict a file's contents, "
                                      "write them to a file or POST them to the server; a path must be str or pathlib.Path"))
        else:
            img, meta = image, dict(metadata or {})  # converted by predict_batch
        result = self.predict_batch([img], [meta])[0]
        if isinstance(image, (str, Path)):
            result.source = str(image)
        return result

    def gradcam(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Grad-CAM heatmaps at each image's own size (float32 model, gradients on)."""
        from .gradcam import gradcam

        _, x = self.prepare(images)
        heat = gradcam(self.model.float(), torch.from_numpy(x).to(self.device))
        return [cv2.resize(h, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR) for h, img in zip(heat, images)]


ACCEPTED = "a file path (str or pathlib.Path), a pydicom Dataset or a 2-D numpy array"  # what predict() takes
IMAGES = "a file path (str or pathlib.Path) or a 2-D numpy array"  # what a batch's items are asked to be


def _as_dataset(image: Any) -> Any:
    """``image`` when it is a pydicom Dataset (pydicom imported only when one could be), else None."""
    if type(image).__module__.startswith("pydicom"):
        from pydicom.dataset import Dataset

        return image if isinstance(image, Dataset) else None
    return None


def _array_shape(image: Any) -> tuple[int, ...]:
    """The shape of a caller's image, refusing what is no image array (bytes, None, text)."""
    if image is None or isinstance(image, (bytes, bytearray, memoryview, str, Path)):
        what = "None" if image is None else f"{type(image).__name__} ({bytes(image[:20])!r}...)" if isinstance(
            image, (bytes, bytearray, memoryview)) else f"a path ({image})"
        hint = " (to predict a file's contents, write them to a file or POST them to the server)" if isinstance(
            image, (bytes, bytearray, memoryview)) else ""
        raise PneumoscopeError(f"expected {IMAGES} for each image, got {what}{hint}"
                               + ("; predict(path) reads files" if isinstance(image, (str, Path)) else ""))
    shape = np.shape(image)
    if len(shape) != 2:
        raise PneumoscopeError(f"expected a 2-D greyscale image, got an array of shape {tuple(shape)}")
    return shape


class PneumoscopeWarning(UserWarning):
    """Something a Python API user must be told: a derived file ignored, a folder being trained."""


def _warn(line: str) -> None:
    import warnings

    warnings.warn(line, PneumoscopeWarning, stacklevel=4)


def array_to_unit(image: Any) -> np.ndarray:
    """A caller's 2-D array as float32 in [0, 1]: uint8 / 255; bool as 0/1; other integers (e.g.
    pydicom's ``pixel_array``, 12-bit data in uint16) by their own minimum..maximum, as for 16-bit
    PNGs; floats as they are, which must be finite and within [0, 1]. Anything else: one line."""
    img = np.asarray(image)
    if img.ndim != 2:
        raise PneumoscopeError(f"expected a 2-D greyscale image, got an array of shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.bool_:
        return img.astype(np.float32)
    if np.issubdtype(img.dtype, np.integer):
        return scale01(img)
    if not np.issubdtype(img.dtype, np.floating):
        raise PneumoscopeError(f"expected a numeric greyscale image (uint8, integer or float), got dtype {img.dtype}")
    lo, hi = (float(img.min()), float(img.max())) if img.size else (0.0, 0.0)
    if not (lo >= 0.0 and hi <= 1.0):  # min/max propagate NaN, so this one pass also catches it
        if not np.isfinite(img).all():
            raise PneumoscopeError("the image array holds NaN or infinite values")
        raise PneumoscopeError(f"a float image must be in [0, 1], got {lo:.4g}..{hi:.4g} "
                               "(pass integers to have them scaled by their own range)")
    return img.astype(np.float32, copy=False)


def load_run(run: str | Path, backend: str = "auto", device: str = "auto", **options: Any) -> Predictor:
    """Load a trained run for prediction (``options``: any field of :class:`PredictOptions`)."""
    return Predictor(run, PredictOptions(backend=backend, device=device, **options))
