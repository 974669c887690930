"""The C allocator's settings for dfdb's own processes (the ``dfdb`` command, its server and
the benchmark's workers); a program that imports dfdb as a library keeps its own.

A chunk's solve allocates and frees planes of tens to hundreds of MB many times over. glibc
serves blocks above 32 MB with fresh ``mmap``\\ s and hands them back on ``free`` (and trims
the heap's free top), so such planes are faulted in page by page and zeroed by the kernel
again and again: at 640×360 that is about a sixth of the run time. :func:`keep_freed_memory`
keeps freed memory in the heap for the next plane of the same size instead;
:func:`release_freed_memory`, between chunks, gives the free pages back, so that what the
heap's fragmentation leaves unused does not add up from chunk to chunk.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

#: mallopt(3) parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``mallopt`` and ``malloc_trim``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed memory for reuse; whether it took
    (glibc only: elsewhere nothing changes)."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def release_freed_memory() -> None:
    """Return the heap's free pages to the system (glibc's ``malloc_trim``; a no-op elsewhere)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
