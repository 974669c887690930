"""The benchmark: cases, methods, measurements, in one run.

For every case a clean clip (synthetic or real) is degraded (synth.py), written once as a raw
rgb48le file, and every method — the input as-is, each ffmpeg peer, each dfdb preset — reads
that file in a process of its own and writes its result; the result is scored against the
clean clip (metrics.py). Speed is frames per second from the median wall time of ``runs``
runs; memory is the process's peak resident set (measure.py).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..errors import DfdbError
from ..params import Params
from . import metrics, synth
from .measure import run_measured
from .peers import PEERS, REFERENCE_CHAIN, run_peer
from .rawvideo import quantise, read_frames, write_frames
from .worker import device_name

#: The paper's reported speed (Fulari et al., WACV 2024): ≈ 5 min for 100 frames of 320×480
#: with W = 5 on a GPU.
PAPER_REFERENCE = {"frames": 100, "width": 480, "height": 320, "window": 5, "seconds": 300.0}


@dataclass(frozen=True)
class Case:
    """One benchmark clip: ``source`` is a scene of :data:`synth.SCENES` or ``real:<clip>``."""

    name: str
    source: str
    profile: str
    frames: int
    height: int = 120
    width: int = 160
    max_width: int | None = None
    start: int = 0
    seed: int = 0

    def clean(self) -> np.ndarray:
        """The clean clip, (T, H, W, 3) float32, even dimensions."""
        if self.source.startswith("real:"):
            clip = synth.real_clip(self.source[5:], self.frames, self.max_width, self.start)
        else:
            clip = synth.make_scene(self.source, self.frames, self.height, self.width, self.seed)
        return clip[:, : clip.shape[1] // 2 * 2, : clip.shape[2] // 2 * 2]


QUICK_CASES = (Case("objects 160×120, old_film", "objects", "old_film", 24, 120, 160),)
FULL_CASES = (
    Case("pan 320×240, old_film", "pan", "old_film", 40, 240, 320, seed=1),
    Case("objects 320×240, severe", "objects", "severe", 40, 240, 320, seed=2),
    Case("fade 320×240, flicker_only", "fade", "flicker_only", 40, 240, 320, seed=3),
    Case("cut 320×240, light", "cut", "light", 40, 240, 320, seed=4),
    Case("bikes 640×272 (real), old_film", "real:bikes", "old_film", 40, seed=5),
    Case("carphone 176×144 (real), flicker_only", "real:carphone", "flicker_only", 40, seed=6),
    Case("bigbuckbunny 480×270 (real), severe", "real:bigbuckbunny", "severe", 40, max_width=480, start=30, seed=7),
)


@dataclass(frozen=True)
class Method:
    """A row of the table: the input as-is, an ffmpeg peer, or a dfdb preset."""

    name: str
    kind: str  # "input", "ffmpeg" or "dfdb"
    chain: str = ""
    preset: str = ""
    window: int | None = None


def methods_for(presets: Iterable[str]) -> list[Method]:
    """Table order: input, every ffmpeg peer, every requested dfdb preset."""
    rows = [Method("input (degraded)", "input")]
    rows += [Method(name, "ffmpeg", chain=chain) for name, chain in PEERS.items()]
    rows += [Method(f"dfdb {p}", "dfdb", preset=p) for p in presets]
    return rows


@dataclass
class Output:
    """What one method produced on one case, with its speed."""

    frames: np.ndarray
    mask: np.ndarray | None
    times: list[float] = field(default_factory=list)
    peak_mb: float | None = None
    device: str | None = None


def _engine_env() -> dict[str, str]:
    """Environment for a worker: the directory holding this ``dfdb`` package on its path."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_dfdb(src: Path, work: Path, shape: tuple[int, int, int], preset: str, device: str, runs: int, window: int | None = None) -> Output:
    """dfdb on the raw file ``src`` in a fresh worker process, ``runs`` timed passes."""
    t, h, w = shape
    out, mask = work / f"dfdb-{preset}-{window}.rgb48", work / f"dfdb-{preset}-{window}.mask"
    cmd = [
        sys.executable, "-m", "dfdb.bench.worker", "--input", str(src), "--output", str(out), "--mask", str(mask),
        "--height", str(h), "--width", str(w), "--preset", preset, "--device", device, "--runs", str(runs),
    ]
    if window is not None:
        cmd += ["--window", str(window)]
    result = run_measured(cmd, env=_engine_env())
    if result.returncode != 0:
        raise DfdbError(f"dfdb {preset} failed in the benchmark worker: {result.stderr.strip()[-2000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    frames = read_frames(out, h, w)
    masks = np.fromfile(mask, np.uint8).reshape(-1, h, w).astype(np.float32) / 255.0
    if len(frames) != t or len(masks) != t:
        raise DfdbError(f"dfdb {preset} returned {len(frames)} frames for {t}")
    return Output(frames, masks, report["times"], result.peak_mb, report.get("device"))


def run_ffmpeg(src: Path, work: Path, shape: tuple[int, int, int], chain: str, runs: int) -> Output:
    """An ffmpeg peer on ``src``: ``runs`` separate ffmpeg processes, each timed whole."""
    t, h, w = shape
    dst = work / "ffmpeg.rgb48"
    measured = [run_peer(chain, src, dst, w, h) for _ in range(runs)]
    frames = read_frames(dst, h, w)
    if len(frames) != t:
        raise DfdbError(f"ffmpeg {chain!r} returned {len(frames)} frames for {t}")
    return Output(frames, None, [m.seconds for m in measured], max(m.peak_mb for m in measured), "cpu")


def score(out: Output, clean: np.ndarray, truth: synth.Degraded, motion: list) -> dict[str, Any]:
    """Every quality metric of one method's output (None where it does not apply)."""
    row: dict[str, Any] = {
        "psnr": metrics.psnr(out.frames, clean),
        "ssim": metrics.ssim(out.frames, clean),
        "flicker": metrics.flicker_index(out.frames, clean),
        "blotch_error": metrics.blotch_error(out.frames, clean, truth.blotch_mask),
        "warp_error": metrics.warping_error(out.frames, motion),
        "precision": None,
        "recall": None,
        "false_repairs": None,
    }
    if out.mask is not None:
        if truth.blotch_mask.any():
            row["precision"], row["recall"] = metrics.detection(out.mask, truth.blotch_mask)
        else:
            row["false_repairs"] = metrics.false_repairs(out.mask)
    return row


def speed(out: Output, frames: int) -> dict[str, Any]:
    """fps from the median run time, the peak memory and the raw run times."""
    if not out.times:
        return {"fps": None, "peak_mb": None, "times": [], "device": None}
    return {"fps": frames / statistics.median(out.times), "peak_mb": out.peak_mb, "times": out.times, "device": out.device}


def main_preset(presets: list[str]) -> str:
    """The preset the scaling measurements use: ``balanced`` when asked for, else the first."""
    return "balanced" if "balanced" in presets else presets[0]


def run_case(case: Case, methods: list[Method], device: str, runs: int, work: Path, plot: Callable[..., None] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Degrade the case's clip, run every method on it, score them; the case's JSON record.

    ``plot(case_record, clean, truth, shown)`` is called while the clips are in memory;
    ``shown`` is (name, output) of the last method that outputs a blotch mask, or None. Only
    that output is kept beyond its scoring, so memory stays at a few clips per case.
    """
    clean = case.clean()
    truth = synth.degrade(clean, case.profile, seed=case.seed)
    t, h, w = clean.shape[:3]
    src = work / "input.rgb48"
    write_frames(src, truth.frames)
    degraded = quantise(truth.frames)
    motion = metrics.clean_motion(clean)
    record: dict[str, Any] = {
        "case": asdict(case), "name": case.name, "shape": [t, h, w], "rows": [],
        "clean_warp_error": metrics.warping_error(clean, motion),
        "curves": {"clean": metrics.brightness_curve(clean).tolist()},
    }
    shown: tuple[str, Output] | None = None
    for m in methods:
        log(f"  {case.name}: {m.name}")
        if m.kind == "input":
            out = Output(degraded, None)
        elif m.kind == "ffmpeg":
            out = run_ffmpeg(src, work, (t, h, w), m.chain, runs)
        else:
            out = run_dfdb(src, work, (t, h, w), m.preset, device, runs, m.window)
        if out.mask is not None:
            shown = (m.name, out)
        row = {"method": m.name, "kind": m.kind, **score(out, clean, truth, motion), **speed(out, t)}
        record["rows"].append(row)
        record["curves"][m.name] = metrics.brightness_curve(out.frames).tolist()
    _add_ratios(record)
    if plot is not None:
        plot(record, clean, truth, shown)
    return record


def _add_ratios(record: dict[str, Any]) -> None:
    """Each row's speed as a multiple of the reference ffmpeg chain's in the same case."""
    ref = next((r["fps"] for r in record["rows"] if r["method"] == REFERENCE_CHAIN), None)
    for r in record["rows"]:
        r["vs_chain"] = r["fps"] / ref if (ref and r["fps"]) else None


def _stream_to_file(path: Path, frames: int, height: int, width: int, seed: int) -> None:
    from .worker import synthetic_stream

    write_frames(path, synthetic_stream(frames, height, width, seed=seed))


#: Speed-scaling resolutions (width, height) and windows W.
RESOLUTIONS = ((640, 360), (1280, 720), (1920, 1080))
WINDOWS = (3, 5, 7)


def run_scaling(presets: list[str], device: str, runs: int, work: Path, frames: int = 48,
                resolutions: tuple[tuple[int, int], ...] = RESOLUTIONS, windows: tuple[int, ...] = WINDOWS,
                log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """fps and peak memory versus resolution (W = 5) and versus window (first resolution).

    Also every requested preset at the first resolution (640×360 by default), and the ffmpeg
    reference chain at every resolution for the ratio. Synthetic panning clips of ``frames``
    frames: at 640×360 one solve of the whole clip with the default chunk (128 frames there),
    at 720p and above two chunks of 32; either way the 26 context frames of W = 5 are cut by
    the clip's ends, so a long clip runs a little slower per frame.
    """
    rows: list[dict[str, Any]] = []
    base = main_preset(presets)
    for w, h in resolutions:
        src = work / f"scale-{w}x{h}.rgb48"
        _stream_to_file(src, frames, h, w, seed=11)
        configs = [(base, 5)]
        if (w, h) == resolutions[0]:
            configs = [(p, None) for p in presets] + [(base, k) for k in windows if k != Params.from_preset(base).window]
        chain = run_ffmpeg(src, work, (frames, h, w), PEERS[REFERENCE_CHAIN], runs)
        chain_fps = speed(chain, frames)["fps"]
        for preset, window in configs:
            log(f"  scaling: {preset} W={window or 'preset'} {w}×{h}")
            out = run_dfdb(src, work, (frames, h, w), preset, device, runs, window)
            s = speed(out, frames)
            win = window or Params.from_preset(preset).window
            rows.append({"preset": preset, "window": win, "width": w, "height": h, "frames": frames,
                         "fps": s["fps"], "peak_mb": s["peak_mb"], "device": s["device"],
                         "chain_fps": chain_fps, "vs_chain": s["fps"] / chain_fps if chain_fps else None})
        src.unlink()
    return rows


def run_memory_scaling(preset: str, device: str, lengths: tuple[int, ...], height: int = 720, width: int = 1280, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Peak memory of restoring streamed clips of several lengths (frames, 24 fps).

    The clips are generated frame by frame inside the worker and the output is dropped, so
    only the engine's own working set can grow with the clip.
    """
    rows = []
    for n in lengths:
        log(f"  memory: {preset} {width}×{height} × {n} frames")
        cmd = [sys.executable, "-m", "dfdb.bench.worker", "--synthetic-frames", str(n), "--height", str(height),
               "--width", str(width), "--preset", preset, "--device", device]
        result = run_measured(cmd, env=_engine_env())
        if result.returncode != 0:
            raise DfdbError(f"memory scaling run failed: {result.stderr.strip()[-2000:]}")
        seconds = json.loads(result.stdout.strip().splitlines()[-1])["times"][0]
        rows.append({"preset": preset, "frames": n, "seconds_of_video": n / 24.0, "width": width, "height": height,
                     "peak_mb": result.peak_mb, "fps": n / seconds})
    return rows


def environment(device: str, runs: int) -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    return {
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": device_name(device), "runs": runs,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def run_bench(out_dir: Path, quick: bool, presets: list[str], device: str, runs: int, scaling: bool | None = None,
              memory_lengths: tuple[int, ...] | None = None, cases: tuple[Case, ...] | None = None,
              plots: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole benchmark; writes ``bench.json``, ``bench.md`` and the plots to ``out_dir``.

    Returns the JSON record. ``scaling`` defaults to on for the full run and off for
    ``quick``; ``memory_lengths`` (frames) turns on the memory-versus-length measurement.
    """
    from . import plots as plotting
    from .report import markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    cases = cases or (QUICK_CASES if quick else FULL_CASES)
    scaling = (not quick) if scaling is None else scaling
    record: dict[str, Any] = {"environment": environment(device, runs), "paper": PAPER_REFERENCE, "quick": quick,
                              "presets": presets, "cases": [], "scaling": [], "memory": []}
    methods = methods_for(presets)
    with tempfile.TemporaryDirectory(prefix="dfdb-bench-") as tmp:
        work = Path(tmp)
        for case in cases:
            log(f"case {case.name}")
            plot = (lambda *a: plotting.case_plots(out_dir, *a)) if plots else None
            record["cases"].append(run_case(case, methods, device, runs, work, plot, log))
        if scaling:
            record["scaling"] = run_scaling(presets, device, runs, work, log=log)
    if memory_lengths:
        record["memory"] = run_memory_scaling(main_preset(presets), device, memory_lengths, log=log)
    if plots:
        plotting.summary_plots(out_dir, record)
    _write_text(out_dir / "bench.json", json.dumps(record, indent=1))
    _write_text(out_dir / "bench.md", markdown(record))
    return record


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text)
    os.replace(tmp, path)
