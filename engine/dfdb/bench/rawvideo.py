"""Raw 16-bit RGB files (ffmpeg's ``rgb48le``): the lossless exchange format of the benchmark.

Every measured method reads the same raw input file and writes a raw output file, streamed
frame by frame, so no codec touches the pixels and the timings cover the same work for all.
Frames are (H, W, 3) float32 in [0, 1] in memory; 1/65535 quantisation on disk.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import InputError

MAX16 = 65535.0


def encode_rgb48(frame: np.ndarray) -> bytes:
    """(H, W, 3) float in [0, 1] → little-endian uint16 bytes."""
    return (np.clip(frame, 0.0, 1.0) * MAX16 + 0.5).astype("<u2").tobytes()


def write_frames(path: Path, frames: Iterable[np.ndarray]) -> int:
    """Stream frames into ``path`` as rgb48le (written to a temporary name, then renamed)."""
    tmp = path.with_name(path.name + ".part")
    n = 0
    with open(tmp, "wb") as f:
        for frame in frames:
            f.write(encode_rgb48(frame))
            n += 1
    os.replace(tmp, path)
    return n


def iter_frames(path: Path, height: int, width: int) -> Iterator[np.ndarray]:
    """Frames of an rgb48le file, one (H, W, 3) float32 array at a time."""
    size = height * width * 3 * 2
    with open(path, "rb") as f:
        while True:
            buf = f.read(size)
            if not buf:
                return
            if len(buf) != size:
                raise InputError(f"{path}: truncated raw frame ({len(buf)} of {size} bytes)")
            yield (np.frombuffer(buf, "<u2").astype(np.float32) / MAX16).reshape(height, width, 3)


def read_frames(path: Path, height: int, width: int) -> np.ndarray:
    """The whole rgb48le file as (T, H, W, 3) float32."""
    data = np.fromfile(path, "<u2")
    if data.size % (height * width * 3):
        raise InputError(f"{path}: size is not a whole number of {width}×{height} rgb48 frames")
    return (data.astype(np.float32) / MAX16).reshape(-1, height, width, 3)


def quantise(clip: np.ndarray) -> np.ndarray:
    """``clip`` as it reads back after a round trip through an rgb48le file."""
    return np.round(np.clip(clip, 0.0, 1.0) * MAX16).astype(np.float32) / MAX16
