"""Restorer instances kept per (clip, params), so flows computed for one window are reused by
the next overlapping window of the same clip (``Restorer.restore_window(keys=...)``)."""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import Iterator

from ..params import Params


class Solvers:
    """A small LRU of Restorers; each is used by one thread at a time (its own lock).

    The Restorer's flow cache is not counted in the session cache's byte cap, hence the small
    default number of instances.
    """

    def __init__(self, size: int = 2) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str], tuple[object, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def use(self, clip: str, params_key: str, params: Params) -> Iterator[object]:
        """The Restorer for (clip, params), held exclusively for the ``with`` block."""
        from ..restorer import Restorer  # imports torch: only when the first frame is solved

        key = (clip, params_key)
        with self._lock:
            item = self._items.get(key)
            if item is None:
                item = self._items[key] = (Restorer(params), threading.Lock())
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
            self._items.move_to_end(key)
        restorer, lock = item
        with lock:
            yield restorer

    def close(self, clip: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == clip]:
                del self._items[key]
