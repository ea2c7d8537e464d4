import os
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pneumoscope.data.cache import build_cache, resize_mask
from pneumoscope.data.layouts import index_dataset
from pneumoscope.errors import BadItemError


def test_built_once_then_reused(tiny_synth, cache_dir):
    index, _ = index_dataset(tiny_synth)
    a = build_cache(index, 48, cache_dir)
    assert a.images.shape == (24, 48, 48) and a.images.dtype == np.uint8
    assert isinstance(a.images, np.memmap)
    stamp = os.stat(a.root / "images.npy").st_mtime_ns
    b = build_cache(index, 48, cache_dir)
    assert b.root == a.root and os.stat(b.root / "images.npy").st_mtime_ns == stamp
    assert (b.index["label"].to_numpy() == (b.masks.reshape(24, -1).max(1) > 0)).all()
    c = build_cache(index, 32, cache_dir)
    assert c.root != a.root and c.images.shape == (24, 32, 32)


def test_rebuilt_when_a_source_changes(tiny_synth, tmp_path, cache_dir):
    root = tmp_path / "k"
    shutil.copytree(tiny_synth, root)
    index, _ = index_dataset(root)
    a = build_cache(index, 32, cache_dir)
    f = root / "png_images" / index.image_path.iloc[0].rsplit("/", 1)[1]
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(f)
    b = build_cache(index_dataset(root)[0], 32, cache_dir)
    assert b.root != a.root and b.images[0].max() == 0


def test_bad_mask_fails_or_is_skipped_and_listed(tiny_synth, tmp_path, cache_dir):
    root = tmp_path / "k"
    shutil.copytree(tiny_synth, root)
    index, _ = index_dataset(root)
    name = index.mask_path.iloc[2].rsplit("/", 1)[1]
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(root / "png_masks" / name)  # wrong size
    with pytest.raises(BadItemError, match="differs from image size"):
        build_cache(index, 32, cache_dir)
    cache = build_cache(index, 32, cache_dir, skip_bad=True)
    assert len(cache) == 23 and cache.images.shape[0] == 23
    assert [e.item_id for e in cache.skipped] == [index.id.iloc[2]]
    with pytest.raises(BadItemError):  # reopening without skip_bad still refuses
        build_cache(index, 32, cache_dir)


def test_resize_mask_keeps_half_covered_pixels():
    m = np.zeros((4, 4), np.uint8)
    m[:2, :] = 1
    np.testing.assert_array_equal(resize_mask(m, 2), [[1, 1], [0, 0]])


@pytest.mark.slow
def test_a_larger_dataset_is_cached_by_processes_with_bad_items_reported(tiny_synth, tmp_path, cache_dir):
    from pneumoscope.data import cache as cache_mod

    root = tmp_path / "k"
    shutil.copytree(tiny_synth, root)
    table = pd.read_csv(root / "train.csv")
    extra = []
    for k in (1, 2):  # 72 images: over the threshold for worker processes
        for rec in table.itertuples():
            name = f"c{k}_{rec.new_filename}"
            shutil.copy(root / "png_images" / rec.new_filename, root / "png_images" / name)
            shutil.copy(root / "png_masks" / rec.new_filename, root / "png_masks" / name)
            extra.append({"new_filename": name, "ImageId": f"c{k}_{rec.ImageId}", "has_pneumo": rec.has_pneumo})
    pd.concat([table, pd.DataFrame(extra)]).to_csv(root / "train.csv", index=False)
    (root / "png_images" / extra[5]["new_filename"]).write_bytes(b"broken")
    index, _ = index_dataset(root)
    assert len(index) >= cache_mod.PROCESS_MIN_IMAGES
    with pytest.raises(BadItemError, match="not a readable image"):
        build_cache(index, 32, cache_dir, workers=2)
    cache = build_cache(index, 32, cache_dir, skip_bad=True, workers=2)
    assert cache.build["kind"] == "processes" and cache.build["images_per_second"] > 0
    assert len(cache) == 71 and [e.item_id for e in cache.skipped] == [extra[5]["ImageId"]]
    small = build_cache(index_dataset(tiny_synth)[0], 32, cache_dir, workers=2)
    np.testing.assert_array_equal(np.asarray(cache.images[:24]), np.asarray(small.images))  # same pixels either way


@pytest.mark.slow
def test_a_script_without_a_main_guard_builds_with_processes_once(tmp_path):
    """Spawned workers must not run the caller's script again (a notebook export has no guard)."""
    import subprocess
    import sys

    script = tmp_path / "user_script.py"
    script.write_text(
        "from pneumoscope.data.synth import generate\n"
        "from pneumoscope.data.layouts import index_dataset\n"
        "from pneumoscope.data.cache import build_cache, PROCESS_MIN_IMAGES\n"
        f"root = generate({str(tmp_path / 'd')!r}, n=PROCESS_MIN_IMAGES, size=64, seed=1, positive_rate=0.5)\n"
        "print('script body ran', flush=True)\n"
        f"cache = build_cache(index_dataset({str(tmp_path / 'd')!r})[0], 32, {str(tmp_path / 'c')!r}, workers=2)\n"
        "print(cache.build['kind'], len(cache))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("script body ran") == 1
    from pneumoscope.data import cache as cache_mod

    assert done.stdout.split()[-2:] == ["processes", str(cache_mod.PROCESS_MIN_IMAGES)]
