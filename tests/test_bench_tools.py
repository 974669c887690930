"""The benchmark's plumbing: raw files, measured processes, the ffmpeg peers, the CLI, the sample."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from dfdb.bench import cli, peers, rawvideo, synth
from dfdb.bench.measure import run_measured
from dfdb.errors import InputError


def test_raw_round_trip_and_truncation(tmp_path: Path) -> None:
    clip = synth.make_scene("pan", frames=3, height=16, width=24)
    path = tmp_path / "clip.rgb48"
    assert rawvideo.write_frames(path, clip) == 3
    back = rawvideo.read_frames(path, 16, 24)
    np.testing.assert_allclose(back, clip, atol=1 / 65535)
    np.testing.assert_array_equal(back, rawvideo.quantise(clip))
    np.testing.assert_array_equal(np.stack(list(rawvideo.iter_frames(path, 16, 24))), back)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InputError, match="truncated"):
        list(rawvideo.iter_frames(path, 16, 24))


def test_measured_memory_is_the_childs_own() -> None:
    ballast = np.ones((300, 1024, 1024), np.uint8)  # the parent holds 300 MB
    small = run_measured([sys.executable, "-c", "pass"])
    assert small.returncode == 0 and small.peak_mb < 100
    big = run_measured([sys.executable, "-c", "import numpy as np; a = np.ones((200, 1024, 1024), np.uint8); print(int(a[0, 0, 0]))"])
    assert big.returncode == 0 and big.stdout.strip() == "1"
    assert big.peak_mb > 200
    assert run_measured([sys.executable, "-c", "import sys; sys.exit(3)"]).returncode == 3
    del ballast


def test_filter_graph_pads_tmedian() -> None:
    assert peers.filter_graph("deflicker=size=5") == "deflicker=size=5"
    assert peers.filter_graph("deflicker=size=5,tmedian=radius=2") == (
        "deflicker=size=5,tpad=start=2:stop=2:start_mode=clone:stop_mode=clone,tmedian=radius=2"
    )
    assert peers.REFERENCE_CHAIN in peers.PEERS


def _run(chain: str, clip: np.ndarray, tmp_path: Path) -> np.ndarray:
    src, dst = tmp_path / "in.rgb48", tmp_path / "out.rgb48"
    rawvideo.write_frames(src, clip)
    result = peers.run_peer(chain, src, dst, clip.shape[2], clip.shape[1])
    assert result.seconds > 0 and result.peak_mb > 0
    return rawvideo.read_frames(dst, clip.shape[1], clip.shape[2])


@pytest.mark.parametrize("chain", list(peers.PEERS.values()))
def test_peers_keep_every_frame_in_order(chain: str, tmp_path: Path) -> None:
    ramp = np.repeat(np.linspace(0.2, 0.8, 12, dtype=np.float32)[:, None, None, None], 3, axis=3) * np.ones((1, 8, 8, 1), np.float32)
    out = _run(chain, ramp, tmp_path)
    assert out.shape == ramp.shape
    if chain.startswith("tmedian"):
        # A monotonic ramp is its own temporal median: frame for frame, nothing moves.
        np.testing.assert_allclose(out, ramp, atol=2 / 65535)


def test_tmedian_removes_a_one_frame_blotch_and_deflicker_evens_brightness(tmp_path: Path) -> None:
    still = synth.make_scene("static", frames=9, height=32, width=48)
    blotched = still.copy()
    blotched[4, 10:16, 10:16] = 0.02
    out = _run("tmedian=radius=1", blotched, tmp_path)
    assert np.abs(out[4, 10:16, 10:16] - still[4, 10:16, 10:16]).max() < 1e-3
    gains = np.array([1, 1.2, 0.8, 1.1, 0.9, 1.2, 0.8, 1.1, 1], np.float32)[:, None, None, None]
    out = _run("deflicker=size=5", still * gains, tmp_path)
    assert out.mean(axis=(1, 2, 3)).std() < 0.5 * (still * gains).mean(axis=(1, 2, 3)).std()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dfdb")
    cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_arguments() -> None:
    args = _parser().parse_args(["bench", "--quick", "--presets", "fast,balanced", "--runs", "1", "--out", "r"])
    assert args.func is cli.run_bench_command and args.quick and args.presets == ["fast", "balanced"]
    assert args.out == Path("r") and args.runs == 1 and not args.server
    args = _parser().parse_args(["bench", "--memory-scaling", "--memory-frames", "48,240"])
    assert args.memory_scaling and args.memory_frames == (48, 240)
    for bad in (["bench", "--presets", "turbo"], ["bench", "--memory-frames", "48"]):
        with pytest.raises(SystemExit):
            _parser().parse_args(bad)


def test_sample_command_writes_clip_clean_and_truth(tmp_path: Path) -> None:
    out = tmp_path / "sample.mkv"
    args = _parser().parse_args(["sample", str(out), "--frames", "6", "--width", "64", "--height", "48", "--seed", "2"])
    assert args.func(args) == 0
    clean_path, truth_path = tmp_path / "sample.clean.mkv", tmp_path / "sample.truth.npz"
    assert clean_path.exists() and truth_path.exists()
    assert not [p for p in tmp_path.iterdir() if "part" in p.name or "tmp" in p.name]
    with av.open(str(out)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.float32) / 255
    expected = synth.degrade(synth.make_scene("objects", 6, 48, 64, seed=2), "old_film", seed=2)
    assert frames.shape == (6, 48, 64, 3)
    assert np.abs(frames - expected.frames).max() <= 1 / 255 + 1e-6  # lossless up to 8 bits
    truth = np.load(truth_path)
    np.testing.assert_array_equal(truth["blotch_mask"], expected.blotch_mask)
    assert truth["gain"].shape == (6, 48, 64)


def test_report_and_plots_of_scaling_and_memory(tmp_path: Path) -> None:
    from dfdb.bench import plots, report
    from dfdb.bench.runner import PAPER_REFERENCE

    scaling = [
        {"preset": "balanced", "window": w, "width": 640, "height": 360, "frames": 8, "fps": 10.0 / w, "peak_mb": 500.0,
         "device": "cpu", "chain_fps": 100.0, "vs_chain": 0.1 / w} for w in (3, 5, 7)
    ] + [
        {"preset": "balanced", "window": 5, "width": w, "height": h, "frames": 8, "fps": 2.0e6 / (w * h), "peak_mb": 900.0,
         "device": "cpu", "chain_fps": None, "vs_chain": None} for w, h in ((1280, 720), (1920, 1080))
    ]
    memory = [{"preset": "balanced", "frames": n, "seconds_of_video": n / 24, "width": 1280, "height": 720,
               "peak_mb": mb, "fps": 3.0} for n, mb in ((1440, 1000.0), (7200, 1050.0))]
    record = {"environment": {"platform": "test", "cpus": 2, "torch": "x", "torch_threads": 2, "device": "cpu", "runs": 1},
              "paper": PAPER_REFERENCE, "quick": False, "cases": [], "scaling": scaling, "memory": memory}
    text = report.markdown(record)
    assert "≈ 0.33 fps" in text  # 100 frames in 5 minutes
    assert "| balanced | 7 | 640×360 | 1.43 |" in text
    assert "| balanced | 5 | 1920×1080 | 0.96 | 2.00 | 900 | – | – |" in text
    assert "+5.0% relative to the shortest" in text
    plots.summary_plots(tmp_path, record)
    assert (tmp_path / "speed-scaling.png").stat().st_size > 1000
