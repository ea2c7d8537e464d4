"""Bounds on what a DICOM file may make the decoders allocate, checked before they run.

A file's size says little about the memory its decoding takes. Two kinds of file decode to far
more than they hold:

- **Deflated Explicit VR Little Endian** (1.2.840.10008.1.2.1.99): the whole dataset is one
  zlib stream, and pydicom inflates it in one call before anything can be checked: a 2 MB file
  of zeros inflates to 2 GiB. Here it is inflated in steps instead: first until the Pixel Data
  element (at most :data:`HEADER_CAP` bytes), whose header gives Rows x Columns x frames x
  samples x bits; that size is checked against the pixel cap, and the rest is inflated to at
  most the declared size plus :data:`TRAILER_SLACK`. Anything beyond is refused.
- **Compressed pixel data** (JPEG, JPEG-LS, JPEG 2000/HTJ2K): the decoder allocates what the
  codestream's own header says, which need not be what the DICOM header says. The first frame's
  codestream header (JPEG SOF, JPEG 2000 SIZ) is read and its size checked against the cap and
  against Rows x Columns. RLE decodes to the DICOM header's size, which is checked already.
"""

from __future__ import annotations

import struct
import zlib
from io import BytesIO
from typing import Any, BinaryIO

from ..errors import PneumoscopeError, TooLargeError
from .pixels import MAX_PIXELS

DEFLATED = "1.2.840.10008.1.2.1.99"
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) in little endian
HEADER_CAP = 16 << 20  # the elements before Pixel Data, inflated: at most this many bytes
TRAILER_SLACK = 1 << 20  # elements after Pixel Data (padding, signatures): at most this many bytes
STEP = 1 << 16


def _too_many(name: str, what: str, pixels: int, cap: int) -> TooLargeError:
    return TooLargeError(f"{name}: {what}: {pixels / 1e6:.0f} megapixels, more than the limit of {cap / 1e6:.0f} megapixels")


class _Inflater:
    """A raw deflate stream read from ``fh`` and inflated in steps, never past a limit."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.z, self.out = fh, zlib.decompressobj(-zlib.MAX_WBITS), bytearray()

    @property
    def done(self) -> bool:
        return self.z.eof

    def fill(self, limit: int) -> bool:
        """Inflate until ``limit`` bytes are out or the stream ends; True when it ended."""
        while len(self.out) < limit and not self.z.eof:
            data = self.z.unconsumed_tail or self.fh.read(STEP)
            if not data:
                return True  # input ran out (a cut file: pydicom will say so)
            try:
                self.out += self.z.decompress(data, limit - len(self.out))
            except zlib.error as exc:
                raise PneumoscopeError(f"its deflated data is corrupt ({exc})") from exc
        return self.z.eof


def _declared(prefix: bytes) -> tuple[int, int, int, int, int] | None:
    """Rows, Columns, frames, samples per pixel and bits allocated from the elements before Pixel Data."""
    from pydicom.filereader import read_dataset

    try:
        ds = read_dataset(BytesIO(prefix), is_implicit_VR=False, is_little_endian=True)
        return (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0), int(ds.get("NumberOfFrames", 1) or 1),
                int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 8) or 8))
    except Exception:  # a tag-like byte pattern inside another element's value: not the real Pixel Data
        return None


def inflate_bounded(fh: BinaryIO, name: str, max_pixels: int | None) -> bytes:
    """The inflated dataset of a deflated DICOM (``fh`` just after its file meta), within bounds."""
    cap = max_pixels or MAX_PIXELS
    inf = _Inflater(fh)
    start = 0
    while True:
        at = inf.out.find(PIXEL_DATA_TAG, start)
        if at < 0:
            if inf.done or len(inf.out) >= HEADER_CAP:
                if not inf.done:
                    raise TooLargeError(f"{name}: no pixel data in the first {HEADER_CAP >> 20} MB of its deflated dataset; refused")
                return bytes(inf.out)  # no pixel data at all: the reader says so
            ended = inf.fill(min(len(inf.out) + STEP * 4, HEADER_CAP))
            if ended and inf.out.find(PIXEL_DATA_TAG, start) < 0:
                return bytes(inf.out)
            continue
        dims = _declared(bytes(inf.out[:at]))
        if dims is None:
            start = at + 1
            continue
        rows, cols, frames, samples, bits = dims
        pixels = rows * cols * frames * samples
        if pixels > cap:
            raise _too_many(name, f"its header declares {frames} frame(s) of {cols}x{rows} pixels x {samples} sample(s)", pixels, cap)
        limit = at + 12 + pixels * max(1, bits // 8 + (bits % 8 > 0)) + TRAILER_SLACK
        inf.fill(limit + 1)
        if len(inf.out) > limit:
            raise TooLargeError(f"{name}: its deflated data inflates beyond the size its header declares "
                                f"({cols}x{rows} pixels, {frames} frame(s)); refused")
        return bytes(inf.out)


def open_bounded(source: str | BinaryIO, name: str, max_pixels: int | None) -> str | BinaryIO:
    """``source`` itself, or for a deflated file an equivalent in-memory file whose dataset was
    inflated within bounds (its file meta then says Explicit VR Little Endian; the caller restores
    the original transfer syntax for reporting, see :func:`DEFLATED`)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_file_meta_info
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    fh = open(source, "rb") if isinstance(source, str) else source
    start = fh.tell()
    try:
        head = fh.read(132)
        if head[128:132] != b"DICM":
            return source
        try:
            meta = _read_file_meta_info(fh)
        except Exception:
            return source  # the reader reports a damaged file meta
        if str(meta.get("TransferSyntaxUID", "")) != DEFLATED:
            return source
        try:
            dataset = inflate_bounded(fh, name, max_pixels)
        except PneumoscopeError as exc:
            text = str(exc)
            raise type(exc)(text if text.startswith(name) else f"{name}: {text}") from exc
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        out = DicomBytesIO()
        out.write(head)
        write_file_meta_info(out, meta, enforce_standard=False)
        out.write(dataset)
        out.seek(0)
        return out
    finally:
        if fh is not source:
            fh.close()
        else:
            fh.seek(start)


# -- compressed pixel data -------------------------------------------------------------------
SOF = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC} | {0xF7}  # JPEG start-of-frame markers (0xF7: JPEG-LS)


def codestream_size(frame: bytes) -> tuple[int, int, int] | None:
    """Width, height and components a JPEG / JPEG-LS / JPEG 2000 codestream declares, or None."""
    if frame[:2] == b"\xff\xd8":  # JPEG family: walk the markers to the frame header
        i = 2
        while i + 4 <= len(frame):
            if frame[i] != 0xFF:
                return None
            marker = frame[i + 1]
            if marker == 0xFF:
                i += 1
                continue
            length = struct.unpack(">H", frame[i + 2:i + 4])[0]
            if marker in SOF and i + 10 <= len(frame):
                height, width = struct.unpack(">HH", frame[i + 5:i + 9])
                return width, height, frame[i + 9]
            i += 2 + length
        return None
    at = frame.find(b"\xff\x4f\xff\x51", 0, 4096)  # JPEG 2000 SOC + SIZ (bare, or inside a JP2 box)
    if at >= 0 and at + 42 <= len(frame):
        x, y, x0, y0 = struct.unpack(">IIII", frame[at + 8:at + 24])
        components = struct.unpack(">H", frame[at + 40:at + 42])[0]
        return x - x0, y - y0, components
    return None


def check_codestream(ds: Any, name: str, max_pixels: int | None) -> None:
    """Refuse compressed pixel data whose first frame declares more pixels than the cap, or another
    size than the DICOM header, before a decoder allocates it."""
    ts = ds.file_meta.get("TransferSyntaxUID")
    if ts is None or not ts.is_compressed or str(ts) == DEFLATED or "PixelData" not in ds:
        return
    from pydicom.encaps import get_frame

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        first = get_frame(ds.PixelData, 0, number_of_frames=frames)
    except Exception:
        return  # the decoder reports broken encapsulation
    size = codestream_size(bytes(first[:65536]))
    if size is None:
        return
    width, height, components = size
    cap = max_pixels or MAX_PIXELS
    if width * height * max(components, 1) > cap:
        raise _too_many(name, f"its compressed data declares {width}x{height} pixels x {components} component(s)",
                        width * height * max(components, 1), cap)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if (width, height) != (cols, rows):
        raise PneumoscopeError(f"{name}: its compressed data is {width}x{height} pixels but its header says {cols}x{rows}; refused")
