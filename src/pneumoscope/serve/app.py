"""FastAPI app: ``POST /predict``, picture endpoints, ``/health`` and the viewer at ``/``.

The model is loaded once; the routes are the named methods of :class:`.routes.Routes`, registered
here with their paths and summaries. Bodies over the upload limit are stopped while they stream in;
images over the pixel limit are refused from their header, before decoding. Uploads are checked by
content; an upload over 1 MB is spooled to an anonymous temporary file while it waits (never named on
disk, gone when the request ends) and is kept only when ``keep_uploads`` names a folder. Nothing a
client sends names a path on the server.

With a ``token`` every request but the viewer page and the docs must carry it (:mod:`.auth`);
every answer says ``Cache-Control: no-store``. Prediction ids are 256 random bits
(``secrets.token_urlsafe(32)``): a picture cannot be found by guessing or counting ids.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse

from ..errors import PneumoscopeError
from ..files import check_writable_folder
from ..inference.predictor import PredictOptions, Predictor
from ..version import __version__
from .access import AccessLog
from .auth import TokenAuth
from .limits import BodyLimit
from .routes import Routes


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
    routes = Routes(pred, limit, f"{max_upload_mb:g} MB", int(max_megapixels * 1e6), max_waiting, keep, backend)
    app = FastAPI(title="pneumoscope", version=__version__, docs_url=None, redoc_url=None,
                  description="Pneumothorax segmentation (U-Net) and detection (XGBoost) on chest radiographs.")
    _offline_docs(app)
    app.add_middleware(BodyLimit, limit=limit, label=f"{max_upload_mb:g} MB")
    app.add_middleware(TokenAuth, token=token)  # runs before the body limit, so a refused client's body is never read
    app.add_middleware(AccessLog)  # added last: runs first, so every request is logged, refused ones too

    app.add_exception_handler(RequestValidationError, routes.one_sentence)
    app.add_api_route("/predict", routes.predict, methods=["POST"], summary="Segment and classify one DICOM, PNG or JPEG radiograph")
    pictures = (("overlay", routes.overlay_png, "Radiograph with the predicted mask in red"),
                ("image", routes.image_png, "The radiograph as decoded (at most 1024 px)"),
                ("mask", routes.mask_png, "The predicted mask as a transparent red layer"),
                ("gradcam", routes.gradcam_png, "Grad-CAM heatmap layer (a visual aid, not a validated explanation)"))
    for name, route, summary in pictures:
        app.add_api_route(f"/predict/{{key}}/{name}.png", route, methods=["GET"], summary=summary)
    app.add_api_route("/predict/{key}/dicom/{kind}.dcm", routes.dicom_file, methods=["GET"],
                      summary="A DICOM result of a DICOM upload: seg, sr or sc (burned-in overlay)")
    app.add_api_route("/health", routes.health, methods=["GET"], summary="Model loaded, backend, version")
    app.add_api_route("/", routes.viewer, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)
    return app
