"""The dataset of a config, indexed and cached: the synthetic default or a folder on disk."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..config import Config
from ..distributed import DistInfo, barrier
from ..errors import BadItemError, PneumoscopeError
from .cache import Cache, build_cache, default_cache_dir
from .layouts import index_dataset
from .synth import generate


def synthetic_root(cfg: Config) -> Path:
    """Folder of the embedded synthetic default, generated on first use (deterministic)."""
    d = cfg.data
    base = Path(d.cache_dir) if d.cache_dir else default_cache_dir()
    root = base / f"synth-n{d.synth_n}-s{d.synth_size}-p{d.synth_positive_rate}-seed{d.synth_seed}"
    if not (root / "train.csv").is_file():
        tmp = root.with_name(f"{root.name}.{os.getpid()}.tmp")
        try:
            generate(tmp, d.synth_n, d.synth_size, d.synth_seed, d.synth_positive_rate)
            if root.exists():  # another process generated it meanwhile
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, root)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise PneumoscopeError(f"cache folder {base}: cannot write the synthetic phantoms ({exc.strerror or exc}); "
                                   "set data.cache_dir or $PNEUMOSCOPE_CACHE to a writable folder") from exc
    return root


def prepare_data(cfg: Config, info: DistInfo | None = None) -> tuple[Cache, list[BadItemError]]:
    """Index and cache the configured dataset (rank 0 builds, the others wait and open).

    Returns the cache and the items skipped (``data.skip_bad``) while indexing or decoding."""
    info = info or DistInfo()
    d = cfg.data
    root = Path(d.path) if d.path else None
    if root is None:
        if info.is_main:
            synthetic_root(cfg)
        barrier(info)
        root = synthetic_root(cfg)
    index, bad = index_dataset(root, d.layout, d.skip_bad)
    cache = None
    if info.is_main:
        cache = build_cache(index, d.size, d.cache_dir, d.skip_bad, progress=cfg.train.progress)
    barrier(info)
    if cache is None:
        cache = build_cache(index, d.size, d.cache_dir, d.skip_bad)
    return cache, bad + cache.skipped
