"""FastAPI app: ``POST /predict``, picture endpoints, ``/health`` and the viewer at ``/``.

The model is loaded once. Decoding and inference run on one dedicated worker thread (one
image at a time, and one thread's memory, so memory stays bounded); at most ``max_waiting``
requests wait for it, more are answered 503. Bodies over the upload limit are stopped while
they stream in; images over the pixel limit are refused from their header, before decoding.
Uploads are checked by content; an upload over 1 MB is spooled to an anonymous temporary file
while it waits (never named on disk, gone when the request ends) and is kept only when
``keep_uploads`` names a folder. Nothing a client sends names a path on the server.

With a ``token`` every request but the viewer page and the docs must carry it (:mod:`.auth`);
every answer says ``Cache-Control: no-store``. Prediction ids are 256 random bits
(``secrets.token_urlsafe(32)``): a picture cannot be found by guessing or counting ids.
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
from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..data.io import MIN_SIDE, read_image_bytes
from ..data.rle import encode
from ..errors import PneumoscopeError, TooLargeError, UnsupportedFormatError
from ..files import atomic_write, check_writable_folder
from ..inference.predictor import PredictOptions, Predictor
from ..pictures import as_uint8, heat_layer, overlay, shrink
from ..version import __version__
from .auth import TokenAuth
from .limits import TAIL, BodyLimit
from .store import Entry, Store

VIEWER = Path(__file__).with_name("viewer.html")
MAX_SIDE = 1024


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


def _cut_multipart(content_type: str, tail: bytes | None) -> str | None:
    """A sentence when a multipart body ended before its closing boundary (an upload cut off)."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data" or tail is None:
        return None
    boundary = next((p.split("=", 1)[1].strip().strip('"') for p in params.split(";") if p.strip().lower().startswith("boundary=")), "")
    if not boundary or tail.rstrip(b"\r\n").endswith(f"--{boundary}--".encode()):
        return None
    return (f"the upload was cut off: the multipart body ends before its closing boundary (--{boundary}--); "
            "send the file again")


def _offline_docs(app: FastAPI) -> None:
    """The OpenAPI page at /docs with Swagger UI served from this server (no CDN)."""
    import fastapi_offline
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    static = Path(fastapi_offline.__file__).parent / "static"  # a vendored Swagger UI, used as plain files
    app.mount("/docs-static", StaticFiles(directory=static), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="pneumoscope API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css", swagger_favicon_url="/docs-static/favicon.png")


def create_app(run: str | Path, max_upload_mb: float = 50.0, keep_uploads: str | Path | None = None,
               max_waiting: int = 32, backend: str = "auto", predictor: Predictor | None = None,
               max_megapixels: float = 25.0, token: str | None = None, say=None) -> FastAPI:
    """The app for a trained run (a stage-1 run folder, with its stage-2 classifier when it has one).

    Memory is bounded by the limits: bodies over ``max_upload_mb`` are stopped while they stream
    in, images over ``max_megapixels`` are refused from their header, and at most one image is
    decoded and predicted at a time while at most ``max_waiting`` requests wait. ``token``: the bearer
    token every request must carry (None: none); ``say``: where load-time notes go (the CLI prints them)."""
    if not (0 < max_upload_mb < float("inf") and 0 < max_megapixels < float("inf")) or max_waiting < 1:
        raise PneumoscopeError("--max-upload-mb and --max-megapixels must be finite numbers > 0, max_waiting >= 1")
    keep = check_writable_folder(keep_uploads, "--keep-uploads") if keep_uploads else None
    pred = predictor or Predictor(run, PredictOptions(backend=backend, max_megapixels=max_megapixels), say)
    limit = int(max_upload_mb * 1024 * 1024)
    max_pixels = int(max_megapixels * 1e6)
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pneumoscope-infer")  # the one thread that decodes and predicts
    waiting = threading.BoundedSemaphore(max_waiting)
    store = Store()
    cfg_hash = pred.run.config_sha256()
    app = FastAPI(title="pneumoscope", version=__version__, docs_url=None, redoc_url=None,
                  description="Pneumothorax segmentation (U-Net) and detection (XGBoost) on chest radiographs.")
    _offline_docs(app)
    app.add_middleware(BodyLimit, limit=limit, label=f"{max_upload_mb:g} MB")
    app.add_middleware(TokenAuth, token=token)  # added last: runs first, so a refused client's body is never read

    @app.exception_handler(RequestValidationError)
    async def one_sentence(request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's structured 422 as a sentence, like every other error of this server."""
        missing = any(e.get("loc", [None])[-1] == "file" for e in exc.errors())
        detail = ("send the radiograph as a multipart/form-data file field named 'file' "
                  "(e.g. curl -F file=@scan.dcm URL/predict)") if missing else "; ".join(
            f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}" for e in exc.errors())
        cut = _cut_multipart(request.headers.get("content-type", ""), request.scope.get(TAIL))
        return JSONResponse({"detail": cut or detail}, status_code=422)

    def infer(upload: UploadFile, filename: str) -> dict:
        t0 = time.perf_counter()
        upload.file.seek(0)
        data = upload.file.read(limit + 1)
        if not data:
            raise HTTPException(400, "empty upload")
        if len(data) > limit:
            raise TooLargeError(f"upload larger than {max_upload_mb:g} MB")
        img, meta, kind = read_image_bytes(data, filename, max_pixels, MIN_SIDE)
        t1 = time.perf_counter()
        (res,) = pred.predict_batch([img], [meta])
        t2 = time.perf_counter()
        prob, mask = res.prob, res.mask
        key = secrets.token_urlsafe(32)
        dicom, dicom_note = _dicom_results(data, kind, img, res, filename)
        store.put(key, Entry(as_uint8(shrink(img, MAX_SIDE)), shrink(mask.astype(np.uint8), MAX_SIDE, cv2.INTER_NEAREST) > 0,
                             dicom=dicom))
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            atomic_write(keep / f"{key}.{ {'dicom': 'dcm', 'png': 'png', 'jpeg': 'jpg'}[kind]}", data)
        return {
            "id": key, "filename": filename, "format": kind, "width": int(img.shape[1]), "height": int(img.shape[0]),
            "p_pneumothorax": None if res.p_pneumothorax is None else round(res.p_pneumothorax, 6),
            "decision": res.decision,
            "threshold": pred.cls_threshold,
            "mask_area_px": int(mask.sum()), "mask_fraction_of_image": round(float(mask.mean()), 6),
            "mask_fraction_of_lung": None,  # needs a lung segmentation, which the model does not produce
            "max_prob": round(float(prob.max()), 6), "mask_rle": encode(mask),
            "metadata": {k: (None if isinstance(v, float) and v != v else v) for k, v in meta.items()},
            "model": {"run": pred.run.root.name, "encoder": pred.encoder, "size": pred.size, "backend": getattr(pred.backend, "name", None),
                      "config_sha256": cfg_hash, "postprocess": pred.rule.__dict__},
            "timing_ms": {"decode": round((t1 - t0) * 1000, 1), "inference": round((t2 - t1) * 1000, 1),
                          "total": round((time.perf_counter() - t0) * 1000, 1)},
            "overlay_url": f"/predict/{key}/overlay.png", "mask_url": f"/predict/{key}/mask.png",
            "image_url": f"/predict/{key}/image.png", "gradcam_url": f"/predict/{key}/gradcam.png",
            "dicom": {k: f"/predict/{key}/dicom/{k}.dcm" for k in dicom} or None, "dicom_note": dicom_note,
        }

    def _dicom_results(data: bytes, kind: str, img: np.ndarray, res, filename: str) -> tuple[dict[str, bytes], str | None]:
        """The SEG, SR and overlay of a DICOM upload as Part 10 bytes, or why there are none (never an error)."""
        if kind != "dicom":
            return {}, "DICOM results (SEG, SR, overlay) are made for DICOM uploads only"
        from ..dicom_results.build import make_results

        made = make_results(res, data, pred.algorithm, display=img, name=filename)
        out, notes = made.encoded, list(made.notes)
        if out and "seg" not in out:
            notes.append("no SEG: no finding with a mask (the SR says so)")
        return out, "; ".join(notes) or None

    @app.post("/predict", summary="Segment and classify one DICOM, PNG or JPEG radiograph")
    async def predict(file: UploadFile, request: Request) -> JSONResponse:
        cut = _cut_multipart(request.headers.get("content-type", ""), request.scope.get(TAIL))
        if cut:  # the file part may have parsed, but the body never ended: its file may be short too
            raise HTTPException(422, cut)
        files = (await request.form()).getlist("file")  # the form FastAPI parsed (cached): no second read
        if len(files) > 1:
            raise HTTPException(422, f"send one radiograph per request: this one has {len(files)} 'file' fields")
        if not waiting.acquire(blocking=False):
            raise HTTPException(503, "server busy: too many requests waiting; retry shortly")
        try:
            name = Path(file.filename or "upload").name or "upload"  # a name for messages, never a path here
            return JSONResponse(await asyncio.get_running_loop().run_in_executor(worker, infer, file, name))
        except PneumoscopeError as exc:
            raise HTTPException(_status(exc), str(exc)) from exc
        finally:
            waiting.release()

    def entry(key: str) -> Entry:
        e = store.get(key)
        if e is None:
            raise HTTPException(404, "unknown or expired prediction id")
        return e

    def picture(key: str, name: str, render) -> Response:
        e = entry(key)
        if name not in e.pictures:
            e.pictures[name] = _png(render(e))
        return Response(e.pictures[name], media_type="image/png")

    @app.get("/predict/{key}/overlay.png", summary="Radiograph with the predicted mask in red")
    def overlay_png(key: str) -> Response:
        return picture(key, "overlay", lambda e: overlay(e.image, e.mask))

    @app.get("/predict/{key}/image.png", summary="The radiograph as decoded (at most 1024 px)")
    def image_png(key: str) -> Response:
        return picture(key, "image", lambda e: e.image)

    @app.get("/predict/{key}/mask.png", summary="The predicted mask as a transparent red layer")
    def mask_png(key: str) -> Response:
        def render(e: Entry) -> np.ndarray:
            rgba = np.zeros((*e.mask.shape, 4), np.uint8)
            rgba[e.mask] = (0, 0, 255, 255)
            return rgba
        return picture(key, "mask", render)

    @app.get("/predict/{key}/gradcam.png", summary="Grad-CAM heatmap layer (a visual aid, not a validated explanation)")
    def gradcam_png(key: str) -> Response:
        def render(e: Entry) -> np.ndarray:
            return heat_layer(worker.submit(lambda: pred.gradcam([e.image])[0]).result())
        return picture(key, "gradcam", render)

    @app.get("/predict/{key}/dicom/{kind}.dcm", summary="A DICOM result of a DICOM upload: seg, sr or sc (burned-in overlay)")
    def dicom_file(key: str, kind: str) -> Response:
        e = entry(key)
        if kind not in e.dicom:
            raise HTTPException(404, f"no {kind} result for this prediction (kinds: {', '.join(e.dicom) or 'none'})")
        return Response(e.dicom[kind], media_type="application/dicom",
                        headers={"Content-Disposition": f'attachment; filename="{key[:12]}.{kind}.dcm"'})

    @app.get("/health", summary="Model loaded, backend, version")
    def health() -> dict:
        return {"status": "ok", "model_loaded": True, "run": pred.run.root.name, "encoder": pred.encoder,
                "backend": getattr(pred.backend, "name", None) or f"{backend} (chosen at the first request)",
                "stage2": pred.stage2 is not None, "version": __version__}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def viewer() -> HTMLResponse:
        return HTMLResponse(VIEWER.read_text())

    return app
