"""The server's routes as named functions: one :class:`Routes` holds what they share (the predictor,
the one inference thread, the waiting room, the picture store, the limits) and each route is a method
of it, registered by :func:`pneumoscope.serve.app.create_app`.

Decoding and inference run on one dedicated worker thread (one image at a time, and one thread's
memory, so memory stays bounded); at most ``max_waiting`` requests wait for it, more are answered 503.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from fastapi import HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..data.io import MIN_SIDE, read_image_bytes
from ..data.rle import encode
from ..errors import PneumoscopeError, TooLargeError, UnsupportedFormatError
from ..files import atomic_write
from ..inference.predictor import Predictor
from ..pictures import as_uint8, heat_layer, overlay, shrink
from ..version import __version__
from .limits import TAIL
from .store import Entry, Store

VIEWER = Path(__file__).with_name("viewer.html")
MAX_SIDE = 1024  # the longest side of the pictures kept for an answer
SUFFIX = {"dicom": "dcm", "png": "png", "jpeg": "jpg"}


def _png(img_bgr_or_rgba: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img_bgr_or_rgba)
    return buf.tobytes()


def _status(exc: PneumoscopeError) -> int:
    """The HTTP status of a user error, by its type."""
    if isinstance(exc, UnsupportedFormatError):
        return 415
    if isinstance(exc, TooLargeError):
        return 413
    return 422


def cut_multipart(content_type: str, tail: bytes | None) -> str | None:
    """A sentence when a multipart body ended before its closing boundary (an upload cut off)."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data" or tail is None:
        return None
    boundary = next((p.split("=", 1)[1].strip().strip('"') for p in params.split(";") if p.strip().lower().startswith("boundary=")), "")
    if not boundary or tail.rstrip(b"\r\n").endswith(f"--{boundary}--".encode()):
        return None
    return (f"the upload was cut off: the multipart body ends before its closing boundary (--{boundary}--); "
            "send the file again")


def render_overlay(e: Entry) -> np.ndarray:
    """The radiograph with its mask in red."""
    return overlay(e.image, e.mask)


def render_image(e: Entry) -> np.ndarray:
    """The radiograph as decoded (at most ``MAX_SIDE``)."""
    return e.image


def render_mask_layer(e: Entry) -> np.ndarray:
    """The mask as a transparent red layer (BGRA)."""
    rgba = np.zeros((*e.mask.shape, 4), np.uint8)
    rgba[e.mask] = (0, 0, 255, 255)
    return rgba


class Routes:
    """The state the routes share, and the routes."""

    def __init__(self, pred: Predictor, limit: int, limit_label: str, max_pixels: int, max_waiting: int,
                 keep: Path | None, backend: str) -> None:
        self.pred = pred
        self.limit, self.limit_label, self.max_pixels = limit, limit_label, max_pixels
        self.keep, self.backend = keep, backend
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pneumoscope-infer")  # the one thread that decodes and predicts
        self.waiting = threading.BoundedSemaphore(max_waiting)
        self.store = Store()
        self.cfg_hash = pred.run.config_sha256()

    # -- errors -------------------------------------------------------------------------
    async def one_sentence(self, request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's structured 422 as a sentence, like every other error of this server."""
        missing = any(e.get("loc", [None])[-1] == "file" for e in exc.errors())
        detail = ("send the radiograph as a multipart/form-data file field named 'file' "
                  "(e.g. curl -F file=@scan.dcm URL/predict)") if missing else "; ".join(
            f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}" for e in exc.errors())
        cut = cut_multipart(request.headers.get("content-type", ""), request.scope.get(TAIL))
        return JSONResponse({"detail": cut or detail}, status_code=422)

    # -- POST /predict --------------------------------------------------------------------
    async def predict(self, file: UploadFile, request: Request) -> JSONResponse:
        """Segment and classify one DICOM, PNG or JPEG radiograph."""
        cut = cut_multipart(request.headers.get("content-type", ""), request.scope.get(TAIL))
        if cut:  # the file part may have parsed, but the body never ended: its file may be short too
            raise HTTPException(422, cut)
        files = (await request.form()).getlist("file")  # the form FastAPI parsed (cached): no second read
        if len(files) > 1:
            raise HTTPException(422, f"send one radiograph per request: this one has {len(files)} 'file' fields")
        if not self.waiting.acquire(blocking=False):
            raise HTTPException(503, "server busy: too many requests waiting; retry shortly")
        try:
            name = Path(file.filename or "upload").name or "upload"  # a name for messages, never a path here
            return JSONResponse(await asyncio.get_running_loop().run_in_executor(self.worker, self.infer, file, name))
        except PneumoscopeError as exc:
            raise HTTPException(_status(exc), str(exc)) from exc
        finally:
            self.waiting.release()

    def infer(self, upload: UploadFile, filename: str) -> dict:
        """Decode, predict and keep the pictures of one upload (on the inference thread); the answer."""
        pred = self.pred
        t0 = time.perf_counter()
        upload.file.seek(0)
        data = upload.file.read(self.limit + 1)
        if not data:
            raise HTTPException(400, "empty upload")
        if len(data) > self.limit:
            raise TooLargeError(f"upload larger than {self.limit_label}")
        img, meta, kind = read_image_bytes(data, filename, self.max_pixels, MIN_SIDE)
        t1 = time.perf_counter()
        (res,) = pred.predict_batch([img], [meta])
        t2 = time.perf_counter()
        prob, mask = res.prob, res.mask
        key = secrets.token_urlsafe(32)
        dicom, dicom_note = self.dicom_results(data, kind, img, res, filename)
        self.store.put(key, Entry(as_uint8(shrink(img, MAX_SIDE)), shrink(mask.astype(np.uint8), MAX_SIDE, cv2.INTER_NEAREST) > 0,
                                  dicom=dicom))
        if self.keep is not None:
            self.keep.mkdir(parents=True, exist_ok=True)
            atomic_write(self.keep / f"{key}.{SUFFIX[kind]}", data)
        return {
            "id": key, "filename": filename, "format": kind, "width": int(img.shape[1]), "height": int(img.shape[0]),
            "p_pneumothorax": None if res.p_pneumothorax is None else round(res.p_pneumothorax, 6),
            "decision": res.decision, "disagreement": res.disagreement,
            "threshold": pred.cls_threshold,
            "mask_area_px": int(mask.sum()), "mask_fraction_of_image": round(float(mask.mean()), 6),
            "mask_fraction_of_lung": None,  # needs a lung segmentation, which the model does not produce
            "max_prob": round(float(prob.max()), 6), "mask_rle": encode(mask),
            "metadata": {k: (None if isinstance(v, float) and v != v else v) for k, v in meta.items()},
            "model": {"run": pred.run.root.name, "encoder": pred.encoder, "size": pred.size, "backend": getattr(pred.backend, "name", None),
                      "config_sha256": self.cfg_hash, "postprocess": pred.rule.__dict__},
            "timing_ms": {"decode": round((t1 - t0) * 1000, 1), "inference": round((t2 - t1) * 1000, 1),
                          "total": round((time.perf_counter() - t0) * 1000, 1)},
            "overlay_url": f"/predict/{key}/overlay.png", "mask_url": f"/predict/{key}/mask.png",
            "image_url": f"/predict/{key}/image.png", "gradcam_url": f"/predict/{key}/gradcam.png",
            "dicom": {k: f"/predict/{key}/dicom/{k}.dcm" for k in dicom} or None, "dicom_note": dicom_note,
        }

    def dicom_results(self, data: bytes, kind: str, img: np.ndarray, res, filename: str) -> tuple[dict[str, bytes], str | None]:
        """The SEG, SR and overlay of a DICOM upload as Part 10 bytes, or why there are none (never an error)."""
        if kind != "dicom":
            return {}, "DICOM results (SEG, SR, overlay) are made for DICOM uploads only"
        from ..dicom_results.build import make_results

        made = make_results(res, data, self.pred.algorithm, display=img, name=filename)
        out, notes = made.encoded, list(made.notes)
        if out and "seg" not in out:
            notes.append("no SEG: no finding with a mask (the SR says so)")
        return out, "; ".join(notes) or None

    # -- pictures and files of a prediction ------------------------------------------------
    def entry(self, key: str) -> Entry:
        """What the store keeps of a prediction; 404 when it is unknown or expired."""
        e = self.store.get(key)
        if e is None:
            raise HTTPException(404, "unknown or expired prediction id")
        return e

    def picture(self, key: str, name: str, render) -> Response:
        """A picture of a prediction as PNG, rendered once and kept with it."""
        e = self.entry(key)
        if name not in e.pictures:
            e.pictures[name] = _png(render(e))
        return Response(e.pictures[name], media_type="image/png")

    def render_gradcam(self, e: Entry) -> np.ndarray:
        """The Grad-CAM heat layer, computed on the inference thread."""
        return heat_layer(self.worker.submit(lambda: self.pred.gradcam([e.image])[0]).result())

    def overlay_png(self, key: str) -> Response:
        """Radiograph with the predicted mask in red."""
        return self.picture(key, "overlay", render_overlay)

    def image_png(self, key: str) -> Response:
        """The radiograph as decoded (at most 1024 px)."""
        return self.picture(key, "image", render_image)

    def mask_png(self, key: str) -> Response:
        """The predicted mask as a transparent red layer."""
        return self.picture(key, "mask", render_mask_layer)

    def gradcam_png(self, key: str) -> Response:
        """Grad-CAM heatmap layer (a visual aid, not a validated explanation)."""
        return self.picture(key, "gradcam", self.render_gradcam)

    def dicom_file(self, key: str, kind: str) -> Response:
        """A DICOM result of a DICOM upload: seg, sr or sc (burned-in overlay)."""
        e = self.entry(key)
        if kind not in e.dicom:
            raise HTTPException(404, f"no {kind} result for this prediction (kinds: {', '.join(e.dicom) or 'none'})")
        return Response(e.dicom[kind], media_type="application/dicom",
                        headers={"Content-Disposition": f'attachment; filename="{key[:12]}.{kind}.dcm"'})

    # -- the server itself ----------------------------------------------------------------
    def health(self) -> dict:
        """Model loaded, backend, version."""
        pred = self.pred
        return {"status": "ok", "model_loaded": True, "run": pred.run.root.name, "encoder": pred.encoder,
                "backend": getattr(pred.backend, "name", None) or f"{self.backend} (chosen at the first request)",
                "stage2": pred.stage2 is not None, "version": __version__}

    def viewer(self) -> HTMLResponse:
        """The viewer page."""
        return HTMLResponse(VIEWER.read_text())
