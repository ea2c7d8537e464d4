"""Decode and resize a dataset once to the training size; memory-mapped arrays after that.

A cache lives in ``<cache_dir>/<key>/`` with ``images.npy`` (uint8, N x S x S),
``masks.npy`` (uint8 0/1) and ``index.csv`` (the usable rows, in array order, with
the label and whether a mask is known). The key hashes the index (paths, file sizes
and modification times, RLE) and the size, so a changed source or size builds a new
cache and an unchanged one is reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..errors import BadItemError, PneumoscopeError, one_line
from .io import MIN_SIDE, read_image, read_mask
from .layouts import RLE_SEP
from .rle import decode_union
from .transforms import resize_mask, to_model_size

CACHE_VERSION = 1
PROCESS_MIN_IMAGES = 64  # below this, threads (process start-up would cost more than it saves)


def default_cache_dir() -> Path:
    """``$PNEUMOSCOPE_CACHE`` or ``~/.cache/pneumoscope``."""
    return Path(os.environ.get("PNEUMOSCOPE_CACHE", Path.home() / ".cache" / "pneumoscope"))


def _load_resized(row: dict, size: int) -> tuple[np.ndarray | None, np.ndarray | None, BadItemError | None, bool, dict]:
    """One index row decoded and resized to ``size`` (run in a worker process): image, mask, error,
    whether the mask is known, metadata."""
    try:
        img, mask, meta = load_row(row)
    except BadItemError as exc:
        return None, None, exc, False, {}
    small = resize_mask(mask, size) if mask is not None else np.zeros((size, size), np.uint8)
    return to_model_size(img, size), small, None, mask is not None, meta


@contextlib.contextmanager
def _pool(n: int, workers: int | None):
    """Processes on every core for real datasets (decoding is CPU work); threads for a handful of
    images, where starting processes would cost more than it saves."""
    count = max(1, workers or os.cpu_count() or 1)
    if n >= PROCESS_MIN_IMAGES and count > 1:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=count, mp_context=multiprocessing.get_context("spawn")) as pool:
            yield pool, "processes", count
    else:
        with ThreadPoolExecutor(max_workers=count) as pool:
            yield pool, "threads", count


@contextlib.contextmanager
def _main_not_reimported():
    """Start worker processes without running the caller's script again.

    A spawned worker imports the parent's ``__main__`` file first; a user's script or notebook
    export without an ``if __name__ == "__main__":`` guard would train again inside every worker.
    The workers only need this module, so the main module's file is hidden while they start."""
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if hasattr(main, k)}
    try:
        if "__file__" in saved:
            del main.__file__
        if "__spec__" in saved:
            main.__spec__ = None
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


def load_row(row: pd.Series | dict) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Read one index row: image float [0, 1], mask 0/1 (None when unknown), metadata.

    Raises BadItemError naming the file when the image or mask is unusable.
    """
    item = str(row["id"])

    def bad(path: str, exc: PneumoscopeError) -> BadItemError:
        return BadItemError(item, path, str(exc).removeprefix(f"{path}: "))

    try:
        img, meta = read_image(row["image_path"], min_side=MIN_SIDE)
    except PneumoscopeError as exc:
        raise bad(str(row["image_path"]), exc) from exc
    mask = None
    try:
        if row["mask_path"]:
            mask = read_mask(row["mask_path"], expected_shape=img.shape)
        elif row["rle"]:
            mask = decode_union(row["rle"].split(RLE_SEP), img.shape[0], img.shape[1])
    except PneumoscopeError as exc:
        raise bad(str(row["mask_path"] or row["image_path"]), exc) from exc
    return img, mask, meta


def cache_key(index: pd.DataFrame, size: int) -> str:
    """Hash of what the cache depends on: sources (with size and mtime) and the size."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{size}".encode())
    for rec in index[["id", "image_path", "mask_path", "rle"]].itertuples(index=False):
        h.update("|".join(map(str, rec)).encode())
        for p in (rec.image_path, rec.mask_path):
            if p:
                st = os.stat(p)
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


@dataclass
class Cache:
    """Memory-mapped arrays of one dataset at one size."""

    root: Path
    images: np.ndarray  # uint8 (N, S, S), memory-mapped
    masks: np.ndarray  # uint8 (N, S, S), 0/1
    index: pd.DataFrame  # usable rows, in array order; columns of the index + has_mask
    skipped: list[BadItemError]
    build: dict = field(default_factory=dict)  # when built by this call: seconds, images/s, workers

    def __len__(self) -> int:
        return len(self.index)


def _open(root: Path) -> Cache:
    meta = json.loads((root / "meta.json").read_text())
    skipped = [BadItemError(s["id"], s["path"], s["reason"]) for s in meta["skipped"]]
    index = pd.read_csv(root / "index.csv", dtype={"id": str, "mask_path": str, "rle": str, "patient_id": str,
                                                     "sex": str, "view": str, "source": str}, keep_default_na=False)
    index["age"] = pd.to_numeric(index["age"], errors="coerce")
    return Cache(root, np.load(root / "images.npy", mmap_mode="r"), np.load(root / "masks.npy", mmap_mode="r"),
                 index, skipped)


def build_cache(index: pd.DataFrame, size: int, cache_dir: str | Path | None = None,
                skip_bad: bool = False, workers: int | None = None, progress: bool = False) -> Cache:
    """Return the cache of ``index`` at ``size``, building it unless an identical one exists."""
    base = Path(cache_dir) if cache_dir else default_cache_dir()
    root = base / cache_key(index, size)
    if (root / "meta.json").is_file():
        cache = _open(root)
        if cache.skipped and not skip_bad:
            raise cache.skipped[0]
        return cache
    tmp = base / f".{root.name}.{os.getpid()}.tmp"
    try:
        return _build(index, size, root, tmp, skip_bad, workers, progress)
    except OSError as exc:  # a read-only or full cache folder
        shutil.rmtree(tmp, ignore_errors=True)
        raise PneumoscopeError(f"cache folder {base}: cannot write the cache ({exc.strerror or one_line(exc)}); set "
                               "data.cache_dir or $PNEUMOSCOPE_CACHE to a writable folder with space") from exc


def _build(index: pd.DataFrame, size: int, root: Path, tmp: Path, skip_bad: bool, workers: int | None,
           progress: bool) -> Cache:
    tmp.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    n = len(index)
    images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(n, size, size))
    masks = np.lib.format.open_memmap(tmp / "masks.npy", mode="w+", dtype=np.uint8, shape=(n, size, size))
    rows = [dict(r) for _, r in index.iterrows()]
    t0 = time.perf_counter()
    results = []
    with _pool(n, workers) as (pool, kind, count):
        with _main_not_reimported():  # the processes start here, on the first submits
            jobs = pool.map(_load_resized, rows, [size] * n, chunksize=max(1, min(32, n // (4 * count) or 1)))
        for i, (img, mask, err, has_mask, meta) in enumerate(tqdm(jobs, total=n, desc=f"caching at {size}px", leave=False,
                                                                   disable=None if progress else True)):
            if err is not None and not skip_bad:
                shutil.rmtree(tmp, ignore_errors=True)
                raise err
            if err is None:
                images[i], masks[i] = img, mask
            results.append((i, err, has_mask, meta))
    seconds = time.perf_counter() - t0
    keep = [i for i, err, _, _ in results if err is None]
    skipped = [err for _, err, _, _ in results if err is not None]
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PneumoscopeError("no usable images left after skipping bad items")
    out = index.iloc[keep].copy().reset_index(drop=True)
    out["has_mask"] = [results[i][2] for i in keep]
    for col in ("patient_id", "sex", "age", "view"):  # DICOM metadata fills what the CSV lacked
        vals = [results[i][3].get(col) for i in keep]
        out[col] = [v if (v not in (None, "") and (col != "age" or v == v)) else old for v, old in zip(vals, out[col])]
    pos = np.array([bool(masks[i].any()) for i in keep])
    out["label"] = np.where(out["has_mask"], pos.astype(int), out["label"])
    if len(keep) < n:  # compact the arrays to the usable rows
        images2 = np.lib.format.open_memmap(tmp / "images2.npy", mode="w+", dtype=np.uint8, shape=(len(keep), size, size))
        masks2 = np.lib.format.open_memmap(tmp / "masks2.npy", mode="w+", dtype=np.uint8, shape=(len(keep), size, size))
        images2[:], masks2[:] = images[keep], masks[keep]
        del images2, masks2
        os.replace(tmp / "images2.npy", tmp / "images.npy")
        os.replace(tmp / "masks2.npy", tmp / "masks.npy")
    else:
        images.flush()
        masks.flush()
    out.to_csv(tmp / "index.csv", index=False)
    build = {"seconds": round(seconds, 2), "images_per_second": round(n / max(seconds, 1e-9), 1),
             "workers": count, "kind": kind}
    (tmp / "meta.json").write_text(json.dumps({
        "size": size, "n": len(keep),
        "skipped": [{"id": e.item_id, "path": e.path, "reason": e.reason} for e in skipped],
        "build": build,
    }, indent=1))
    try:
        os.replace(tmp, root)
    except OSError:  # another process built it first
        shutil.rmtree(tmp, ignore_errors=True)
    cache = _open(root)
    cache.build = build  # what this call did (a reused cache has none)
    return cache
