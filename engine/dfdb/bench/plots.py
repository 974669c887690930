"""PNG plots of the benchmark: quality versus speed, brightness curves, before/after crops."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import synth


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def slug(name: str) -> str:
    """A file-name-safe version of a case name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _save(fig, path: Path) -> None:
    tmp = path.with_name(path.stem + ".part.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)


def brightness_plot(out_dir: Path, case: dict[str, Any]) -> Path:
    """Per-frame mean luma of one grid region: clean, degraded, and every restored version."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    curves = case["curves"]
    peers = [n for n in curves if n.startswith("ffmpeg")]
    ours = [n for n in curves if n.startswith("dfdb")]
    peer_colours = dict(zip(peers, plt.cm.viridis(np.linspace(0.0, 0.85, max(1, len(peers))))))
    our_colours = dict(zip(ours, ("#d62728", "#ff7f0e", "#e377c2", "#8c564b")))
    ax.plot(curves["clean"], color="black", lw=2.2, label="clean")
    for name, values in curves.items():
        if name in peer_colours:
            style = {"color": peer_colours[name], "lw": 0.8}
        elif name in our_colours:
            style = {"color": our_colours[name], "lw": 1.8}
        elif name != "clean":
            style = {"color": "0.55", "ls": "--"}
        else:
            continue
        ax.plot(values, label=name, **style)
    ax.set_xlabel("frame")
    ax.set_ylabel("mean luma, region (1, 1) of 4×4")
    ax.set_title(case["name"])
    ax.legend(fontsize=6, ncol=2)
    path = out_dir / f"brightness-{slug(case['name'])}.png"
    _save(fig, path)
    plt.close(fig)
    return path


def _crop_box(mask: np.ndarray, size: int) -> tuple[slice, slice]:
    """A size × size window centred on the densest blotch area of a (H, W) mask."""
    h, w = mask.shape
    size = min(size, h, w)
    density = cv2.blur(mask.astype(np.float32), (size // 2 + 1, size // 2 + 1))
    cy, cx = np.unravel_index(int(np.argmax(density)), density.shape)
    y0 = int(np.clip(cy - size // 2, 0, h - size))
    x0 = int(np.clip(cx - size // 2, 0, w - size))
    return slice(y0, y0 + size), slice(x0, x0 + size)


def crops_plot(out_dir: Path, case: dict[str, Any], clean: np.ndarray, truth: synth.Degraded, name: str, restored: np.ndarray, mask: np.ndarray) -> Path:
    """Before/after crops of the frame with most blotches, and the detected vs true mask.

    Mask panel colours: green = detected and true, red = missed, blue = detected but not a
    blotch (false alarm).
    """
    plt = _pyplot()
    t = int(np.argmax(truth.blotch_mask.sum(axis=(1, 2))))
    ys, xs = _crop_box(truth.blotch_mask[t], 128)
    det, true = mask[t, ys, xs] > 0.5, truth.blotch_mask[t, ys, xs]
    overlay = np.zeros(det.shape + (3,), np.float32)
    overlay[det & true] = (0.1, 0.9, 0.1)
    overlay[~det & true] = (0.95, 0.1, 0.1)
    overlay[det & ~true] = (0.2, 0.4, 1.0)
    panels = [("degraded", truth.frames[t, ys, xs]), (name, restored[t, ys, xs]), ("clean", clean[t, ys, xs]), ("mask: detected vs true", overlay)]
    fig, axes = plt.subplots(1, 4, figsize=(11, 3.2))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{case['name']}, frame {t}", fontsize=9)
    path = out_dir / f"crops-{slug(case['name'])}.png"
    _save(fig, path)
    plt.close(fig)
    return path


def case_plots(out_dir: Path, case: dict[str, Any], clean: np.ndarray, truth: synth.Degraded, shown) -> None:
    """The plots of one case: brightness curves, and crops of ``shown`` = (name, output)."""
    brightness_plot(out_dir, case)
    if shown is not None and truth.blotch_mask.any():
        name, out = shown
        crops_plot(out_dir, case, clean, truth, name, out.frames, out.mask)


def quality_speed_plot(out_dir: Path, record: dict[str, Any]) -> Path:
    """PSNR gain over the input (mean over cases) against fps (median over cases), per method."""
    plt = _pyplot()
    gains: dict[str, list[float]] = {}
    fps: dict[str, list[float]] = {}
    for case in record["cases"]:
        base = next(r["psnr"] for r in case["rows"] if r["kind"] == "input")
        for r in case["rows"]:
            if r["fps"]:
                gains.setdefault(r["method"], []).append(r["psnr"] - base)
                fps.setdefault(r["method"], []).append(r["fps"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name in gains:
        x, y = float(np.median(fps[name])), float(np.mean(gains[name]))
        ax.scatter([x], [y], s=50, marker="*" if name.startswith("dfdb") else "o", color="C3" if name.startswith("dfdb") else "C0")
        ax.annotate(name, (x, y), fontsize=6, xytext=(4, 3), textcoords="offset points")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("frames per second (log)")
    ax.set_ylabel("PSNR gain over the degraded input, dB")
    ax.set_title("quality versus speed" + (" (quick)" if record["quick"] else ""))
    path = out_dir / "quality-vs-speed.png"
    _save(fig, path)
    plt.close(fig)
    return path


def scaling_plot(out_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """fps versus resolution (W = 5) and versus window (360p)."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    base = max(rows, key=lambda r: r["width"] * r["height"])["preset"]
    res = sorted({(r["width"] * r["height"], r["height"], r["fps"]) for r in rows if r["preset"] == base and r["window"] == 5})
    a.plot([f"{h}p" for _, h, _ in res], [f for _, _, f in res], "o-")
    a.set_ylabel("fps")
    a.set_title(f"{base}, W = 5: fps vs resolution", fontsize=9)
    low = min(r["height"] for r in rows)
    win = sorted({(r["window"], r["fps"]) for r in rows if r["preset"] == base and r["height"] == low})
    b.plot([w for w, _ in win], [f for _, f in win], "o-")
    b.set_xlabel("window W (frames)")
    b.set_title(f"{base} at {low}p: fps vs W", fontsize=9)
    path = out_dir / "speed-scaling.png"
    _save(fig, path)
    plt.close(fig)
    return path


def summary_plots(out_dir: Path, record: dict[str, Any]) -> None:
    """Plots over the whole run."""
    if record["cases"]:
        quality_speed_plot(out_dir, record)
    if record["scaling"]:
        scaling_plot(out_dir, record["scaling"])
