"""Engine-side access to client-owned POSIX shared memory (PROTOCOL.md §4).

The engine never creates or unlinks a segment: it opens an existing one, checks that it
belongs to the engine's own user and is large enough, maps it (read-only for input), copies
what it needs and unmaps before replying. Python's ``SharedMemory`` is not used because it
maps read-write and, before Python 3.13, registers segments it did not create with the
resource tracker, which would unlink them at exit.
"""
from __future__ import annotations

import mmap
import os
import re
import stat
from typing import Callable

import numpy as np

from dfdb_bridge.errors import BridgeError
from dfdb_bridge.frames import Layout, check_region, view, write

try:
    import _posixshmem
except ImportError:  # not a POSIX platform: the engine does not offer "shm"
    _posixshmem = None

AVAILABLE = _posixshmem is not None
NAME = re.compile(r"/[A-Za-z0-9._-]{1,250}")


def _unavailable(name: str, why: str) -> BridgeError:
    return BridgeError("shm_unavailable", f"shared memory {name!r}: {why}")


def _open(name: str, writable: bool, offset: int, size: int) -> mmap.mmap:
    """Map segment ``name`` whole, after checking its name, owner and size."""
    if not AVAILABLE:
        raise _unavailable(name, "shared memory is not supported on this platform")
    if not NAME.fullmatch(name):
        raise _unavailable(name, "not a valid name (expected '/' and 1-250 of A-Z a-z 0-9 . _ -)")
    try:
        fd = _posixshmem.shm_open(name, os.O_RDWR if writable else os.O_RDONLY, 0)
    except FileNotFoundError:
        raise _unavailable(name, "no such segment") from None
    except OSError as err:
        raise _unavailable(name, err.strerror or str(err)) from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or not stat.S_ISREG(st.st_mode):
            raise _unavailable(name, "the segment belongs to another user")
        if st.st_size < offset + size:
            raise BridgeError("bad_frame", f"shared memory {name!r} has {st.st_size} bytes, "
                              f"the region needs {offset + size}")
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        return mmap.mmap(fd, st.st_size, access=access)
    finally:
        os.close(fd)


def read(name: str, offset: int, size: int, layout: Layout,
         convert: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``convert`` applied to the (H, W, C) image in a segment; it must return a new array
    (not a view), since the mapping is closed on return."""
    check_region(layout, offset, size)
    mm = _open(name, False, offset, size)
    try:
        pixels = view(mm, offset, layout)
        result = convert(pixels)
        del pixels
        return result
    finally:
        mm.close()


def store(name: str, offset: int, size: int, layout: Layout, image: np.ndarray) -> None:
    """Write an (H, W, C) image of ``layout``'s dtype into the region of a segment."""
    check_region(layout, offset, size)
    mm = _open(name, True, offset, size)
    try:
        write(mm, offset, layout, image)
    finally:
        mm.close()


def probe(name: str, offset: int, size: int) -> None:
    """Check, before any work is done, that a writable region can be opened and is large enough."""
    _open(name, True, offset, size).close()
