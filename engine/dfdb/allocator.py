"""The C allocator's settings for dfdb's own processes (the ``dfdb`` command, its server and
the benchmark's workers); a program that imports dfdb as a library keeps its own.

A chunk's solve allocates and frees planes of tens to hundreds of MB many times over. glibc
serves blocks above 32 MB with fresh ``mmap``\\ s and hands them back on ``free``, so every such
plane is faulted in page by page, zeroed by the kernel, again and again: at 640×360 that is
about an eighth of the run time. Keeping freed memory in the heap instead makes the next
plane of the same size reuse it; the peak grows by the heap's fragmentation (measured: +9 %
at 640×360) and stays flat in the clip's length, since every chunk repeats the same pattern.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: mallopt(3) parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed memory for reuse (glibc only).

    Returns whether the settings took; elsewhere (macOS, Windows, musl) nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
