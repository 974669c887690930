"""``dfdb bench --server``: what the wire costs next to the solver.

A sequential render through a real engine on a Unix socket, once with inline pixels and once
with shared memory, float RGBA at 1080p (720p in quick mode) with the ``fast`` preset:

- round-trip overhead per frame = client wall time − solver time, median over the frames after
  the first (warm-up) request, and as a fraction of the solver time (target ≤ 10 %);
- bytes sent per frame in the sequential render after warm-up, in frames (target: 1);
- cache hit rate and round trip when scrubbing back over the rendered frames;
- the plug-in's sequential render at 640×360 with the ``balanced`` preset: seconds per frame
  with the window t − c … t + c per frame, against t − c … t + n + c with ``ahead`` n
  (PROTOCOL.md 3.3.5), as plugin.cpp asks.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dfdb_bridge import Client, parse_address

from ..bench.synth import degrade, make_scene
from ..params import Params
from .server import Config, EngineThread

PARAMS = {"preset": "fast"}
#: The plug-in's render: its preset, frame size and frames solved ahead (plugin.cpp kAhead).
RENDER_PARAMS, RENDER_SIZE, RENDER_AHEAD = {"preset": "balanced"}, (360, 640), 7


def _clip(frames: int, height: int, width: int) -> np.ndarray:
    """(T, H, W, 4) float32: a degraded panning scene with an alpha ramp."""
    rgb = degrade(make_scene("pan", frames=frames, height=height, width=width, seed=7), "old_film", seed=7).frames
    alpha = np.broadcast_to(np.linspace(0, 1, width, dtype=np.float32)[None, None, :, None], (frames, height, width, 1))
    return np.concatenate([rgb, alpha], axis=-1)


def _render(client: Client, clip: np.ndarray, name: str, radius: int, count: int) -> dict[str, Any]:
    """Render ``count`` frames in order, then scrub back over them; per-request measurements."""
    steps, scrub = [], []
    targets = list(range(radius, radius + count))
    for t in targets + targets[::-1]:
        window = clip[t - radius:t + radius + 1]
        sent, received, frames = client.bytes_sent, client.bytes_received, client.frames_sent
        start = time.perf_counter()
        result = client.request(window, radius, PARAMS, clip=name, times=range(t - radius, t + radius + 1))
        wall = (time.perf_counter() - start) * 1000.0
        row = {"target": t, "wall_ms": wall, "solve_ms": result.stats["solve_ms"], "cached": result.stats["cached"],
               "sent": client.bytes_sent - sent, "received": client.bytes_received - received,
               "frames_sent": client.frames_sent - frames}
        (scrub if len(steps) == count else steps).append(row)
    return {"render": steps, "scrub": scrub}


def _plugin_render(client: Client, clip: np.ndarray, name: str, c: int, ahead: int, count: int) -> list[dict[str, Any]]:
    """Render frames c … c + count − 1 of ``clip`` in order as the plug-in does, with the
    window t − c … t + ahead + c (clipped to the clip; c the preset's context); per request:
    wall ms and cached."""
    rows = []
    for t in range(c, c + count):
        lo, hi = t - c, min(len(clip), t + ahead + c + 1)
        start = time.perf_counter()
        result = client.request(clip[lo:hi], t - lo, RENDER_PARAMS, clip=name, times=range(lo, hi), ahead=ahead)
        rows.append({"target": t, "wall_ms": (time.perf_counter() - start) * 1000.0, "cached": result.stats["cached"]})
    return rows


def render_summary(rows: list[dict[str, Any]], warm: int) -> dict[str, float]:
    """Seconds per frame over the requests after the first ``warm`` (whose windows match the
    flows of the whole first window), and the share answered from the cache."""
    steady = rows[warm:]
    return {"s_per_frame": sum(r["wall_ms"] for r in steady) / 1000.0 / len(steady),
            "cached": sum(r["cached"] for r in steady) / len(steady)}


def _summary(runs: dict[str, Any], frame_bytes: int) -> dict[str, Any]:
    out = {}
    for transport, run in runs.items():
        steady = run["render"][1:]
        solve = statistics.median(r["solve_ms"] for r in steady)
        overhead = statistics.median(r["wall_ms"] - r["solve_ms"] for r in steady)
        out[transport] = {
            "solve_ms": solve, "overhead_ms": overhead, "overhead_pct": 100.0 * overhead / solve,
            "frames_sent": statistics.mean(r["frames_sent"] for r in steady),
            "socket_sent_frames": statistics.median(r["sent"] for r in steady) / frame_bytes,
            "socket_received_frames": statistics.median(r["received"] for r in steady) / frame_bytes,
            "scrub_hit_rate": sum(r["cached"] for r in run["scrub"]) / len(run["scrub"]),
            "scrub_ms": statistics.median(r["wall_ms"] for r in run["scrub"]),
        }
    return out


def markdown(summary: dict[str, Any], height: int, width: int, count: int) -> str:
    lines = [
        f"### Server round trip, {width}×{height} float RGBA, preset fast, sequential render of {count} frames",
        "",
        "| transport | solver (ms) | round trip − solver (ms) | overhead | frames sent / frame "
        "| socket bytes sent / frame | socket bytes received / frame | scrub-back hit rate | scrub-back round trip (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for transport, s in summary.items():
        lines.append(f"| {transport} | {s['solve_ms']:.0f} | {s['overhead_ms']:.1f} | {s['overhead_pct']:.2f} % "
                     f"| {s['frames_sent']:.2f} | {s['socket_sent_frames']:.3f} frames | {s['socket_received_frames']:.3f} frames "
                     f"| {100 * s['scrub_hit_rate']:.0f} % | {s['scrub_ms']:.1f} |")
    lines += ["", "Overhead = client wall time − solver time, median over the requests after the first; "
              "frames sent = frames attached per request (inline or in shared memory); socket bytes in units "
              "of one input frame (targets: overhead ≤ 10 %, one frame sent per frame)."]
    return "\n".join(lines)


def render_markdown(renders: dict[int, dict[str, float]], count: int) -> str:
    h, w = RENDER_SIZE
    plain, ahead = renders[0], renders[RENDER_AHEAD]
    return "\n".join([
        f"### The plug-in's sequential render, {w}×{h}, preset {RENDER_PARAMS['preset']}, frames {RENDER_AHEAD + 1}…{count - 1} of {count}",
        "",
        "| window | s / frame | answered from the cache |",
        "|---|---:|---:|",
        f"| t − c … t + c, one frame per solve | {plain['s_per_frame']:.2f} | {100 * plain['cached']:.0f} % |",
        f"| t − c … t + {RENDER_AHEAD} + c, ahead {RENDER_AHEAD} | {ahead['s_per_frame']:.2f} | {100 * ahead['cached']:.0f} % |",
        "",
        f"Solving ahead renders {plain['s_per_frame'] / ahead['s_per_frame']:.1f}× as many frames per second "
        f"(c = 12r + 2; the first {RENDER_AHEAD + 1} requests, which match the flows of their whole window, are left out).",
    ])


def run(out_dir: Path, quick: bool) -> str:
    """Run the server benchmark; writes ``server.md`` and ``server.json`` to ``out_dir`` and
    returns the Markdown tables."""
    height, width, count, radius = (720, 1280, 3, 1) if quick else (1080, 1920, 4, 1)
    clip = _clip(count + 2 * radius, height, width)
    render_count = (2 if quick else 4) * (RENDER_AHEAD + 1)
    c = Params.from_preset(**RENDER_PARAMS).context
    render_clip = _clip(render_count + RENDER_AHEAD + 2 * c, *RENDER_SIZE)
    runs, renders = {}, {}
    with tempfile.TemporaryDirectory(prefix="dfdb-bench-", dir="/tmp") as tmp:
        address = parse_address(f"unix://{tmp}/engine.sock")
        with EngineThread(Config(address, cache_bytes=2 << 30)) as engine:
            for transport in ("inline", "shm"):
                with Client(engine.address, transport=transport) as client:
                    runs[transport] = _render(client, clip, f"bench-{transport}", radius, count)
            with Client(engine.address) as client:
                for ahead in (0, RENDER_AHEAD):
                    rows = _plugin_render(client, render_clip, f"render-{ahead}", c, ahead, render_count)
                    renders[ahead] = render_summary(rows, RENDER_AHEAD + 1)
    summary = _summary(runs, clip[0].nbytes)
    table = markdown(summary, height, width, count) + "\n\n" + render_markdown(renders, render_count)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("server.md", table + "\n"),
                       ("server.json", json.dumps({"height": height, "width": width, "summary": summary, "runs": runs,
                                                     "plugin_render": renders}, indent=1))):
        tmp_path = out_dir / f".{name}.tmp"
        tmp_path.write_text(text, encoding="utf-8")
        tmp_path.replace(out_dir / name)
    return table
