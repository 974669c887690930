"""Motion between frames: flicker-invariant features, DIS optical flow, validity masks, warps.

Flow is the weakest link of the method (blotches and flicker both break brightness
constancy), so it is computed on a feature that neither changes: luma normalised by its local
mean and contrast. Flow from frame t to t+k is a field ``u`` (H, W, 2) in pixels, (dx, dy),
such that frame_t(x) ≈ frame_{t+k}(x + u(x)).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def luma(image: np.ndarray) -> np.ndarray:
    """Rec.709 luma of (..., H, W, C) float32 in [0, 1]; 1-channel images pass through."""
    if image.shape[-1] == 1:
        return image[..., 0]
    return image[..., 0] * 0.2126 + image[..., 1] * 0.7152 + image[..., 2] * 0.0722


def flicker_invariant(y: np.ndarray, sigma: float = 6.0) -> np.ndarray:
    """Locally contrast-normalised luma as uint8 (H, W): invariant to smooth gain and offset.

    (y − local mean) / local std, with the mean and std taken over a Gaussian of ``sigma`` px,
    mapped to 8 bits around 128. A gain/offset field that is smooth on the scale of sigma
    cancels out, so the flow sees the same picture in a dark and in a bright frame.
    """
    y = y.astype(np.float32, copy=False)
    mean = cv2.GaussianBlur(y, (0, 0), sigma)
    centred = y - mean
    std = np.sqrt(cv2.GaussianBlur(centred * centred, (0, 0), sigma)) + 0.01
    return np.clip(centred / std * 40.0 + 128.0, 0, 255).astype(np.uint8)


#: Flow is never computed on fewer columns than this, whatever the scale asks.
MIN_FLOW_WIDTH = 192


@dataclass(frozen=True)
class Flow:
    """A flow t→t+k as it is cached: the field on the grid it was computed on, (h, w, 2)
    float32 in pixels of that grid, and its validity at the frame's resolution (H, W), packed
    to one bit per pixel (``np.packbits``). :meth:`unpack` gives both at the frame's resolution."""

    field: np.ndarray
    valid_bits: np.ndarray

    def unpack(self, flow: np.ndarray, valid: np.ndarray) -> None:
        """Write the flow (H, W, 2) float32 px and its validity (H, W) bool into ``flow`` and ``valid``."""
        upscale(self.field, valid.shape, out=flow)
        valid[...] = np.unpackbits(self.valid_bits, count=valid.size).reshape(valid.shape).view(bool)


@dataclass
class FlowEstimator:
    """DIS optical flow at a fraction of the resolution (flow is smooth; cost falls as scale²).

    Small frames are not scaled below ``MIN_FLOW_WIDTH`` columns: there the detail that the
    flow needs would be lost, and the cost is small anyway. OpenCV's DIS object carries state
    from one call to the next, so each pair gets a fresh one: a pair's flow must not depend on
    which pairs were matched before it (chunking, render order).
    """

    preset: str = "fast"
    scale: float = 0.5

    def size(self, shape: tuple[int, int]) -> tuple[int, int]:
        """(rows, cols) of the grid the flow of H×W frames (``shape``) is computed on."""
        h, w = shape
        scale = max(self.scale, min(1.0, MIN_FLOW_WIDTH / w))
        if scale >= 1.0:
            return h, w
        return max(8, round(h * scale)), max(8, round(w * scale))

    def match(self, a: np.ndarray, b: np.ndarray) -> tuple[Flow, Flow]:
        """Flows a→b and b→a between feature images (uint8, H×W).

        The forward–backward consistency is decided at the frame's resolution, where its
        tolerance is set, on the flows upsampled as :meth:`Flow.unpack` upsamples them.
        """
        h, w = self.size(a.shape)
        small = (a, b) if (h, w) == a.shape else (cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA),
                                                   cv2.resize(b, (w, h), interpolation=cv2.INTER_AREA))
        fwd, bwd = self._dis().calc(small[0], small[1], None), self._dis().calc(small[1], small[0], None)
        fwd_full, bwd_full = upscale(fwd, a.shape), upscale(bwd, a.shape)
        return (Flow(fwd, np.packbits(consistent(fwd_full, bwd_full))),
                Flow(bwd, np.packbits(consistent(bwd_full, fwd_full))))

    def _dis(self) -> cv2.DISOpticalFlow:
        return cv2.DISOpticalFlow_create(_DIS_PRESETS[self.preset])


def upscale(flow: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Flow (h, w, 2) float32 in pixels of its grid → (H, W, 2) float32 in pixels of the H×W
    frame (bilinear, ``cv2.resize``), written into ``out`` when given."""
    h, w = flow.shape[:2]
    rows, cols = size
    if (h, w) == (rows, cols):
        if out is None:
            return flow
        out[...] = flow
        return out
    out = cv2.resize(flow, (cols, rows), dst=out, interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= cols / w
    out[..., 1] *= rows / h
    return out


def sample(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image (H, W[, C]) sampled at x + flow(x), bilinear, border replicated (numpy/OpenCV)."""
    tx, ty = targets(flow)
    return cv2.remap(image, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def targets(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where flow (H, W, 2) px takes each pixel: x + u, y + v, each (H, W) float32."""
    h, w = flow.shape[:2]
    return flow[..., 0] + np.arange(w, dtype=np.float32), flow[..., 1] + np.arange(h, dtype=np.float32)[:, None]


def consistent(forward: np.ndarray, backward: np.ndarray, tol: float = 0.75) -> np.ndarray:
    """Validity mask (H, W) bool of the forward flow t→t+k by forward–backward consistency.

    A pixel is valid when following the forward flow and then the backward flow returns within
    ``tol + 5 %`` of the displacement of where it started, and lands inside the frame.
    Occluded and dis-occluded pixels and flow failures fail this test.
    """
    h, w = forward.shape[:2]
    fx, fy = forward[..., 0], forward[..., 1]
    back = sample(backward, forward)
    ex, ey = fx + back[..., 0], fy + back[..., 1]  # the round trip
    tx, ty = targets(forward)
    err, mag = np.sqrt(ex * ex + ey * ey), np.sqrt(fx * fx + fy * fy)
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return (err <= tol + 0.05 * mag) & inside


def warp(frames: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Bilinear warp in torch: frames (N, C, H, W) sampled at x + flow, flow (N, H, W, 2) px.

    Differentiable in ``frames``; autograd provides the adjoint (splatting) of the warp.
    """
    h, w = frames.shape[2:]
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device, dtype=flow.dtype),
                            torch.arange(w, device=flow.device, dtype=flow.dtype), indexing="ij")
    unit = flow.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    grid = (flow + torch.stack([xs, ys], dim=-1)).mul_(unit).sub_(1.0)  # grid_sample's coordinates
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=True)
