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
from .linear import LinearMap
from .model import PIVOT
from .objective import Lattice, Pixels, Problem, Weights

#: Lattice points per frame for the smooth part of the data term.
LATTICE_POINTS = 3_000


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


def dense_basis(yy: torch.Tensor, xx: torch.Tensor, size: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """(P, Gy·Gx) values of every control point's bilinear basis function at pixels (yy, xx)."""
    corner, phi = basis_at(yy, xx, size, grid)
    out = torch.zeros(yy.numel(), grid[0] * grid[1], dtype=phi.dtype, device=phi.device)
    return out.scatter_add_(1, corner, phi)


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
    far: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> Problem:
    """The chunk's problem; S allowed on ``support`` (T, 1, H, W) bool, or nowhere.

    y: (T, K, H, W); y_nb: (T, J, K, H, W); weights: (T, J, 1, H, W); nb: (T, J); flows:
    (T, J, H, W, 2) px. ``far``: the long-range term's (nb (T, M), tracked values (T, P, M, K),
    weights (T, P, M)) at the points of :func:`lattice_points`, or None.
    """
    t, _, h, w = y.shape
    dev = y.device
    valid = blotch.any_of(weights != 0)  # (T, 1, H, W): frames with a residual of their own there
    touched = torch.zeros_like(valid)
    if support is not None and bool(support.any()):
        # S enters its own frame's residual and, through the warps, its neighbours'; a pixel of
        # a shot's first or last frame may have only the latter (its own weight is 0).
        touched = support | (blotch.footprint(support, flows, weights, nb) & valid)
    else:
        support = torch.zeros_like(valid)
    exact = touched & valid

    # The lattice stands for the valid pixels that are not exact points, in equal shares.
    ly, lx = lattice_points((h, w), dev)
    on = (valid & ~touched)[:, 0, ly, lx]  # (T, P)
    n_valid = valid.reshape(t, -1).sum(1).to(y.dtype)
    n_exact = exact.reshape(t, -1).sum(1).to(y.dtype)
    share = (n_valid - n_exact) / (h * w) / on.sum(1).clamp(min=1).to(y.dtype)
    lat = Lattice(
        q=on.to(y.dtype) * share.unsqueeze(1),
        y=y[:, :, ly, lx].permute(0, 2, 1),
        y_nb=y_nb[..., ly, lx].permute(0, 3, 1, 2),
        w=weights[:, :, 0, ly, lx].permute(0, 2, 1),
        nb=nb,
        basis=dense_basis(ly, lx, (h, w), grid).to(y.dtype),
    )
    far_lattice = None
    if far is not None:
        # Each lattice point stands for 1/P of the frame; blotch pixels stay out (S is not in the term).
        far_nb, far_y, far_w = far
        counted = (far_w.sum(2) > 0) & ~touched[:, 0, ly, lx]
        far_lattice = Lattice(q=counted.to(y.dtype) / ly.numel(), y=lat.y, y_nb=far_y, w=far_w, nb=far_nb, basis=lat.basis)

    idx = touched.reshape(-1).nonzero().squeeze(1)
    point_of = torch.full((t * h * w,), -1, dtype=torch.long, device=dev)
    point_of[idx] = torch.arange(idx.numel(), device=dev)
    frame, py, px = idx // (h * w), (idx // w) % h, idx % w
    corner, phi = basis_at(py, px, (h, w), grid)
    nodes = grid[0] * grid[1]
    own = frame.unsqueeze(1) * nodes + corner
    nbr = nb[frame].unsqueeze(2) * nodes + corner.unsqueeze(1)
    y_pix = y[frame, :, py, px]  # (n, K)
    y_nb_pix = y_nb[frame, :, :, py, px]  # (n, J, K)
    w_pix = weights[frame, :, 0, py, px]  # (n, J)
    phi = phi.to(y.dtype)
    s_index, rows, cols, vals = blotch.warp_map(support, flows, weights, nb, touched)
    s_point = point_of[s_index]
    n, n_s = idx.numel(), s_index.numel()
    pixels = Pixels(
        q=exact.reshape(-1)[idx].to(y.dtype) / (h * w), y=y_pix, y_nb=y_nb_pix, w=w_pix, frame=frame,
        own=own, nbr=nbr, phi=phi,
        gain_map=gain_map(own, nbr, phi, w_pix, y_pix, y_nb_pix, t * nodes),
        offset_map=offset_map(own, nbr, phi, w_pix, t * nodes),
        blotch_map=LinearMap(torch.cat([s_point, point_of[rows]]), torch.cat([torch.arange(n_s, device=dev), cols]),
                             torch.cat([vals.new_ones(n_s), -vals]), (n, n_s)),
        constant=PIVOT * (1.0 - w_pix.sum(1, keepdim=True)),
    )
    return Problem(
        frames=t, size=(h, w), grid=grid, lattice=lat, far=far_lattice, pixels=pixels,
        s_index=s_index, s_point=s_point, smoother=smoother, weights=lam,
    )


def _entries(own: torch.Tensor, nbr: torch.Tensor, phi: torch.Tensor, w: torch.Tensor,
             c: torch.Tensor, c_nb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triplets of the map u ↦ c·u_t(x) − Σ_k w_k c_k·u_{t+k}(x) for a grid field u of K
    channels (flat control point × K + channel) at n points (point × K + channel).

    own (n, 4), nbr (n, J, 4), phi (n, 4), w (n, J); c (n, K) and c_nb (n, J, K) the
    coefficients. Returns rows, cols and values, each (n·K·4·(1 + J),), sorted by row, so
    that the matrix is built without a sort.
    """
    (n, k), j = c.shape, w.shape[1]
    vals = phi.new_empty(n, k, 1 + j, 4)
    torch.mul(c.unsqueeze(2), phi.unsqueeze(1), out=vals[:, :, 0])
    torch.mul((w.unsqueeze(2) * c_nb).neg_().transpose(1, 2).unsqueeze(3), phi[:, None, None], out=vals[:, :, 1:])
    nodes = torch.cat([own.unsqueeze(1), nbr], 1).unsqueeze(1)  # (n, 1, 1 + J, 4)
    cols = nodes if k == 1 else nodes * k + torch.arange(k, device=own.device).view(1, k, 1, 1)
    rows = torch.arange(n * k, device=own.device).view(n, k, 1, 1).expand(vals.shape)
    return rows.reshape(-1), cols.expand(vals.shape).reshape(-1), vals.view(-1)


def offset_map(own: torch.Tensor, nbr: torch.Tensor, phi: torch.Tensor, w: torch.Tensor, fields: int) -> LinearMap:
    """H: h (T·N, K) ↦ h_t(x) − Σ_k w_k h_{t+k}(x) at the n points, (n, K)."""
    ones = phi.new_ones(1, 1)
    rows, cols, vals = _entries(own, nbr, phi, w, ones.expand(own.shape[0], 1), ones.expand(*w.shape, 1))
    return LinearMap(rows, cols, vals, (own.shape[0], fields))


def gain_map(own: torch.Tensor, nbr: torch.Tensor, phi: torch.Tensor, w: torch.Tensor, y: torch.Tensor,
             y_nb: torch.Tensor, fields: int) -> LinearMap:
    """G: g (T·N·K,) ↦ (Y_t − μ) g_t(x) − Σ_k w_k 𝒲(Y_{t+k} − μ) g_{t+k}(x), (n·K,); y (n, K), y_nb (n, J, K)."""
    k = y.shape[1]
    rows, cols, vals = _entries(own, nbr, phi, w, y - PIVOT, y_nb - PIVOT)
    return LinearMap(rows, cols, vals, (own.shape[0] * k, fields * k))
