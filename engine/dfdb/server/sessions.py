"""Per-clip sessions: frames and results in one least-recently-used cache with a byte cap.

A sequential render sends one new frame per request because the frames of earlier requests are
held here; scrubbing back is answered from the stored results. Each held (clip, time) has a
version that changes only when different pixels arrive for it, and results are keyed by the
versions of their window, so a result stays valid (and reachable) after its frames are evicted.
Thread-safe: one lock guards everything.
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np

from ..frames import RestoredFrame


class ByteLRU:
    """Mapping with least-recently-used eviction once the stored bytes exceed ``cap``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.nbytes = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()

    def get(self, key: Hashable) -> Any | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Store ``value``; an item larger than the whole cap is not stored at all."""
        self.pop(key)
        if nbytes > self.cap:
            return
        self._items[key] = (value, nbytes)
        self.nbytes += nbytes
        while self.nbytes > self.cap:
            _, (_, n) = self._items.popitem(last=False)
            self.nbytes -= n

    def pop(self, key: Hashable) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.nbytes -= item[1]

    def drop(self, predicate) -> None:
        """Remove every key for which ``predicate(key)`` is true."""
        for key in [k for k in self._items if predicate(k)]:
            self.pop(key)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class FrameInfo:
    """What is remembered of a (clip, time) even after its pixels are evicted."""

    version: int
    dtype: str  # wire dtype the client sent it in
    shape: tuple[int, int, int]  # (H, W, C)


@dataclass
class Session:
    infos: dict[int, FrameInfo] = field(default_factory=dict)


@dataclass
class Counters:
    result_hits: int = 0
    result_misses: int = 0
    frames_received: int = 0
    frames_unchanged: int = 0


def result_bytes(rf: RestoredFrame) -> int:
    return rf.image.nbytes + rf.mask.nbytes + rf.gain.nbytes + rf.offset.nbytes


class SessionStore:
    """All clip sessions of the engine, sharing one byte-capped cache."""

    def __init__(self, cap_bytes: int, max_sessions: int = 256) -> None:
        self._lru = ByteLRU(cap_bytes)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._max_sessions = max_sessions
        self._versions = itertools.count(1)
        self._lock = threading.Lock()
        self.counters = Counters()

    def _session(self, clip: str) -> Session:
        session = self._sessions.get(clip)
        if session is None:
            session = self._sessions[clip] = Session()
            while len(self._sessions) > self._max_sessions:
                old, _ = self._sessions.popitem(last=False)
                self._lru.drop(lambda k, old=old: k[1] == old)
        self._sessions.move_to_end(clip)
        return session

    def add_frames(self, clip: str, frames: list[tuple[int, np.ndarray, str]]) -> None:
        """Hold (time, float32 (H, W, C) image, wire dtype) frames; identical pixels re-sent
        for a held time keep its version, so results computed from them stay valid."""
        with self._lock:
            session = self._session(clip)
            for time, image, dtype in frames:
                self.counters.frames_received += 1
                key = ("frame", clip, time)
                info = session.infos.get(time)
                held = self._lru.get(key)
                if info is not None and held is not None and held.shape == image.shape and np.array_equal(held, image):
                    self.counters.frames_unchanged += 1
                    session.infos[time] = FrameInfo(info.version, dtype, image.shape)
                    continue
                session.infos[time] = FrameInfo(next(self._versions), dtype, image.shape)
                self._lru.put(key, image, image.nbytes)

    def frames(self, clip: str, times: list[int]) -> tuple[list[np.ndarray | None], list[FrameInfo | None]]:
        """The held images and infos of ``times`` (None where not held / never seen)."""
        with self._lock:
            session = self._session(clip)
            images = [self._lru.get(("frame", clip, t)) for t in times]
            return images, [session.infos.get(t) for t in times]

    def infos(self, clip: str, times: list[int]) -> list[FrameInfo | None]:
        """What is known of ``times`` in a session, without creating or touching it."""
        with self._lock:
            session = self._sessions.get(clip)
            return [session.infos.get(t) if session else None for t in times]

    def result_key(self, clip: str, target: int, params_key: str, infos: list[FrameInfo | None],
                   times: list[int]) -> tuple | None:
        """Key of the result for this window, or None if a frame's version is unknown."""
        if any(i is None for i in infos):
            return None
        return ("result", clip, target, params_key, tuple((t, i.version) for t, i in zip(times, infos)))

    def get_result(self, key: tuple | None) -> RestoredFrame | None:
        with self._lock:
            hit = self._lru.get(key) if key is not None else None
            if hit is None:
                self.counters.result_misses += 1
            else:
                self.counters.result_hits += 1
            return hit

    def put_result(self, key: tuple | None, rf: RestoredFrame, replace: bool = True) -> None:
        """Cache a result; with ``replace`` False one already cached is kept (a frame solved
        ahead must not change a result a client may already have been given)."""
        if key is None:
            return
        with self._lock:
            if key[1] in self._sessions and (replace or self._lru.get(key) is None):
                self._lru.put(key, rf, result_bytes(rf))

    def close(self, clip: str) -> None:
        with self._lock:
            self._sessions.pop(clip, None)
            self._lru.drop(lambda k: k[1] == clip)

    @property
    def nbytes(self) -> int:
        return self._lru.nbytes

    def __len__(self) -> int:
        return len(self._sessions)
