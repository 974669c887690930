"""Assembling one chunk's two blocks of the objective from full-resolution planes: the
fields' :class:`~dfdb.objective.Problem` and the blotch layer's :class:`~dfdb.objective.Blotches`.

The objective's data term is a per-frame mean over pixels. It is evaluated on sample points:
for the fields, a regular lattice (about ``LATTICE_POINTS`` per frame), each point carrying
the weight of the valid pixels it stands for; for S, every pixel where the blotch layer
enters the residual, at full resolution, each the weight of one pixel.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from . import blotch
from .flow import Motion, warp_points
from .linear import LinearMap
from .model import restore
from .objective import (Blotches, Points, Problem, Weights, affine_residual, any_paired, coefficients, field_table,
                        pair_weights, per_frame, sides)

#: Lattice points per frame for the smooth part of the data term: some forty per control
#: point of a 6×6 grid. Halving it from 3 000 made the solve 15 % faster and moved the
#: benchmark's PSNR by −0.10…+0.03 dB.
LATTICE_POINTS = 1_500


def lattice_stride(size: tuple[int, int], points: int = LATTICE_POINTS) -> int:
    """Spacing in pixels of a square lattice with about ``points`` points on an H×W frame."""
    return max(1, int(math.sqrt(size[0] * size[1] / points)))


def lattice_points(size: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and columns (P,) of the data term's lattice on an H×W frame (``size``)."""
    return lattice(size, lattice_stride(size), device)


def lattice(size: tuple[int, int], stride: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and columns (P,) of every ``stride``-th pixel in both directions, centred in its cell."""
    h, w = size
    ys = torch.arange(stride // 2, h, stride, device=device)
    xs = torch.arange(stride // 2, w, stride, device=device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return yy.reshape(-1), xx.reshape(-1)


def basis_at(yy: torch.Tensor, xx: torch.Tensor, size: tuple[int, int], grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear basis of the control grid at pixels (yy, xx): (n, 4) flat node indices, (n, 4) values.

    Control points sit on the frame's corners and evenly in between, exactly as
    :func:`dfdb.model.upsample` (``align_corners=True``) places them.
    """
    (h, w), (gy, gx) = size, grid
    py = yy.to(torch.float32) * ((gy - 1) / max(h - 1, 1))
    px = xx.to(torch.float32) * ((gx - 1) / max(w - 1, 1))
    y0 = py.floor().long().clamp(0, max(gy - 2, 0))
    x0 = px.floor().long().clamp(0, max(gx - 2, 0))
    fy, fx = (py - y0).clamp(0, 1), (px - x0).clamp(0, 1)
    y1, x1 = (y0 + 1).clamp(max=gy - 1), (x0 + 1).clamp(max=gx - 1)
    corner = torch.stack([y0 * gx + x0, y0 * gx + x1, y1 * gx + x0, y1 * gx + x1], 1)
    phi = torch.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], 1)
    return corner, phi


def assemble(
    y: torch.Tensor,
    valid: torch.Tensor,
    beta: torch.Tensor,
    nb: torch.Tensor,
    motion: Motion,
    grid: tuple[int, int],
    lam: Weights,
    smoother: torch.Tensor,
    touched: torch.Tensor | None = None,
    far: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    shared: bool = False,
    previous: Problem | None = None,
) -> Problem:
    """The chunk's problem for the fields, with the pixels ``touched`` (T, 1, H, W) bool, whose
    residuals the blotch layer takes up (:func:`~dfdb.blotch.touched`), left out; None: none.

    y: (T, K, H, W); valid: (T, J, 1, H, W) bool, the neighbours' validity, and beta (J,) the
    offsets' weights, which give the temporal weights (:func:`~dfdb.objective.pair_weights`);
    nb: (T, J); motion: the flows (:class:`~dfdb.flow.Motion`). The weights and the warped
    neighbours (:func:`~dfdb.flow.warp_points`) are evaluated at the lattice's points only.
    ``far``: the long-range term's (nb (T, M), tracked positions (T, M, P, 2) px as (x, y),
    tracked values (T, P, M, K), weights (T, P, M)) at the points of :func:`lattice_points`, or
    None; its fields are read where the tracks are (:func:`slot_basis`). ``shared``: one
    correction for all K planes. ``previous``: a problem of the same chunk (the first pass's),
    whose lattice terms are taken over: of them only the weights depend on ``touched``.
    """
    t, _, h, w = y.shape
    dev = y.device
    counted = any_paired(valid)  # (T, 1, H, W): pixels with a residual of their own
    if touched is None:
        touched = torch.zeros_like(counted)

    # The lattice stands for the valid pixels that S leaves to the fields, in equal shares.
    ly, lx = lattice_points((h, w), dev)
    on = counted[:, 0, ly, lx] & ~touched[:, 0, ly, lx]  # (T, P)
    # Counted in int32: count_nonzero and a plain sum widen the whole (T, H·W) mask first.
    n_counted = counted.view(t, -1).sum(1, dtype=torch.int32).to(y.dtype)
    n_taken = (touched & counted).view(t, -1).sum(1, dtype=torch.int32).to(y.dtype)
    share = (n_counted - n_taken) / (h * w) / on.sum(1).clamp(min=1).to(y.dtype)
    own = torch.arange(t, device=dev).unsqueeze(1)
    slots = torch.cat([own, nb], 1)  # (T, S): the frame each slot reads
    q_lat = on.to(y.dtype) * share.unsqueeze(1)
    y_lat = y[:, :, ly, lx].permute(0, 2, 1)  # (T, P, K)
    lat_frame, lat_y, lat_x = own.expand(t, ly.numel()).reshape(-1), ly.repeat(t), lx.repeat(t)
    if previous is not None:
        lat = dataclasses.replace(previous.lattice, q=q_lat)
    else:
        basis = point_basis(lat_frame, lat_y, lat_x, t, (h, w), grid)
        w_lat = pair_weights(valid[:, :, 0, ly, lx], beta).permute(0, 2, 1)  # (T, P, J)
        y_nb = warp_points(y, motion, nb, lat_frame, lat_y, lat_x).view(t, ly.numel(), nb.shape[1], -1)  # (T, P, J, K)
        coef, constant = coefficients(y_lat, y_nb, w_lat)
        lat = Points(q=q_lat, coef=coef, constant=constant, frame=own, basis=basis, slots=slots,
                     sides=sides(y_lat, y_nb, w_lat))
    far_lattice = None
    if far is not None:
        # Each lattice point stands for 1/P of the frame; blotch pixels stay out (S is not in the term).
        far_nb, far_pos, far_y, far_w = far
        counted = (far_w.sum(2) > 0) & ~touched[:, 0, ly, lx]
        coef, constant = coefficients(y_lat, far_y, far_w)
        if previous is not None and previous.far is not None:
            far_basis = previous.far.basis  # the tracks' positions do not depend on the support
        else:
            far_pos = far_pos.transpose(1, 2).reshape(-1, far_nb.shape[1], 2)  # (T·P, M, 2)
            far_basis = slot_basis(torch.cat([own, far_nb], 1)[lat_frame], lat_y, lat_x, far_pos[..., 1],
                                   far_pos[..., 0], t, (h, w), grid)
        far_lattice = Points(q=counted.to(y.dtype) / ly.numel(), coef=coef, constant=constant, frame=own,
                             basis=far_basis, sides=sides(y_lat, far_y, far_w))
    return Problem(frames=t, size=(h, w), grid=grid, lattice=lat, far=far_lattice, smoother=smoother,
                   weights=lam, shared=shared)


def assemble_blotches(
    y: torch.Tensor,
    valid: torch.Tensor,
    beta: torch.Tensor,
    nb: torch.Tensor,
    motion: Motion,
    support: torch.Tensor,
    feet: list[torch.Tensor],
    g: torch.Tensor,
    h: torch.Tensor,
    lam_s: float | torch.Tensor,
    delta: float | torch.Tensor,
) -> Blotches:
    """E as a function of S on ``support`` (T, 1, H, W) bool with the fields g, h (T, F, Gy,
    Gx) fixed: the data term at every pixel S enters, its support and its ``feet``
    (:func:`~dfdb.blotch.footprints`), at full resolution.

    y, valid, beta, nb, motion as in :func:`assemble`; ``lam_s`` and ``delta``: λ_S and the
    Huber threshold, one value or one per frame (T,). The residuals' part that does not
    depend on S (:attr:`~dfdb.objective.Blotches.affine`) is evaluated once, here.
    """
    t, _, rows, cols = y.shape
    dev = y.device
    pixels = rows * cols
    touched = blotch.touched(support, feet)
    idx = touched.view(-1).nonzero().squeeze(1)  # the points, ascending; point i is pixel idx[i]
    frame, py, px = idx // pixels, (idx // cols) % rows, idx % cols
    y_pix = y[frame, :, py, px]  # (n, K)
    y_pix_nb = warp_points(y, motion, nb, frame, py, px)
    w_pix = pair_weights(valid[frame, :, 0, py, px], beta)
    coef, constant = coefficients(y_pix, y_pix_nb, w_pix)
    own = torch.arange(t, device=dev).unsqueeze(1)
    points = Points(q=any_paired(valid).view(-1)[idx].to(y.dtype) / pixels, coef=coef, constant=constant, frame=frame,
                    basis=point_basis(frame, py, px, t, (rows, cols), g.shape[-2:]), slots=torch.cat([own, nb], 1),
                    sides=sides(y_pix, y_pix_nb, w_pix))
    s_index, to, at, vals = blotch.warp_map(support, motion, valid, beta, nb, feet)
    s_point = torch.searchsorted(idx, s_index)
    n, n_s = idx.numel(), s_index.numel()
    blotch_map = LinearMap(torch.cat([s_point, torch.searchsorted(idx, to)]), torch.cat([torch.arange(n_s, device=dev), at]),
                           torch.cat([vals.new_ones(n_s), -vals]), (n, n_s))
    s_frame = frame[s_point]
    corrected = restore(y_pix[s_point], *fields_at(g, h, s_frame, px[s_point], py[s_point], (rows, cols))).mean(1)
    return Blotches(
        q=points.q, sides=points.sides, affine=affine_residual(g, h, points), blotch_map=blotch_map,
        delta=per_frame(delta, frame.unsqueeze(1)), lam=per_frame(lam_s, s_frame) / pixels,
        s_index=s_index, low=corrected - 1.0, high=corrected,
        scale=(1.0 + w_pix[s_point].pow(2).sum(1)) / pixels,
    )


def fields_at(g: torch.Tensor, h: torch.Tensor, t: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
              size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The fields g, h (T, F, Gy, Gx) of frames t upsampled to H×W (``size``) as
    :func:`~dfdb.model.upsample` does, read at the points (x, y) px (each (n,), fractional):
    (n, F) each, without the dense fields."""
    f, nodes = g.shape[1], g.shape[2] * g.shape[3]
    corner, phi = basis_at(y, x, size, g.shape[-2:])
    table = field_table(g, h)  # (T·N, 2F)
    values = (table[t.unsqueeze(1) * nodes + corner] * phi.unsqueeze(-1)).sum(1)
    return values[:, :f], values[:, f:]


def point_basis(frame: torch.Tensor, yy: torch.Tensor, xx: torch.Tensor, frames: int, size: tuple[int, int],
                grid: tuple[int, int]) -> LinearMap:
    """Φ: a field per frame, (T·N, C), ↦ its values at the points (frame, yy, xx), each (n,), as (n, C).

    Four entries per row (the bilinear basis of :func:`basis_at` in the point's frame), built
    in row order.
    """
    corner, phi = basis_at(yy, xx, size, grid)
    n, nodes = frame.numel(), grid[0] * grid[1]
    rows = torch.arange(n, device=frame.device).repeat_interleave(4)
    return LinearMap(rows, (frame.unsqueeze(1) * nodes + corner).reshape(-1), phi.reshape(-1), (n, frames * nodes))


def slot_basis(frames: torch.Tensor, yy: torch.Tensor, xx: torch.Tensor, ty: torch.Tensor, tx: torch.Tensor,
               count: int, size: tuple[int, int], grid: tuple[int, int]) -> LinearMap:
    """Φ of points (yy, xx), each (n,), in all their slots: frames (n, S) the frame each slot
    reads, the first the point's own (read at the point), the others at (ty, tx) (n, S − 1),
    where the tracks have the point in those frames. Rows (i, s) in that order: the layout of
    :attr:`Points.basis` without slots."""
    ys = torch.cat([yy.to(ty.dtype).unsqueeze(1), ty], 1)
    xs = torch.cat([xx.to(tx.dtype).unsqueeze(1), tx], 1)
    return point_basis(frames.reshape(-1), ys.reshape(-1), xs.reshape(-1), count, size, grid)
