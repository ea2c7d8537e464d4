"""A bounded in-memory store of recent predictions, for the picture endpoints.

Nothing is written to disk: the oldest entries are dropped beyond ``capacity``.
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


class Store:
    """Thread-safe LRU of prediction entries."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, entry: Entry) -> None:
        """Add an entry, dropping the oldest beyond capacity."""
        with self._lock:
            self._items[key] = entry
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, key: str) -> Entry | None:
        """The entry, or None when unknown or already dropped."""
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
            return entry
