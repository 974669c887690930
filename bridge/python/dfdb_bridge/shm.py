"""Client-side shared-memory segments (PROTOCOL.md §4): the client creates, owns and unlinks.

Segments are reused from one request to the next (the engine holds no reference once it has
replied) and grown when a request needs more, so a render does not pay for a new mapping per
frame.
"""
from __future__ import annotations

import itertools
import os
from multiprocessing import shared_memory

_counter = itertools.count()


class Segment:
    """One POSIX shared-memory segment of at least ``size`` bytes, created 0600 by this process."""

    def __init__(self, size: int) -> None:
        name = f"dfdb-{os.getpid()}-{next(_counter)}"
        self._shm = shared_memory.SharedMemory(name=name, create=True, size=max(1, size))
        self.size = self._shm.size

    @property
    def name(self) -> str:
        """The wire name (leading slash)."""
        return "/" + self._shm.name.lstrip("/")

    @property
    def buf(self) -> memoryview:
        return self._shm.buf

    def destroy(self) -> None:
        """Unmap and unlink; every numpy view of ``buf`` must be gone by now."""
        self._shm.close()
        self._shm.unlink()


class Segments:
    """Named roles ("in", "out") each backed by one reusable segment."""

    def __init__(self) -> None:
        self._by_role: dict[str, Segment] = {}

    def get(self, role: str, size: int) -> Segment:
        """The segment for ``role``, replaced by a larger one when ``size`` does not fit."""
        seg = self._by_role.get(role)
        if seg is None or seg.size < size:
            if seg is not None:
                seg.destroy()
            seg = self._by_role[role] = Segment(size)
        return seg

    def find(self, name: str) -> Segment | None:
        return next((s for s in self._by_role.values() if s.name == name), None)

    def destroy(self) -> None:
        for seg in self._by_role.values():
            seg.destroy()
        self._by_role.clear()
