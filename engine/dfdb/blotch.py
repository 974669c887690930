"""The blotch layer: where S may live, how it moves with the flow, and how its support is repaired.

A blotch is impulsive in time: present in one frame, absent at the motion-compensated
position in every neighbour. S is therefore only allowed on pixels that differ, after the
flicker correction, from *every* valid neighbour by more than a threshold and with the same
sign (beyond the 3×3 range of each neighbour, to forgive sub-pixel misregistration). This
support constraint keeps the problem convex (it restricts S to a subspace), keeps
edges of moving objects — which differ from some neighbours but not all, or not with one
sign — out of the repair, and makes the blotch layer small enough to warp inside the solver.

After the solve, the L1 estimate of S is shrunk; it is *debiased* by replacing each pixel of
the (slightly dilated) support with the motion-compensated average of its valid, unblotched
neighbours, or by a spatial fill where no neighbour is valid.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from .flow import warp


#: Extra fraction of the threshold for pixels whose valid neighbours all lie on one side in time.
ONE_SIDED_EXTRA = 1.0


def candidates(x0: torch.Tensor, x0_nb: Iterable[torch.Tensor], valid_nb: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """Allowed support of S, (T, 1, H, W) bool.

    x0: (T, 1, H, W) flicker-corrected luma; x0_nb: its J neighbours warped onto frame t (each
    corrected with its own fields), (T, 1, H, W) each in the order of the offsets, any
    iterable (a generator keeps one in memory at a time); valid_nb: (T, J, 1, H, W) bool. A
    pixel qualifies when at least two neighbours are valid and it is brighter than the
    brightest (or darker than the darkest) pixel of every valid neighbour's 3×3 window by more
    than ``threshold`` (T, 1, 1, 1) or a number. The 3×3 range absorbs sub-pixel
    misregistration at edges, where a sharp edge in frame t meets a slightly shifted or
    interpolated edge in its neighbours.
    """
    half = valid_nb.shape[1] // 2  # offsets are ordered −r…−1, 1…r
    before, after = valid_nb[:, :half].any(1), valid_nb[:, half:].any(1)
    # Seen from one side only (a shot's first or last frames, one-sided occlusion), an
    # appearing or vanishing object can look impulsive: ask for a clearer difference there.
    threshold = threshold * (1.0 + ONE_SIDED_EXTRA * (before ^ after).float())
    above, below = torch.ones_like(before), torch.ones_like(before)
    count = torch.zeros_like(before, dtype=torch.uint8)  # valid neighbours
    for valid, x_nb in zip(valid_nb.unbind(1), x0_nb, strict=True):
        above &= ~valid | (x0 - window_max(x_nb) > threshold)
        below &= ~valid | (window_min(x_nb) - x0 > threshold)
        count += valid
    return (above | below) & (count >= 2)


def window_max(x: torch.Tensor) -> torch.Tensor:
    """Maximum over each pixel's 3×3 window of (..., H, W), edges replicated (separable)."""
    return _window(x, torch.maximum)


def window_min(x: torch.Tensor) -> torch.Tensor:
    """Minimum over each pixel's 3×3 window of (..., H, W), edges replicated (separable)."""
    return _window(x, torch.minimum)


def _window(x: torch.Tensor, pick: Callable[..., torch.Tensor]) -> torch.Tensor:
    """``pick`` (torch.maximum or torch.minimum) over each pixel's 3×3 window of (..., H, W)."""
    h, w = x.shape[-2:]
    p = F.pad(x.reshape(-1, 1, h, w), (1, 1, 1, 1), mode="replicate")
    rows = pick(p[..., :-2], p[..., 1:-1])
    rows = pick(rows, p[..., 2:], out=rows)
    del p
    out = pick(rows[..., :-2, :], rows[..., 1:-1, :])
    return pick(out, rows[..., 2:, :], out=out).view(x.shape)


def footprint(support: torch.Tensor, flows: torch.Tensor, weights: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
    """(T, 1, H, W) bool: pixels whose motion-compensated neighbour samples touch S's support.

    These are the pixels where Σ_k w_{t,k} 𝒲_{t,k}(S_{t+k}) can be non-zero.
    """
    t, j, h, w, _ = flows.shape
    out = torch.zeros(t, 1, h, w, dtype=torch.bool, device=flows.device)
    for k in range(j):
        moved = warp(support[nb[:, k]].float(), flows[:, k]) > 0
        out |= moved & (weights[:, k] != 0)
    return out


def warp_map(
    support: torch.Tensor, flows: torch.Tensor, weights: torch.Tensor, nb: torch.Tensor, rows_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sparse operator S ↦ Σ_k w_{t,k} 𝒲_{t,k}(S_{t+k}) for S on ``support``.

    support: (T, 1, H, W) bool; flows: (T, J, H, W, 2) px from t to t + k; weights: (T, J, 1,
    H, W); nb: (T, J) long; rows_mask: (T, 1, H, W) bool, the pixels to evaluate it at
    (:func:`footprint`). Returns (s_index, rows, cols, vals): S's flat indices into (T, H, W),
    and the triplets "pixel ``rows`` gets ``vals``·s[``cols``]" of the bilinear warp.
    """
    t, j, h, w, _ = flows.shape
    dev = flows.device
    s_index = support.reshape(-1).nonzero().squeeze(1)
    lookup = torch.full((t * h * w,), -1, dtype=torch.long, device=dev)
    lookup[s_index] = torch.arange(s_index.numel(), device=dev)
    rows = rows_mask.reshape(-1).nonzero().squeeze(1)
    ti, yi, xi = rows // (h * w), (rows // w) % h, rows % w
    rows_all, cols_all, vals_all = [rows[:0]], [rows[:0]], [weights.new_zeros(0)]
    for k in range(j):
        u = flows[ti, k, yi, xi]
        px, py = (xi + u[:, 0]).clamp(0, w - 1), (yi + u[:, 1]).clamp(0, h - 1)
        x0, y0 = px.floor().long(), py.floor().long()
        fx, fy = px - x0, py - y0
        base = nb[ti, k] * (h * w)
        wk = weights[ti, k, 0, yi, xi]
        for dy, dx, bw in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
            col = lookup[base + (y0 + dy).clamp(max=h - 1) * w + (x0 + dx).clamp(max=w - 1)]
            val = wk * bw
            keep = (col >= 0) & (val != 0)
            rows_all.append(rows[keep])
            cols_all.append(col[keep])
            vals_all.append(val[keep])
    return s_index, torch.cat(rows_all), torch.cat(cols_all), torch.cat(vals_all)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of (N, 1, H, W) bool by a (2·radius+1)² square: covers the soft rim."""
    if radius <= 0:
        return mask
    return F.max_pool2d(mask.float(), 2 * radius + 1, stride=1, padding=radius) > 0.5


def sample_points(frames: torch.Tensor, t: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of frames (T, C, H, W) at points (t, x, y), each (n,) → (n, C)."""
    _, c, h, w = frames.shape
    x = x.clamp(0, w - 1)
    y = y.clamp(0, h - 1)
    x0, y0 = x.floor().long(), y.floor().long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    fx, fy = (x - x0).unsqueeze(1), (y - y0).unsqueeze(1)
    at = lambda yy, xx: frames[t, :, yy, xx]  # noqa: E731
    return (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x1) * fx * (1 - fy)
            + at(y1, x0) * (1 - fx) * fy + at(y1, x1) * fx * fy)


def spatial_fill(image: torch.Tensor, hole: torch.Tensor, max_sigma: int = 32) -> torch.Tensor:
    """Fill ``hole`` (1, 1, H, W) bool in image (1, C, H, W) by normalised convolution.

    The hole is filled from the surrounding valid pixels with box averages of growing size
    until every hole pixel has support; used where no temporal neighbour can be trusted. Only
    the hole's bounding box, grown by the largest box's reach, is read.
    """
    ys, xs = hole[0, 0].nonzero(as_tuple=True)
    if ys.numel() == 0:
        return image
    reach = 2 * max_sigma + 1
    y0, y1 = max(int(ys.min()) - reach, 0), int(ys.max()) + reach + 1
    x0, x1 = max(int(xs.min()) - reach, 0), int(xs.max()) + reach + 1
    crop, todo = image[..., y0:y1, x0:x1], hole[..., y0:y1, x0:x1].clone()
    known = (~todo).float()
    filled = crop.clone()
    size = 3
    while todo.any() and size <= reach:
        num = F.avg_pool2d(crop * known, size, stride=1, padding=size // 2, count_include_pad=False)
        den = F.avg_pool2d(known, size, stride=1, padding=size // 2, count_include_pad=False)
        ok = todo & (den > 1e-3)
        filled = torch.where(ok, num / den.clamp(min=1e-3), filled)
        todo = todo & ~ok
        size = size * 2 + 1
    out = image.clone()
    out[..., y0:y1, x0:x1] = filled
    return out
