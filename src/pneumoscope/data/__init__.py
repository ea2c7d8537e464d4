"""Data: reading images, dataset layouts, RLE, phantoms, cache, splits, transforms."""
