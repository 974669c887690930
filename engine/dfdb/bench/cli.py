"""The ``bench`` and ``sample`` subcommands of the ``dfdb`` command line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ParamError
from ..params import DEVICES, PRESETS


def _presets(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in PRESETS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"presets must be a comma-separated list of {', '.join(PRESETS)}, got {text!r}")
    return names


def _lengths(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) < 2 or min(values) < 4:
        raise argparse.ArgumentTypeError(f"--memory-frames needs two or more frame counts ≥ 4, e.g. 1440,7200; got {text!r}")
    return values


def register_bench(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure quality and speed against ffmpeg's filters",
        description="Degrade clean clips (synthetic and real), restore them with every dfdb preset and with "
        "ffmpeg's deflicker/tmedian filters, and report quality (PSNR, SSIM, flicker, blotch error, false "
        "repairs) and speed (fps, peak memory) as a Markdown table, JSON and PNG plots.",
    )
    p.add_argument("--quick", action="store_true", help="one small case (a couple of minutes on 2 cores)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results/)")
    p.add_argument("--presets", type=_presets, default=None, help="comma-separated presets (default: all; quick: fast,balanced)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="compute device for dfdb (default: auto)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per method, the median is reported (default 3)")
    p.add_argument("--memory-scaling", action="store_true", help="also measure peak memory of streamed 720p clips of two lengths")
    p.add_argument("--memory-frames", type=_lengths, default=(1440, 7200), help="clip lengths for --memory-scaling, frames at 24 fps (default 1440,7200: 1 and 5 min)")
    p.add_argument("--no-scaling", action="store_true", help="skip the fps-versus-resolution-and-window runs of the full benchmark")
    p.add_argument("--server", action="store_true", help="benchmark the server path (dfdb serve) instead")
    p.set_defaults(func=run_bench_command)


def run_bench_command(args: argparse.Namespace) -> int:
    """Handler of ``dfdb bench``: prints the Markdown report, writes it and the plots to --out."""
    if args.server:
        from ..server import bench as server_bench

        print(server_bench.run(args.out, args.quick))
        return 0
    from .runner import run_bench
    from .report import markdown

    presets = args.presets or (["fast", "balanced"] if args.quick else list(PRESETS))
    runs = 3 if args.runs is None else args.runs
    if runs < 1:
        raise ParamError(f"--runs must be at least 1, got {runs}")
    record = run_bench(
        args.out, quick=args.quick, presets=presets, device=args.device, runs=runs,
        scaling=False if args.no_scaling else None,
        memory_lengths=args.memory_frames if args.memory_scaling else None,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(markdown(record))
    print(f"written to {args.out}/ (bench.md, bench.json, *.png)", file=sys.stderr)
    return 0


def register_sample(subparsers) -> None:
    from .synth import PROFILES, SCENES

    p = subparsers.add_parser(
        "sample",
        help="write a degraded synthetic clip, its clean version and the true blotch masks",
        description="Write OUT (a synthetic clip degraded with flicker, blotches and grain), "
        "OUT-stem.clean.EXT (the clean clip) and OUT-stem.truth.npz (the true blotch masks and flicker fields).",
    )
    p.add_argument("out", type=Path, help="output video, e.g. sample.mkv (FFV1, lossless)")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--profile", choices=list(PROFILES), default="old_film")
    p.add_argument("--scene", choices=list(SCENES), default="objects")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_sample_command)


def run_sample_command(args: argparse.Namespace) -> int:
    from .sample import write_sample

    paths = write_sample(args.out, args.frames, args.width, args.height, args.profile, args.scene, args.seed)
    for path in paths:
        print(path)
    return 0


def register(subparsers) -> None:
    """Add ``bench`` and ``sample`` to the ``dfdb`` command line's subcommands."""
    register_bench(subparsers)
    register_sample(subparsers)
