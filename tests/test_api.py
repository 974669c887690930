"""``dfdb.api.restore``: file to file through the real solver, with every optional output."""
from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from dfdb.api import is_out_of_memory, restore, side_by_side
from dfdb.errors import Cancelled, InputError, OutputError, ParamError
from dfdb.params import Params
from test_io import audio_packets, decoded, luma10, write_clip

FAST = Params.from_preset("fast")


def flickering(frames: int = 10, h: int = 48, w: int = 64, blotch_at: int = 4, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) float32: a smooth textured scene with strong global flicker and one dark blotch."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.2 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + 0.1 * yy / h
    gains = 1 + 0.15 * rng.standard_normal(frames)
    out = np.clip(base[None, :, :, None] * gains[:, None, None, None], 0, 1).repeat(3, axis=3).astype(np.float32)
    out[blotch_at, 20:26, 30:36] = 0.05
    return out


def frame_means(path: Path) -> np.ndarray:
    return np.array([f.to_ndarray(format="rgb48le").mean() / 65535 for f in decoded(path)])


@pytest.fixture
def clip10(tmp_path: Path) -> Path:
    """A 10-bit 4:2:0 FFV1 clip with an AAC track, in its own folder."""
    folder = tmp_path / "work"
    folder.mkdir()
    return write_clip(folder / "in.mkv", "ffv1", "yuv420p10le", flickering(), audio="aac")


def test_restore_with_every_output(clip10):
    d = clip10.parent
    summary = restore(
        clip10, d / "out.mkv", params=FAST, mask_out=d / "mask.mkv", flicker_out=d / "flicker.mkv",
        stats_out=d / "stats.json", compare=d / "cmp.png",
    )
    assert sorted(os.listdir(d)) == ["cmp.png", "flicker.mkv", "in.mkv", "mask.mkv", "out.mkv", "stats.json"]
    assert summary["frames"] == 10 and summary["outputs"]["restored"] == str(d / "out.mkv")

    src, out = decoded(clip10), decoded(d / "out.mkv")
    assert [f.pts for f in out] == [f.pts for f in src]
    assert out[0].format.name == "yuv420p10le"
    assert len(np.unique(luma10(out[3]))) > 256
    assert audio_packets(d / "out.mkv") == audio_packets(clip10)
    # the flicker is the point of the exercise: frame-to-frame brightness jumps must shrink
    jumps = lambda p: np.abs(np.diff(frame_means(p))).mean()  # noqa: E731
    assert jumps(d / "out.mkv") < 0.6 * jumps(clip10)

    masks = decoded(d / "mask.mkv")
    assert len(masks) == 10 and masks[0].format.name.startswith("gray")
    with av.open(str(d / "mask.mkv")) as c:
        assert not c.streams.audio
    assert len(decoded(d / "flicker.mkv")) == 10

    stats = json.loads((d / "stats.json").read_text())
    assert [f["pts"] for f in stats["frames"]] == [f.pts for f in src]
    assert {"gain_mean", "offset_mean", "blotch_pixels", "blotch_count", "time"} <= set(stats["frames"][0])
    assert stats["params"]["preset"] == "fast" and stats["summary"]["frames"] == 10

    with av.open(str(d / "cmp.png")) as c:
        png = next(c.decode(video=0))
    assert (png.width, png.height) == (2 * 64 + 4, 48) and png.format.name == "rgb48be"


def test_compare_frame_is_the_requested_one(clip10):
    d = clip10.parent
    summary = restore(clip10, d / "out.mkv", params=FAST, compare=d / "c.png", compare_frame=7)
    assert summary["compare_frame"] == 7
    with av.open(str(d / "c.png")) as c:
        left = next(c.decode(video=0)).to_ndarray(format="rgb48le")[:, :64] / 65535
    src = decoded(clip10, "rgb48le")[7].to_ndarray() / 65535
    assert np.abs(left - src).max() < 1e-3


def test_png_sequence_in_and_out(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    write_clip(tmp_path / "in" / "f_%04d.png", "png", "rgb48be", flickering(8))
    summary = restore(tmp_path / "in" / "f_%04d.png", tmp_path / "out" / "r_%04d.png", params=FAST)
    assert summary["frames"] == 8
    assert sorted(os.listdir(tmp_path / "out")) == [f"r_{i:04d}.png" for i in range(1, 9)]
    assert decoded(tmp_path / "out" / "r_%04d.png")[0].format.name == "rgb48be"


def test_param_overrides_and_preset_keywords(clip10):
    d = clip10.parent
    summary = restore(clip10, d / "out.mp4", preset="fast", grid=(1, 1), blotches=False, stats_out=d / "s.json")
    stats = json.loads((d / "s.json").read_text())
    assert stats["params"]["grid"] == [1, 1] and stats["params"]["blotches"] is False
    assert summary["blotch_pixels"] == 0
    with av.open(str(d / "out.mp4")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le" and c.streams.audio


def _only_input_left(d: Path) -> None:
    assert os.listdir(d) == ["in.mkv"]


def test_bad_parameter_writes_nothing(clip10):
    with pytest.raises(ParamError, match=r"strength must be in \[0, 1\]"):
        restore(clip10, clip10.parent / "out.mkv", params=FAST, strength=3.0)
    with pytest.raises(ParamError, match="unknown parameter"):
        restore(clip10, clip10.parent / "out.mkv", colour="blue")
    _only_input_left(clip10.parent)


def test_output_must_not_be_the_input(clip10):
    with pytest.raises(OutputError, match="is the input file"):
        restore(clip10, clip10, params=FAST)
    with pytest.raises(OutputError, match="both"):
        restore(clip10, clip10.parent / "a.mkv", mask_out=clip10.parent / "a.mkv", params=FAST)
    _only_input_left(clip10.parent)


def test_compare_frame_past_the_end(clip10):
    with pytest.raises(OutputError, match="past the end"):
        restore(clip10, clip10.parent / "out.mkv", params=FAST, compare=clip10.parent / "c.png", compare_frame=99)
    _only_input_left(clip10.parent)


def test_cancel_mid_run_leaves_nothing(clip10):
    d = clip10.parent
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        restore(clip10, d / "out.mkv", params=FAST.replace(chunk=4), mask_out=d / "m.mkv", stats_out=d / "s.json", cancel=cancel)
    _only_input_left(d)


def test_interrupt_mid_write_keeps_the_previous_output(clip10):
    d = clip10.parent
    (d / "out.mkv").write_bytes(b"earlier result")
    seen = []

    def progress(done: int, total: int | None) -> None:
        seen.append((done, total))
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        restore(clip10, d / "out.mkv", params=FAST, compare=d / "c.png", progress=progress)
    assert seen[0] == (1, 10)
    assert sorted(os.listdir(d)) == ["in.mkv", "out.mkv"] and (d / "out.mkv").read_bytes() == b"earlier result"


def test_bad_inputs_write_nothing(tmp_path):
    (tmp_path / "text.mp4").write_text("hello\n" * 100)
    with pytest.raises(InputError, match="not a readable video file"):
        restore(tmp_path / "text.mp4", tmp_path / "out.mkv", params=FAST)
    clip = write_clip(tmp_path / "whole.mkv", "ffv1", "yuv420p", flickering(12))
    data = clip.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated|corrupt"):
        restore(tmp_path / "cut.mkv", tmp_path / "out.mkv", params=FAST, stats_out=tmp_path / "s.json")
    assert sorted(os.listdir(tmp_path)) == ["cut.mkv", "text.mp4", "whole.mkv"]


def test_out_of_memory_is_recognised():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("MPS backend out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_side_by_side_shapes():
    gray = np.zeros((4, 5, 1), np.float32)
    rgba = np.ones((4, 5, 4), np.float32)
    out = side_by_side(gray, rgba, gap=2)
    assert out.shape == (4, 12, 3)
    assert (out[:, :5] == 0).all() and (out[:, 5:7] == 0.5).all() and (out[:, 7:] == 1).all()
