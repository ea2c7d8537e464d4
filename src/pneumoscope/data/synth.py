"""Procedural chest-radiograph phantoms with known pneumothorax masks.

Each phantom is a frontal chest X-ray drawn from simple anatomy: body outline, two
lung fields with bronchovascular markings and parenchymal texture, mediastinum,
spine and heart, posterior ribs, clavicles, diaphragm domes, exposure variation,
patient position and quantum noise. A pneumothorax is a peripheral part of one lung
where the lung has collapsed away from the chest wall: no vessel markings, no
parenchymal texture, bounded by a thin bright visceral pleural line. Its mean
intensity equals the lung's, so it is found by texture and edge, not by brightness.

Output uses the Kaggle PNG layout (``png_images/``, ``png_masks/``, ``train.csv``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ..errors import PneumoscopeError


@dataclass(frozen=True)
class Phantom:
    """One rendered phantom: image and mask at the requested size."""

    image: np.ndarray  # uint8 (S, S)
    mask: np.ndarray  # uint8 (S, S), 0/1
    side: str  # "", "right" or "left" (patient side; patient right is image left)
    lungs: np.ndarray  # uint8 (S, S), 0/1: both lung fields (pneumothorax included)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(a, (0, 0), sigmaX=max(sigma, 0.1))


def _lung_mask(size: int, cx: float, rng: np.random.Generator, mirror: bool) -> tuple[np.ndarray, tuple[float, float]]:
    """One lung field as a filled polygon; returns the mask and the hilum point (x, y)."""
    s = size
    top = rng.uniform(0.12, 0.17)
    base = rng.uniform(0.72, 0.80)
    width = rng.uniform(0.26, 0.31)
    medial = rng.uniform(0.035, 0.06)
    ts = np.linspace(0.0, 1.0, 40)
    # Lateral border: a rounded curve from the apex down to the costophrenic angle.
    lat_x = medial + width * (1 - (1 - ts) ** 2.2) ** 0.5
    lat_y = top + (base - top) * ts
    # Diaphragm dome from the costophrenic angle back to the medial base.
    dome_t = np.linspace(0, 1, 20)
    dome_x = lat_x[-1] + (medial + 0.02 - lat_x[-1]) * dome_t
    dome_y = base - rng.uniform(0.05, 0.09) * np.sin(np.pi * dome_t) - 0.06 * dome_t
    # Medial border up along the mediastinum.
    med_y = np.linspace(dome_y[-1], top + 0.02, 20)
    med_x = medial + 0.02 - 0.015 * np.sin(np.linspace(0, np.pi, 20))
    xs = np.concatenate([lat_x, dome_x, med_x])
    ys = np.concatenate([lat_y, dome_y, med_y])
    sign = -1.0 if mirror else 1.0
    pts = np.stack([(cx + sign * xs) * s, ys * s], axis=1).astype(np.int32)
    mask = np.zeros((s, s), np.uint8)
    cv2.fillPoly(mask, [pts], 1)
    hilum = ((cx + sign * (medial + 0.07)) * s, (top + 0.42 * (base - top)) * s)
    return mask, hilum


def _vessels(size: int, lung: np.ndarray, hilum: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Bronchovascular markings: branching lines from the hilum, thinning outwards."""
    canvas = np.zeros((size, size), np.float32)
    scale = size / 256.0
    stack = [(hilum[0], hilum[1], rng.uniform(0, 2 * np.pi), 3.0 * scale, 0.9, 0)
             for _ in range(int(rng.integers(14, 20)))]
    while stack:
        x, y, ang, width, amp, depth = stack.pop()
        step = rng.uniform(6, 12) * scale
        nx, ny = x + step * np.cos(ang), y + step * np.sin(ang)
        ix, iy = int(nx), int(ny)
        if not (0 <= ix < size and 0 <= iy < size) or not lung[iy, ix] or depth > 20:
            continue
        cv2.line(canvas, (int(x), int(y)), (ix, iy), float(amp), max(1, int(round(width))), cv2.LINE_AA)
        ang += rng.normal(0, 0.25)
        stack.append((nx, ny, ang, width * 0.9, amp * 0.93, depth + 1))
        if rng.random() < 0.3:
            stack.append((nx, ny, ang + rng.choice([-1, 1]) * rng.uniform(0.4, 0.8), width * 0.7, amp * 0.85, depth + 1))
    return _blur(canvas, 0.6 * scale)


def _ribs(size: int, cx: float, rng: np.random.Generator) -> np.ndarray:
    """Posterior ribs as curved bright bands across each hemithorax, plus clavicles."""
    canvas = np.zeros((size, size), np.float32)
    thick = max(2, int(round(size * 0.022)))
    for side in (-1, 1):
        for k in range(9):
            y0 = size * (0.13 + 0.075 * k + rng.normal(0, 0.004))
            xs = np.linspace(0.03, 0.40, 30)
            t = xs / 0.40
            ys = y0 + size * (-0.035 * np.sin(np.pi * t) + 0.10 * t**2 + 0.02 * k / 8 * t)
            pts = np.stack([(cx + side * xs) * size, ys], axis=1).astype(np.int32)
            cv2.polylines(canvas, [pts], False, 1.0, thick, cv2.LINE_AA)
            cv2.polylines(canvas, [pts], False, 0.5, max(1, thick // 3), cv2.LINE_AA)  # cortical rim
        clav = np.array([[cx + side * 0.04, 0.17], [cx + side * 0.22, 0.12], [cx + side * 0.36, 0.14]]) * size
        cv2.polylines(canvas, [clav.astype(np.int32)], False, 1.4, int(thick * 1.3), cv2.LINE_AA)
    return _blur(canvas, size / 256.0)


def _collapse(lung: np.ndarray, hilum: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """The part of ``lung`` still aerated after a pneumothorax: the lung shrunk towards a pivot."""
    h, w = lung.shape
    ys, xs = np.nonzero(lung)
    kind = rng.choice(["apical", "lateral", "large"], p=[0.35, 0.35, 0.30])
    if kind == "apical":
        pivot = (hilum[0], ys.max())
        factor = rng.uniform(0.72, 0.9)
    elif kind == "lateral":
        pivot = (hilum[0], hilum[1])
        factor = rng.uniform(0.72, 0.88)
    else:
        pivot = (hilum[0], hilum[1] + 0.1 * (ys.max() - hilum[1]))
        factor = rng.uniform(0.45, 0.7)
    m = np.array([[factor, 0, (1 - factor) * pivot[0]], [0, factor, (1 - factor) * pivot[1]]], np.float32)
    shrunk = cv2.warpAffine(lung, m, (w, h), flags=cv2.INTER_NEAREST)
    # The lung stays attached at the hilum and (unless large) at the base: the air
    # collects peripherally, apically and laterally, as in an upright radiograph.
    yy, xx = np.mgrid[0:h, 0:w]
    lateral_sign = np.sign(np.mean(xs) - hilum[0]) or 1.0
    attached = (xx - hilum[0]) * lateral_sign < 0
    if kind != "large":
        attached |= yy > ys.max() - rng.uniform(0.05, 0.25) * (ys.max() - ys.min())
    return (shrunk | (lung & attached.astype(np.uint8))) & lung


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask.astype(np.uint8)
    return (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)


def render(size: int, positive: bool, rng: np.random.Generator) -> Phantom:
    """Render one phantom at ``size`` x ``size``; ``positive`` adds a pneumothorax."""
    if size < 32:
        raise PneumoscopeError(f"phantom size {size} too small (minimum 32)")
    s = size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    cx = 0.5 + rng.normal(0, 0.015)
    # Body: soft tissue ellipse with a shoulder line, background air outside.
    body = (((xx - cx) / rng.uniform(0.44, 0.49)) ** 2 + ((yy - 0.62) / 0.62) ** 2 < 1).astype(np.float32)
    body = _blur(body, s * 0.02)
    img = 0.05 + 0.50 * body
    lungs = []
    for mirror in (True, False):  # image left = patient right
        lung, hilum = _lung_mask(s, cx, rng, mirror)
        lungs.append((lung, hilum, "right" if mirror else "left"))
    ptx = np.zeros((s, s), np.uint8)
    side = ""
    if positive:
        which = int(rng.integers(0, 2))
        lung, hilum, side = lungs[which]
        aerated = _collapse(lung, hilum, rng)
        ptx = _largest_component(lung & (1 - aerated))
        aerated = lung & (1 - ptx)
        lungs[which] = (aerated, hilum, side)
        full_lung = lung
    lung_all = np.zeros((s, s), np.float32)
    texture = np.zeros((s, s), np.float32)
    for lung, hilum, _ in lungs:
        lung_all = np.maximum(lung_all, lung.astype(np.float32))
        grain = _blur(rng.normal(0, 1, (s, s)).astype(np.float32), s / 110.0)
        grain /= grain.std() + 1e-6
        t = lung * (0.14 * _vessels(s, lung, hilum, rng) + 0.035 * grain)
        # Zero-mean over the lung: removing the markings changes texture, not brightness.
        texture += t - lung * (t.sum() / max(lung.sum(), 1))
    if positive:
        lung_all = np.maximum(lung_all, full_lung.astype(np.float32))
    heart = (((xx - cx - 0.07) / 0.16) ** 2 + ((yy - 0.64) / 0.13) ** 2 < 1)
    lung_soft = _blur(lung_all, s * 0.006) * (1 - 0.6 * _blur(heart.astype(np.float32), s * 0.015))
    img = img - 0.33 * lung_soft + texture
    if positive:
        # Visceral pleural line: the edge of the collapsed lung that faces the air.
        aerated = lungs[which][0]
        k = max(2, int(round(2 * s / 256)))
        edge = cv2.morphologyEx(aerated, cv2.MORPH_GRADIENT, np.ones((k, k), np.uint8)) & cv2.dilate(ptx, np.ones((3, 3), np.uint8))
        img += 0.13 * _blur(edge.astype(np.float32), 0.5 * s / 256.0)
    # Mediastinum, spine and heart.
    medi = (np.abs(xx - cx) < 0.055 + 0.03 * yy) * (yy > 0.08)
    img += 0.28 * _blur((medi | heart).astype(np.float32), s * 0.012) * (1 - 0.5 * lung_soft)
    spine = (np.abs(xx - cx) < 0.025) * (yy > 0.05)
    img += 0.10 * _blur(spine.astype(np.float32), s * 0.006)
    # Below the diaphragm: abdomen soft tissue.
    img += 0.12 * body * _blur((yy > 0.80).astype(np.float32), s * 0.03)
    img += 0.17 * _ribs(s, cx, rng) * body
    # Exposure, position and noise.
    img = np.clip(img, 0, 1)
    img = img ** rng.uniform(0.8, 1.25)
    img = img * rng.uniform(0.85, 1.1) + rng.uniform(-0.04, 0.04)
    angle, shift = rng.normal(0, 3.0), rng.normal(0, 0.02, 2) * s
    m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, rng.uniform(0.95, 1.05))
    m[:, 2] += shift
    img = cv2.warpAffine(img.astype(np.float32), m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(ptx, m, (s, s), flags=cv2.INTER_NEAREST)
    lungs_out = cv2.warpAffine((lung_all > 0.5).astype(np.uint8), m, (s, s), flags=cv2.INTER_NEAREST)
    img = img + rng.normal(0, 0.012, (s, s)).astype(np.float32)
    image = np.clip(np.rint(np.clip(img, 0, 1) * 255), 0, 255).astype(np.uint8)
    return Phantom(image=image, mask=mask.astype(np.uint8), side=side, lungs=lungs_out)


def generate(out: str | Path, n: int, size: int = 256, seed: int = 0, positive_rate: float = 0.5) -> pd.DataFrame:
    """Write ``n`` phantoms in the Kaggle PNG layout under ``out`` and a ``preview.png`` grid.

    Deterministic: image ``i`` depends only on (seed, i). Returns the written index table.
    """
    if n < 1:
        raise PneumoscopeError(f"--n must be at least 1, got {n}")
    if not 0.0 <= positive_rate <= 1.0:
        raise PneumoscopeError(f"--positive-rate must be in [0, 1], got {positive_rate}")
    out = Path(out)
    (out / "png_images").mkdir(parents=True, exist_ok=True)
    (out / "png_masks").mkdir(parents=True, exist_ok=True)
    n_pos = int(round(n * positive_rate))
    order = np.random.default_rng(seed).permutation(n)
    rows = []
    for i in range(n):
        positive = bool(order[i] < n_pos)
        ph = render(size, positive, np.random.default_rng([seed, i]))
        label = int(ph.mask.any())
        name = f"{i}_synth_{label}_.png"
        cv2.imwrite(str(out / "png_images" / name), ph.image)
        cv2.imwrite(str(out / "png_masks" / name), ph.mask * 255)
        rows.append({"new_filename": name, "ImageId": f"synth.{seed}.{i}", "has_pneumo": label, "side": ph.side})
    table = pd.DataFrame(rows)
    table.to_csv(out / "train.csv", index=False)
    write_preview(out, table)
    return table


def write_preview(root: Path, table: pd.DataFrame, n: int = 16) -> Path:
    """A grid of up to ``n`` examples, pneumothorax outlined in red."""
    tiles = []
    for rec in table.head(n).itertuples(index=False):
        img = cv2.imread(str(root / "png_images" / rec.new_filename), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(root / "png_masks" / rec.new_filename), cv2.IMREAD_GRAYSCALE)
        tile = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(tile, contours, -1, (0, 0, 255), 1)
        tiles.append(cv2.resize(tile, (256, 256), interpolation=cv2.INTER_AREA))
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[r:r + cols]) for r in range(0, len(tiles), cols)])
    path = root / "preview.png"
    cv2.imwrite(str(path), grid)
    return path
