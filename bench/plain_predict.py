"""The yardstick of `predict`'s speed: what a user would write by hand — PIL, eager float32 PyTorch,
batches of 8, the run's own size and standardisation, masks saved at each image's size.

    .venv/bin/python bench/plain_predict.py RUN FOLDER_OF_PNGS OUT
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pneumoscope.folders import Run
from pneumoscope.stage1.unet import load_model

model, cfg = load_model(Run(sys.argv[1]))
size = cfg.data.size
out = Path(sys.argv[3])
out.mkdir(exist_ok=True)
files = sorted(Path(sys.argv[2]).glob("*.png"))
for i in range(0, len(files), 8):
    chunk = files[i:i + 8]
    imgs = [Image.open(f).convert("L") for f in chunk]
    x = np.stack([np.asarray(im.resize((size, size), Image.BILINEAR), np.float32) for im in imgs])
    x = (x - x.mean((1, 2), keepdims=True)) / (x.std((1, 2), keepdims=True) + 1e-6)
    with torch.inference_mode():
        prob = torch.sigmoid(model(torch.from_numpy(x[:, None]))).numpy()[:, 0]
    for f, im, p in zip(chunk, imgs, prob):
        Image.fromarray(((p > 0.5) * 255).astype(np.uint8)).resize(im.size, Image.NEAREST).save(out / f.name)
