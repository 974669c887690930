"""Quality metrics of a restored clip against the clean clip it was degraded from.

All clips are (T, H, W, 3) float32 in [0, 1]; masks are (T, H, W) bool (truth) or float in
[0, 1] (a restorer's output, thresholded at 0.5). Every function is pure and deterministic.
"""
from __future__ import annotations

import cv2
import numpy as np

#: Rec. 709 luma weights: brightness errors are measured on luma, as a viewer sees flicker.
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
#: Mean luma error of a flow-warped clean frame above which a pair is taken as a shot cut
#: (within a shot it is 0.003–0.012 on the benchmark's clips, across a cut 0.09 and more).
CUT_ERROR = 0.05


def luma(clip: np.ndarray) -> np.ndarray:
    """(..., 3) → (...) float32 Rec. 709 luma."""
    return (np.asarray(clip, np.float32) @ LUMA).astype(np.float32)


def psnr(restored: np.ndarray, clean: np.ndarray) -> float:
    """Mean over frames of the per-frame PSNR in dB (peak 1.0), capped at 100 dB."""
    mse = ((restored.astype(np.float32) - clean.astype(np.float32)) ** 2).reshape(len(clean), -1).mean(axis=1)
    return float(np.mean(10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def _ssim_frame(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two (H, W) images in [0, 1]: gaussian window σ = 1.5, K1 = 0.01, K2 = 0.03."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def ssim(restored: np.ndarray, clean: np.ndarray) -> float:
    """Mean over frames of the SSIM of the luma (Wang et al. 2004, gaussian window)."""
    ra, ca = luma(restored), luma(clean)
    return float(np.mean([_ssim_frame(r, c) for r, c in zip(ra, ca)]))


def region_stat(values: np.ndarray, grid: int, stat) -> np.ndarray:
    """(T, grid, grid): ``stat(cell, axis=1)`` over the pixels of each cell of (T, H, W) ``values``."""
    t, h, w = values.shape
    rows = np.array_split(np.arange(h), grid)
    cols = np.array_split(np.arange(w), grid)
    out = np.empty((t, grid, grid), np.float32)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            out[:, i, j] = stat(values[:, r[0]:r[-1] + 1, c[0]:c[-1] + 1].reshape(t, -1), axis=1)
    return out


def region_means(clip: np.ndarray, grid: int = 4) -> np.ndarray:
    """(T, grid, grid) mean luma of each cell of a grid × grid partition of every frame."""
    return region_stat(luma(clip), grid, np.mean)


def flicker_index(restored: np.ndarray, clean: np.ndarray, grid: int = 4) -> float:
    """Residual flicker: temporal std of the regional brightness error, mean over regions.

    For each cell of a ``grid`` × ``grid`` partition, the per-frame median of the
    (restored − clean) luma error; its standard deviation over time; averaged over the cells.
    The median makes it a measure of brightness, not of blotches (a blotch covering less than
    half a cell does not move it). A constant bias scores 0 (it is not flicker); a fade that a
    method flattens scores high.
    """
    err = region_stat(luma(restored) - luma(clean), grid, np.median)
    return float(err.std(axis=0).mean())


def blotch_error(restored: np.ndarray, clean: np.ndarray, true_mask: np.ndarray) -> float | None:
    """Mean absolute error (all channels) inside the true blotch mask; None without blotches."""
    if not true_mask.any():
        return None
    return float(np.abs(restored[true_mask] - clean[true_mask]).mean())


def detection(pred_mask: np.ndarray, true_mask: np.ndarray) -> tuple[float | None, float | None]:
    """(precision, recall) of a detected blotch mask (> 0.5) against the truth.

    Precision is None when nothing was detected, recall None when there was nothing to find.
    """
    pred = pred_mask > 0.5
    hits = float((pred & true_mask).sum())
    precision = hits / pred.sum() if pred.any() else None
    recall = hits / true_mask.sum() if true_mask.any() else None
    return precision, recall


def false_repairs(pred_mask: np.ndarray) -> float:
    """Fraction of pixels flagged as blotches (> 0.5): on blotch-free footage, all are false."""
    return float((pred_mask > 0.5).mean())


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _dis(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, 2) DIS optical flow from luma ``a`` to luma ``b`` (pixels; a(x) ≈ b(x + u))."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_to_u8(a), _to_u8(b), None)


def _sample(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``img`` sampled at x + flow(x), bilinear, replicated border."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def clean_motion(clean: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Forward flow t → t+1 of the clean clip and its validity mask, for every pair.

    A pixel is valid when it stays inside the frame and the backward flow brings it back to
    within 1 px (occlusions fail that test). Pairs where even the clean clip does not warp
    onto itself (a shot cut: mean luma error over the frame > :data:`CUT_ERROR`) get an
    empty mask.
    """
    y = luma(clean)
    h, w = y.shape[1:]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = []
    for a, b in zip(y[:-1], y[1:]):
        fwd, bwd = _dis(a, b), _dis(b, a)
        round_trip = fwd + _sample(bwd, fwd)
        x2, y2 = gx + fwd[..., 0], gy + fwd[..., 1]
        valid = (np.hypot(round_trip[..., 0], round_trip[..., 1]) < 1.0) & (x2 >= 0) & (x2 <= w - 1) & (y2 >= 0) & (y2 <= h - 1)
        if np.abs(a - _sample(b, fwd)).mean() > CUT_ERROR:
            valid[:] = False
        out.append((fwd, valid))
    return out


def warping_error(clip: np.ndarray, motion: list[tuple[np.ndarray, np.ndarray]]) -> float | None:
    """Temporal warping error: mean |Y_t − Y_{t+1}(x + u)| on valid pixels (luma, [0, 1] units).

    ``motion`` is :func:`clean_motion` of the clean clip, so every method is judged along the
    same, true motion. The clean clip's own value is the floor (grain and interpolation);
    flicker and temporal blotches raise it. None when no pair has valid pixels.
    """
    y = luma(clip)
    total, count = 0.0, 0
    for t, (flow, valid) in enumerate(motion):
        if valid.any():
            diff = np.abs(y[t] - _sample(y[t + 1], flow))
            total += float(diff[valid].sum())
            count += int(valid.sum())
    return total / count if count else None


def brightness_curve(clip: np.ndarray, grid: int = 4, cell: tuple[int, int] = (1, 1)) -> np.ndarray:
    """(T,) mean luma of one grid cell per frame: the curve a viewer sees flicker in."""
    return region_means(clip, grid)[:, cell[0], cell[1]]
