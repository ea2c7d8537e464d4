"""Test helpers: writing DICOM files and small images, CLI flags for tiny runs, free ports."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np

FAST = ["--size", "64", "--batch-size", "8", "--set", "train.progress=false"]  # CLI flags of a tiny run


def free_port() -> int:
    """A TCP port free on the loopback interface right now, chosen below the kernel's ephemeral range:
    a port from that range (what binding port 0 gives) can meanwhile become the local end of an outgoing
    connection — e.g. the node's retries towards a PACS that is not up yet — and the server a test then
    starts on it fails with "address already in use" (seen once in test_listen)."""
    import random

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # nothing free below the range: any free port
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_error_line(capsys) -> str:
    """The single ``pneumoscope: error:`` line a failed command printed on stderr."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pneumoscope: error:"), err
    return err[0]


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", slope: float | None = None,
                intercept: float | None = None, window: tuple[float, float] | None = None, sex: str = "M",
                age: str = "045Y", view: str = "PA", patient_id: str = "p1") -> Path:
    """Write a minimal valid single-frame greyscale DICOM with the given pixel data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientSex, ds.PatientAge, ds.ViewPosition = patient_id, sex, age, view
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    bits = 16 if pixels.dtype == np.uint16 else 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0.0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def labelled_folder(folder: Path, images: list[Path], labels: list[str], patients: list[str]) -> Path:
    """A ``folder`` layout dataset: each image saved as ``n<i>.png`` with its label and patient in ``labels.csv``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (image, label, patient) in enumerate(zip(images, labels, patients, strict=True)):
        Image.open(image).save(folder / f"n{i}.png")
        rows.append(f"n{i}.png,{label},{patient}")
    (folder / "labels.csv").write_text("file,label,patient_id\n" + "\n".join(rows) + "\n")
    return folder
