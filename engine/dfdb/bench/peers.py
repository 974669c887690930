"""The peers dfdb is compared with: ffmpeg's deflicker and temporal-median filters.

``deflicker`` rescales each frame's brightness to a running mean over ``size`` frames (global
flicker only); ``tmedian`` takes the per-pixel median over 2·radius + 1 frames, which removes
one-frame blotches where nothing moves (and smears what does). Their chains do both.

ffmpeg (Debian's build) runs as a subprocess on the raw rgb48le file that dfdb reads too, and
writes raw rgb48le; the measured time is the whole process. ffmpeg 5.x's ``tmedian`` drops
``radius`` frames at each end of the clip, so each ``tmedian`` is preceded by a ``tpad`` that
clones the edge frames: the output has exactly the input's frames, in the same order.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import DfdbError
from .measure import Measured, run_measured

#: Row name → ffmpeg filter chain, in table order.
PEERS: dict[str, str] = {
    "ffmpeg deflicker s5": "deflicker=size=5",
    "ffmpeg deflicker s15": "deflicker=size=15",
    "ffmpeg tmedian r1": "tmedian=radius=1",
    "ffmpeg tmedian r2": "tmedian=radius=2",
    "ffmpeg deflicker s5 + tmedian r1": "deflicker=size=5,tmedian=radius=1",
    "ffmpeg deflicker s5 + tmedian r2": "deflicker=size=5,tmedian=radius=2",
    "ffmpeg deflicker s15 + tmedian r2": "deflicker=size=15,tmedian=radius=2",
}
#: The chain dfdb's speed is quoted against (same run, same input).
REFERENCE_CHAIN = "ffmpeg deflicker s5 + tmedian r1"


def ffmpeg_binary() -> str:
    """Path of the ffmpeg executable (``/usr/bin/ffmpeg`` from Debian in the set-up)."""
    path = shutil.which("ffmpeg") or ("/usr/bin/ffmpeg" if Path("/usr/bin/ffmpeg").exists() else None)
    if path is None:
        raise DfdbError("ffmpeg not found: install it (apt-get install ffmpeg) to benchmark the peers")
    return path


def filter_graph(chain: str) -> str:
    """``chain`` with an edge-cloning ``tpad`` before every ``tmedian`` (see the module doc)."""
    parts = []
    for f in chain.split(","):
        if f.startswith("tmedian="):
            r = int(f.split("radius=")[1].split(":")[0])
            parts.append(f"tpad=start={r}:stop={r}:start_mode=clone:stop_mode=clone")
        parts.append(f)
    return ",".join(parts)


def ffmpeg_command(chain: str, width: int, height: int) -> list[str]:
    """ffmpeg reading rgb48le frames on stdin, filtering, writing rgb48le on stdout."""
    raw = ["-f", "rawvideo", "-pix_fmt", "rgb48le"]
    return [
        ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "0",
        *raw, "-video_size", f"{width}x{height}", "-framerate", "24", "-i", "pipe:0",
        "-vf", filter_graph(chain), *raw, "pipe:1",
    ]


def run_peer(chain: str, src: Path, dst: Path, width: int, height: int) -> Measured:
    """Filter the rgb48le file ``src`` into ``dst`` with one ffmpeg process, measured."""
    result = run_measured(ffmpeg_command(chain, width, height), stdin=src, stdout=dst)
    if result.returncode != 0:
        raise DfdbError(f"ffmpeg failed on {chain!r}: {result.stderr.strip().splitlines()[-1:]}")
    return result
