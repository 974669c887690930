"""File to file restoration: ``dfdb.restore(src, dst, **params)``.

Decodes ``src`` with :class:`dfdb.io.VideoReader`, streams it through :class:`dfdb.Restorer`
and writes the restored frames (and, on request, the blotch mask video, the flicker map video,
per-frame statistics as JSON and a before/after comparison PNG). All outputs are written under
temporary names and renamed together only when every one of them is complete: a failure, a
cancel or a Ctrl-C leaves none of them behind and any earlier file under those names intact.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import Cancelled, OutputError, ParamError, ResourceError
from .frames import RestoredFrame
from .io import PendingFile, VideoInfo, VideoReader, VideoWriter, encode_png
from .params import Params
from .progress import ProgressBar
from .restorer import Restorer

ProgressCallback = Callable[[int, "int | None"], None]


class _Output(Protocol):
    path: str

    def finish(self) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


def resolve_params(params: Params | None, overrides: dict[str, Any]) -> Params:
    """``params`` with ``overrides`` applied, or the named ``preset`` (default balanced) with them."""
    if params is not None and "preset" in overrides:
        raise ParamError("give either params or a preset, not both")
    if params is None:
        overrides = dict(overrides)
        return Params.from_preset(overrides.pop("preset", None) or "balanced", **overrides)
    return params.replace(**overrides) if overrides else params


def _same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def check_paths(src: str | os.PathLike, outputs: dict[str, str | os.PathLike | None]) -> None:
    """Refuse an output that would overwrite the input or another output of the same run."""
    named = [(k, v) for k, v in outputs.items() if v is not None]
    for i, (kind, path) in enumerate(named):
        if _same_path(path, src):
            raise OutputError(f"the {kind} output '{path}' is the input file; choose another name")
        for other_kind, other in named[:i]:
            if _same_path(path, other):
                raise OutputError(f"the {kind} and {other_kind} outputs are both '{path}'")


def is_out_of_memory(err: BaseException) -> bool:
    """True for host (MemoryError) and device (torch OutOfMemoryError, MPS/HIP messages) OOMs."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def side_by_side(before: np.ndarray, after: np.ndarray, gap: int = 4) -> np.ndarray:
    """(H, 2W + gap, 3) image: ``before`` on the left, ``after`` on the right, mid-gray between.

    Alpha is dropped and gray images are shown as RGB, so any input can be compared.
    """

    def rgb(img: np.ndarray) -> np.ndarray:
        img = img if img.ndim == 3 else img[:, :, None]
        return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[:, :, :3]

    a, b = rgb(before), rgb(after)
    spacer = np.full((a.shape[0], gap, 3), 0.5, np.float32)
    return np.concatenate([a, spacer, b], axis=1).astype(np.float32)


@dataclass
class _Tracker:
    """Per-frame statistics and the frame kept for the comparison image, gathered while streaming.

    With no ``wanted`` frame the comparison shows the frame with the most blotch pixels (the
    one nearest the middle of the clip when there are none), so only one frame is ever kept.
    """

    wanted: int | None
    middle: int
    per_frame: list[dict[str, Any]] = field(default_factory=list)
    kept: RestoredFrame | None = None
    _key: tuple = ()

    def add(self, frame: RestoredFrame, pts: int, time_s: float) -> None:
        self.per_frame.append({"index": frame.index, "pts": pts, "time": round(time_s, 6), **frame.stats})
        if self.wanted is not None:
            if frame.index == self.wanted:
                self.kept = _copy(frame)
            return
        key = (frame.stats.get("blotch_pixels", 0), -abs(frame.index - self.middle))
        if self.kept is None or key > self._key:
            self.kept, self._key = _copy(frame), key

    def summary(self) -> dict[str, Any]:
        n = len(self.per_frame)

        def mean(k: str) -> float | None:
            vals = [f[k] for f in self.per_frame if k in f]
            return float(np.mean(vals)) if vals else None

        return {
            "frames": n,
            "gain_mean": mean("gain_mean"),
            "offset_mean": mean("offset_mean"),
            "blotch_pixels": int(sum(f.get("blotch_pixels", 0) for f in self.per_frame)),
            "blotch_count": int(sum(f.get("blotch_count", 0) for f in self.per_frame)),
            "cuts": int(sum(bool(f.get("cut")) for f in self.per_frame)),
        }


def _copy(frame: RestoredFrame) -> RestoredFrame:
    return RestoredFrame(frame.index, frame.image.copy(), frame.mask, frame.gain, frame.offset, dict(frame.stats))


def _progress_callback(progress: bool | ProgressCallback, total: int | None) -> tuple[ProgressCallback | None, ProgressBar | None]:
    if progress is True:
        bar = ProgressBar(total, label="restoring", stream=sys.stderr)
        return (lambda done, _total: bar.update(done)), bar
    if callable(progress):
        return progress, None
    return None, None


def restore(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    params: Params | None = None,
    mask_out: str | os.PathLike | None = None,
    flicker_out: str | os.PathLike | None = None,
    stats_out: str | os.PathLike | None = None,
    compare: str | os.PathLike | None = None,
    compare_frame: int | None = None,
    fps: float | None = None,
    codec: str | None = None,
    crf: int | None = None,
    pix_fmt: str | None = None,
    progress: bool | ProgressCallback = False,
    cancel: Callable[[], bool] | None = None,
    **param_overrides: Any,
) -> dict[str, Any]:
    """Restore the video ``src`` into ``dst``; return a summary of the run.

    ``params`` (or the ``preset`` and parameter names of :class:`Params` as keywords) choose the
    restoration; ``fps`` is the frame rate of an image sequence input; ``codec``/``crf``/
    ``pix_fmt`` override the encoder chosen from ``dst``'s extension. ``progress``: True draws a bar on stderr, a callable gets ``(done, total)``
    (``total`` may be an estimate or None). ``cancel()`` returning True stops the run with
    :class:`Cancelled`. Images (H, W, C) are float32 in [0, 1] throughout.

    The summary holds ``frames``, ``seconds`` (wall time), ``fps``, ``outputs`` (kind → path),
    ``gain_mean``, ``offset_mean``, ``blotch_pixels``, ``blotch_count``, ``cuts`` and, with
    ``compare``, ``compare_frame``.
    """
    p = resolve_params(params, param_overrides)
    src, dst = str(src), str(dst)
    named = {"restored": dst, "mask": mask_out, "flicker": flicker_out, "stats": stats_out, "compare": compare}
    check_paths(src, named)
    _check_compare(compare, compare_frame)
    started = time.monotonic()
    outputs: list[_Output] = []
    bar: ProgressBar | None = None
    try:
        with VideoReader(src, fps) as reader:
            info = reader.info
            if compare_frame is not None and info.exact_count and compare_frame >= info.frame_count:
                raise OutputError(f"--compare-frame {compare_frame} is past the end of '{Path(src).name}' ({info.frame_count} frames)")
            main = _add(outputs, VideoWriter(dst, info, codec=codec, crf=crf, pix_fmt=pix_fmt, audio_from=src if info.has_audio else None))
            mask = _add(outputs, VideoWriter(mask_out, info, channels=1)) if mask_out else None
            flicker = _add(outputs, VideoWriter(flicker_out, info, channels=3)) if flicker_out else None
            stats_file = _add(outputs, PendingFile(stats_out)) if stats_out else None
            compare_file = _add(outputs, PendingFile(compare)) if compare else None
            tracker = _Tracker(compare_frame, (info.frame_count or 0) // 2)
            report, bar = _progress_callback(progress, info.frame_count)
            _stream(reader, Restorer(p), main, mask, flicker, tracker, report, cancel)
        if compare_file is not None:
            compare_file.write(_comparison(src, fps, info, tracker))
        seconds = time.monotonic() - started
        summary = {
            **tracker.summary(),
            "seconds": round(seconds, 3),
            "fps": round(len(tracker.per_frame) / seconds, 3) if seconds > 0 else None,
            "outputs": {k: str(v) for k, v in named.items() if v is not None},
        }
        if compare_file is not None:
            summary["compare_frame"] = tracker.kept.index
        if stats_file is not None:
            stats_file.write(_stats_json(src, info, p, summary, tracker.per_frame))
        for out in outputs:
            out.finish()
        for out in outputs:
            out.commit()
        return summary
    except BaseException as err:
        for out in outputs:
            out.abort()
        if is_out_of_memory(err):
            raise ResourceError(
                f"out of memory while restoring '{Path(src).name}': try a smaller chunk (--chunk 8) or --device cpu"
            ) from err
        raise
    finally:
        if bar is not None:
            bar.close()


def _check_compare(compare: str | os.PathLike | None, compare_frame: int | None) -> None:
    if compare_frame is not None and compare is None:
        raise ParamError("--compare-frame needs --compare (the PNG to write)")
    if compare_frame is not None and compare_frame < 0:
        raise ParamError(f"--compare-frame must be a frame index >= 0, got {compare_frame}")
    if compare is not None and Path(compare).suffix.lower() != ".png":
        raise OutputError(f"the comparison image '{compare}' must be a .png")


def _add(outputs: list[_Output], out: _Output) -> Any:
    outputs.append(out)
    return out


def _stream(
    reader: VideoReader,
    restorer: Restorer,
    main: VideoWriter,
    mask: VideoWriter | None,
    flicker: VideoWriter | None,
    tracker: _Tracker,
    report: ProgressCallback | None,
    cancel: Callable[[], bool] | None,
) -> None:
    """Decode → restore → encode, one frame at a time; timestamps follow each frame through."""
    stamps: dict[int, tuple[int, float]] = {}

    def images():
        for frame in reader:
            stamps[frame.index] = (frame.pts, frame.time)
            yield frame.image

    total = reader.info.frame_count
    for done, restored in enumerate(restorer.process(images(), cancel=cancel), start=1):
        pts, time_s = stamps.pop(restored.index)
        main.write(restored.image, pts)
        if mask is not None:
            mask.write(restored.mask, pts)
        if flicker is not None:
            flicker.write(restored.flicker_map(), pts)
        tracker.add(restored, pts, time_s)
        if report is not None:
            report(done, total)
        if cancel is not None and cancel():
            raise Cancelled("restoration cancelled")
    if tracker.wanted is not None and tracker.kept is None:
        raise OutputError(f"--compare-frame {tracker.wanted} is past the end of '{Path(reader.path).name}' ({len(tracker.per_frame)} frames)")


def _comparison(src: str, fps: float | None, info: VideoInfo, tracker: _Tracker) -> bytes:
    """PNG bytes of input | restored for the kept frame, 16-bit for deep sources."""
    kept = tracker.kept
    with VideoReader(src, fps) as reader:
        before = reader.read_frame(kept.index).image
    return encode_png(side_by_side(before, kept.image), 16 if info.bit_depth > 8 else 8)


def _stats_json(src: str, info: VideoInfo, params: Params, summary: dict[str, Any], per_frame: list[dict[str, Any]]) -> bytes:
    doc = {
        "input": {
            "path": src,
            "width": info.width,
            "height": info.height,
            "fps": _fraction(info.fps),
            "pix_fmt": info.pix_fmt,
            "bit_depth": info.bit_depth,
        },
        "params": params.to_dict(),
        "summary": summary,
        "frames": per_frame,
    }
    return (json.dumps(doc, indent=1) + "\n").encode()


def _fraction(value: Fraction) -> float | str:
    return float(value) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
