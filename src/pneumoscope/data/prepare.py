"""The dataset of a config, indexed and cached: the synthetic default or a folder on disk."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

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


def index_sources(roots: list[Path], layout: str = "auto", skip_bad: bool = False) -> tuple[pd.DataFrame, list[BadItemError]]:
    """One index over several dataset folders, each with its own layout (``layout`` names the
    first one's; the others are detected). A ``source`` column says where each image came from."""
    frames, bad = [], []
    for i, root in enumerate(roots):
        df, b = index_dataset(root, layout if i == 0 else "auto", skip_bad)
        frames.append(df.assign(source=root.name or str(root)))
        bad += b
    index = pd.concat(frames, ignore_index=True)
    dup = index["id"].duplicated()
    if dup.any():
        raise PneumoscopeError(f"image id {index.loc[dup, 'id'].iloc[0]!r} appears in two of the dataset folders "
                               f"({', '.join(map(str, roots))}); ids must be unique across them")
    index.attrs["layout"] = "+".join(f.attrs.get("layout", "?") for f in frames)
    return index, bad


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
    index, bad = index_sources([root, *map(Path, d.extra_paths)], d.layout, d.skip_bad)
    cache = None
    if info.is_main:
        cache = build_cache(index, d.size, d.cache_dir, d.skip_bad, progress=cfg.train.progress)
        b = cache.build
        if b and cfg.train.progress:
            print(f"cached {len(cache)} images at {d.size} px in {b['seconds']:.1f}s ({b['images_per_second']:.0f} images/s, "
                  f"{b['workers']} {b['kind']})", flush=True)
    barrier(info)
    if cache is None:
        cache = build_cache(index, d.size, d.cache_dir, d.skip_bad)
    return cache, bad + cache.skipped
