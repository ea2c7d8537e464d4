"""A bounded in-memory store of recent predictions, for the picture and DICOM endpoints.

Nothing is written to disk: the oldest entries are dropped beyond ``capacity`` entries or
``max_bytes`` in all (a DICOM upload's results hold an RGB overlay at the source's full size).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Entry:
    """What the picture endpoints of one prediction need."""

    image: np.ndarray  # uint8, downscaled to at most 1024 px (about 1 MB; the store holds 64 at most)
    mask: np.ndarray  # bool, same size
    pictures: dict[str, bytes] = field(default_factory=dict)  # rendered PNGs by name
    dicom: dict[str, bytes] = field(default_factory=dict)  # DICOM results (seg, sr, sc) of a DICOM upload, Part 10 bytes

    @property
    def nbytes(self) -> int:
        """Memory the entry holds (arrays and encoded files)."""
        return int(self.image.nbytes + self.mask.nbytes + sum(map(len, self.pictures.values()))
                   + sum(map(len, self.dicom.values())))


class Store:
    """Thread-safe LRU of prediction entries."""

    def __init__(self, capacity: int = 64, max_bytes: int = 1 << 30) -> None:
        self.capacity, self.max_bytes = capacity, max_bytes
        self._items: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, entry: Entry) -> None:
        """Add an entry, dropping the oldest beyond capacity."""
        with self._lock:
            self._items[key] = entry
            self._items.move_to_end(key)
            while len(self._items) > self.capacity or (
                    len(self._items) > 1 and sum(e.nbytes for e in self._items.values()) > self.max_bytes):
                self._items.popitem(last=False)

    def get(self, key: str) -> Entry | None:
        """The entry, or None when unknown or already dropped."""
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
            return entry
