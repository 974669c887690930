"""Assembling one chunk's :class:`~dfdb.objective.Problem` from full-resolution planes.

The objective's data term is a per-frame mean over pixels. It is evaluated on sample points:
a regular lattice (about ``LATTICE_POINTS`` per frame) plus every pixel where the blotch layer
enters the residual, at full resolution. Each lattice point carries the weight of the valid
pixels it stands for, each full-resolution point the weight of one pixel.
"""
from __future__ import annotations

import math

import torch

from . import blotch
from .objective import Problem, Weights

#: Lattice points per frame for the smooth part of the data term.
LATTICE_POINTS = 3_000


def lattice_stride(size: tuple[int, int], points: int = LATTICE_POINTS) -> int:
    """Spacing in pixels of a square lattice with about ``points`` points on an H×W frame."""
    return max(1, int(math.sqrt(size[0] * size[1] / points)))


def lattice(frames: int, size: tuple[int, int], stride: int, device: torch.device) -> torch.Tensor:
    """(T, 1, H, W) bool: every ``stride``-th pixel in both directions, centred in its cell."""
    h, w = size
    mask = torch.zeros(h, w, dtype=torch.bool, device=device)
    mask[stride // 2 :: stride, stride // 2 :: stride] = True
    return mask.expand(frames, 1, h, w)


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
    y_nb: torch.Tensor,
    weights: torch.Tensor,
    nb: torch.Tensor,
    flows: torch.Tensor,
    grid: tuple[int, int],
    lam: Weights,
    smoother: torch.Tensor,
    support: torch.Tensor | None = None,
) -> Problem:
    """The chunk's problem; S allowed on ``support`` (T, 1, H, W) bool, or nowhere.

    y: (T, K, H, W); y_nb: (T, J, K, H, W); weights: (T, J, 1, H, W); nb: (T, J); flows:
    (T, J, H, W, 2) px.
    """
    t, _, h, w = y.shape
    dev = y.device
    valid = (weights != 0).any(1)  # (T, 1, H, W): frames with a residual of their own there
    touched = torch.zeros_like(valid)
    if support is not None and bool(support.any()):
        # S enters its own frame's residual and, through the warps, its neighbours'; a pixel of
        # a shot's first or last frame may have only the latter (its own weight is 0).
        touched = support | (blotch.footprint(support, flows, weights, nb) & valid)
    else:
        support = torch.zeros_like(valid)
    points = (lattice(t, (h, w), lattice_stride((h, w)), dev) & valid) | touched
    idx = points.reshape(-1).nonzero().squeeze(1)
    point_of = torch.full((t * h * w,), -1, dtype=torch.long, device=dev)
    point_of[idx] = torch.arange(idx.numel(), device=dev)
    frame, pix = idx // (h * w), idx % (h * w)

    exact = touched & valid
    n_valid = valid.reshape(t, -1).sum(1).float()
    n_exact = exact.reshape(t, -1).sum(1).float()
    n_lattice = (points & valid & ~touched).reshape(t, -1).sum(1).float().clamp(min=1)
    q_lattice = (n_valid - n_exact) / (h * w) / n_lattice
    q = torch.where(touched.reshape(-1)[idx], exact.reshape(-1)[idx].to(y.dtype) / (h * w), q_lattice[frame])

    corner, phi = basis_at(pix // w, pix % w, (h, w), grid)
    nodes = grid[0] * grid[1]
    s_index, rows, cols, vals = blotch.warp_map(support, flows, weights, nb, touched)
    return Problem(
        frames=t, size=(h, w), grid=grid, q=q.to(y.dtype),
        y=y.flatten(2)[frame, :, pix],
        y_nb=y_nb.flatten(3)[frame, :, :, pix],
        w=weights.flatten(3)[frame, :, 0, pix],
        own=frame.unsqueeze(1) * nodes + corner,
        nbr=nb[frame].unsqueeze(2) * nodes + corner.unsqueeze(1),
        phi=phi.to(y.dtype),
        s_index=s_index, s_point=point_of[s_index], s_rows=point_of[rows], s_cols=cols, s_vals=vals,
        smoother=smoother, weights=lam,
    )
