"""The restoration objective of DESIGN.md §4, in one place.

For a chunk of T frames of one shot, with unknowns g, h (T, K, Gy, Gx) on the control grid and
the blotch layer S (values s on its allowed support, see :mod:`dfdb.blotch`):

    E(g, h, S) =   Σ_t mean_x  O_t ⊙ ρ_δ( X̂_t − Σ_k w_{t,k} 𝒲_{t,k}(X̂_{t+k}) )     data
                 + λ_S Σ_t mean_x |S_t|                                             sparsity
                 + λ_R Σ_t mean_{(i,j) adjacent} (g_ti − g_tj)² + (h_ti − h_tj)²      smoothness
                 + λ_P Σ_t mean_j ((B g)_tj − 1)² + (B h)_tj²                          gauge
                 + λ_0 Σ_t mean_j (g_tj − 1)² + h_tj²                                  (strict convexity)

with X̂_t = g_t ⊙ (Y_t − μ) + μ + h_t − S_t (fields upsampled from the grid, μ = mid-grey), ρ_δ the Huber loss, and
w_{t,k} symmetric temporal weights renormalised over the valid (unoccluded) pairs of
neighbours, Σ_k w_{t,k} = 1. Symmetric weights make the residual of a linear ramp in time zero:
fades and real lighting changes cost nothing, only fluctuation does.

The gauge acts on B g, a temporal moving average of the correction: it pins the slow part of
the correction to identity (this excludes the trivial g = 0 and leaves slow, real brightness
changes alone) without pulling the per-frame flicker correction towards 1.

Warping g_{t+k} and h_{t+k} is approximated by evaluating them at x: they are smooth on the
scale of a grid cell (tens to hundreds of pixels) while motion between neighbours is a few
pixels. The neighbour planes 𝒲_{t,k}(Y_{t+k}) are therefore warped once per chunk, and only the
sparse blotch layer is warped inside the iterations.

All terms are means over pixels and grid nodes, so the λ's do not depend on the resolution or
the grid size; λ_S is directly the residual (in intensity units) above which a pixel of the
allowed support is declared a blotch.

The mean over x of the data term is evaluated as a quadrature: at full resolution on every
pixel the blotch layer enters (its support and the footprint of its warp onto the
neighbours), and on a regular lattice elsewhere, each lattice point standing for the pixels
around it (weights ``q``). Away from blotches the residual depends on the unknowns only through
the smooth fields, so the lattice loses nothing that matters and the cost of an iteration falls
with the lattice spacing squared.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import grid_edges, restore


@dataclass(frozen=True)
class Weights:
    """The λ's of E and the Huber threshold δ (intensity units).

    ``lambda_s`` and ``delta`` are either one value or one per frame, (T,): the blotch
    threshold follows each frame's own noise level.
    """

    lambda_s: float | torch.Tensor
    lambda_r: float
    lambda_p: float
    lambda_0: float
    delta: float | torch.Tensor


@dataclass
class Problem:
    """Everything the objective needs that stays fixed while the solver runs (one chunk).

    The data term lives on n sample points (pixels of the chunk's frames):

    - ``q``: (n,) quadrature weight of each point (Σ over a frame's points of q·ρ approximates
      mean_x ρ over that frame).
    - ``y``: (n, K) observed values; ``y_nb``: (n, J, K) the neighbours 𝒲_{t,k}(Y_{t+k}) there,
      for the J = 2r offsets k = −r…−1, 1…r; ``w``: (n, J) the temporal weights (0 where a
      neighbour is invalid or missing; Σ_k w = 1).
    - ``own``: (n, 4) long, indices into the flattened (T·Gy·Gx) control points of the four
      bilinear basis functions non-zero at the point, in its own frame; ``nbr``: (n, J, 4) the
      same in frame t + k; ``phi``: (n, 4) the basis functions' values.
    - blotch layer: ``s_index`` (n_s,) flat indices into (T, H, W) of the pixels where S may be
      non-zero and ``s_point`` (n_s,) the sample point of each; the warp of S onto the
      neighbours as triplets: point ``s_rows`` gets ``s_vals · s[s_cols]`` in
      Σ_k w_{t,k} 𝒲_{t,k}(S_{t+k}).
    - ``smoother``: (T, T) the temporal moving average B (rows sum to 1).
    """

    frames: int
    size: tuple[int, int]
    grid: tuple[int, int]
    q: torch.Tensor
    y: torch.Tensor
    y_nb: torch.Tensor
    w: torch.Tensor
    own: torch.Tensor
    nbr: torch.Tensor
    phi: torch.Tensor
    s_index: torch.Tensor
    s_point: torch.Tensor
    s_rows: torch.Tensor
    s_cols: torch.Tensor
    s_vals: torch.Tensor
    smoother: torch.Tensor
    weights: Weights

    @property
    def planes(self) -> int:
        """K: 1 for a luma correction, C for a per-channel one."""
        return self.y.shape[1]

    def blotch_lambda(self) -> float | torch.Tensor:
        """λ_S at each blotch pixel of the support, (n_s,), or one value."""
        return self.per_frame(self.weights.lambda_s, self.frame_of_points()[self.s_point])

    def frame_of_points(self) -> torch.Tensor:
        """(n,) long: the frame t of each sample point."""
        return self.own[:, 0] // (self.grid[0] * self.grid[1])

    def per_frame(self, value: float | torch.Tensor, frames: torch.Tensor) -> float | torch.Tensor:
        """A scalar, or a per-frame (T,) value looked up at ``frames``."""
        return value[frames] if isinstance(value, torch.Tensor) else value


def fields_at(g: torch.Tensor, h: torch.Tensor, nodes: torch.Tensor, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid fields g, h (T, K, Gy, Gx) evaluated at points, ((..., K), (..., K)).

    ``nodes`` (..., 4) indexes the flattened (T·Gy·Gx) control points, ``phi`` holds the basis
    values, broadcastable to ``nodes``. One gather serves both fields.
    """
    k = g.shape[1]
    table = torch.cat([g, h], 1).flatten(2).transpose(1, 2).reshape(-1, 2 * k)
    vals = table.index_select(0, nodes.reshape(-1)).view(*nodes.shape, 2 * k)
    both = (vals * phi.unsqueeze(-1)).sum(-2)
    return both[..., :k], both[..., k:]


def huber(r: torch.Tensor, delta: float | torch.Tensor) -> torch.Tensor:
    """ρ_δ(r): r²/2 for |r| ≤ δ, δ(|r| − δ/2) beyond; convex, smooth, ρ'' ≤ 1."""
    a = r.abs()
    return torch.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def blotch_share(s: torch.Tensor, p: Problem) -> torch.Tensor:
    """S_t − Σ_k w_{t,k} 𝒲_{t,k}(S_{t+k}) at the sample points, (n, 1)."""
    out = torch.zeros(p.q.numel(), dtype=p.y.dtype, device=p.y.device)
    out = out.index_add(0, p.s_point, s).index_add(0, p.s_rows, -p.s_vals * s[p.s_cols])
    return out.unsqueeze(1)


def residual(g: torch.Tensor, h: torch.Tensor, s: torch.Tensor, p: Problem) -> torch.Tensor:
    """r_t = X̂_t − Σ_k w_{t,k} 𝒲_{t,k}(X̂_{t+k}) at the sample points, (n, K)."""
    gain, offset = fields_at(g, h, p.own, p.phi)
    gain_nb, offset_nb = fields_at(g, h, p.nbr, p.phi.unsqueeze(1))
    predicted = (p.w.unsqueeze(2) * restore(p.y_nb, gain_nb, offset_nb)).sum(1)
    return restore(p.y, gain, offset) - predicted - blotch_share(s, p)


def data_term(g: torch.Tensor, h: torch.Tensor, s: torch.Tensor, p: Problem) -> torch.Tensor:
    """Σ_t mean_x O_t ρ_δ(r_t): temporal consistency along motion (mean over K too)."""
    r = residual(g, h, s, p)
    delta = p.per_frame(p.weights.delta, p.frame_of_points())
    if isinstance(delta, torch.Tensor):
        delta = delta.unsqueeze(1)
    return (p.q.unsqueeze(1) * huber(r, delta)).sum() / p.planes


def sparsity_term(s: torch.Tensor, p: Problem) -> torch.Tensor:
    """λ_S Σ_t mean_x |S_t|: blotches are sparse."""
    return (p.blotch_lambda() * s.abs()).sum() / (p.size[0] * p.size[1])


def smoothness_term(g: torch.Tensor, h: torch.Tensor, p: Problem) -> torch.Tensor:
    """λ_R Σ_t mean over adjacent control points of the squared differences of g and h."""
    if p.grid == (1, 1) or p.weights.lambda_r == 0:
        return g.new_zeros(())
    a, b = grid_edges(p.grid)
    gf, hf = g.flatten(2), h.flatten(2)
    diff = (gf[..., a] - gf[..., b]).pow(2) + (hf[..., a] - hf[..., b]).pow(2)
    return p.weights.lambda_r * diff.mean(dim=(1, 2)).sum()


def gauge_term(g: torch.Tensor, h: torch.Tensor, p: Problem) -> torch.Tensor:
    """λ_P on the slow part (B g, B h) plus a weak λ_0 on every frame's correction."""
    bg = torch.einsum("ts,skyx->tkyx", p.smoother, g)
    bh = torch.einsum("ts,skyx->tkyx", p.smoother, h)
    slow = ((bg - 1).pow(2) + bh.pow(2)).mean(dim=(1, 2, 3)).sum()
    each = ((g - 1).pow(2) + h.pow(2)).mean(dim=(1, 2, 3)).sum()
    return p.weights.lambda_p * slow + p.weights.lambda_0 * each


def smooth_part(g: torch.Tensor, h: torch.Tensor, s: torch.Tensor, p: Problem) -> torch.Tensor:
    """The differentiable part of E (everything but the L1 term), for the gradient step."""
    return data_term(g, h, s, p) + smoothness_term(g, h, p) + gauge_term(g, h, p)


def energy(g: torch.Tensor, h: torch.Tensor, s: torch.Tensor, p: Problem) -> torch.Tensor:
    """E(g, h, S), the whole objective."""
    return smooth_part(g, h, s, p) + sparsity_term(s, p)
