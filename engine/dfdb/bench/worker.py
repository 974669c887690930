"""One measured dfdb run, in a process of its own: ``python -m dfdb.bench.worker ...``.

Reads an rgb48le file frame by frame, restores it with :class:`dfdb.Restorer`, writes the
restored frames (rgb48le) and the detected blotch masks (one uint8 byte per pixel, 255 =
blotch) frame by frame, ``--runs`` times, and prints ``{"times": [seconds per run], ...}`` as
JSON. With ``--synthetic-frames N`` it restores a generated 24 fps clip of N frames streamed
frame by frame and discards the output: the memory-versus-clip-length measurement, in which
nothing grows with the clip but what the engine itself keeps.

The parent reaps this process with ``os.wait4`` to read its peak memory (see measure.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np


def _restorer(args: argparse.Namespace):
    from dfdb.params import Params
    from dfdb.restorer import Restorer

    overrides = {"device": args.device, "window": args.window}
    return Restorer(Params.from_preset(args.preset, **overrides))


def _restore_file(args: argparse.Namespace) -> float:
    """One timed pass: raw file in → restorer → raw file and masks out; seconds."""
    from .rawvideo import encode_rgb48, iter_frames

    out_tmp = Path(args.output + ".part")
    mask_tmp = Path(args.mask + ".part")
    start = time.perf_counter()
    restorer = _restorer(args)
    with open(out_tmp, "wb") as fo, open(mask_tmp, "wb") as fm:
        for rf in restorer.process(iter_frames(Path(args.input), args.height, args.width)):
            fo.write(encode_rgb48(rf.image))
            fm.write((np.clip(rf.mask, 0, 1) * 255 + 0.5).astype(np.uint8).tobytes())
    seconds = time.perf_counter() - start
    os.replace(out_tmp, args.output)
    os.replace(mask_tmp, args.mask)
    return seconds


def synthetic_stream(frames: int, height: int, width: int, profile: str = "old_film", seed: int = 0) -> Iterator[np.ndarray]:
    """A degraded panning clip generated one frame at a time, in constant memory.

    The texture is a fixed canvas sampled with wrap-around, so a 5-minute clip needs no more
    memory than a 1-minute one; every frame gets its own independent flicker and blotches.
    """
    from .synth import degrade, looping_pan

    for t, frame in enumerate(looping_pan(frames, height, width, seed)):
        yield degrade(frame[None], profile, seed=seed * 1_000_003 + t).frames[0]


def _restore_stream(args: argparse.Namespace) -> float:
    """One timed pass over a generated stream; the restored frames are dropped."""
    start = time.perf_counter()
    n = _drain(_restorer(args).process(synthetic_stream(args.synthetic_frames, args.height, args.width)))
    if n != args.synthetic_frames:
        raise RuntimeError(f"restorer returned {n} frames for {args.synthetic_frames}")
    return time.perf_counter() - start


def _drain(frames: Iterable) -> int:
    n = 0
    for _ in frames:
        n += 1
    return n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dfdb.bench.worker", description=__doc__.splitlines()[0])
    p.add_argument("--input", help="rgb48le input file")
    p.add_argument("--output", help="rgb48le output file")
    p.add_argument("--mask", help="uint8 mask output file")
    p.add_argument("--synthetic-frames", type=int, help="restore a generated stream of N frames instead")
    p.add_argument("--height", type=int, required=True)
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--preset", default="balanced")
    p.add_argument("--window", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    from dfdb.allocator import keep_freed_memory

    keep_freed_memory()
    args = _parser().parse_args(argv)
    run = _restore_stream if args.synthetic_frames else _restore_file
    if not args.synthetic_frames and not (args.input and args.output and args.mask):
        print("worker: --input, --output and --mask are needed (or --synthetic-frames)", file=sys.stderr)
        return 2
    times = [run(args) for _ in range(max(1, args.runs))]
    print(json.dumps({"times": times, "device": device_name(args.device)}))
    return 0


def device_name(device: str) -> str:
    """The device ``auto`` resolves to, as torch sees it (for the report)."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


if __name__ == "__main__":
    sys.exit(main())
