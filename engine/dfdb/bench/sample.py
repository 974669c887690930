"""``dfdb sample``: a degraded synthetic clip to try the restorer on, with its ground truth.

Writes ``OUT`` (the degraded clip), ``<stem>.clean<suffix>`` (the clean clip) and
``<stem>.truth.npz`` (``blotch_mask`` (T, H, W) bool, ``gain`` and ``offset`` (T, H, W)
float32, ``gamma`` (T,) float32) next to it. The format follows the extension of ``OUT``
(dfdb.io's defaults: .mkv → lossless FFV1, the recommended choice).
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import OutputError, ParamError
from ..io import VideoInfo, VideoWriter
from .synth import degrade, make_scene

FPS = Fraction(24)


def companion_paths(out: Path) -> tuple[Path, Path]:
    """(clean clip, truth .npz) paths that go with the sample ``out``."""
    return out.with_name(f"{out.stem}.clean{out.suffix}"), out.with_name(f"{out.stem}.truth.npz")


def write_clip(path: Path, frames: np.ndarray) -> None:
    """Encode (T, H, W, 3) float32 frames at 24 fps as 8-bit RGB footage."""
    t, h, w, _ = frames.shape
    like = VideoInfo(path=str(path), width=w, height=h, frame_count=t, fps=FPS, time_base=1 / FPS,
                     bit_depth=8, channels=3, pix_fmt="rgb24", codec="rawvideo")
    with VideoWriter(path, like) as writer:
        for frame in frames:
            writer.write(frame)


def write_truth(path: Path, degraded) -> None:
    """The ground truth of a degraded clip as .npz (temporary name, then renamed)."""
    tmp = path.with_name(path.name + ".part.npz")
    np.savez_compressed(tmp, blotch_mask=degraded.blotch_mask, gain=degraded.gain, offset=degraded.offset, gamma=degraded.gamma)
    os.replace(tmp, path)


def write_sample(out: Path, frames: int = 48, width: int = 320, height: int = 240, profile: str = "old_film",
                 scene: str = "objects", seed: int = 0) -> tuple[Path, Path, Path]:
    """Make, degrade and write a sample clip; returns (degraded, clean, truth) paths."""
    if width % 2 or height % 2:
        raise ParamError(f"sample width and height must be even, got {width}×{height}")
    if not out.parent.is_dir():
        raise OutputError(f"cannot write '{out}': directory '{out.parent}' does not exist")
    clean = make_scene(scene, frames, height, width, seed)
    degraded = degrade(clean, profile, seed)
    clean_path, truth_path = companion_paths(out)
    write_clip(out, degraded.frames)
    write_clip(clean_path, clean)
    write_truth(truth_path, degraded)
    return out, clean_path, truth_path
