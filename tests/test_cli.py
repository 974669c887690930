"""The ``dfdb`` command line: exit codes, one-line errors, no output left behind, Ctrl-C."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from dfdb.cli import main
from dfdb.progress import ProgressBar, format_duration, render, should_show
from test_api import flickering
from test_io import decoded, write_clip

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "engine"), str(ROOT / "bridge" / "python")])}


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    folder = tmp_path / "w"
    folder.mkdir()
    return write_clip(folder / "in.mkv", "ffv1", "yuv420p10le", flickering(8), audio="aac")


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_restore_succeeds(clip, capsys):
    d = clip.parent
    code, err = run(capsys, "restore", clip, d / "out.mov", "--preset", "fast", "--grid", "2x3", "--stats-out", d / "s.json")
    assert code == 0, err
    assert "restored 8 frames" in err and err.count("\n") == 1
    with av.open(str(d / "out.mov")) as c:
        assert c.streams.video[0].codec_context.name == "prores" and c.streams.audio
    assert json.loads((d / "s.json").read_text())["params"]["grid"] == [2, 3]


def test_quiet_prints_nothing(clip, capsys):
    code, err = run(capsys, "restore", clip, clip.parent / "out.mkv", "--preset", "fast", "-q")
    assert code == 0 and err == ""
    assert len(decoded(clip.parent / "out.mkv")) == 8


def test_forced_progress_bar(clip, capsys):
    code, err = run(capsys, "restore", clip, clip.parent / "out.mkv", "--preset", "fast", "--progress")
    assert code == 0
    assert "8/8 frames" in err and "fps" in err and "ETA" in err


@pytest.mark.parametrize(
    "args,code,words",
    [
        (["--strength", "2"], 2, "strength must be in [0, 1], got 2.0"),
        (["--strength", "abc"], 2, "argument --strength: invalid float value: 'abc'"),
        (["--grid", "4by4"], 2, "grid must look like 4x4"),
        (["--grid", "0x4"], 2, "grid must be two integers in 1..32"),
        (["--window", "4"], 2, "window must be 3, 5, 7 or 9 frames"),
        (["--device", "tpu"], 2, "argument --device: invalid choice: 'tpu'"),
        (["--chunk", "1"], 2, "chunk must be in 4..4096"),
        (["--crf", "18"], 4, "--crf applies to"),
        (["--pix-fmt", "yuv420p"], 4, "cannot write pixel format 'yuv420p'"),
        (["--compare", "c.png", "--compare-frame", "-1"], 2, "--compare-frame must be a frame index >= 0"),
        (["--compare-frame", "3"], 2, "--compare-frame needs --compare"),
        (["--compare", "c.jpg"], 4, "must be a .png"),
        (["--codec", "libx264", "--crf", "99"], 2, "crf must be in 0..63"),
    ],
)
def test_bad_parameters(clip, capsys, args, code, words):
    got, err = run(capsys, "restore", clip, clip.parent / "out.mov", "--preset", "fast", *args)
    assert got == code
    assert err.startswith("dfdb: ") and words in err and err.count("\n") == 1
    assert os.listdir(clip.parent) == ["in.mkv"]


def _audio_only(path: Path) -> Path:
    out = av.open(str(path), "w")
    a = out.add_stream("aac", rate=48000, layout="stereo")
    tone = np.zeros((2, 1024), np.float32)
    for i in range(3):
        f = av.AudioFrame.from_ndarray(tone, format="fltp", layout="stereo")
        f.sample_rate, f.pts = 48000, i * 1024
        out.mux(a.encode(f))
    out.mux(a.encode(None))
    out.close()
    return path


def test_bad_inputs_and_outputs(tmp_path, clip, capsys):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "text.mp4").write_text("not a video\n" * 40)
    data = clip.read_bytes()
    (d / "cut.mkv").write_bytes(data[: len(data) // 2])
    _audio_only(d / "song.m4a")
    before = sorted(os.listdir(d))
    cases = [
        ((d / "missing.mov", d / "o.mkv"), 3, "cannot open", "no such file"),
        ((d / "text.mp4", d / "o.mkv"), 3, "cannot read 'text.mp4'", "not a readable video file"),
        ((d / "cut.mkv", d / "o.mkv"), 3, "cut.mkv", "truncated"),
        ((d / "song.m4a", d / "o.mkv"), 3, "'song.m4a'", "has no video stream"),
        ((clip, d / "o.xyz"), 3, "unsupported output extension", "'.xyz'"),
        ((clip, d / "nowhere" / "o.mkv"), 4, "cannot write", "does not exist"),
        ((clip, clip), 4, "is the input file", "choose another name"),
    ]
    for (src, dst), code, *words in cases:
        got, err = run(capsys, "restore", src, dst, "--preset", "fast")
        assert got == code, err
        assert err.count("\n") == 1 and err.startswith("dfdb: ")
        assert all(w in err for w in words), err
        assert sorted(os.listdir(d)) == before
    assert os.listdir(clip.parent) == ["in.mkv"]


def test_warning_when_the_output_drops_alpha(tmp_path, capsys):
    images = np.concatenate([flickering(6), np.ones((6, 48, 64, 1), np.float32)], axis=3)
    write_clip(tmp_path / "a_%02d.png", "png", "rgba", images)
    code, err = run(capsys, "restore", tmp_path / "a_%02d.png", tmp_path / "o.mp4", "--preset", "fast")
    assert code == 0
    assert err.splitlines()[0] == "dfdb: warning: 'o.mp4' (libx264) cannot hold alpha: the alpha channel is dropped"


def test_version_and_subcommands(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("dfdb ")
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("restore", "serve", "bench", "sample"):
        assert name in out


def test_console_entry_point_runs(clip):
    proc = subprocess.run(
        [sys.executable, "-m", "dfdb.cli", "restore", str(clip), str(clip.parent / "o.mkv"), "--strength", "-1"],
        env=ENV, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr == "dfdb: strength must be in [0, 1], got -1.0\n"


def _default_signals() -> None:
    """In the child: SIGINT and SIGTERM at their default disposition. A shell runs a background
    job with SIGINT ignored and children inherit that, so a suite started with ``&`` would
    otherwise run dfdb deaf to Ctrl-C, as it should be there."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_leaves_no_output(tmp_path, sig):
    """SIGINT/SIGTERM while the engine is working: exit 130, the message, nothing under the output names.

    The input arrives through a pipe and the second half is sent only after the signal, so the
    run cannot finish before it is interrupted.
    """
    whole = write_clip(tmp_path / "whole.mkv", "ffv1", "yuv420p", flickering(150))
    data = whole.read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    fifo = tmp_path / "in.mkv"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dfdb.cli", "restore", str(fifo), str(out / "r.mkv"), "--preset", "fast",
         "--mask-out", str(out / "m.mkv"), "--stats-out", str(out / "s.json")],
        env=ENV, stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals,
    )
    try:
        with open(fifo, "wb", buffering=0) as pipe:
            feeder = threading.Thread(target=_feed, args=(pipe, data[: len(data) * 3 // 4]))
            feeder.start()
            while not os.listdir(out) and proc.poll() is None:
                time.sleep(0.05)
            proc.send_signal(sig)
            feeder.join()
            _feed(pipe, data[len(data) * 3 // 4 :])
        err = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.rstrip().endswith("dfdb: interrupted; no output written")
    assert os.listdir(out) == []


def _feed(pipe, data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.flush()
    except BrokenPipeError:
        pass


def test_progress_text():
    assert render(0, 10, 0.0, "restoring") == "restoring [------------------------] 0/10 frames  0.0 fps  ETA --:--"
    assert render(5, 10, 2.0, width=4) == "[##--] 5/10 frames  2.5 fps  ETA 0:02"
    assert render(10, 10, 4.0, width=4).endswith("10/10 frames  2.5 fps  ETA 0:00")
    assert render(7, None, 3.5) == "7 frames  2.0 fps  0:04"
    assert format_duration(3725) == "1:02:05" and format_duration(65) == "1:05"


def test_progress_bar_redraws_at_most_every_interval():
    now = [0.0]
    out = io.StringIO()
    bar = ProgressBar(4, stream=out, interval=1.0, clock=lambda: now[0])
    for done, t in [(1, 0.1), (2, 0.5), (3, 1.2)]:
        now[0] = t
        bar.update(done)
    bar.update(6)  # past an estimated total: the total follows
    now[0] = 2.0
    bar.close()
    lines = out.getvalue().split("\r")[1:]
    assert len(lines) == 3 and "1/4" in lines[0] and "3/4" in lines[1] and lines[2].startswith("[") and "6/6" in lines[2]
    assert out.getvalue().endswith("\n")
    assert not should_show(out) and should_show(out, forced=True) and not should_show(out, forced=True, quiet=True)
