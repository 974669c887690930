"""The blotch layer: where S may live, how it moves with the flow, and how its support is repaired.

A blotch is impulsive in time: present in one frame, absent at the motion-compensated
position in every neighbour. S is therefore only allowed on pixels that differ, after the
flicker correction, from *every* neighbour by more than a threshold and with the same sign
(beyond the 3×3 range of each valid neighbour, to forgive sub-pixel misregistration; beyond a
wider range where a blotch has broken the flow and the neighbours are reached by interpolated
flow). This support constraint keeps the problem convex (it restricts S to a subspace), keeps
edges of moving objects — which differ from some neighbours but not all, or not with one
sign — out of the repair, and makes the blotch layer small enough to warp inside the solver.
One neighbour may be let off where dirt is dense: where it has a spot of its own there (a
blotch of the next frame that covers the place of this one's), it explains nothing.

After the solve, only the :func:`solid` parts of the support are kept (a blotch is a patch,
not a line or a speck), and the L1 estimate of S, which is shrunk, is *debiased* by replacing
each pixel of the (slightly dilated) support with the motion-compensated average of its
usable, unblotched neighbours, or by a spatial fill where there is none.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .flow import Motion, fill, frame_blocks, warp
from .objective import pair_weights


#: Extra fraction of the threshold for pixels whose valid neighbours all lie on one side in time.
ONE_SIDED_EXTRA = 1.0
#: Window radius (px) of the neighbours where the flow is interpolated (see :func:`candidates`).
WIDE_RADIUS = 3


def candidates(x0: torch.Tensor, x0_nb: Iterable[torch.Tensor], valid_nb: torch.Tensor,
               present: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
               exists: torch.Tensor, threshold: float | torch.Tensor,
               spotted_nb: Iterable[torch.Tensor] | None = None, within: torch.Tensor | None = None) -> torch.Tensor:
    """Allowed support of S, (T, 1, H, W) bool.

    x0: (T, 1, H, W) flicker-corrected luma; x0_nb: its J neighbours warped onto frame t (each
    corrected with its own fields), (T, 1, H, W) each in the order of the offsets, any
    iterable (a generator keeps one in memory at a time); valid_nb: (T, J, 1, H, W) bool, where
    the flow to the neighbour passed its consistency check; present(t, y, x): for pixels of
    frames t, rows y, columns x (each (n,)), (J, n) bool, where the neighbour exists and the
    flow (valid or interpolated) lands inside it (asked at the few pixels that need it); exists: (T, J)
    bool, the neighbour is a frame of the shot; threshold: (T, 1, 1, 1) or a number;
    spotted_nb: for each neighbour in the order of x0_nb, (T, 1, H, W) bool, where it has
    content nearby that the frame beyond it does not explain (:func:`dfdb.restorer.unexplained`),
    or None. A pixel qualifies in one of two ways:

    - at least two neighbours are valid and it is brighter than the brightest (or darker than
      the darkest) pixel of every valid neighbour's 3×3 window by more than ``threshold``
      (twice that when the valid neighbours all lie on one side in time). The 3×3 range
      absorbs sub-pixel misregistration at edges. Where three or more are valid, one that
      it does not beat is forgiven if it is spotted there: two blotches of consecutive
      frames that overlap would otherwise each explain the other;
    - the flow is not valid on both sides — a blotch breaks the flow around itself — but every
      neighbour of the shot (two at least) is present, and it beats every such neighbour's
      (2·:data:`WIDE_RADIUS` + 1)² window by ``threshold``: the wide window absorbs the error
      of the interpolated flow. Near a shot's ends, where the neighbours of the shot all lie
      on one side, by twice that, as in the first test.

    within: (T, 1, H, W) bool, the pixels to test (the others are not candidates), or None for
    all of them. The caller's other conditions (the motion-free impulse test) leave a few per
    cent of the pixels, so the test runs at those pixels only, on the neighbours' windows
    read there (:func:`window_range`).
    """
    t, _, h, w = x0.shape
    half = valid_nb.shape[1] // 2  # offsets are ordered −r…−1, 1…r
    pts = (within.reshape(-1) if within is not None else x0.new_ones(t * h * w, dtype=torch.bool)).nonzero().squeeze(1)
    ti, yi, xi = pts // (h * w), (pts // w) % h, pts % w

    def at(plane: torch.Tensor) -> torch.Tensor:
        """(T, 1, H, W) → its values at the pixels tested, (n,)."""
        return plane.reshape(-1).index_select(0, pts)

    x = at(x0)
    valid = torch.stack([at(v) for v in valid_nb.unbind(1)])  # (J, n)
    there = exists.index_select(0, ti).T  # (J, n)
    before, after = valid[:half].any(0), valid[half:].any(0)
    threshold = torch.as_tensor(threshold, dtype=x0.dtype, device=x0.device).expand(t, 1, 1, 1).reshape(t)[ti]
    narrow_threshold = one_sided(threshold, before, after)
    above, below = torch.ones_like(before), torch.ones_like(before)
    forgiven_above, forgiven_below = torch.zeros_like(before, dtype=torch.uint8), torch.zeros_like(before, dtype=torch.uint8)
    # The wide test's pixels: a subset, with windows of their own.
    wide = (~(before & after) & (there.sum(0) >= 2)).nonzero().squeeze(1)
    wide_threshold = one_sided(threshold, there[:half].any(0), there[half:].any(0))[wide]
    wide_above, wide_below = torch.ones_like(wide, dtype=torch.bool), torch.ones_like(wide, dtype=torch.bool)
    present_wide = present(ti[wide], yi[wide], xi[wide]) if wide.numel() else None  # (J, n_wide)
    spots = spotted_nb if spotted_nb is not None else (None for _ in range(valid_nb.shape[1]))
    for k, (x_nb, spot) in enumerate(zip(x0_nb, spots, strict=True)):
        skip = ~valid[k]
        highest, lowest = window_range(x_nb, ti, yi, xi, 1)
        beats_above = skip | (x - highest > narrow_threshold)
        beats_below = skip | (lowest - x > narrow_threshold)
        if spot is not None:
            spot = at(spot)
            forgiven_above += ~beats_above & spot
            forgiven_below += ~beats_below & spot
            beats_above |= spot
            beats_below |= spot
        above &= beats_above
        below &= beats_below
        if wide.numel():
            highest, lowest = window_range(x_nb, ti[wide], yi[wide], xi[wide], WIDE_RADIUS)
            absent, seen, xw = ~there[k][wide], present_wide[k], x[wide]
            wide_above &= absent | (seen & (xw - highest > wide_threshold))
            wide_below &= absent | (seen & (lowest - xw > wide_threshold))
    count = valid.sum(0)
    forgivable = (count >= 3).to(torch.uint8)
    above &= forgiven_above <= forgivable
    below &= forgiven_below <= forgivable
    out = torch.zeros(t, 1, h, w, dtype=torch.bool, device=x0.device)
    found = (above | below) & (count >= 2)
    found[wide] |= wide_above | wide_below
    out.view(-1)[pts] = found
    return out


def one_sided(threshold: torch.Tensor, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """``threshold`` raised by :data:`ONE_SIDED_EXTRA` of itself where the neighbours lie on
    one side in time only (``before`` xor ``after``, bool, broadcastable to it).

    Seen from one side only (a shot's first or last frames, one-sided occlusion), an appearing
    or vanishing object can look impulsive: a clearer difference is asked for there.
    """
    return threshold * (1.0 + ONE_SIDED_EXTRA * (before ^ after).float())


def any_of(masks: torch.Tensor) -> torch.Tensor:
    """(T, J, ...) bool → (T, ...): where any of the J masks is true, by J − 1 elementwise ors
    (``masks.any(1)``, a reduction of bools over a middle axis, is some 30 times slower)."""
    out = masks[:, 0].clone()
    for j in range(1, masks.shape[1]):
        out |= masks[:, j]
    return out


def _running_max(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Maximum over the 2·radius+1 samples around each one along ``dim``, edges replicated."""
    n, edge = x.shape[dim], list(x.shape)
    edge[dim] = radius
    m = torch.cat([x.narrow(dim, 0, 1).expand(edge), x, x.narrow(dim, n - 1, 1).expand(edge)], dim)
    span, k = 1, 2 * radius + 1
    while span < k:
        step = min(span, k - span)
        m = torch.maximum(m.narrow(dim, 0, m.shape[dim] - step), m.narrow(dim, step, m.shape[dim] - step))
        span += step
    return m


def window_range(plane: torch.Tensor, t: torch.Tensor, y: torch.Tensor, x: torch.Tensor, radius: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximum and minimum of ``plane`` (T, 1, H, W) over the (2·radius+1)² windows around the
    pixels (t, y, x), each (n,) long, clipped at the edges: (n,) each. A gather per pixel of
    the window: for a few per cent of the pixels, cheaper than the windows of whole planes."""
    h, w = plane.shape[-2:]
    flat = plane.reshape(-1)
    base = t * (h * w)
    cols = [(x + dx).clamp(0, w - 1) for dx in range(-radius, radius + 1)]
    highest = lowest = None
    for dy in range(-radius, radius + 1):
        row = base + (y + dy).clamp(0, h - 1) * w
        for col in cols:
            v = flat.index_select(0, row + col)
            highest = v if highest is None else torch.maximum(highest, v)
            lowest = v if lowest is None else torch.minimum(lowest, v)
    return highest, lowest


def solid(mask: torch.Tensor) -> torch.Tensor:
    """The connected parts (8-neighbourhood) of ``mask`` (N, 1, H, W) bool that hold a 2×2 block.

    A blotch is a patch; what a misregistered edge or a single noisy pixel leaves in the
    support is a thin line or a speck, which this drops.
    """
    blocks = torch.zeros_like(mask)  # top-left corners of 2×2 blocks
    blocks[..., :-1, :-1] = mask[..., :-1, :-1] & mask[..., :-1, 1:] & mask[..., 1:, :-1] & mask[..., 1:, 1:]
    blocks = blocks.cpu().numpy()
    planes = mask.cpu().numpy()
    out = np.zeros_like(planes)
    for i in np.flatnonzero(blocks.any((1, 2, 3))):
        labels = cv2.connectedComponents(planes[i, 0].astype(np.uint8), connectivity=8)[1]
        out[i, 0] = np.isin(labels, np.unique(labels[blocks[i, 0]]))
    return torch.from_numpy(out).to(mask.device)


def footprints(support: torch.Tensor, motion: Motion, pairs: torch.Tensor, nb: torch.Tensor) -> list[torch.Tensor]:
    """For each neighbour k, the pixels whose motion-compensated sample of S_{t+k} touches S's
    support: flat indices into (T, H, W), ascending, one tensor per k.

    These are the pixels where the term w_{t,k} 𝒲_{t,k}(S_{t+k}) of the residual can be
    non-zero. support: (T, 1, H, W) bool; motion: the flows (:class:`~dfdb.flow.Motion`);
    pairs: (T, J, 1, H, W) bool, where w_{t,k} ≠ 0 (:func:`~dfdb.objective.paired`); nb: (T, J)
    long. Only the frames whose neighbour k has a support are warped, a block at a time.
    """
    t, _, h, w = support.shape
    some = support.reshape(t, -1).any(1)  # frames with a support at all
    out = []
    for k in range(nb.shape[1]):
        frames = some[nb[:, k]].nonzero().squeeze(1)  # only these can reach one
        found = [frames.new_empty(0)]
        for b in frame_blocks(frames.numel(), (h, w), support.device):
            at = frames[b]
            moved = warp(support[nb[at, k]].float(), motion.dense(at, k)) > 0
            hit = (moved & pairs[at, k]).view(len(at), h * w).nonzero()
            found.append(at[hit[:, 0]] * (h * w) + hit[:, 1])
        out.append(torch.cat(found))
    return out


def touched(support: torch.Tensor, footprints: list[torch.Tensor]) -> torch.Tensor:
    """(T, 1, H, W) bool: the pixels whose residual the blotch layer enters, its ``support``
    (T, 1, H, W) bool and its :func:`footprints`."""
    out = support.clone()
    for pixels in footprints:
        out.view(-1)[pixels] = True
    return out


def warp_map(support: torch.Tensor, motion: Motion, valid: torch.Tensor, beta: torch.Tensor, nb: torch.Tensor,
             footprints: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sparse operator S ↦ Σ_k w_{t,k} 𝒲_{t,k}(S_{t+k}) for S on ``support``.

    support: (T, 1, H, W) bool; motion: the flows from t to t + k (:class:`~dfdb.flow.Motion`);
    valid: (T, J, 1, H, W) bool and beta (J,), which give the weights
    (:func:`~dfdb.objective.pair_weights`); nb: (T, J) long; footprints: :func:`footprints`,
    the pixels to evaluate each term at. Returns (s_index, rows, cols, vals): S's flat indices
    into (T, H, W), and the triplets "pixel ``rows`` (flat into (T, H, W)) gets
    ``vals``·s[``cols``]" of the bilinear warp.
    """
    t, j, _, h, w = valid.shape
    dev = valid.device
    s_index = support.reshape(-1).nonzero().squeeze(1)
    lookup = torch.full((t * h * w,), -1, dtype=torch.int32, device=dev)
    lookup[s_index] = torch.arange(s_index.numel(), device=dev, dtype=torch.int32)
    per_pixel = valid.reshape(t, j, h * w)
    rows, cols, vals = [], [], []
    for k, pixels in enumerate(footprints):
        ti, pixel = pixels // (h * w), pixels % (h * w)
        yi, xi = (pixel // w).to(motion.field.dtype), (pixel % w).to(motion.field.dtype)
        u = motion.at(ti, k, xi, yi)
        wk = pair_weights(per_pixel[ti, :, pixel], beta)[:, k]
        px, py = (xi + u[:, 0]).clamp(0, w - 1), (yi + u[:, 1]).clamp(0, h - 1)
        x0, y0 = px.floor().long(), py.floor().long()
        fx, fy = px - x0, py - y0
        x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
        base = nb[:, k].index_select(0, ti) * (h * w)
        top, bottom = base + y0 * w, base + y1 * w
        for at_corner, bw in ((top + x0, (1 - fx) * (1 - fy)), (top + x1, fx * (1 - fy)),
                              (bottom + x0, (1 - fx) * fy), (bottom + x1, fx * fy)):
            rows.append(pixels)
            cols.append(lookup.index_select(0, at_corner))
            vals.append(wk * bw)
    if not rows:
        empty = s_index.new_empty(0)
        return s_index, empty, empty, motion.field.new_empty(0)
    row, col, val = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    keep = ((col >= 0) & (val != 0)).nonzero().squeeze(1)
    return s_index, row.index_select(0, keep), col.index_select(0, keep).long(), val.index_select(0, keep)


def resized(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bool mask (..., h, w) at ``size`` (H, W), each pixel from the nearest one."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    flat = mask.reshape(-1, 1, *mask.shape[-2:]).to(torch.uint8)
    return F.interpolate(flat, size=tuple(size), mode="nearest").view(*mask.shape[:-2], *size).bool()


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of (N, 1, H, W) bool by a (2·radius+1)² square: covers the soft rim.

    On the CPU by OpenCV, plane by plane (its vectorised passes run three to four times as
    fast as torch's); elsewhere as a running maximum along rows, then columns."""
    if radius <= 0:
        return mask
    if mask.device.type != "cpu":
        return _running_max(_running_max(mask, radius, -1), radius, -2)
    planes = mask.reshape(-1, *mask.shape[-2:])
    out = torch.empty_like(planes)
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    for plane, into in zip(planes.numpy().view(np.uint8), out.numpy().view(np.uint8)):
        cv2.dilate(plane, kernel, dst=into)  # the border takes no part, as when the window is clipped
    return out.view(mask.shape)


#: Side (px) of the tiles that :func:`spatial_fill` groups a hole's pixels by.
FILL_TILE = 128


def spatial_fill(image: torch.Tensor, hole: torch.Tensor, reach: int = 65) -> torch.Tensor:
    """Fill ``hole`` (1, 1, H, W) bool in image (1, C, H, W) by :func:`flow.fill`.

    Used where no temporal neighbour can be trusted. Only boxes around the hole, grown by
    ``reach`` px, are read and filled: one around the hole's pixels in each tile of
    :data:`FILL_TILE` px where those boxes together are smaller than the one around all of it
    (a few specks far apart), else that one. The box sums that fill a pixel reach less than
    ``reach`` px from it unless the hole is wider than that, so the result does not depend
    on the choice.
    """
    ys, xs = (v.cpu().numpy() for v in hole[0, 0].nonzero(as_tuple=True))
    if ys.size == 0:
        return image
    h, w = hole.shape[-2:]
    tiles, which = np.unique((ys // FILL_TILE) * w + xs // FILL_TILE, return_inverse=True)

    def box(at: np.ndarray) -> tuple[int, int, int, int]:
        return (max(int(xs[at].min()) - reach, 0), max(int(ys[at].min()) - reach, 0),
                min(int(xs[at].max()) + reach + 1, w), min(int(ys[at].max()) + reach + 1, h))

    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    parts = [(at, box(at)) for at in (np.flatnonzero(which == i) for i in range(tiles.size))]
    every = np.arange(ys.size)
    if sum(area(b) for _, b in parts) >= area(box(every)):
        parts = [(every, box(every))]
    mask = hole[0, 0].cpu().numpy()
    out = image.clone()
    for at, (x0, y0, x1, y1) in parts:
        crop = np.ascontiguousarray(image[0, :, y0:y1, x0:x1].permute(1, 2, 0).cpu().numpy())
        filled = fill(crop, mask[y0:y1, x0:x1])[ys[at] - y0, xs[at] - x0]  # (n, C)
        out[0, :, torch.from_numpy(ys[at]), torch.from_numpy(xs[at])] = torch.from_numpy(filled).T.to(image.device)
    return out
