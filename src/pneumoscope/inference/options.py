"""What a prediction can be asked to do: the option registries and :class:`PredictOptions`.

Kept free of heavy imports so that the command line can read the choices quickly.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKENDS = ("auto", "torch", "onnx", "openvino")  # auto: the fastest that matches float32 on this machine
PRECISIONS = ("fp32", "bf16", "fp16")  # of the torch backend (fp16 on CUDA only)
PRECISION_CHOICES = ("auto", *PRECISIONS, "int8")  # int8: OpenVINO (or ONNX Runtime), calibrated on the run's training images
TTA_MODES = ("none", "hflip")


@dataclass(frozen=True)
class PredictOptions:
    """How to predict."""

    backend: str = "auto"  # one of BACKENDS
    precision: str = "auto"  # auto (float32 or a precision the validation images accepted) or one of PRECISION_CHOICES
    compile: bool = False  # torch.compile the torch backend
    tta: str = "none"  # one of TTA_MODES
    postprocess: bool = True  # apply the run's searched post-processing rule when it has one
    batch_size: int = 8
    workers: int | None = None  # decoding threads (None: one per two cores, so the model keeps its cores)
    threads: int | None = None  # threads of the network (PyTorch and ONNX Runtime); None: their defaults
    overlay_size: int = 512  # long side of the overlay pictures (0: none); masks are always at full size
    gradcam: bool = False
    submission: str | None = None  # SIIM submission CSV path
    skip_bad: bool = False
    device: str = "auto"
    resume: bool = True
    dicom_out: str | None = None  # folder for DICOM results (SEG, SR, overlay) of DICOM inputs
    dicom_objects: tuple[str, ...] = ("seg", "sr", "sc")  # which DICOM results (see pneumoscope.dicom_results.KINDS)
    max_megapixels: float = 178.956970  # largest image (files and arrays), checked before decoding; the server passes its own

    def check(self) -> PredictOptions:
        """Raise PneumoscopeError (one line) for a value no prediction can use."""
        from ..errors import PneumoscopeError

        for flag, value, choices in (("--backend", self.backend, BACKENDS), ("--precision", self.precision, PRECISION_CHOICES),
                                     ("--tta", self.tta, TTA_MODES)):
            if value not in choices:
                raise PneumoscopeError(f"{flag} {value!r}: unknown; choose one of {', '.join(choices)}")
        if self.precision == "int8" and self.backend == "torch":
            raise PneumoscopeError("--precision int8 runs on OpenVINO or ONNX Runtime: use --backend auto, openvino or onnx")
        if self.batch_size < 1:
            raise PneumoscopeError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise PneumoscopeError(f"--threads {self.threads}: must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise PneumoscopeError(f"--workers {self.workers}: must be at least 1")
        if not 0 < self.max_megapixels < float("inf"):
            raise PneumoscopeError(f"max_megapixels {self.max_megapixels}: must be a finite number > 0")
        if set(self.dicom_objects) - {"seg", "sr", "sc"} or not self.dicom_objects:
            raise PneumoscopeError(f"--dicom-objects {','.join(self.dicom_objects)}: choose any of seg, sr, sc")
        if self.overlay_size < 0:
            raise PneumoscopeError(f"--overlay-size {self.overlay_size}: must be 0 (no overlays) or more")
        return self
