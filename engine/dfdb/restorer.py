"""The in-memory engine: frames in, restored frames out, streamed in overlapping chunks.

A clip is cut into shots (never linked across a cut) and each shot into chunks of
``params.chunk`` output frames (by default from the frame size, :func:`chunk_frames`). Each
chunk is solved with ``margin`` extra context frames on both sides (results for the context
are discarded), so the result hardly depends on where the chunk boundaries fall and memory is
bounded by the chunk, not the clip. Flows are cached
between chunks so that every pair of frames is matched once.

Per chunk: flow to the neighbours → temporal weights and warped neighbours at the sample
points, the long-range term's tracks → FISTA on (g, h) alone (robust Huber data terms) → noise
level and the allowed blotch support → FISTA on (g, h, S) → debiased blotch repair → clipped
samples bounded by the neighbours that saw them → restored frames. The fit may work at a
fraction of the frames' resolution (``params.work_scale``, the ``fast`` preset's half): its
planes, flows and masks are taken to that size, and the blotch support and flows brought back
to the frames' for the repairs.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from . import blotch
from .allocator import release_freed_memory
from .cuts import is_cut, thumbnail
from .errors import Cancelled, InputError
from .flow import Flow, FlowEstimator, Motion, frame_blocks, impulses, luma, sample_points, track, warp, within
from .frames import RestoredFrame
from .model import clipped, restore, upsample
from .objective import Problem, Weights, any_paired, blotch_energy, energy, pair_weights, paired, residual, unbiased
from .problem import assemble, assemble_blotches, fields_at, lattice_points
from .params import Params
from .solver import Fields, Schedule, autotune, fit_blotches, fit_fields

#: Weight of the neighbours at distance |k| = 1, 2, ... for each radius r (normalised later).
NEIGHBOUR_WEIGHTS = {1: (1.0,), 2: (0.7, 0.3), 3: (0.5, 0.3, 0.2), 4: (0.4, 0.3, 0.2, 0.1)}
#: Blotch threshold λ_S in units of the residual's noise level σ, and its floor (intensity).
BLOTCH_SIGMAS = 3.0
BLOTCH_FLOOR = 10.0 / 255.0
#: A pixel is a blotch candidate when it differs from every neighbour by this fraction of λ_S.
CANDIDATE_FRACTION = 0.8
#: ...and when no motion of up to this many pixels brings it from the adjacent frames.
UNEXPLAINED_RADIUS = 4
#: The repair covers the blotch layer's support dilated by this many pixels: the soft rim.
RIM_PIXELS = 1
#: Beyond that, the repair grows this many pixels outwards (:meth:`Restorer._grow`) into pixels
#: whose luma is this far (intensity, over the sensitivity) from their neighbours' estimate:
#: the rim of a strong blotch fades out over several pixels, which on dense texture pass the
#: motion-free impulse test as scene content and were missed (a
#: fixed rim of 2 px instead caught them and everything else: precision 0.84 → 0.61 on
#: bigbuckbunny/severe, false repairs 0.15 % on carphone/flicker_only). Measured on the
#: benchmark, against no growth: blotch error 0.205 → 0.199 of the input's on bigbuckbunny,
#: 0.150 → 0.137 on bikes, PSNR +0.02…+0.12 dB on four cases; carphone's false repairs
#: 0.086 → 0.094 % (margin 0.10: 0.098 %; 0.05 in one step: 0.102 %).
GROWTH_STEPS = 2
GROWTH_MARGIN = 0.12
#: Huber threshold of the first, S-free pass (intensity units).
FIRST_PASS_DELTA = 0.04
#: The first pass's solve of the fields runs this many times the preset's iterations, the
#: second pass's as many, the blotch layer's half of them. The fields' problem is the lattice
#: only, so an iteration costs little, while the flicker converges slowly: twice the first
#: pass's gained 0.2–0.5 dB on six of the benchmark's seven cases. Twice the second pass's
#: gained 0.10 dB more on average, but moved a shot's last frame, whose correction only its
#: neighbours' residuals tie down, by 0.76 levels RMS between a 27-frame window and the whole
#: clip (0.31 with these). S's support is settled in three iterations (3, 6 and 12 gave the
#: same to 0.01 dB).
FIRST_PASS_ITERATIONS = 2
BLOTCH_ITERATIONS = 0.5
#: The blotch layer lives on a chunk's core and this many times r frames on each side. The
#: core's residuals and repairs read r of them; the rest are there because the fields' fit
#: leaves S's pixels to S: a frame without a blotch layer is fitted with its blotches in the
#: data (the robust loss bounds their pull, but not to nothing), and the long-range term
#: (±6r) and the gauge carry that to the core's corrections, differently from a chunk where
#: the frame has one. Measured, chunk 8 against 32 on three 40-frame old-film clips
#: (objects, pan, static): 0.69 / 0.61 / 1.03 levels RMS with 1, 0.25 / 0.41 / 0.50 with 3,
#: 0.14 / 0.10 / 0.22 with 7, 0.12 / 0.06 / 0.15 on the whole chunk.
BLOTCH_REACH = 7
#: The first pass's λ_R, as a multiple of the objective's, where a second pass follows (blotches
#: on). It has no blotch layer, and a light grid bends its correction towards a blotch's
#: outlying values around it: pixels there then differ from their neighbours and become blotch
#: candidates. With λ_R at 0.01 and this at 1,
#: the ring repaired around each of two overlapping blotches grew from 1 to 2 px (281 → 448
#: pixels outside them in the overlap test); at 5 it stays at 304, and the benchmark's mean gain
#: keeps all but 0.04 dB of the light grid's 0.25.
FIRST_PASS_STIFFNESS = 5.0
#: Width σ (frames) of the gauge's temporal smoother B: the slowest changes are the scene's.
GAUGE_SIGMA = 6.0
#: λ_0 of the objective: a whisper of a pull of every frame's correction to identity, for
#: strict convexity.
LAMBDA_0 = 0.0001


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA if present, else MPS, else CPU; a named device that is absent falls back to CPU."""
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if name in ("auto", "mps") and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def as_float(image: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8/uint16/float → float32 in [0, 1]; checks the shape."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise InputError(f"a frame must be (H, W, C) with C in 1, 3, 4; got shape {tuple(image.shape)}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    return np.ascontiguousarray(image, dtype=np.float32)


@dataclass
class _Frame:
    index: int
    key: Hashable
    image: np.ndarray  # (H, W, C) float32
    luma: np.ndarray  # (H, W) float32
    thumb: np.ndarray
    shot: int = 0
    cut: bool = False


def _frame(index: int, key: Hashable, image: np.ndarray) -> _Frame:
    image = as_float(image)
    y = luma(image[..., :3])
    return _Frame(index, key, image, y, thumbnail(y))


#: The default chunk holds as many pixels as 32 frames of 1280×720 (the working set of a
#: chunk's solve grows with its pixels: about 6 GB there), and 32 to 128 frames.
CHUNK_PIXELS = 32 * 1280 * 720
CHUNK_RANGE = (32, 128)


def chunk_frames(chunk: int | None, size: tuple[int, int]) -> int:
    """Output frames per chunk: ``chunk``, or for None as many frames of ``size`` (H, W) as
    hold :data:`CHUNK_PIXELS`, within :data:`CHUNK_RANGE`.

    Each chunk also solves its 2·(12r + 2) context frames, so small frames get longer chunks:
    at 640×360, 128 frames instead of 32 make the context 0.4 of the core instead of 1.6
    (4–5 % faster), for the memory that 32 frames of 720p take anyway.
    """
    if chunk is not None:
        return chunk
    lo, hi = CHUNK_RANGE
    return max(lo, min(hi, CHUNK_PIXELS // (size[0] * size[1])))


def work_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(rows, cols) that the fit of frames of ``size`` (H, W) works at, for ``work_scale``
    ``scale``: the corrections and the blotch layer are found there, the repairs are made at
    full resolution."""
    if scale >= 1.0:
        return size
    return max(8, round(size[0] * scale)), max(8, round(size[1] * scale))


def long_reach(radius: int) -> tuple[int, int]:
    """L, the frames the long-range term follows on each side, 6r, and the step between the
    frames it compares, 2r: offsets ±2r, ±4r, ±6r (±4, ±8, ±12 for W = 5).

    The slow part of the flicker is what the short window cannot see, so the term looks far
    and leaves the near frames to the short window. On the benchmark, against all offsets up
    to 4r, this gained 0.25–0.53 dB (flicker ratio 0.02–0.05 lower) on four of seven cases,
    lost 0.05 dB on one, with 6 pairs instead of 16; its reach asks for the context of
    :attr:`Restorer.margin`.
    """
    return 6 * radius, 2 * radius


def offsets(radius: int) -> list[int]:
    """Temporal offsets k of the neighbours, −r…−1, 1…r (the J axis of the problem)."""
    return [k for k in range(-radius, radius + 1) if k]


def neighbour_beta(radius: int, device: torch.device) -> torch.Tensor:
    """β (J,): the weight of each offset k (:data:`NEIGHBOUR_WEIGHTS` at distance |k|), which
    :func:`~dfdb.objective.pair_weights` renormalises over the valid pairs."""
    return torch.tensor([NEIGHBOUR_WEIGHTS[radius][abs(k) - 1] for k in offsets(radius)], device=device)


def neighbour_plane(y: torch.Tensor, motion: Motion, nb: torch.Tensor, frames: slice, j: int,
                    first: int = 0) -> torch.Tensor:
    """𝒲_{t,k}(Y_{t+k}) (n, K, H, W) for the frames t of ``frames`` and their neighbour j: the
    planes y of the neighbours nb (T, J) warped along the flows, a block of frames at a time
    (the dense flows exist for a block only). y holds the frames ``first`` onwards (its
    first plane is frame ``first``), which must include every neighbour read."""
    n = frames.stop - frames.start
    out = y.new_empty(n, *y.shape[1:])
    for b in frame_blocks(n, y.shape[2:], y.device):
        at = slice(frames.start + b.start, frames.start + min(b.stop, n))
        out[b] = warp(y.index_select(0, nb[at, j] - first), motion.dense(at, j))
    return out


def candidate_support(y: torch.Tensor, motion: Motion, valid: torch.Tensor, nb: torch.Tensor, g: torch.Tensor,
                      h: torch.Tensor, threshold: torch.Tensor, frames: slice, spotted: torch.Tensor | None = None,
                      within: torch.Tensor | None = None) -> torch.Tensor:
    """Allowed blotch support (T, 1, H, W) bool after the correction g, h (T, K, Gy, Gx), on
    ``frames`` (empty elsewhere), among the pixels ``within`` (T, 1, H, W) bool (None: all).

    y (T, K, H, W), motion, valid (T, J, 1, H, W), nb (T, J) as in
    :meth:`Restorer._fit`; threshold (T,) intensity; spotted (2, T, H, W) bool from
    :func:`unexplained`, or None. The frames and their neighbours are corrected once
    (:func:`corrected_luma`), each neighbour with its own fields where the flow lands; the
    warped planes are made one offset at a time (:func:`neighbour_plane`) and go to
    :func:`blotch.candidates` as they come, each with its spots on the side away from t.
    """
    around = nb[frames]
    lo, hi = min(frames.start, int(around.min())), max(frames.stop, int(around.max()) + 1)  # with all neighbours
    x = corrected_luma(y[lo:hi], g[lo:hi], h[lo:hi])
    x0_nb = (neighbour_plane(x, motion, nb, frames, j, lo) for j in range(nb.shape[1]))
    out = torch.zeros(y.shape[0], 1, *y.shape[2:], dtype=torch.bool, device=y.device)
    ks = offsets(nb.shape[1] // 2)
    spots = None if spotted is None else (spotted[int(k > 0)][around[:, j]].unsqueeze(1) for j, k in enumerate(ks))
    present = lambda t, yy, xx: present_at(motion, nb, t + frames.start, yy, xx)  # noqa: E731
    out[frames] = blotch.candidates(x[frames.start - lo:frames.stop - lo], x0_nb, valid[frames], present,
                                    in_shot(around), threshold[frames].view(-1, 1, 1, 1), spots,
                                    None if within is None else within[frames])
    return out


def in_shot(nb: torch.Tensor) -> torch.Tensor:
    """(T, J) bool: neighbour j of frame t is a frame of the context (the shot); nb (T, J) as in
    :meth:`Restorer._neighbours`, where a neighbour outside it is the frame itself."""
    return nb != torch.arange(nb.shape[0], device=nb.device).unsqueeze(1)


def present_at(motion: Motion, nb: torch.Tensor, t: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(J, n) bool: neighbour j of frames t is present at the pixels (y, x) (each (n,) long):
    a frame of the context (:func:`in_shot`) that the flow, valid or interpolated, takes the
    pixel inside of. Asked at the few pixels that need it, never for whole frames."""
    xf, yf = x.to(motion.field.dtype), y.to(motion.field.dtype)
    there = in_shot(nb).index_select(0, t)  # (n, J)
    return torch.stack([there[:, j] & motion.lands_inside_at(t, j, xf, yf) for j in range(nb.shape[1])])


def corrected_luma(y: torch.Tensor, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """X̂ of planes y (T, K, H, W) corrected by fields g, h (T, K, Gy, Gx), averaged over K:
    (T, 1, H, W). The fields are upsampled for a block of frames at a time
    (:func:`flow.frame_blocks`), never for the whole chunk."""
    t, _, rows, cols = y.shape
    out = y.new_empty(t, 1, rows, cols)
    for b in frame_blocks(t, (rows, cols), y.device):
        out[b] = restore(y[b], upsample(g[b], (rows, cols)), upsample(h[b], (rows, cols))).mean(1, keepdim=True)
    return out


def unexplained(lumas: Sequence[np.ndarray], frames: range, scale: float = 1.0, reach: int = 2
                ) -> tuple[np.ndarray, np.ndarray]:
    """The motion-free impulse test of the input lumas (T × (H, W) float32, one shot, at
    ``scale`` of the frame's resolution): unexplained (T, 1, H, W) bool on ``frames``, and
    spotted (2, T, H, W) bool on ``frames`` ± ``reach``; both false on the other frames.

    A pixel is *impulsive* when no motion of up to :data:`UNEXPLAINED_RADIUS` frame px brings
    it from frame t−1 nor from t+1 (:func:`flow.impulses`; at the shot's ends, from the two
    next frames on the side there is): seen from one side only, a change that lasts a frame
    (a clipped highlight, an occlusion that ends) looks impulsive against the next frame alone.
    It is a motion-free test on the frames as they came in (locally brightness-matched): it
    does not depend on the flow or on the flicker fit, whose errors can make a pixel of a
    moving object look impulsive along its motion.

    Where dirt is dense, a blotch of t+1 can lie where one of t is, and each explains the
    other. ``spotted[0, t]`` marks the pixels of frame t near (within the radius of) content
    that frame t−1 does not explain, ``spotted[1, t]`` the same against t+1: content that is
    not there before (after) it. A pixel of t that t+1 explains only with content spotted
    against t+2, and that neither t+2 nor t−1 explains, is unexplained too (and the same
    the other way round): the overlap of two blotches, or a change that lasts two frames.
    """
    t = len(lumas)
    radius = max(1, round(UNEXPLAINED_RADIUS * scale))
    found: dict[tuple[int, int], np.ndarray] = {}

    def against(i: int, k: int) -> np.ndarray:
        if (i, k) not in found:
            found[(i, k)] = impulses(lumas[i], lumas[k], radius, scale=scale, patches=True)
        return found[(i, k)]

    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    spotted = np.zeros((2, t, *lumas[0].shape), bool)
    for i in range(max(frames.start - reach, 0), min(frames.stop + reach, t)):
        for side, k in enumerate((i - 1, i + 1)):
            if 0 <= k < t:
                spotted[side, i] = cv2.dilate(against(i, k).astype(np.uint8), kernel) > 0
    out = np.zeros((t, 1, *lumas[0].shape), bool)
    for i in frames:
        nearest = sorted((k for k in (i - 1, i + 1, i - 2, i + 2) if 0 <= k < t), key=lambda k: abs(k - i))
        out[i, 0] = np.logical_and.reduce([against(i, k) for k in nearest[:2]])
        if i < 2 or i + 2 >= t:
            continue
        for near, far, other, side in ((i - 1, i - 2, i + 1, 0), (i + 1, i + 2, i - 1, 1)):
            hidden = ~against(i, near) & spotted[side, near] & against(i, other)
            if hidden.any():
                out[i, 0] |= hidden & against(i, far)
    return out, spotted


@dataclass(frozen=True)
class Tracks:
    """The long-range term's neighbours of the lattice points (:func:`long_range`): frames nb
    (T, M), tracked positions (T, M, P, 2) px as (x, y), alive (T, M, P) bool, the planes'
    values there (T, P, M, K), and the weight of each offset beta (M,)."""

    nb: torch.Tensor
    pos: torch.Tensor
    alive: torch.Tensor
    values: torch.Tensor
    beta: torch.Tensor

    def term(self, support: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(nb (T, M), positions (T, M, P, 2), values (T, P, M, K), weights (T, P, M)) for
        :func:`problem.assemble`: the pairs alive on both sides, renormalised. With the blotch
        layer's ``support`` (T, 1, H, W) bool, a pair whose point lands on it in its frame is
        dropped with its mirror: a value tracked onto a blotch is not the scene's."""
        alive = self.alive
        if support is not None:
            h, w = support.shape[-2:]
            x = self.pos[..., 0].round().long().clamp(0, w - 1)
            y = self.pos[..., 1].round().long().clamp(0, h - 1)
            alive = alive & ~support[self.nb.unsqueeze(2).expand_as(alive), 0, y, x]
        return self.nb, self.pos, self.values, pair_weights(alive, self.beta).transpose(1, 2)


def long_range(y: torch.Tensor, motion: Motion, reach: int, every: int) -> Tracks:
    """The long-range term's neighbours at the lattice points (see :func:`problem.assemble`).

    y (T, K, H, W) and motion as in :meth:`Restorer._fit`.
    The lattice points are followed ``reach`` frames each way along the flows to the adjacent
    frames (:func:`flow.track`) and compared with every ``every``-th frame, m = i·every for
    i = ±1…±n, n = reach / every, M = 2n; pair i weighs n + 1 − |i| (3, 2, 1 for the shipped
    reach: a chained track drifts, the nearer frames are the surer), renormalised over the
    pairs alive on both sides (:meth:`Tracks.term`).
    """
    t, k, h, w = y.shape
    ks = offsets(motion.field.shape[1] // 2)
    ly, lx = lattice_points((h, w), y.device)
    nb, pos, alive = track(motion, ks.index(1), ks.index(-1), ly, lx, reach, every)
    frame = nb.unsqueeze(2).expand(alive.shape).reshape(-1)
    values = sample_points(y, frame, pos[..., 0].reshape(-1), pos[..., 1].reshape(-1)).view(*alive.shape, k)
    n = reach // every
    beta = torch.tensor([n + 1.0 - abs(i) for i in offsets(n)], device=y.device)
    return Tracks(nb, pos, alive, values.transpose(1, 2), beta)


def gaussian_average(t: int, sigma: float, device: torch.device) -> torch.Tensor:
    """(T, T) Gaussian average over time of width ``sigma`` frames, truncated at the ends, rows
    sum to 1. Unlike a box, its frequency response has no side lobes: it pins the slow part
    of the correction and leaves the faster flicker wholly to the data terms."""
    i = torch.arange(t, device=device, dtype=torch.float32)
    b = torch.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma) ** 2)
    return b / b.sum(1, keepdim=True)


def noise_levels(r: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Robust σ_t of the lattice residual r (T, P, K) where it counts (q > 0), MAD × 1.4826, (T,).

    Per frame, so that a frame's blotch threshold depends on that frame and its neighbours
    only, not on the chunk it was solved in (and grain may change from shot to shot). A frame
    without residuals (a single-frame shot) gets 0.
    """
    vals = torch.where(q > 0, r.mean(2).abs(), torch.full_like(q, float("nan")))
    return torch.nan_to_num(vals.nanmedian(1).values * 1.4826, nan=0.0)


class Restorer:
    """Restores frames in memory; the file pipeline (:func:`dfdb.restore`) and the server use it."""

    def __init__(self, params: Params | None = None, **overrides: Any) -> None:
        if params is None:
            params = Params.from_preset(overrides.pop("preset", "balanced"), **overrides)
        elif overrides:
            params = params.replace(**overrides)
        self.params = params
        self.device = resolve_device(params.device)
        self._flow = FlowEstimator(params.flow_preset, params.flow_scale)
        self._flows: dict[tuple[Hashable, Hashable], Flow] = {}  # (key a, key b) → flow a→b
        self._schedules: dict[str, Schedule] = {}  # tuned once per clip (autotune), by block

    @property
    def margin(self) -> int:
        """Context frames solved on each side of a chunk and discarded: 12r + 2.

        The long-range term links a frame with the frames up to 6r away on each side, and the
        fit of the slow part of the correction reaches as far again; with this context a
        frame's result changes by less than half an 8-bit level when more frames are added on
        either side (chunk size, or the plug-in's window). Measured, chunk 8 against 32 on four
        40-frame clips: 0.12–0.30 levels RMS (0.45–1.1 with 8r + 2)."""
        return self.params.context

    # ---------------------------------------------------------------- public API
    def process(
        self,
        frames: Iterable[np.ndarray] | np.ndarray,
        progress: Callable[[int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> Iterator[RestoredFrame]:
        """Restore a stream of (H, W, C) frames; yields one RestoredFrame per frame, in order."""
        chunk, margin = 0, self.margin  # chunk: set by the first frame's size
        buffer: list[_Frame] = []
        shot, shot_start, next_core, done = 0, 0, 0, 0
        self._flows.clear()

        def emit(upto: int, available: int) -> Iterator[RestoredFrame]:
            """Solve and yield the chunks of the current shot up to frame ``upto`` (exclusive),
            with context up to ``available`` (the frames buffered, or the shot's end)."""
            nonlocal next_core, done, buffer
            while next_core < upto:
                core_end = min(next_core + chunk, upto)
                lo, hi = max(shot_start, next_core - margin), min(available, core_end + margin)
                ctx = [f for f in buffer if lo <= f.index < hi]
                if cancel is not None and cancel():
                    raise Cancelled("restoration cancelled")
                for out in self._solve(ctx, range(next_core - lo, core_end - lo)):
                    done += 1
                    yield out
                    if progress is not None:
                        progress(done)
                next_core = core_end
                release_freed_memory()
                keep_from = next_core - margin
                buffer = [f for f in buffer if f.index >= keep_from]
                self._flows = {k: v for k, v in self._flows.items() if min(k) >= keep_from}

        last: _Frame | None = None
        for i, image in enumerate(frames):
            f = _frame(i, i, image)
            if last is None:
                chunk = chunk_frames(self.params.chunk, f.image.shape[:2])
            elif f.image.shape != last.image.shape:
                raise InputError(f"frame {i} has shape {f.image.shape}, the clip started with {last.image.shape}")
            if last is not None and is_cut(last.thumb, f.thumb):
                yield from emit(i, i)
                shot, shot_start, next_core = shot + 1, i, i
                buffer = []
                f.cut = True
            f.shot = shot
            buffer.append(f)
            last = f
            if i + 1 >= next_core + chunk + margin:
                yield from emit(next_core + chunk, i + 1)
        if last is not None:
            yield from emit(last.index + 1, last.index + 1)

    def restore_window(self, frames: np.ndarray | Sequence[np.ndarray], target: int,
                       keys: Sequence[Hashable] | None = None) -> RestoredFrame:
        """Restore frame ``target`` of a short window (T, H, W, C), e.g. t − c … t + c
        (c = :attr:`margin`); see :meth:`restore_span`."""
        return self.restore_span(frames, target, 1, keys)[0]

    def restore_span(self, frames: np.ndarray | Sequence[np.ndarray], first: int, count: int,
                     keys: Sequence[Hashable] | None = None) -> list[RestoredFrame]:
        """Restore frames ``first`` … ``first + count − 1`` of a window (T, H, W, C) in one
        solve, e.g. t … t + n − 1 of t − c … t + n − 1 + c: a sequential render then solves
        2c + n frames for every n instead of 2c + 1 for each one.

        Frames on the other side of a cut from ``first`` are ignored (the span ends before
        the cut: fewer frames come back). ``keys`` (one hashable per frame, e.g. frame times)
        let flows be reused across calls on overlapping windows.
        """
        if not 0 <= first < len(frames) or count < 1:
            raise InputError(f"frames {first}…{first + count - 1} are outside the window of {len(frames)} frames")
        keys = list(keys) if keys is not None else [("w", i) for i in range(len(frames))]
        ctx = [_frame(i, keys[i], im) for i, im in enumerate(frames)]
        lo, hi = first, first + 1
        while lo > 0 and not is_cut(ctx[lo - 1].thumb, ctx[lo].thumb):
            lo -= 1
        while hi < len(ctx) and not is_cut(ctx[hi - 1].thumb, ctx[hi].thumb):
            hi += 1
        out = self._solve(ctx[lo:hi], range(first - lo, min(first + count, hi) - lo))
        if len(self._flows) > 64:
            live = set(keys)
            self._flows = {k: v for k, v in self._flows.items() if k[0] in live and k[1] in live}
        return out

    # ---------------------------------------------------------------- one chunk
    def _match(self, keys: Sequence[Hashable], lumas: Sequence[np.ndarray],
               cache: dict[tuple[Hashable, Hashable], Flow], pool: ThreadPoolExecutor) -> None:
        """Match the flows between each frame and its next r frames that ``cache`` lacks, both
        ways, on the lumas (H, W) of the frames keyed ``keys``, on their blotch-free features
        (:meth:`flow.FlowEstimator.match`). The pairs are independent and OpenCV and numpy
        leave the interpreter while they work, so they run on ``pool``'s threads: a pair's
        work is too small for OpenCV's own threads to use more than one core for long."""
        pairs = [(i, i + k, k) for i in range(len(keys)) for k in range(1, self.params.radius + 1)
                 if i + k < len(keys) and (keys[i], keys[i + k]) not in cache]
        flows = pool.map(lambda pair: self._flow.match(lumas[pair[0]], lumas[pair[1]], pair[2]), pairs)
        for (a, b, _), (forward, backward) in zip(pairs, flows):
            cache[(keys[a], keys[b])], cache[(keys[b], keys[a])] = forward, backward

    def _neighbours(self, ctx: list[_Frame], size: tuple[int, int], pool: ThreadPoolExecutor,
                    lumas: list[np.ndarray] | None = None) -> tuple[Motion, torch.Tensor, torch.Tensor]:
        """Flows (:class:`~dfdb.flow.Motion`), validity (T, J, 1, H, W) bool and indices nb
        (T, J), on the device, for the frames at ``size`` (H, W): the fit's.

        A neighbour outside the context is not valid (its nb is the frame itself, its flow 0);
        where one is present, :func:`present_at` says at points. Flows come from the clip's
        cache or, for ``lumas`` (the second pass's restored lumas), are matched anew, on
        ``pool`` (:meth:`_match`).
        """
        t, frame = len(ctx), ctx[0].image.shape[:2]
        ks = offsets(self.params.radius)
        if lumas is None:
            keys, lumas, cache = [f.key for f in ctx], [f.luma for f in ctx], self._flows
        else:
            keys, cache = list(range(t)), {}
        # Without motion every flow is 0: a constant field, held on a 1×1 grid.
        grid = self._flow.size(frame) if self.params.motion else (1, 1)
        field = np.zeros((t, len(ks), 2, *grid), np.float32)  # Motion's layout
        valid = np.zeros((t, len(ks), 1, *size), bool)
        nb = np.tile(np.arange(t)[:, None], (1, len(ks)))
        pairs = [(i, j) for i in range(t) for j, k in enumerate(ks) if 0 <= i + k < t]
        for i, j in pairs:
            nb[i, j] = i + ks[j]
            valid[i, j, 0] = not self.params.motion

        def lay_out(pair: tuple[int, int]) -> None:
            """Frame i's flow to its neighbour j into the chunk's arrays (on the pool's threads:
            the copies and the validity's unpacking leave the interpreter)."""
            i, j = pair
            flow = cache[(keys[i], keys[i + ks[j]])]
            field[i, j], valid[i, j, 0] = flow.field.transpose(2, 0, 1), flow.validity(size)

        if self.params.motion:
            self._match(keys, lumas, cache, pool)
            list(pool.map(lay_out, pairs))
        dev = self.device
        motion = Motion(torch.from_numpy(field).to(dev), frame).resized(size)
        return motion, torch.from_numpy(valid).to(dev), torch.from_numpy(nb).to(dev)

    @staticmethod
    def _lumas(ctx: list[_Frame], size: tuple[int, int]) -> list[np.ndarray]:
        """The frames' lumas at ``size`` (H, W), area-averaged where it is smaller."""
        if ctx[0].luma.shape == tuple(size):
            return [f.luma for f in ctx]
        return [cv2.resize(f.luma, size[::-1], interpolation=cv2.INTER_AREA) for f in ctx]

    def _around(self, core: range, t: int, reach: int = 1) -> range:
        """The frames ``core`` with reach·r on each side, within 0…t−1: by default those that
        the core's repairs read."""
        side = reach * self.params.radius
        return range(max(core.start - side, 0), min(core.stop + side, t))

    def _solve(self, ctx: list[_Frame], core: range, lumas: list[np.ndarray] | None = None) -> list[RestoredFrame]:
        """Restore the frames ``core`` of the context ``ctx`` (one shot); ``lumas``: the second
        pass's restored lumas, which its flows are matched on.

        The fit reads the context's colour planes at its own size, freed when it returns; the
        colour frames at full size are stacked after it (the fit's working set is the peak of
        the engine's), and only those of the core and its r neighbours."""
        p = self.params
        size = work_size(ctx[0].image.shape[:2], p.work_scale)
        # The motion-free impulse test runs beside the flows: both are OpenCV and numpy work
        # on the lumas that leaves the interpreter, and the flows alone keep one core busy.
        with ThreadPoolExecutor(torch.get_num_threads() + 1) as pool:  # a thread per core, and the test's
            impulse_test = pool.submit(unexplained, self._lumas(ctx, size), self._around(core, len(ctx), BLOTCH_REACH),
                                       p.work_scale, p.radius) if p.blotches else None
            motion, valid, nb = self._neighbours(ctx, size, pool, lumas)
            g, hf, repaired = self._fit(self._colour(ctx, size), motion, valid, nb, core, impulse_test)
        return self._finish(ctx, core, g, hf, repaired, motion, valid, nb, lumas)

    def _colour(self, ctx: list[_Frame], size: tuple[int, int] | None = None) -> torch.Tensor:
        """The context's colour channels (T, 3|1, H, W) on the device (alpha left out), at
        ``size`` (area-averaged) or the frames' own."""
        t, (h, w, c) = len(ctx), ctx[0].image.shape
        size = size or (h, w)
        colour = torch.empty(t, min(c, 3), *size, device=self.device)
        for i, f in enumerate(ctx):
            image = f.image[..., :3]
            if size != (h, w):
                image = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA).reshape(*size, -1)
            colour[i].copy_(torch.from_numpy(image).permute(2, 0, 1))
        return colour

    def _fit(self, y: torch.Tensor, motion: Motion, valid: torch.Tensor, nb: torch.Tensor,
             core: range, impulse_test: Future[tuple[np.ndarray, np.ndarray]] | None
             ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """Fit the chunk: corrections g, h (T, F, Gy, Gx), None when neither flicker nor blotches
        are asked for, and the repaired blotch support (T, 1, H, W) bool at the fit's size.

        y: the colour planes (T, K, H, W) (:meth:`_colour`; one correction for all of them,
        F = 1, or one each, F = K, with ``per_channel``), at the fit's size (:func:`work_size`);
        motion, valid, nb from :meth:`_neighbours`; core: the frames restored;
        impulse_test: :func:`unexplained` of the input lumas at that size on the frames of the
        blotch layer, being computed (None without blotches). The blotch layer lives on the
        core and :data:`BLOTCH_REACH`·r frames on each side; the rest of the context serves the
        corrections only.
        """
        p = self.params
        dev = y.device
        t, _, h, w = y.shape
        none = torch.zeros(t, 1, h, w, dtype=torch.bool, device=dev)
        if not p.flicker and not p.blotches:
            return None, None, none
        # The long-range term acts on the corrections only: without flicker they are identity.
        # Without motion compensation its tracks stand still: a tripod shot needs it as much.
        far = long_range(y, motion, *long_reach(p.radius)) if p.flicker and p.lambda_l > 0 else None
        stiffness = FIRST_PASS_STIFFNESS if p.blotches else 1.0  # without blotches it is the only pass
        lam = Weights(lambda_r=stiffness * p.lambda_r, lambda_p=p.lambda_p, lambda_0=LAMBDA_0,
                      delta=FIRST_PASS_DELTA, lambda_l=p.lambda_l)
        with torch.no_grad():
            problem = self._problem(y, valid, nb, motion, lam, far=far)
            if p.flicker:
                first = fit_fields(problem, Schedule.default(FIRST_PASS_ITERATIONS * p.iterations).to(dev))
            else:
                first = Fields.identity(problem)
            sigma = noise_levels(residual(first.g, first.h, problem), problem.lattice.q)
        lam_s = (BLOTCH_SIGMAS * sigma).clamp(min=BLOTCH_FLOOR) / p.sensitivity  # (T,) per frame
        if not p.blotches:
            return (*unbiased(first.g, first.h, problem.smoother), none)
        with torch.no_grad():
            near = self._around(core, t, BLOTCH_REACH)
            impulsive, spotted = impulse_test.result()
            # The test reads the corrected planes' mean: with one correction for all planes, the
            # correction of their mean, warped once instead of once per plane.
            flat = y.mean(1, keepdim=True) if first.g.shape[1] < y.shape[1] else y
            support = candidate_support(flat, motion, valid, nb, first.g, first.h, CANDIDATE_FRACTION * lam_s,
                                        slice(near.start, near.stop), torch.from_numpy(spotted).to(dev),
                                        torch.from_numpy(impulsive).to(dev))
            del flat
            feet = blotch.footprints(support, motion, paired(valid), nb) if bool(support.any()) else []
            fields = first
            if p.flicker:
                # The second pass: each frame's δ from its noise, the full λ_R, and S's pixels
                # left to S.
                lam = Weights(p.lambda_r, p.lambda_p, LAMBDA_0, delta=2.0 * lam_s, lambda_l=p.lambda_l)
                problem = self._problem(y, valid, nb, motion, lam, support, blotch.touched(support, feet), far,
                                        previous=problem)
        if p.flicker:
            def fields_energy(schedule: Schedule, graph: bool) -> torch.Tensor:
                v = fit_fields(problem, schedule, first, graph)
                return energy(v.g, v.h, problem)

            schedule = self._schedule_for("fields", fields_energy)
            with torch.no_grad():
                fields = fit_fields(problem, schedule, first)
        with torch.no_grad():
            layer = assemble_blotches(y, valid, neighbour_beta(p.radius, dev), nb, motion, support, feet,
                                      fields.g, fields.h, lam_s, 2.0 * lam_s)
            del feet
        schedule = self._schedule_for("blotches", lambda s, graph: blotch_energy(fit_blotches(layer, s, graph), layer))
        with torch.no_grad():
            s_plane = torch.zeros(t * h * w, device=dev, dtype=y.dtype).index_put_(
                (layer.s_index,), fit_blotches(layer, schedule)).view(t, 1, h, w)
            del layer
        # The solver sees S only through residuals; a candidate with no residual of its own (no
        # symmetric pair of valid neighbours) but a present neighbour on each side that the
        # shot has (a shot's ends have one side only) is decided by the candidate test alone.
        lone = support & ~any_paired(valid)
        pts = lone.view(-1).nonzero().squeeze(1)
        ti, yi, xi = pts // (h * w), (pts // w) % h, pts % w
        present, exists = present_at(motion, nb, ti, yi, xi), in_shot(nb).index_select(0, ti).T  # (J, n)
        half = nb.shape[1] // 2
        for side in (slice(None, half), slice(half, None)):
            lone.view(-1)[pts] &= present[side].any(0) | ~exists[side].any(0)
        gain, offset = unbiased(fields.g, fields.h, problem.smoother)
        return gain, offset, blotch.dilate(blotch.solid((s_plane != 0) | lone), RIM_PIXELS)

    def _problem(self, y: torch.Tensor, valid: torch.Tensor, nb: torch.Tensor, motion: Motion,
                 lam: Weights, support: torch.Tensor | None = None, touched: torch.Tensor | None = None,
                 far: Tracks | None = None, previous: Problem | None = None) -> Problem:
        """:func:`assemble` the chunk's problem for the fields (shapes as in :meth:`_fit`), with
        the temporal weights derived from ``valid`` on the spot: they are not held between the
        two passes; the long-range term's pairs leave out the tracks that land on the blotch
        ``support``, the data term the pixels S ``touched``; the second pass takes the lattice
        terms over from the first's problem (``previous``)."""
        p = self.params
        t = y.shape[0]
        return assemble(y, valid, neighbour_beta(p.radius, y.device), nb, motion, p.grid, lam,
                        gaussian_average(t, GAUGE_SIGMA, y.device), touched,
                        far.term(support) if far is not None else None, shared=not p.per_channel,
                        previous=previous)

    def _schedule_for(self, block: str, energy_after: Callable[[Schedule, bool], torch.Tensor]) -> Schedule:
        """The shipped schedule of the second pass's solve of a block (``"fields"``,
        ``"blotches"``), or one tuned once per clip on its first chunk (``autotune``) by
        minimising the block's energy after its iterations, ``energy_after(schedule, create_graph)``."""
        share = 1.0 if block == "fields" else BLOTCH_ITERATIONS
        iterations = max(1, round(share * self.params.iterations))
        if not self.params.autotune:
            return Schedule.default(iterations).to(self.device)
        if block not in self._schedules:
            self._schedules[block] = autotune(energy_after, iterations, self.device)
        return self._schedules[block]

    def _finish(self, ctx, core, g, h, repaired, motion, valid, nb, lumas) -> list[RestoredFrame]:
        """Apply the corrections, debias the blotch support, and package the core frames.

        Only the core and the r frames on each side, which its repairs read, are corrected
        (every frame when a second pass follows, which matches flows on all of them)."""
        p = self.params
        if p.second_pass and lumas is None and g is not None:
            lo, hi = 0, len(ctx)
        else:
            around = self._around(core, len(ctx))
            lo, hi = around.start, around.stop
        colour = self._colour(ctx[lo:hi])
        t, _, hh, ww = colour.shape
        # The fields stay on the grid: upsampled a block of frames at a time, read at points.
        if g is None:
            gain = torch.ones(t, 1, 1, 1, device=colour.device)
            offset = torch.zeros_like(gain)
        else:
            gain, offset = g[lo:hi], h[lo:hi]
        corrected = torch.empty_like(colour)
        for b in frame_blocks(t, (hh, ww), colour.device):  # the temporaries stay in the cache
            corrected[b] = restore(colour[b], upsample(gain[b], (hh, ww)), upsample(offset[b], (hh, ww)))
        cidx = torch.arange(core.start - lo, core.stop - lo, device=colour.device)
        # Frame indices within the span: the core's neighbours all lie in it. The support and
        # flows of a fit at a lower resolution are brought to the frame's.
        repaired, valid = blotch.resized(repaired[lo:hi], (hh, ww)), valid[lo:hi]
        motion, nb = motion.frames(lo, hi).resized((hh, ww)), nb[lo:hi] - lo
        repaired = self._grow(corrected, colour, gain, offset, repaired, motion, valid, nb, cidx)
        corrected = self._repair(corrected, colour, gain, offset, repaired, motion, valid, nb, cidx)
        if p.flicker and g is not None:
            corrected = self._unclip(corrected, colour, gain, offset, repaired, motion, valid, nb, cidx)
        if p.second_pass and lumas is None and g is not None:
            restored_luma = luma(corrected.permute(0, 2, 3, 1)).clamp(0, 1).cpu().numpy()
            return self._solve(ctx, core, list(restored_luma))
        out = []
        for i in core:
            f, j = ctx[i], i - lo
            img = corrected[j].clamp(0, 1).permute(1, 2, 0).contiguous().cpu().numpy()
            if p.strength < 1.0:
                img = f.image[..., : img.shape[-1]] + p.strength * (img - f.image[..., : img.shape[-1]])
            if f.image.shape[-1] == 4:
                img = np.concatenate([img, f.image[..., 3:]], axis=-1)
            mask = repaired[j, 0].float().cpu().numpy()
            gmap, omap = (upsample(x[j:j + 1], (hh, ww))[0].mean(0).cpu().numpy() for x in (gain, offset))
            out.append(RestoredFrame(f.index, np.ascontiguousarray(img, dtype=np.float32), mask, gmap, omap,
                                     _stats(f, mask, gmap, omap)))
        return out

    def _grow(self, corrected, colour, gain, offset, repaired, motion, valid, nb, frames: torch.Tensor) -> torch.Tensor:
        """The repaired support of ``frames`` grown by up to :data:`GROWTH_STEPS` pixels into
        the pixels next to it whose luma (corrected, unrepaired) lies more than
        :data:`GROWTH_MARGIN` from the motion-compensated neighbours' estimate
        (:meth:`_from_neighbours`). Hysteresis: next to a blotch found by the full test, a
        clear difference from the neighbours is enough, without the motion-free impulse test
        (:func:`unexplained`) that a blotch's body must pass and that its fading rim, on dense
        texture, does not. Shapes as in :meth:`_solve`; a new mask.
        """
        # Every pixel within reach is tested once; the growth then follows the ones that pass.
        reach = torch.zeros_like(repaired)
        reach[frames] = blotch.dilate(repaired[frames], GROWTH_STEPS) & ~repaired[frames]
        ring = reach.nonzero()
        ti, yi, xi = ring[:, 0], ring[:, 2], ring[:, 3]
        estimate, weight = self._from_neighbours(colour, gain, offset, repaired, motion, valid, nb, ti, yi, xi)
        margin = GROWTH_MARGIN / self.params.sensitivity
        far = ((corrected[ti, :, yi, xi] - estimate).mean(1).abs() > margin) & (weight[:, 0] > 0)
        passed = torch.zeros_like(repaired)
        passed[ti[far], 0, yi[far], xi[far]] = True
        grown = repaired
        for _ in range(GROWTH_STEPS):
            grown = grown | (blotch.dilate(grown, 1) & passed)
        return grown

    def _repair(self, corrected, colour, gain, offset, repaired, motion, valid, nb, frames: torch.Tensor) -> torch.Tensor:
        """Replace blotch-support pixels of ``frames`` by the motion-compensated neighbours' average.

        Pixels no neighbour can fill (:meth:`_from_neighbours`) get a spatial fill. Shapes as
        in :meth:`_solve`. ``corrected`` is repaired in place and returned.
        """
        sel = torch.zeros_like(repaired)
        sel[frames] = repaired[frames]
        pts = sel.nonzero()
        if pts.numel() == 0:
            return corrected
        ti, yi, xi = pts[:, 0], pts[:, 2], pts[:, 3]
        filled, weight = self._from_neighbours(colour, gain, offset, repaired, motion, valid, nb, ti, yi, xi)
        have = weight[:, 0] > 0
        corrected[ti[have], :, yi[have], xi[have]] = filled[have]
        if not bool(have.all()):
            for f in ti[~have].unique():
                hole = torch.zeros_like(repaired[f:f + 1])
                miss = ~have & (ti == f)
                hole[0, 0, yi[miss], xi[miss]] = True
                corrected[f:f + 1] = blotch.spatial_fill(corrected[f:f + 1], hole)
        return corrected

    def _unclip(self, corrected, colour, gain, offset, repaired, motion, valid, nb, frames: torch.Tensor) -> torch.Tensor:
        """Take clipped samples of ``frames`` beyond their bound where the neighbours saw them.

        A sample the scan clipped at white (:func:`clipped`) was at least that bright, so
        its correction X̂ = g (1 − μ) + μ + h is only a lower bound on the scene's value (an
        upper one at black): left as it is, a highlight that the flicker pushed into clipping
        comes out darker than in the frames around it, and pumps. Where motion-compensated
        neighbours saw the sample unclipped, their corrected average (:meth:`_from_neighbours`,
        per channel) is taken if it lies beyond the bound. Blotch repairs are left alone.
        Shapes as in :meth:`_solve`; ``corrected`` is changed in place and returned.
        """
        sel = torch.zeros_like(repaired)
        for f in frames.tolist():
            high, low = clipped(colour[f])
            sel[f, 0] = (high | low).any(0) & ~repaired[f, 0]
        pts = sel.nonzero()
        if pts.numel() == 0:
            return corrected
        ti, yi, xi = pts[:, 0], pts[:, 2], pts[:, 3]
        est, weight = self._from_neighbours(colour, gain, offset, repaired, motion, valid, nb, ti, yi, xi,
                                            unclipped=True)
        seen = weight > 0
        high, low = clipped(colour[ti, :, yi, xi])
        now = corrected[ti, :, yi, xi]
        now = torch.where(high & seen, torch.maximum(now, est), now)
        now = torch.where(low & seen, torch.minimum(now, est), now)
        corrected[ti, :, yi, xi] = now
        return corrected

    def _from_neighbours(self, colour, gain, offset, repaired, motion, valid, nb, ti, yi, xi,
                         unclipped: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The corrected, motion-compensated neighbours of the pixels (ti, yi, xi), each (n,),
        averaged with the window's weights: values (n, K) and their total weight (n, K) (0
        where no neighbour counts; the values are then 0).

        Neighbour k counts where it is usable and its own pixel is not repaired; with
        ``unclipped``, per channel, only where its sample is not clipped either. Usable: valid
        (``valid`` (T, J, 1, h, w): at the fit's size, read at the nearest pixel), or, where no
        neighbour is valid, present (a frame of the context whose flow takes the pixel inside
        the frame). ``gain``, ``offset``: the fields on their grid (T, F, Gy, Gx), read where
        the flow lands (:func:`fields_at`); other shapes as in :meth:`_solve`.
        """
        rows, cols = repaired.shape[-2:]
        valid_here = valid[ti, :, 0, yi * valid.shape[-2] // rows, xi * valid.shape[-1] // cols]  # (n, J)
        none_valid, there = ~valid_here.any(1), in_shot(nb)[ti]  # (n,), (n, J)
        ks = offsets(self.params.radius)
        beta = NEIGHBOUR_WEIGHTS[self.params.radius]
        num = colour.new_zeros(len(ti), colour.shape[1])
        den = torch.zeros_like(num)
        xf, yf = xi.to(colour.dtype), yi.to(colour.dtype)
        for j, k in enumerate(ks):
            nt = nb[ti, j]
            u = motion.at(ti, j, xf, yf)
            px, py = xf + u[:, 0], yf + u[:, 1]
            present = there[:, j] & within(px, py, (rows, cols))  # present_at, from the flow read here
            blotched = repaired[nt, 0, py.round().long().clamp(0, rows - 1), px.round().long().clamp(0, cols - 1)]
            usable = valid_here[:, j] | (present & none_valid)
            ok = (usable & ~blotched).to(colour.dtype).unsqueeze(1) * beta[abs(k) - 1]
            sample = sample_points(colour, nt, px, py)
            if unclipped:
                high, low = clipped(sample)
                ok = ok * ~(high | low)
            num += ok * restore(sample, *fields_at(gain, offset, nt, px, py, colour.shape[-2:]))
            den += ok
        return num / den.clamp(min=1e-12), den


def _stats(f: _Frame, mask: np.ndarray, gain: np.ndarray, offset: np.ndarray) -> dict[str, Any]:
    """Per-frame summary in plain types (JSON/msgpack ready)."""
    pixels = int((mask > 0).sum())
    count = int(cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)[0] - 1) if pixels else 0
    return {
        "index": f.index,
        "shot": f.shot,
        "cut": f.cut,
        "gain_mean": float(gain.mean()),
        "offset_mean": float(offset.mean()),
        "blotch_pixels": pixels,
        "blotch_fraction": pixels / mask.size,
        "blotch_count": count,
    }
