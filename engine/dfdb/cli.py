"""The ``dfdb`` command line: ``dfdb restore IN OUT`` and the subcommands of the other packages.

Every user-facing failure is a :class:`dfdb.errors.DfdbError`: it is printed as one line,
``dfdb: <message>``, and the process exits with the error's ``exit_code`` (2 for a bad
parameter, 3 bad input, 4 bad output, 5 out of memory, 130 interrupted).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version

from .allocator import keep_freed_memory
from .errors import DfdbError, ParamError
from .params import DEVICES, PRESETS


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as a :class:`ParamError` (one line, exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ParamError(message)


def _grid(text: str) -> tuple[int, int]:
    """``RxC`` (e.g. ``4x4``; ``1x1`` = global flicker) or a single ``N`` for N×N."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"grid must look like 4x4 (rows x columns), got {text!r}")
    return values  # type: ignore[return-value]


def _package_version() -> str:
    try:
        return version("dfdb")
    except PackageNotFoundError:
        return "(not installed)"


def add_restore(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dfdb restore IN OUT``."""
    p = subparsers.add_parser(
        "restore",
        help="remove flicker and blotches from a video file or image sequence",
        description="Restore IN into OUT. IN is any video ffmpeg reads or an image sequence pattern "
        "(scan_%%05d.png); OUT's extension picks the codec (.mkv FFV1 lossless, .mov ProRes 422 HQ, "
        ".mp4 H.264, out_%%05d.png/tif/dpx/exr image sequences). Bit depth, timestamps, colour "
        "tags and audio are kept.",
    )
    p.add_argument("input", help="input video or image sequence pattern")
    p.add_argument("output", help="output video or image sequence pattern")
    g = p.add_argument_group("restoration")
    g.add_argument("--preset", choices=list(PRESETS), default="balanced", help="speed/quality trade-off (default: balanced)")
    g.add_argument("--window", type=int, help="temporal window W in frames: 3, 5, 7 or 9")
    g.add_argument("--grid", type=_grid, help="flicker control grid RxC, e.g. 4x4; 1x1 = global flicker")
    g.add_argument("--per-channel", action="store_true", default=None, help="fit the flicker gain per colour channel (faded colour film)")
    g.add_argument("--strength", type=float, help="blend of the correction, 0..1 (default 1)")
    g.add_argument("--sensitivity", type=float, help="blotch detection sensitivity, 0.05..10 (default 1; higher finds more)")
    g.add_argument("--no-motion", dest="motion", action="store_false", default=None, help="no motion compensation (static shots)")
    g.add_argument("--no-flicker", dest="flicker", action="store_false", default=None, help="leave the flicker alone")
    g.add_argument("--no-blotches", dest="blotches", action="store_false", default=None, help="leave the blotches alone")
    g.add_argument("--iterations", type=int, help="FISTA iterations per chunk")
    g.add_argument("--work-scale", type=float, help="resolution the flicker and blotches are found at, 0.25..1 of the frame's (fast: 0.5); repairs are always made at full resolution")
    g.add_argument("--chunk", type=int, help="frames solved together (default: from the frame size, 32 at 720p and above, up to 128 for small frames); lower it when memory runs out")
    g.add_argument("--autotune", action="store_true", default=None, help="tune the solver's steps on this clip first (slower)")
    g.add_argument("--device", choices=DEVICES, help="compute device (default: auto)")
    e = p.add_argument_group("encoding")
    e.add_argument("--fps", type=float, help="frame rate of an image sequence input (default 25), e.g. 24 or 23.976")
    e.add_argument("--codec", help="encoder name overriding the one chosen from OUT's extension (e.g. libx265)")
    e.add_argument("--crf", type=int, help="quality for CRF encoders such as libx264 (default 16)")
    e.add_argument("--pix-fmt", help="output pixel format overriding the input's (e.g. yuv444p10le)")
    o = p.add_argument_group("extra outputs")
    o.add_argument("--mask-out", metavar="VIDEO", help="write the blotch mask as a gray video")
    o.add_argument("--flicker-out", metavar="VIDEO", help="write the flicker correction map as a video")
    o.add_argument("--stats-out", metavar="JSON", help="write per-frame gain/offset and blotch statistics")
    o.add_argument("--compare", metavar="PNG", help="write a before|after image of one frame")
    o.add_argument("--compare-frame", type=int, metavar="N", help="frame for --compare (default: the one with most blotches)")
    v = p.add_argument_group("display")
    v.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    v.add_argument("--progress", action="store_true", help="draw the progress bar even when stderr is not a terminal")
    p.set_defaults(func=run_restore)


#: Params fields that ``dfdb restore`` exposes as flags (None when the flag is absent).
_PARAM_FLAGS = ("window", "grid", "per_channel", "strength", "sensitivity", "motion", "flicker", "blotches",
                "iterations", "work_scale", "chunk", "autotune", "device")


def run_restore(args: argparse.Namespace) -> int:
    """Handler of ``dfdb restore``: runs :func:`dfdb.api.restore` and prints a one-line summary."""
    from .api import restore
    from .progress import should_show

    _setup_logging(args.quiet)
    overrides = {k: getattr(args, k) for k in _PARAM_FLAGS if getattr(args, k) is not None}
    with _sigterm_as_interrupt():
        summary = restore(
            args.input,
            args.output,
            preset=args.preset,
            mask_out=args.mask_out,
            flicker_out=args.flicker_out,
            stats_out=args.stats_out,
            compare=args.compare,
            compare_frame=args.compare_frame,
            fps=args.fps,
            codec=args.codec,
            crf=args.crf,
            pix_fmt=args.pix_fmt,
            progress=should_show(sys.stderr, forced=args.progress, quiet=args.quiet),
            **overrides,
        )
    if not args.quiet:
        gain = summary["gain_mean"]
        print(
            f"dfdb: restored {summary['frames']} frames in {summary['seconds']:.1f} s "
            f"({summary['fps'] or 0:.1f} fps), {summary['blotch_count']} blotches, "
            f"mean gain {'n/a' if gain is None else f'{gain:.3f}'} -> {args.output}",
            file=sys.stderr,
        )
    return 0


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Handle SIGTERM (a render queue stopping the job) like Ctrl-C, so outputs are cleaned up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dfdb", description="Simultaneous video deflickering and deblotching.")
    parser.add_argument("--version", action="version", version=f"dfdb {_package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_restore(subparsers)
    for register in _registrars():
        register(subparsers)
    return parser


def _registrars() -> list:
    """``register(subparsers)`` of the packages that add their own subcommands (serve, bench, sample)."""
    from .bench.cli import register as bench_register
    from .server.cli import register as server_register

    return [server_register, bench_register]


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"dfdb: {record.levelname.lower()}: {record.getMessage()}"


def _setup_logging(quiet: bool) -> None:
    """Warnings of the file pipeline (e.g. an output that cannot hold alpha) as ``dfdb: warning: ...``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    log = logging.getLogger("dfdb")
    log.handlers[:] = [handler]
    log.setLevel(logging.ERROR if quiet else logging.WARNING)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dfdb`` console script; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    keep_freed_memory()
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except DfdbError as err:
        print(f"dfdb: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("dfdb: interrupted; no output written", file=sys.stderr)
        return 130
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
