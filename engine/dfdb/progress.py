"""A one-line progress bar for long work on a terminal: frames done/total, speed and time left."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def format_duration(seconds: float) -> str:
    """``seconds`` as ``M:SS`` or ``H:MM:SS``."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def render(done: int, total: int | None, elapsed: float, label: str = "", width: int = 24) -> str:
    """The bar's text for ``done`` of ``total`` frames after ``elapsed`` seconds (no line ending).

    Without a known total there is no bar and no ETA, only the count and the speed.
    """
    fps = done / elapsed if elapsed > 0 else 0.0
    head = f"{label} " if label else ""
    if not total:
        return f"{head}{done} frames  {fps:.1f} fps  {format_duration(elapsed)}"
    frac = min(done / total, 1.0)
    filled = int(round(frac * width))
    bar = "#" * filled + "-" * (width - filled)
    if done >= total:
        eta = "0:00"
    elif fps > 0:
        eta = format_duration((total - done) / fps)
    else:
        eta = "--:--"
    return f"{head}[{bar}] {done}/{total} frames  {fps:.1f} fps  ETA {eta}"


class ProgressBar:
    """Redraws one line of ``stream`` at most every ``interval`` seconds; ``close()`` ends the line.

    Call ``update(done)`` with the number of frames finished so far. The total may be an
    estimate (containers that do not store a frame count); it grows if the count passes it.
    """

    def __init__(
        self,
        total: int | None,
        label: str = "",
        stream: TextIO | None = None,
        interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.done = 0
        self._last_draw = -float("inf")
        self._width = 0

    def update(self, done: int) -> None:
        self.done = done
        if self.total is not None and done > self.total:
            self.total = done
        now = self.clock()
        if now - self._last_draw >= self.interval:
            self._draw(now)

    def _draw(self, now: float) -> None:
        text = render(self.done, self.total, now - self.started, self.label)
        pad = " " * max(0, self._width - len(text))
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._width = len(text)
        self._last_draw = now

    def close(self) -> None:
        """Draw the final state and end the line."""
        self._draw(self.clock())
        self.stream.write("\n")
        self.stream.flush()


def should_show(stream: TextIO, forced: bool = False, quiet: bool = False) -> bool:
    """A bar is drawn on terminals, or anywhere when forced; never when quiet."""
    if quiet:
        return False
    return forced or bool(getattr(stream, "isatty", lambda: False)())
