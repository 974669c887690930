"""Per-frame time through the OpenFX plug-in (test host → plug-in → engine) against the Python
client calling the same engine directly, on the same frames and parameters.

    PYTHONPATH=engine:bridge/python python tests/ofxhost/overhead.py [--width 1280 --height 720]

A measurement, not a test: it prints a few lines. Both paths render the same sequential
frames in a fresh clip session each (each new frame sends one new frame to the engine), with the
same window. The solver dominates and varies from run to run, so the same frames are then
rendered again: the engine answers from its result cache and what remains is the plumbing,
i.e. what the plug-in adds: fetching images from the host, fingerprinting, shared memory, the
C++ client, writing the output image.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ofxdriver import EngineEnv, Host, build  # noqa: E402

from dfdb.bench.synth import degrade, make_scene  # noqa: E402
from dfdb_bridge import Client  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--frames", type=int, default=7, help="clip length; frames r…T−r−1 are timed")
    ap.add_argument("--quality", default="Fast", choices=["Fast", "Balanced", "Best"])
    ap.add_argument("--rgba-float", action="store_true", help="RGBA float32 frames (default RGB uint8)")
    args = ap.parse_args()

    built = build()
    clean = make_scene("pan", frames=args.frames, height=args.height, width=args.width, seed=1)
    frames = degrade(clean, "old_film", seed=2).frames
    if args.rgba_float:
        frames = np.concatenate([frames, np.ones(frames.shape[:3] + (1,), np.float32)], axis=-1)
    else:
        frames = np.round(frames * 255).astype(np.uint8)
    radius = 2
    times = list(range(radius, args.frames - radius))
    params = {"preset": args.quality.lower(), "window": 5, "grid": [6, 6], "strength": 1.0,
              "sensitivity": 1.0, "motion": True}

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = EngineEnv.create(tmp / "engine")
        np.save(tmp / "clip.npy", frames)
        env.start_engine()
        try:
            # Warm the engine (imports, first solve) on a separate session.
            with Client(env.address) as client:
                client.process(frames[:5], 2, params)
            plugin_ms, plugin_cached = [], []
            with Host(built, env.env) as host:
                for line in (f"load {built.binary}", f"clip {tmp / 'clip.npy'}", "create",
                             f"set quality {args.quality}"):
                    assert host.cmd(line).ok, line
                for timings in (plugin_ms, plugin_cached, plugin_cached, plugin_cached):
                    for t in times:
                        reply = host.cmd(f"render {t} {tmp / 'out.npy'}", timeout=600)
                        assert reply.result.startswith("ok"), reply.result
                        timings.append(float(reply.result.split()[1]))
            direct_ms, direct_cached = [], []
            with Client(env.address) as client:
                for timings in (direct_ms, direct_cached, direct_cached, direct_cached):
                    for t in times:
                        lo, hi = t - radius, t + radius + 1
                        start = time.perf_counter()
                        client.request(frames[lo:hi], radius, params, clip="direct", times=list(range(lo, hi)))
                        timings.append((time.perf_counter() - start) * 1000.0)
        finally:
            env.kill_engine()
    p, d = statistics.median(plugin_ms), statistics.median(direct_ms)
    pc, dc = statistics.median(plugin_cached), statistics.median(direct_cached)
    bundle = built.binary.stat().st_size
    kind = "RGBA f32" if args.rgba_float else "RGB u8"
    print(f"{args.width}x{args.height} {kind}, quality {args.quality}, window 5, frames {times}")
    print(f"plugin per frame (ms): {', '.join(f'{v:.1f}' for v in plugin_ms)}  median {p:.1f}")
    print(f"direct per frame (ms): {', '.join(f'{v:.1f}' for v in direct_ms)}  median {d:.1f}")
    print(f"solving renders: plugin − direct = {p - d:+.1f} ms per frame ({(p - d) / d * 100:+.1f} %)")
    print(f"cached re-renders (plumbing only): plugin median {pc:.1f} ms, direct median {dc:.1f} ms")
    print(f"plug-in overhead ≈ {pc - dc:+.1f} ms per frame = {(pc - dc) / d * 100:+.2f} % of a direct solving render")
    print(f"bundle binary: {bundle / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
