"""Decode/encode round trips and the errors of the I/O layer, on tiny clips made with PyAV."""
from __future__ import annotations

import os
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from dfdb.errors import InputError, OutputError, ParamError, UnsupportedError
from dfdb.io import (
    PendingFile,
    VideoReader,
    VideoWriter,
    best_pix_fmt,
    encode_png,
    pixel_layout,
    sequence_files,
)

W, H = 64, 48


# ---------------------------------------------------------------------------- clip makers


def ramp(h: int = H, w: int = W, frames: int = 6, channels: int = 3) -> np.ndarray:
    """(T, H, W, C) float32: a 2-D ramp over all pixels (many distinct levels), shifted per frame."""
    base = (np.arange(h * w, dtype=np.float64).reshape(h, w) / (h * w - 1)) * 0.9 + 0.05
    out = np.empty((frames, h, w, channels), np.float32)
    for t in range(frames):
        for c in range(channels):
            out[t, :, :, c] = np.clip(base * (1 - 0.1 * c) + 0.01 * t, 0, 1)
    return out


def write_clip(
    path: Path,
    codec: str,
    pix_fmt: str,
    images: np.ndarray,
    *,
    rate: int = 24,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    audio: str | None = None,
    options: dict | None = None,
    muxer_options: dict | None = None,
) -> Path:
    """Encode ``images`` ((T, H, W, C) float in [0, 1]) with PyAV, optionally with a sine track."""
    out = av.open(str(path), "w", options=muxer_options or {})
    v = out.add_stream(codec, rate=rate, options=options or {})
    t, h, w, c = images.shape
    v.width, v.height, v.pix_fmt = w, h, pix_fmt
    if time_base is not None:
        v.codec_context.time_base = time_base
        v.time_base = time_base
    a = out.add_stream(audio, rate=48000, layout="stereo") if audio else None
    fmt = {1: "gray16le", 3: "rgb48le", 4: "rgba64le"}[c] if "f32" not in pix_fmt else {3: "gbrpf32le", 4: "gbrapf32le"}[c]
    for i, img in enumerate(images):
        data = img if "f32" in fmt else np.rint(img * 65535).astype(np.uint16)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(data[..., 0] if c == 1 else data), format=fmt)
        frame = frame.reformat(format=pix_fmt)
        frame.pts = pts[i] if pts else i
        if time_base is not None:
            frame.time_base = time_base
        out.mux(v.encode(frame))
        if a is not None:
            _mux_sine(out, a, i, rate)
    out.mux(v.encode(None))
    if a is not None:
        out.mux(a.encode(None))
    out.close()
    return path


def _mux_sine(out, stream, i: int, rate: int) -> None:
    """One video frame's worth of a 440 Hz stereo tone."""
    n = 48000 // rate
    s = np.arange(i * n, (i + 1) * n) / 48000
    tone = (0.3 * np.sin(2 * np.pi * 440 * s)).astype(np.float32)
    fmt = stream.codec_context.format.name
    if fmt == "fltp":
        arr = np.stack([tone, tone])
    elif fmt == "s16":
        arr = np.rint(np.stack([tone, tone], axis=1).reshape(1, -1) * 32767).astype(np.int16)
    else:
        arr = np.rint(np.stack([tone, tone], axis=1).reshape(1, -1) * 127).astype(np.int8).view(np.uint8)
    frame = av.AudioFrame.from_ndarray(arr, format=fmt, layout="stereo")
    frame.sample_rate = 48000
    frame.pts = i * n
    out.mux(stream.encode(frame))


def copy_through(src: Path, dst: Path, **kwargs) -> VideoWriter:
    """Read ``src`` and write every frame unchanged to ``dst`` (the I/O path without a solver)."""
    with VideoReader(src) as reader:
        with VideoWriter(dst, reader.info, **kwargs) as writer:
            for frame in reader:
                writer.write(frame.image, frame.pts)
    return writer


def decoded(path: Path, fmt: str | None = None, start: int | None = None) -> list[av.VideoFrame]:
    """All frames of ``path`` straight from PyAV (``start``: first number of an image sequence)."""
    with av.open(str(path), options={"start_number": str(start)} if start is not None else {}) as c:
        return [f.reformat(format=fmt) if fmt else f for f in c.decode(video=0)]


def luma10(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane of a 10-bit planar frame as uint16 code values."""
    plane = frame.planes[0]
    return np.frombuffer(bytes(plane), np.uint16).reshape(frame.height, plane.line_size // 2)[:, : frame.width]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(audio=0) if p.size]


def audio_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(p.pts * p.time_base) for p in c.demux(audio=0) if p.size]


def leftovers(folder: Path) -> list[str]:
    return [n for n in os.listdir(folder) if "dfdb-tmp" in n]


# ---------------------------------------------------------------------------- formats


def test_pixel_layouts():
    assert pixel_layout("yuv420p10le").depth == 10 and pixel_layout("yuv420p10le").chroma == (1, 1)
    assert pixel_layout("yuv422p10le").chroma == (1, 0)
    assert pixel_layout("gbrpf32le").is_float and pixel_layout("gbrpf32le").family == "rgb"
    assert pixel_layout("gray16le").channels == 1
    assert pixel_layout("yuva444p10le").channels == 4


def test_best_pix_fmt_keeps_depth_family_and_alpha():
    ffv1 = [f.name for f in av.codec.Codec("ffv1", "w").video_formats]
    assert best_pix_fmt(ffv1, pixel_layout("yuv422p10le")) == "yuv422p10le"
    assert pixel_layout(best_pix_fmt(ffv1, pixel_layout("rgb48be"))).depth == 16
    assert best_pix_fmt(ffv1, pixel_layout("rgba")) == "bgra"
    png = [f.name for f in av.codec.Codec("png", "w").video_formats]
    # a float source goes to the deepest integer format rather than 8 bits
    assert best_pix_fmt(png, pixel_layout("gbrpf32le")) == "rgb48be"


# ---------------------------------------------------------------------------- round trips


def test_8bit_mkv_round_trip(tmp_path):
    src = write_clip(tmp_path / "in.mkv", "ffv1", "yuv420p", ramp())
    dst = tmp_path / "out.mkv"
    copy_through(src, dst)
    a, b = decoded(src), decoded(dst)
    assert b[0].format.name == "yuv420p" and len(a) == len(b)
    for fa, fb in zip(a, b):
        diff = np.abs(fa.to_ndarray().astype(int) - fb.to_ndarray().astype(int))
        assert diff.max() <= 1
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "yuv422p10le"])
def test_10bit_mkv_stays_10bit(tmp_path, pix_fmt):
    src = write_clip(tmp_path / "in.mkv", "ffv1", pix_fmt, ramp(120, 160, frames=3))
    with VideoReader(src) as r:
        assert r.info.bit_depth == 10 and r.info.pix_fmt == pix_fmt
        images = [f.image for f in r]
    # the decoded floats keep more than 8 bits of levels
    assert len(np.unique(images[0][..., 1])) > 256
    dst = tmp_path / "out.mkv"
    copy_through(src, dst)
    a, b = decoded(src), decoded(dst)
    assert b[0].format.name == pix_fmt
    ya, yb = luma10(a[0]), luma10(b[0])
    assert len(np.unique(yb)) > 256
    # one 10-bit code value at most: an 8-bit detour would cost up to 4
    assert np.abs(ya.astype(int) - yb.astype(int)).max() <= 1


def test_16bit_png_sequence_round_trip(tmp_path):
    images = ramp(frames=4)
    (tmp_path / "in").mkdir()
    write_clip(tmp_path / "in" / "scan_%05d.png", "png", "rgb48be", images)
    os.makedirs(tmp_path / "out")
    # numbering of the input (image2 starts at 1 by default) is kept
    assert [n for n, _ in sequence_files(tmp_path / "in" / "scan_%05d.png")] == [1, 2, 3, 4]
    copy_through(tmp_path / "in" / "scan_%05d.png", tmp_path / "out" / "clean_%05d.png")
    assert sorted(os.listdir(tmp_path / "out")) == [f"clean_{i:05d}.png" for i in (1, 2, 3, 4)]
    with VideoReader(tmp_path / "out" / "clean_%05d.png") as r:
        assert r.info.bit_depth == 16 and r.info.frame_count == 4
        out = np.stack([f.image for f in r])
    assert np.abs(out - images).max() <= 1 / 65535 + 1e-7


def test_sequence_numbering_kept(tmp_path):
    """Scans numbered from a timecode-like frame number come out numbered the same."""
    write_clip(tmp_path / "s_%06d.dpx", "dpx", "gbrp10le", ramp(frames=3))
    for i in (3, 2, 1):
        os.rename(tmp_path / f"s_{i:06d}.dpx", tmp_path / f"s_{86399 + i:06d}.dpx")
    with VideoReader(tmp_path / "s_%06d.dpx") as r:
        assert (r.info.start_number, r.info.frame_count, r.info.bit_depth) == (86400, 3, 10)
    copy_through(tmp_path / "s_%06d.dpx", tmp_path / "o_%06d.dpx")
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith("o_")) == ["o_086400.dpx", "o_086401.dpx", "o_086402.dpx"]
    a, b = decoded(tmp_path / "s_%06d.dpx", start=86400), decoded(tmp_path / "o_%06d.dpx", start=86400)
    assert len(a) == len(b) == 3
    assert b[0].format.name == a[0].format.name
    # 10-bit DPX codes survive exactly
    assert all(np.array_equal(x.to_ndarray(), y.to_ndarray()) for x, y in zip(a, b))


@pytest.mark.parametrize("fps,rate", [(None, Fraction(25)), (24, Fraction(24)), (23.976, Fraction(24000, 1001)), (12.5, Fraction(25, 2))])
def test_sequence_frame_rate(tmp_path, fps, rate):
    write_clip(tmp_path / "s_%03d.png", "png", "rgb24", ramp(frames=3))
    with VideoReader(tmp_path / "s_%03d.png", fps=fps) as r:
        assert r.info.fps == rate
        times = [f.time for f in r]
    assert times == pytest.approx([0, 1 / rate, 2 / rate], abs=1e-6)
    with VideoReader(tmp_path / "s_%03d.png", fps=fps) as r, VideoWriter(tmp_path / "o.mov", r.info) as w:
        for f in r:
            w.write(f.image, f.pts)
    with av.open(str(tmp_path / "o.mov")) as c:
        assert c.streams.video[0].average_rate == rate


def test_fps_only_for_sequences(tmp_path):
    src = write_clip(tmp_path / "in.mkv", "ffv1", "yuv420p", ramp(frames=2))
    with pytest.raises(ParamError, match="fps applies to image sequence input only"):
        VideoReader(src, fps=24)
    with pytest.raises(ParamError, match="fps must be in"):
        VideoReader(tmp_path / "s_%03d.png", fps=-1)


def test_float_exr_sequence_round_trip(tmp_path):
    images = ramp(frames=3)
    write_clip(tmp_path / "f_%03d.exr", "exr", "gbrpf32le", images)
    with VideoReader(tmp_path / "f_%03d.exr") as r:
        assert r.info.bit_depth == 32
    copy_through(tmp_path / "f_%03d.exr", tmp_path / "g_%03d.exr")
    with VideoReader(tmp_path / "g_%03d.exr") as r:
        assert r.info.pix_fmt.startswith("gbrpf32")
        out = np.stack([f.image for f in r])
    assert np.abs(out - images).max() < 1e-6


def test_mov_prores_hq(tmp_path):
    src = write_clip(tmp_path / "in.mov", "prores_ks", "yuv422p10le", ramp(frames=3), options={"profile": "hq"})
    dst = tmp_path / "out.mov"
    copy_through(src, dst)
    with av.open(str(dst)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "prores" and s.codec_context.pix_fmt == "yuv422p10le"
        assert s.codec_context.profile == "HQ"


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv420p10le"])
def test_mp4_h264_keeps_depth(tmp_path, pix_fmt):
    src = write_clip(tmp_path / "in.mkv", "ffv1", pix_fmt, ramp(frames=3))
    dst = tmp_path / "out.mp4"
    copy_through(src, dst)
    with av.open(str(dst)) as c:
        cc = c.streams.video[0].codec_context
        assert cc.name == "h264" and cc.pix_fmt == pix_fmt
    a, b = decoded(src, "rgb48le"), decoded(dst, "rgb48le")
    assert np.abs(a[1].to_ndarray().astype(float) - b[1].to_ndarray().astype(float)).mean() / 65535 < 0.01


@pytest.mark.parametrize("name,codec,pix_fmt", [("in.avi", "ffv1", "yuv422p"), ("in.mxf", "mpeg2video", "yuv422p"), ("in.mov", "qtrle", "rgb24")])
def test_other_containers_read_and_mxf_written(tmp_path, name, codec, pix_fmt):
    images = ramp(frames=4)
    src = write_clip(tmp_path / name, codec, pix_fmt, images, rate=25)
    with VideoReader(src) as r:
        assert (r.info.width, r.info.height, r.info.fps) == (W, H, 25)
        got = np.stack([f.image for f in r])
    assert got.shape == images.shape and np.abs(got - images).mean() < 0.02
    copy_through(src, tmp_path / "out.mxf")
    with av.open(str(tmp_path / "out.mxf")) as c:
        assert c.streams.video[0].codec_context.name == "prores"
    assert len(decoded(tmp_path / "out.mxf")) == 4


def test_timestamps_and_rate_preserved(tmp_path):
    pts = [0, 40, 90, 130, 170, 260]  # irregular: a variable frame rate clip, in ms
    src = write_clip(tmp_path / "in.mkv", "ffv1", "yuv420p", ramp(), rate=25, pts=pts, time_base=Fraction(1, 1000))
    dst = tmp_path / "out.mkv"
    copy_through(src, dst)
    assert [f.pts for f in decoded(dst)] == pts
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        assert b.streams.video[0].average_rate == a.streams.video[0].average_rate


def test_timestamps_preserved_in_mp4(tmp_path):
    src = write_clip(tmp_path / "in.mkv", "ffv1", "yuv420p", ramp(), rate=24)
    dst = tmp_path / "out.mp4"
    copy_through(src, dst)
    assert [round(f.time, 3) for f in decoded(dst)] == [round(f.time, 3) for f in decoded(src)]


@pytest.mark.parametrize("audio,ext", [("aac", ".mkv"), ("pcm_s16le", ".mov"), ("aac", ".mp4")])
def test_audio_copied_untouched(tmp_path, audio, ext):
    src = write_clip(tmp_path / f"in{ext}", "ffv1" if ext == ".mkv" else "mpeg4", "yuv420p", ramp(frames=8), audio=audio)
    with VideoReader(src) as r:
        assert r.info.has_audio
    dst = tmp_path / f"out{ext}"
    copy_through(src, dst, audio_from=src)
    assert audio_packets(src) and audio_packets(dst) == audio_packets(src)
    assert audio_times(dst) == pytest.approx(audio_times(src), abs=1e-3)
    with av.open(str(dst)) as c:
        assert c.streams.audio[0].codec_context.name == audio


def test_audio_that_does_not_fit_the_container(tmp_path):
    src = write_clip(tmp_path / "in.mov", "mpeg4", "yuv420p", ramp(frames=3), audio="pcm_alaw")
    with VideoReader(src) as r, pytest.raises(OutputError, match=r"out\.mp4.*pcm_alaw.*\.mkv or \.mov"):
        VideoWriter(tmp_path / "out.mp4", r.info, audio_from=src)
    assert os.listdir(tmp_path) == ["in.mov"]


def test_alpha_passes_through(tmp_path):
    images = ramp(frames=3, channels=4)
    images[..., 3] = np.linspace(0, 1, W, dtype=np.float32)[None, None, :]
    write_clip(tmp_path / "a_%02d.png", "png", "rgba64be", images)
    with VideoReader(tmp_path / "a_%02d.png") as r:
        assert r.info.channels == 4
    copy_through(tmp_path / "a_%02d.png", tmp_path / "out.mkv")
    copy_through(tmp_path / "out.mkv", tmp_path / "out.mov")
    with VideoReader(tmp_path / "out.mkv") as r:
        assert r.info.channels == 4
        alpha = np.stack([f.image[..., 3] for f in r])
    assert np.abs(alpha - images[..., 3]).max() <= 1 / 65535 + 1e-7
    with av.open(str(tmp_path / "out.mov")) as c:
        assert c.streams.video[0].codec_context.profile == "4444"
        assert c.streams.video[0].codec_context.pix_fmt.startswith("yuva444p")


def test_gray_mask_video(tmp_path):
    src = write_clip(tmp_path / "in.mkv", "ffv1", "yuv420p10le", ramp(frames=2))
    with VideoReader(src) as r:
        info = r.info
    mask = np.zeros((H, W), np.float32)
    mask[10:20, 5:9] = 1
    with VideoWriter(tmp_path / "mask.mkv", info, channels=1) as w:
        w.write(mask, 0)
        w.write(mask, 42)
    frames = decoded(tmp_path / "mask.mkv")
    assert frames[0].format.name == "gray10le"
    assert np.array_equal(frames[1].to_ndarray(format="gray") > 127, mask > 0.5)


def test_colour_tags_copied(tmp_path):
    out = av.open(str(tmp_path / "in.mkv"), "w")
    v = out.add_stream("ffv1", rate=24)
    v.width, v.height, v.pix_fmt = W, H, "yuv420p"
    cc = v.codec_context
    cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc = 1, 1, 1, 1
    for i, img in enumerate(ramp(frames=2)):
        f = av.VideoFrame.from_ndarray(np.rint(img * 255).astype(np.uint8)).reformat(
            format="yuv420p", dst_colorspace=1, dst_color_range=1
        )
        f.pts = i
        out.mux(v.encode(f))
    out.mux(v.encode(None))
    out.close()
    copy_through(tmp_path / "in.mkv", tmp_path / "out.mkv")
    f = decoded(tmp_path / "out.mkv")[0]
    assert (int(f.color_range), int(f.colorspace), int(f.color_primaries), int(f.color_trc)) == (1, 1, 1, 1)


@pytest.mark.parametrize("dst", ["out.mkv", "out.mov", "out.mp4"])
def test_full_range_input_keeps_its_levels(tmp_path, dst):
    """JPEG-range YUV (mjpeg) must not be squeezed or stretched, whatever range the codec writes."""
    images = ramp(frames=2)
    images[..., 0] = np.linspace(0, 1, W, dtype=np.float32)[None, None, :]
    src = write_clip(tmp_path / "in.avi", "mjpeg", "yuvj420p", images)
    copy_through(src, tmp_path / dst)
    with VideoReader(src) as r:
        a = np.stack([f.image for f in r])
    with VideoReader(tmp_path / dst) as r:
        b = np.stack([f.image for f in r])
    assert np.abs(a - b).mean() < 0.006 and np.abs(a - b).max() < 0.05


def test_encode_png_and_pending_file(tmp_path):
    img = ramp(frames=1)[0]
    p = PendingFile(tmp_path / "cmp.png")
    p.write(encode_png(img, 16))
    assert not (tmp_path / "cmp.png").exists()
    p.commit()
    with av.open(str(tmp_path / "cmp.png")) as c:
        f = next(c.decode(video=0))
    assert f.format.name == "rgb48be"
    assert np.abs(f.to_ndarray(format="rgb48le") / 65535 - img).max() < 1e-4


# ---------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"cannot open .*nope\.mov.*no such file"):
        VideoReader(tmp_path / "nope.mov")


def test_text_file_is_not_video(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 50)
    with pytest.raises(InputError, match=r"cannot read 'notes\.mp4': not a readable video file"):
        VideoReader(p)


def test_truncated_mkv(tmp_path):
    src = write_clip(tmp_path / "in.mkv", "ffv1", "yuv420p", np.random.default_rng(0).random((12, H, W, 3), np.float32))
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.mkv.*(truncated|corrupt)"):
        copy_through(cut, tmp_path / "out.mkv")
    assert not (tmp_path / "out.mkv").exists() and leftovers(tmp_path) == []


def test_truncated_mp4_with_index_first(tmp_path):
    """A 'faststart' MP4 stays readable when cut; the frame count gives the cut away."""
    noise = np.random.default_rng(0).random((24, H, W, 3), np.float32)
    src = write_clip(tmp_path / "in.mp4", "libx264", "yuv420p", noise, muxer_options={"movflags": "faststart"})
    data = src.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"'cut\.mp4' is truncated or corrupt: the video stops after \d+ frames .* of 24 frames"):
        copy_through(tmp_path / "cut.mp4", tmp_path / "out.mkv")
    assert not (tmp_path / "out.mkv").exists() and leftovers(tmp_path) == []


def test_audio_only_file(tmp_path):
    out = av.open(str(tmp_path / "song.mka"), "w")
    a = out.add_stream("aac", rate=48000, layout="stereo")
    for i in range(4):
        _mux_sine(out, a, i, 24)
    out.mux(a.encode(None))
    out.close()
    with pytest.raises(InputError, match=r"'song\.mka' has no video stream"):
        VideoReader(tmp_path / "song.mka")


def test_sequence_gap_and_empty_pattern(tmp_path):
    write_clip(tmp_path / "s_%03d.png", "png", "rgb24", ramp(frames=4))
    os.unlink(tmp_path / "s_003.png")
    with pytest.raises(InputError, match=r"has a gap: 's_003\.png' is missing"):
        VideoReader(tmp_path / "s_%03d.png")
    with pytest.raises(InputError, match=r"no files match"):
        VideoReader(tmp_path / "t_%03d.png")


def test_unsupported_output_extension(tmp_path):
    src = write_clip(tmp_path / "in.mkv", "ffv1", "yuv420p", ramp(frames=2))
    with VideoReader(src) as r, pytest.raises(UnsupportedError, match=r"unsupported output extension '\.xyz'"):
        VideoWriter(tmp_path / "out.xyz", r.info)
    assert os.listdir(tmp_path) == ["in.mkv"]


def test_output_directory_missing(tmp_path):
    src = write_clip(tmp_path / "in.mkv", "ffv1", "yuv420p", ramp(frames=2))
    with VideoReader(src) as r, pytest.raises(OutputError, match=r"directory .*nowhere.* does not exist"):
        VideoWriter(tmp_path / "nowhere" / "out.mkv", r.info)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_output_directory_read_only(tmp_path):
    src = write_clip(tmp_path / "in.mkv", "ffv1", "yuv420p", ramp(frames=2))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with VideoReader(src) as r, pytest.raises(OutputError, match=r"cannot write .*out\.mkv"):
            VideoWriter(ro / "out.mkv", r.info)
    finally:
        ro.chmod(0o700)


def test_bad_codec_choices(tmp_path):
    src = write_clip(tmp_path / "in.mkv", "ffv1", "yuv420p", ramp(frames=2))
    with VideoReader(src) as r:
        with pytest.raises(UnsupportedError, match="unknown or unavailable encoder 'nocodec'"):
            VideoWriter(tmp_path / "o.mkv", r.info, codec="nocodec")
        with pytest.raises(OutputError, match="cannot write pixel format 'rgb24'"):
            VideoWriter(tmp_path / "o.mov", r.info, pix_fmt="rgb24")
        with pytest.raises(OutputError, match="--crf applies to"):
            VideoWriter(tmp_path / "o.mkv", r.info, crf=18)
        with pytest.raises(OutputError, match="'mov' format does not support 'ffv1'"):
            VideoWriter(tmp_path / "o.mov", r.info, codec="ffv1")
    assert os.listdir(tmp_path) == ["in.mkv"]


def test_odd_size_into_h264(tmp_path):
    write_clip(tmp_path / "odd_%02d.png", "png", "rgb24", ramp(49, 65, frames=2))
    with VideoReader(tmp_path / "odd_%02d.png") as r:
        with pytest.raises(OutputError, match=r"libx264 cannot write yuv420p at the odd size 65x49"):
            VideoWriter(tmp_path / "o.mp4", r.info)
    copy_through(tmp_path / "odd_%02d.png", tmp_path / "o.mp4", pix_fmt="yuv444p")
    copy_through(tmp_path / "odd_%02d.png", tmp_path / "o.mkv")
    assert (decoded(tmp_path / "o.mkv")[0].width, decoded(tmp_path / "o.mp4")[0].height) == (65, 49)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


def test_disk_full(tmp_path):
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "64k"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        noise = np.random.default_rng(2).random((6, 120, 160, 3), np.float32)
        src = write_clip(tmp_path / "noise.mkv", "ffv1", "yuv444p", noise)
        with pytest.raises(OutputError, match=r"disk full while writing .*out\.mkv"):
            copy_through(src, small / "out.mkv")
        assert os.listdir(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


# ---------------------------------------------------------------------------- interruption


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("name", ["out.mkv", "seq_%04d.png"])
def test_failure_mid_write_leaves_nothing(tmp_path, exc, name):
    src = write_clip(tmp_path / "in.mkv", "ffv1", "yuv420p", ramp(frames=6), audio="aac")
    (tmp_path / "o").mkdir()
    with pytest.raises(exc):
        with VideoReader(src) as r, VideoWriter(tmp_path / "o" / name, r.info, audio_from=src if name.endswith("mkv") else None) as w:
            for f in r:
                w.write(f.image, f.pts)
                if f.index == 3:
                    raise exc()
    assert os.listdir(tmp_path / "o") == []


def test_existing_output_is_replaced_only_on_success(tmp_path):
    src = write_clip(tmp_path / "in.mkv", "ffv1", "yuv420p", ramp(frames=3))
    dst = tmp_path / "out.mkv"
    dst.write_bytes(b"previous result")
    with pytest.raises(RuntimeError):
        with VideoReader(src) as r, VideoWriter(dst, r.info) as w:
            w.write(next(iter(r)).image, 0)
            raise RuntimeError
    assert dst.read_bytes() == b"previous result"
    copy_through(src, dst)
    assert len(decoded(dst)) == 3
