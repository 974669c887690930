"""Decode and encode video files and image sequences, keeping what the restoration must not touch.

The engine works on float32 (H, W, C) images in [0, 1]. This module converts to and from that
with PyAV, and keeps everything else of the input intact:

- **bit depth**: a frame is converted through an RGB (or gray) working format deep enough for
  its source (8-bit → ``rgb24``, 9–16-bit → ``rgb48le``, float → ``gbrpf32le``), and written
  back at the same depth, so 10-bit material never passes through 8 bits;
- **colour**: YUV ↔ RGB conversions use the stream's own matrix and range, and the output is
  tagged with the input's range, matrix, primaries and transfer;
- **time**: every frame keeps its presentation timestamp; the output uses the same time base
  and frame rate;
- **audio**: audio packets are copied untouched (no decode), interleaved while video is
  written so memory stays bounded.

Outputs are written under a temporary name in the destination directory (a temporary
directory for image sequences) and renamed only when complete (:meth:`VideoWriter.close`, or
:meth:`~VideoWriter.finish` then :meth:`~VideoWriter.commit` for several outputs at once), so a
failure or a Ctrl-C never leaves a partial file under the output name.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import InputError, OutputError, ParamError, UnsupportedError

log = logging.getLogger("dfdb")

#: swscale flags for every conversion: accurate rounding and full chroma interpolation keep
#: a YUV → RGB → YUV round trip within one code value.
_SWS_FLAGS = int(
    av.video.reformatter.Interpolation.BICUBIC
    | av.video.reformatter.Interpolation.ACCURATE_RND
    | av.video.reformatter.Interpolation.FULL_CHR_H_INT
)

#: Output extension → default encoder.
DEFAULT_CODECS: dict[str, str] = {
    ".mkv": "ffv1",
    ".avi": "ffv1",
    ".mov": "prores_ks",
    ".mp4": "libx264",
    ".m4v": "libx264",
    ".mxf": "prores_ks",
    ".png": "png",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".dpx": "dpx",
    ".exr": "exr",
    ".jpg": "mjpeg",
    ".jpeg": "mjpeg",
    ".bmp": "bmp",
}
#: Extensions of single-picture formats: an output with one of these must be a sequence pattern.
IMAGE_EXTENSIONS = frozenset({".png", ".tif", ".tiff", ".dpx", ".exr", ".jpg", ".jpeg", ".bmp", ".webp"})
#: Encoders that take a constant-rate-factor quality setting.
CRF_CODECS = frozenset({"libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1"})
#: Encoders whose bitstream is always limited ("video") range.
LIMITED_RANGE_CODECS = frozenset({"prores_ks", "prores", "prores_aw", "dnxhd"})
#: Default CRF: visually lossless for H.264/H.265 film material.
DEFAULT_CRF = 16
#: AVCOL_SPC_* → the swscale matrix constant used for the same standard.
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
_AVCOL_SPC_RGB, _AVCOL_SPC_BT709 = 0, 1
_RANGE_MPEG, _RANGE_JPEG = 1, 2
_PATTERN = re.compile(r"%0?(\d*)d")


# --------------------------------------------------------------------------------------------
# Pixel formats


@dataclass(frozen=True)
class PixelLayout:
    """What matters of a pixel format when choosing another one to hold the same pictures.

    ``family``: "rgb", "yuv" or "gray"; ``depth``: bits per component (32 for float);
    ``chroma``: (horizontal, vertical) chroma subsampling shifts, (0, 0) for 4:4:4 and RGB.
    """

    family: str
    depth: int
    is_float: bool
    alpha: bool
    chroma: tuple[int, int] = (0, 0)
    big_endian: bool = False

    @property
    def channels(self) -> int:
        """Channels of the engine image for this layout: 1 (gray), 3 (colour) or 4 (with alpha)."""
        if self.alpha:
            return 4
        return 1 if self.family == "gray" else 3


def pixel_layout(pix_fmt: str) -> PixelLayout:
    """Describe ``pix_fmt`` (an FFmpeg pixel format name) as a :class:`PixelLayout`."""
    fmt = av.VideoFormat(pix_fmt)
    comps = fmt.components
    is_float = bool(re.search(r"f(16|32)", pix_fmt))
    depth = 32 if is_float else max(c.bits for c in comps)
    alpha = any(c.is_alpha for c in comps)
    if fmt.is_rgb or fmt.has_palette or fmt.is_bayer:
        family = "rgb"
    elif sum(1 for c in comps if not c.is_alpha) == 1:
        family = "gray"
    else:
        family = "yuv"
    chroma = (0, 0)
    if family == "yuv":
        chroma = ((64 // fmt.chroma_width(64)).bit_length() - 1, (64 // fmt.chroma_height(64)).bit_length() - 1)
    return PixelLayout(family, depth, is_float, alpha, chroma, fmt.is_big_endian)


def working_format(channels: int, depth: int) -> str:
    """The packed format a (H, W, channels) image travels through for a source of ``depth`` bits.

    8-bit sources use 8-bit formats, 9–16-bit ones 16-bit formats, float (32) float formats:
    deep enough to hold every code value, never more than needed.
    """
    size = 0 if depth <= 8 else (1 if depth <= 16 else 2)
    table = {
        1: ("gray", "gray16le", "grayf32le"),
        3: ("rgb24", "rgb48le", "gbrpf32le"),
        4: ("rgba", "rgba64le", "gbrapf32le"),
    }
    if channels not in table:
        raise ValueError(f"images must have 1, 3 or 4 channels, got {channels}")
    return table[channels][size]


def _format_distance(src: PixelLayout, cand: PixelLayout) -> float:
    """How much is lost (large) or wasted (small) by storing ``src`` pictures as ``cand``."""
    d = 0.0
    if cand.depth < src.depth:
        d += 1000 + 10 * (src.depth - cand.depth)
    else:
        d += cand.depth - src.depth
    d += 50 * (src.is_float != cand.is_float)
    if src.alpha != cand.alpha:
        d += 500 if src.alpha else 20
    if src.family != cand.family:
        if cand.family == "gray":
            d += 2000
        else:
            d += 30 if src.family == "gray" else 100
    lost = sum(max(c - s, 0) for s, c in zip(src.chroma, cand.chroma))
    gained = sum(max(s - c, 0) for s, c in zip(src.chroma, cand.chroma))
    d += 200 * lost + 5 * gained
    return d + 0.5 * cand.big_endian


def best_pix_fmt(candidates: Sequence[str], source: PixelLayout) -> str:
    """The candidate format that holds ``source`` pictures with the least loss.

    Losing bits or alpha costs most, then changing colour family or chroma subsampling;
    among lossless choices the smallest wins.
    """
    usable = []
    for name in candidates:
        try:
            fmt = av.VideoFormat(name)
        except ValueError:
            continue
        if fmt.is_bit_stream or name.startswith(("pal", "mono")):
            continue
        usable.append((_format_distance(source, pixel_layout(name)), name))
    if not usable:
        raise UnsupportedError("the encoder accepts no pixel format this program can write")
    return min(usable)[1]


# --------------------------------------------------------------------------------------------
# Paths


def is_sequence_pattern(path: str | os.PathLike) -> bool:
    """True for printf-style image sequence names such as ``scan_%05d.png``."""
    return bool(_PATTERN.search(Path(path).name))


def sequence_files(pattern: str | os.PathLike) -> list[tuple[int, Path]]:
    """(number, path) of the files matching a printf ``pattern``, sorted by number."""
    pattern = Path(pattern)
    m = _PATTERN.search(pattern.name)
    assert m is not None
    head, tail = pattern.name[: m.start()], pattern.name[m.end() :]
    width = int(m.group(1) or 0)
    digits = rf"(\d{{{width},}})" if width else r"(\d+)"
    regex = re.compile(re.escape(head) + digits + re.escape(tail) + r"\Z")
    folder = pattern.parent
    if not folder.is_dir():
        return []
    found = []
    for entry in os.scandir(folder):
        hit = regex.match(entry.name)
        if hit and entry.is_file():
            found.append((int(hit.group(1)), folder / entry.name))
    return sorted(found)


def _sequence_rate(fps: float | Fraction | None, sequence: bool) -> Fraction | None:
    """``fps`` as an exact fraction (23.976 → 24000/1001), checked; only sequences take one."""
    if fps is None:
        return None
    if not sequence:
        raise ParamError("fps applies to image sequence input only: a video keeps its own frame rate")
    if not 0 < fps <= 1000:
        raise ParamError(f"fps must be in (0, 1000], got {fps}")
    ntsc = round(fps * 1.001)
    if abs(fps - ntsc / 1.001) < 0.002 and abs(fps - round(fps)) > 0.002:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(1000)


def _extension(path: str | os.PathLike) -> str:
    return Path(path).suffix.lower()


def _plain_file_mode(path: str) -> None:
    """Give a ``mkstemp`` file (0600) the mode a plain ``open()`` would have given it."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _ffmpeg_reason(err: BaseException) -> str:
    """The human part of a PyAV/OS error (without the repeated file name)."""
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return str(reason).rstrip(".")


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class VideoInfo:
    """What the writer needs to reproduce the input's format.

    ``fps`` is the nominal frame rate; ``time_base`` the unit of the frames' ``pts``;
    ``bit_depth`` bits per component (32 for float); ``channels`` 1, 3 or 4 (alpha);
    ``frame_count`` is exact for image sequences and containers that store it, an estimate from
    the duration otherwise (``exact_count`` tells which), ``None`` when unknown. Colour fields are FFmpeg's ``AVCOL_*`` codes.
    """

    path: str
    width: int
    height: int
    frame_count: int | None
    fps: Fraction
    time_base: Fraction
    bit_depth: int
    channels: int
    pix_fmt: str
    codec: str
    color_range: int = 0
    colorspace: int = 2
    color_primaries: int = 2
    color_trc: int = 2
    has_audio: bool = False
    is_sequence: bool = False
    start_number: int = 0
    duration: float | None = None
    exact_count: bool = False

    @property
    def layout(self) -> PixelLayout:
        return pixel_layout(self.pix_fmt)


@dataclass
class DecodedFrame:
    """One input frame: ``image`` (H, W, C) float32 in [0, 1], ``pts`` in the stream's time base."""

    index: int
    image: np.ndarray
    pts: int
    time: float


class VideoReader:
    """Decode a video file or an image sequence (``scan_%05d.png``) into float32 frames.

    ``fps`` sets the frame rate of an image sequence (which has none of its own; default 25).

    Use as a context manager; iterate once for :class:`DecodedFrame` objects in presentation
    order. A decode error raises :class:`InputError` naming the file and the frame; a stream
    that ends well before its recorded duration (a truncated file) raises too, so a short
    output is never produced silently.
    """

    def __init__(self, path: str | os.PathLike, fps: float | Fraction | None = None):
        self.path = str(path)
        self._name = Path(self.path).name
        self._container: av.container.InputContainer | None = None
        self._sequence = is_sequence_pattern(self.path)
        self._fps = _sequence_rate(fps, self._sequence)
        self._expected_end: float | None = None
        self._clip_warned = False
        self._open()

    # -- opening ----------------------------------------------------------------------------

    def _open(self) -> None:
        options: dict[str, str] = {}
        start_number, count = 0, None
        if self._sequence:
            start_number, count = self._check_sequence()
            options["start_number"] = str(start_number)
            if self._fps is not None:
                options["framerate"] = f"{self._fps.numerator}/{self._fps.denominator}"
        elif not os.path.exists(self.path):
            raise InputError(f"cannot open '{self.path}': no such file")
        elif os.path.isdir(self.path):
            raise InputError(f"cannot open '{self.path}': it is a directory (for an image sequence give a pattern such as {self.path}/frame_%05d.png)")
        try:
            self._container = av.open(self.path, options=options)
        except av.error.FFmpegError as err:
            raise InputError(f"cannot read '{self._name}': not a readable video file ({_ffmpeg_reason(err)})") from err
        except OSError as err:
            raise InputError(f"cannot open '{self.path}': {_ffmpeg_reason(err)}") from err
        try:
            self.info = self._probe(start_number, count)
            self._frames = self._decode()
            self._first = next(self._frames, None)
        except BaseException:
            self.close()
            raise
        if self._first is None:
            self.close()
            raise InputError(f"cannot read '{self._name}': the video stream holds no frames")
        self._colour_from(self._first)

    def _check_sequence(self) -> tuple[int, int]:
        files = sequence_files(self.path)
        if not files:
            raise InputError(f"cannot open '{self.path}': no files match the image sequence pattern")
        numbers = [n for n, _ in files]
        missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        if missing:
            name = Path(self.path).name % missing[0]
            raise InputError(f"image sequence '{self._name}' has a gap: '{name}' is missing ({len(missing)} file(s) in all)")
        return numbers[0], len(numbers)

    def _video_stream(self) -> av.video.stream.VideoStream:
        """The first real video stream (cover art and other still pictures are not the video)."""
        stills = av.stream.Disposition.attached_pic | av.stream.Disposition.still_image
        for stream in self._container.streams.video:
            if not stream.disposition & stills:
                return stream
        raise InputError(f"'{self._name}' has no video stream")

    def _probe(self, start_number: int, count: int | None) -> VideoInfo:
        c = self._container
        stream = self._stream = self._video_stream()
        cc = stream.codec_context
        if cc is None or not cc.name or cc.pix_fmt is None:
            codec = getattr(cc, "name", None) or "unknown"
            raise UnsupportedError(f"'{self._name}': video codec '{codec}' cannot be decoded by this build")
        stream.thread_type = "AUTO"
        fps = Fraction(stream.average_rate or stream.guessed_rate or stream.base_rate or 25)
        time_base = Fraction(stream.time_base or Fraction(1, 25))
        duration = self._stream_duration(stream)
        if duration is not None and not self._sequence:
            self._expected_end = duration
        exact = count is not None or bool(stream.frames)
        if count is None:
            count = stream.frames or (round(duration * fps) if duration else None)
        layout = pixel_layout(cc.pix_fmt)
        return VideoInfo(
            path=self.path,
            width=cc.width,
            height=cc.height,
            frame_count=count,
            fps=fps,
            time_base=time_base,
            bit_depth=layout.depth,
            channels=layout.channels,
            pix_fmt=cc.pix_fmt,
            codec=cc.name,
            has_audio=bool(c.streams.audio) and not self._sequence,
            is_sequence=self._sequence,
            start_number=start_number,
            duration=duration,
            exact_count=exact,
        )

    def _stream_duration(self, stream: av.video.stream.VideoStream) -> float | None:
        """Seconds of video recorded in the container, from the most specific source there is."""
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        tag = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
        if tag:
            m = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d+)?)", tag.strip())
            if m:
                return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
        # The container's duration covers audio too: only trust it when video is alone.
        if len(self._container.streams) == 1 and self._container.duration:
            return self._container.duration / 1_000_000
        return None

    # -- decoding ---------------------------------------------------------------------------

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Raw frames in order, with decode errors turned into :class:`InputError`."""
        stream = self._stream
        index = 0
        try:
            for packet in self._container.demux(stream):
                for frame in packet.decode():
                    self._check_frame(frame, index)
                    yield frame
                    index += 1
        except av.error.FFmpegError as err:
            raise InputError(f"corrupt data in '{self._name}' at frame {index}: {_ffmpeg_reason(err)}") from err

    def _check_frame(self, frame: av.VideoFrame, index: int) -> None:
        if frame.is_corrupt:
            raise InputError(f"corrupt data in '{self._name}' at frame {index}")
        if (frame.width, frame.height) != (self.info.width, self.info.height):
            raise UnsupportedError(
                f"'{self._name}' changes size at frame {index} ({self.info.width}x{self.info.height} → {frame.width}x{frame.height})"
            )

    def _image(self, frame: av.VideoFrame) -> np.ndarray:
        """(H, W, C) float32 in [0, 1] through the working format of the source depth."""
        fmt = working_format(self.info.channels, self.info.bit_depth)
        arr = frame.to_ndarray(format=fmt, interpolation=_SWS_FLAGS)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.dtype == np.uint8:
            return arr.astype(np.float32) * np.float32(1 / 255)
        if arr.dtype == np.uint16:
            return arr.astype(np.float32) * np.float32(1 / 65535)
        image = np.ascontiguousarray(arr, dtype=np.float32)
        if not self._clip_warned and (image.min() < 0 or image.max() > 1):
            self._clip_warned = True
            log.warning("'%s' holds float values outside [0, 1]; they are clipped", self._name)
        return np.clip(image, 0.0, 1.0, out=image)

    def _colour_from(self, frame: av.VideoFrame) -> None:
        """Record the colour tags of the first frame (more reliable than the stream header)."""
        self.info = replace(
            self.info,
            color_range=int(frame.color_range),
            colorspace=int(frame.colorspace),
            color_primaries=int(frame.color_primaries),
            color_trc=int(frame.color_trc),
            pix_fmt=frame.format.name,
        )

    def __iter__(self) -> Iterator[DecodedFrame]:
        if self._first is None:
            raise RuntimeError("a VideoReader can be iterated only once")
        first, self._first = self._first, None
        step = 1 / (self.info.fps * self.info.time_base)
        last_pts, last_time, last_length, index = None, 0.0, 0.0, 0
        frame: av.VideoFrame | None = first
        while frame is not None:
            pts = frame.pts if frame.pts is not None else round(index * step)
            if last_pts is not None and pts <= last_pts:
                pts = last_pts + 1
            last_pts, last_time = pts, float(pts * self.info.time_base)
            last_length = float(frame.duration * self.info.time_base) if frame.duration else 0.0
            yield DecodedFrame(index, self._image(frame), pts, last_time)
            index += 1
            frame = next(self._frames, None)
        self._check_complete(index, last_time + max(last_length, float(1 / self.info.fps)))

    def _check_complete(self, frames: int, end: float) -> None:
        """Refuse a stream that stops short of its recorded length (a cut-off file).

        ``end``: when the last decoded frame stops showing, in seconds. Two witnesses, each used
        when the container records it: the frame count (a shortfall of more than two frames) and
        the duration (a shortfall of more than one and a half frames). All present must agree,
        so edit lists and odd last-frame durations do not make a whole file look cut.
        """
        fps = float(self.info.fps)
        start = self._stream.start_time
        got = end - (float(start * self.info.time_base) if start else 0.0)
        recorded = self._stream.frames
        verdicts = []
        if recorded:
            verdicts.append(frames < recorded - 2)
        if self._expected_end is not None:
            verdicts.append(got < self._expected_end - 1.5 / fps)
        if verdicts and all(verdicts):
            expected = f"{recorded} frames" if recorded else f"{self._expected_end:.2f} s"
            raise InputError(
                f"'{self._name}' is truncated or corrupt: the video stops after {frames} frames ({got:.2f} s) of {expected}"
            )

    def read_frame(self, index: int) -> DecodedFrame:
        """Frame ``index`` (decoding from the start): for one-off looks such as a comparison image."""
        for frame in self:
            if frame.index == index:
                return frame
        raise InputError(f"'{self._name}' has no frame {index}")

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Writing


@dataclass(frozen=True)
class OutputPlan:
    """How an output will be encoded: encoder, pixel format, encoder options and colour tags."""

    codec: str
    pix_fmt: str
    options: dict[str, str]
    color_range: int
    colorspace: int
    is_sequence: bool


def plan_output(
    path: str | os.PathLike,
    like: VideoInfo,
    channels: int | None = None,
    codec: str | None = None,
    crf: int | None = None,
    pix_fmt: str | None = None,
) -> OutputPlan:
    """Choose the encoder and pixel format for ``path`` from its extension and the input ``like``.

    Defaults: .mkv/.avi → FFV1 (lossless, the input's pixel format family and depth), .mov/.mxf →
    ProRes 422 HQ (4444 with alpha), .mp4 → H.264 CRF 16 (High 10 for deeper input), image
    sequences → the input's own format where the image codec holds it.
    """
    path = str(path)
    ext = _extension(path)
    sequence = is_sequence_pattern(path)
    name = Path(path).name
    if ext in IMAGE_EXTENSIONS and not sequence and like.frame_count != 1:
        raise OutputError(f"'{name}' names a single image; for a video give a sequence pattern such as '{Path(name).stem}_%05d{ext}'")
    codec = codec or DEFAULT_CODECS.get(ext)
    if codec is None:
        raise UnsupportedError(
            f"unsupported output extension '{ext or name}': use .mkv, .mov, .mp4, .avi, .mxf or an image sequence such as out_%05d.png"
        )
    try:
        encoder = av.codec.Codec(codec, "w")
    except ValueError as err:
        raise UnsupportedError(f"unknown or unavailable encoder '{codec}'") from err
    if encoder.type != "video":
        raise UnsupportedError(f"'{codec}' is not a video encoder")
    formats = [f.name for f in (encoder.video_formats or [])]
    source = like.layout
    if channels is not None and channels != source.channels:
        source = PixelLayout("gray" if channels == 1 else ("rgb" if source.family == "gray" else source.family),
                             source.depth, source.is_float, channels == 4, source.chroma if channels != 1 else (0, 0))
    if pix_fmt is not None:
        if formats and pix_fmt not in formats:
            raise OutputError(f"encoder '{codec}' cannot write pixel format '{pix_fmt}'; it takes: {', '.join(formats)}")
        chosen = pix_fmt
    else:
        chosen = _default_pix_fmt(codec, formats, source)
    layout = pixel_layout(chosen)
    _check_subsampled_size(codec, chosen, layout, like)
    if layout.depth < source.depth and pix_fmt is None:
        log.warning("'%s' (%s, %s) holds %d bits per component; the input has %d", name, codec, chosen, layout.depth, source.depth)
    if source.alpha and not layout.alpha:
        log.warning("'%s' (%s) cannot hold alpha: the alpha channel is dropped", name, codec)
    options = _encoder_options(codec, crf, layout)
    color_range, colorspace = _output_colour(like, layout, codec)
    return OutputPlan(codec, chosen, options, color_range, colorspace, sequence)


def _check_subsampled_size(codec: str, pix_fmt: str, layout: PixelLayout, like: VideoInfo) -> None:
    """x264/x265 refuse chroma-subsampled frames of odd size: say so before any work is done."""
    odd = (layout.chroma[0] and like.width % 2) or (layout.chroma[1] and like.height % 2)
    if codec in ("libx264", "libx265") and odd:
        raise OutputError(
            f"{codec} cannot write {pix_fmt} at the odd size {like.width}x{like.height}: "
            "use .mkv or .mov, or --pix-fmt with a 4:4:4 format such as yuv444p"
        )


def _default_pix_fmt(codec: str, formats: list[str], source: PixelLayout) -> str:
    """The pixel format a codec gets unless the user names one (see :func:`plan_output`)."""
    if codec in ("prores_ks", "prores", "prores_aw"):
        return "yuva444p10le" if source.alpha else "yuv422p10le"
    if codec in ("libx264", "libx265"):
        return "yuv420p" if source.depth <= 8 else "yuv420p10le"
    if codec == "ffv1":
        # FFV1's float formats are experimental: the files would not play elsewhere.
        formats = [f for f in formats if not pixel_layout(f).is_float]
    return best_pix_fmt(formats, source)


def _encoder_options(codec: str, crf: int | None, layout: PixelLayout) -> dict[str, str]:
    if crf is not None and codec not in CRF_CODECS:
        raise OutputError(f"--crf applies to {', '.join(sorted(CRF_CODECS))}, not to '{codec}'")
    if crf is not None and not 0 <= crf <= 63:
        raise ParamError(f"crf must be in 0..63 (lower is better quality), got {crf}")
    if codec in CRF_CODECS:
        options = {"crf": str(DEFAULT_CRF if crf is None else crf)}
        if codec in ("libx264", "libx265"):
            options["preset"] = "medium"
        if codec == "libvpx-vp9":
            options["b"] = "0"  # constant quality: CRF alone, no bitrate cap
        return options
    if codec == "prores_ks":
        return {"profile": "4444" if layout.alpha else "hq", "vendor": "apl0"}
    if codec == "ffv1":
        return {"level": "3", "slicecrc": "1"}
    return {}


def _output_colour(like: VideoInfo, layout: PixelLayout, codec: str) -> tuple[int, int]:
    """(AVCOL range, AVCOL matrix) for the output: the input's when both are YUV."""
    if layout.family != "yuv":
        return (_RANGE_JPEG, _AVCOL_SPC_RGB if layout.family == "rgb" else like.colorspace)
    if codec in LIMITED_RANGE_CODECS:
        return (_RANGE_MPEG, like.colorspace if like.layout.family == "yuv" else _AVCOL_SPC_BT709)
    if like.layout.family == "yuv":
        return (like.color_range, like.colorspace)
    return (_RANGE_JPEG if codec == "mjpeg" else _RANGE_MPEG, _AVCOL_SPC_BT709)


class VideoWriter:
    """Encode float32 frames to ``path`` in the input's format, atomically.

    ``like`` is the input's :class:`VideoInfo` (size, rate, time base, depth, colour);
    ``channels`` the channels of the images that will be written when they differ from the
    input's (1 for a mask video, 3 for a flicker map). ``audio_from`` names a file whose audio
    streams are copied packet for packet. Frames go to a temporary name; :meth:`close` renames
    it to ``path``, :meth:`abort` removes it. As a context manager it commits on success and
    aborts on any exception, KeyboardInterrupt included.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        like: VideoInfo,
        *,
        channels: int | None = None,
        codec: str | None = None,
        crf: int | None = None,
        pix_fmt: str | None = None,
        audio_from: str | os.PathLike | None = None,
    ):
        self.path = str(path)
        self._name = Path(self.path).name
        self.like = like
        self.plan = plan_output(self.path, like, channels, codec, crf, pix_fmt)
        self.frames_written = 0
        self._last_pts: int | None = None
        self._audio_src: av.container.InputContainer | None = None
        self._audio_packets: Iterator[av.Packet] | None = None
        self._pending: av.Packet | None = None
        self._out: av.container.OutputContainer | None = None
        self._tmp = self._make_temporary()
        try:
            self._open(audio_from)
        except BaseException:
            self.abort()
            raise

    # -- set-up -----------------------------------------------------------------------------

    def _make_temporary(self) -> str:
        """A fresh temporary path next to the output (same file system, so the rename is atomic)."""
        folder = Path(self.path).parent
        if not folder.is_dir():
            raise OutputError(f"cannot write '{self.path}': directory '{folder}' does not exist")
        try:
            if self.plan.is_sequence:
                return tempfile.mkdtemp(prefix=".dfdb-tmp-", dir=folder)
            ext = Path(self.path).suffix
            fd, tmp = tempfile.mkstemp(prefix=f".{Path(self.path).stem}.", suffix=f".dfdb-tmp{ext}", dir=folder)
            os.close(fd)
            _plain_file_mode(tmp)
            return tmp
        except OSError as err:
            raise OutputError(f"cannot write '{self.path}': {_ffmpeg_reason(err)}") from err

    def _target(self) -> str:
        return os.path.join(self._tmp, self._name) if self.plan.is_sequence else self._tmp

    def _open(self, audio_from: str | os.PathLike | None) -> None:
        plan, like = self.plan, self.like
        # A sequence keeps the input sequence's numbering; from a video it starts at 1 like ffmpeg's.
        start = like.start_number if like.is_sequence else 1
        options = {"start_number": str(start)} if plan.is_sequence else {}
        try:
            self._out = av.open(self._target(), "w", options=options)
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise OutputError(f"cannot write '{self.path}': {_ffmpeg_reason(err)}") from err
        try:
            stream = self._out.add_stream(plan.codec, rate=like.fps, options=plan.options)
        except ValueError as err:
            raise OutputError(f"cannot write '{self._name}': {_ffmpeg_reason(err)}") from err
        stream.width, stream.height, stream.pix_fmt = like.width, like.height, plan.pix_fmt
        stream.time_base = like.time_base
        cc = stream.codec_context
        cc.time_base = like.time_base
        cc.framerate = like.fps
        cc.color_range, cc.colorspace = plan.color_range, plan.colorspace
        cc.color_primaries, cc.color_trc = like.color_primaries, like.color_trc
        stream.thread_type = "AUTO"
        self._video = stream
        if audio_from is not None:
            self._add_audio(str(audio_from))
        try:
            self._out.start_encoding()
        except (av.error.FFmpegError, ValueError) as err:
            hint = " (the audio codec does not fit this container: try .mkv or .mov)" if self._audio_src else ""
            raise OutputError(f"cannot write '{self._name}' with {plan.codec}/{plan.pix_fmt}: {_ffmpeg_reason(err)}{hint}") from err

    def _add_audio(self, source: str) -> None:
        """Copy every audio stream of ``source`` as-is (no decode, no re-encode)."""
        src = av.open(source)
        self._audio_src = src
        mapping = {}
        for stream in src.streams.audio:
            try:
                mapping[stream.index] = self._out.add_stream_from_template(stream)
            except ValueError as err:
                codec = stream.codec_context.name if stream.codec_context else "unknown"
                raise OutputError(
                    f"'{self._name}' cannot hold the input's {codec} audio ({_ffmpeg_reason(err)}): use .mkv or .mov"
                ) from err
        self._audio_map = mapping
        self._audio_packets = iter(src.demux(*src.streams.audio)) if mapping else None

    # -- writing ----------------------------------------------------------------------------

    def write(self, image: np.ndarray, pts: int | None = None) -> None:
        """Encode one (H, W, C) image in [0, 1] (float32, or uint8/uint16 at full scale).

        ``pts`` is the input frame's timestamp in ``like.time_base``; without it the frame
        follows the previous one at the nominal rate.
        """
        if self._out is None:
            raise RuntimeError(f"writer for '{self._name}' is closed")
        frame = self._to_frame(image)
        if pts is None:
            step = 1 / (self.like.fps * self.like.time_base)
            pts = 0 if self._last_pts is None else self._last_pts + max(1, round(step))
        frame.pts = int(pts)
        frame.time_base = self.like.time_base
        self._last_pts = frame.pts
        with self._writing():
            self._out.mux(self._video.encode(frame))
        self.frames_written += 1
        self._pump_audio(float(frame.pts * self.like.time_base))

    def _to_frame(self, image: np.ndarray) -> av.VideoFrame:
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[:, :, None]
        h, w, c = image.shape
        if (h, w) != (self.like.height, self.like.width):
            raise ValueError(f"frame is {w}x{h}, the output is {self.like.width}x{self.like.height}")
        target = pixel_layout(self.plan.pix_fmt)
        if c == 4 and not target.alpha:
            image, c = image[:, :, :3], 3
        if c == 1 and target.family != "gray":
            image, c = np.repeat(image, 3, axis=2), 3
        fmt = working_format(c, target.depth)
        frame = av.VideoFrame.from_ndarray(_quantise(image, fmt), format=fmt)
        matrix = _SWS_MATRIX.get(self.plan.colorspace)
        out = frame.reformat(
            format=self.plan.pix_fmt,
            dst_colorspace=matrix,
            dst_color_range=self.plan.color_range,
            interpolation=_SWS_FLAGS,
        )
        out.color_range = self.plan.color_range
        out.colorspace = self.plan.colorspace
        return out

    def _pump_audio(self, until: float | None) -> None:
        """Mux the audio packets due before ``until`` seconds (all that remain when None)."""
        while self._audio_packets is not None:
            packet = self._pending or next(self._audio_packets, None)
            self._pending = None
            if packet is None:
                self._audio_packets = None
                return
            if packet.dts is None and packet.pts is None:
                continue
            if until is not None and packet.time_base is not None:
                t = float((packet.dts if packet.dts is not None else packet.pts) * packet.time_base)
                if t > until:
                    self._pending = packet
                    return
            packet.stream = self._audio_map[packet.stream_index]
            with self._writing():
                self._out.mux(packet)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn the failures of an encode/mux step into :class:`OutputError` naming the output."""
        try:
            yield
        except OSError as err:
            if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
                raise OutputError(f"disk full while writing '{self.path}'") from err
            raise OutputError(f"cannot write '{self.path}': {_ffmpeg_reason(err)}") from err
        except av.error.FFmpegError as err:
            raise OutputError(f"cannot write '{self.path}': {_ffmpeg_reason(err)}") from err

    # -- finishing --------------------------------------------------------------------------

    def finish(self) -> None:
        """Flush the encoder and copy the remaining audio: the temporary is complete, not yet renamed."""
        if self._out is None:
            return
        try:
            if self.frames_written == 0:
                raise OutputError(f"no frames were written to '{self._name}'")
            with self._writing():
                self._out.mux(self._video.encode(None))
            self._pump_audio(None)
            out, self._out = self._out, None
            with self._writing():
                out.close()
            self._close_audio()
        except BaseException:
            self.abort()
            raise

    def close(self) -> None:
        """Finish and move the result to ``path``."""
        self.finish()
        self.commit()

    def commit(self) -> None:
        """Rename the finished temporary to ``path`` (after :meth:`finish`)."""
        if self._out is not None:
            raise RuntimeError(f"writer for '{self._name}' is not finished")
        if not self._tmp:
            return
        try:
            if self.plan.is_sequence:
                folder = Path(self.path).parent
                for entry in sorted(os.listdir(self._tmp)):
                    os.replace(os.path.join(self._tmp, entry), folder / entry)
                os.rmdir(self._tmp)
            else:
                os.replace(self._tmp, self.path)
        except OSError as err:
            raise OutputError(f"cannot write '{self.path}': {_ffmpeg_reason(err)}") from err
        self._tmp = ""

    def abort(self) -> None:
        """Drop everything written so far; the output path is left as it was."""
        if self._out is not None:
            out, self._out = self._out, None
            try:
                out.close()
            except Exception:  # the file is being thrown away: its trailer does not matter
                pass
        self._close_audio()
        if self._tmp:
            if os.path.isdir(self._tmp):
                shutil.rmtree(self._tmp, ignore_errors=True)
            elif os.path.exists(self._tmp):
                os.unlink(self._tmp)
            self._tmp = ""

    def _close_audio(self) -> None:
        if self._audio_src is not None:
            self._audio_src.close()
            self._audio_src = None
            self._audio_packets = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _quantise(image: np.ndarray, fmt: str) -> np.ndarray:
    """``image`` in [0, 1] as the integer (or float) samples of working format ``fmt``."""
    if image.dtype == np.uint8 and fmt in ("gray", "rgb24", "rgba"):
        return np.ascontiguousarray(image)
    if image.dtype == np.uint16 and fmt in ("gray16le", "rgb48le", "rgba64le"):
        return np.ascontiguousarray(image)
    x = image.astype(np.float32, copy=False)
    if image.dtype == np.uint8:
        x = x / 255
    elif image.dtype == np.uint16:
        x = x / 65535
    if "f32" in fmt:
        return np.ascontiguousarray(np.clip(x, 0, 1), dtype=np.float32)
    scale = 255 if fmt in ("gray", "rgb24", "rgba") else 65535
    dtype = np.uint8 if scale == 255 else np.uint16
    return np.ascontiguousarray(np.clip(np.rint(x * scale), 0, scale).astype(dtype))


def encode_png(image: np.ndarray, bit_depth: int = 8) -> bytes:
    """One (H, W, C) image in [0, 1] as PNG bytes, 16-bit per component when ``bit_depth`` > 8."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    fmt = working_format(image.shape[2], 16 if bit_depth > 8 else 8)
    target = {"rgb24": "rgb24", "rgba": "rgba", "rgb48le": "rgb48be", "rgba64le": "rgba64be"}[fmt]
    frame = av.VideoFrame.from_ndarray(_quantise(image, fmt), format=fmt).reformat(format=target)
    frame.pts = 0
    encoder = av.codec.CodecContext.create("png", "w")
    encoder.width, encoder.height, encoder.pix_fmt = frame.width, frame.height, target
    encoder.time_base = Fraction(1, 1)
    return b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)])


class PendingFile:
    """A small output (JSON, PNG) written to a temporary name now and renamed by :meth:`commit`.

    Follows the same finish/commit/abort protocol as :class:`VideoWriter`, so that a group of
    outputs can be committed together only when all of them are complete.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        folder = Path(self.path).parent
        if not folder.is_dir():
            raise OutputError(f"cannot write '{self.path}': directory '{folder}' does not exist")
        try:
            fd, self._tmp = tempfile.mkstemp(prefix=f".{Path(self.path).stem}.", suffix=f".dfdb-tmp{Path(self.path).suffix}", dir=folder)
        except OSError as err:
            raise OutputError(f"cannot write '{self.path}': {_ffmpeg_reason(err)}") from err
        os.close(fd)
        _plain_file_mode(self._tmp)

    def write(self, data: bytes) -> None:
        """Replace the pending content with ``data``."""
        try:
            with open(self._tmp, "wb") as f:
                f.write(data)
        except OSError as err:
            if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
                raise OutputError(f"disk full while writing '{self.path}'") from err
            raise OutputError(f"cannot write '{self.path}': {_ffmpeg_reason(err)}") from err

    def finish(self) -> None:
        """Nothing is buffered: present for the common protocol."""

    def commit(self) -> None:
        try:
            os.replace(self._tmp, self.path)
        except OSError as err:
            raise OutputError(f"cannot write '{self.path}': {_ffmpeg_reason(err)}") from err
        self._tmp = ""

    def abort(self) -> None:
        if self._tmp and os.path.exists(self._tmp):
            os.unlink(self._tmp)
        self._tmp = ""
