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
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import grid_edges, restore, upsample


@dataclass(frozen=True)
class Weights:
    """The λ's of E and the Huber threshold δ (intensity units)."""

    lambda_s: float
    lambda_r: float
    lambda_p: float
    lambda_0: float
    delta: float


@dataclass
class Problem:
    """Everything the objective needs that stays fixed while the solver runs (one chunk).

    - ``y``: (T, K, H, W) observed planes.
    - ``y_nb``: (T, J, K, H, W) neighbour planes 𝒲_{t,k}(Y_{t+k}) warped onto frame t, for the
      J = 2r offsets k = −r…−1, 1…r.
    - ``w``: (T, J, 1, H, W) temporal weights; 0 where the neighbour is invalid or missing.
    - ``nb``: (T, J) long, the frame index t + k inside the chunk (clamped where w = 0).
    - ``valid``: (T, 1, H, W) float, O_t: 1 where frame t has any valid neighbour.
    - ``s_index``: (n,) long, flat indices into (T, H, W) of the pixels where S may be non-zero.
    - ``s_rows``, ``s_cols``, ``s_vals``: the warp of S onto neighbouring frames as a sparse
      map: pixel ``s_rows`` (flat in (T, H, W)) receives ``s_vals · s[s_cols]`` in
      Σ_k w_{t,k} 𝒲_{t,k}(S_{t+k}).
    - ``smoother``: (T, T) the temporal moving average B (rows sum to 1).
    """

    y: torch.Tensor
    y_nb: torch.Tensor
    w: torch.Tensor
    nb: torch.Tensor
    valid: torch.Tensor
    s_index: torch.Tensor
    s_rows: torch.Tensor
    s_cols: torch.Tensor
    s_vals: torch.Tensor
    smoother: torch.Tensor
    grid: tuple[int, int]
    weights: Weights

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.y.shape[-2:])  # type: ignore[return-value]

    def with_support(self, s_index: torch.Tensor, s_rows: torch.Tensor, s_cols: torch.Tensor, s_vals: torch.Tensor) -> "Problem":
        """The same problem with another allowed support for S."""
        return Problem(self.y, self.y_nb, self.w, self.nb, self.valid, s_index, s_rows, s_cols, s_vals,
                       self.smoother, self.grid, self.weights)


def huber(r: torch.Tensor, delta: float) -> torch.Tensor:
    """ρ_δ(r): r²/2 for |r| ≤ δ, δ(|r| − δ/2) beyond; convex, smooth, ρ'' ≤ 1."""
    a = r.abs()
    return torch.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def blotch_planes(s: torch.Tensor, p: Problem) -> torch.Tensor:
    """S_t − Σ_k w_{t,k} 𝒲_{t,k}(S_{t+k}) as (T, 1, H, W): the blotch layer's share of the residual."""
    t, _, h, w = p.valid.shape
    flat = torch.zeros(t * h * w, dtype=s.dtype, device=s.device)
    flat = flat.index_add(0, p.s_index, s).index_add(0, p.s_rows, -p.s_vals * s[p.s_cols])
    return flat.view(t, 1, h, w)


def residual(g: torch.Tensor, h: torch.Tensor, s: torch.Tensor, p: Problem) -> torch.Tensor:
    """r_t = X̂_t − Σ_k w_{t,k} 𝒲_{t,k}(X̂_{t+k}), (T, K, H, W)."""
    gain, offset = upsample(g, p.size), upsample(h, p.size)
    r = restore(p.y, gain, offset)
    for j in range(p.nb.shape[1]):
        idx = p.nb[:, j]
        r = r - p.w[:, j] * restore(p.y_nb[:, j], gain.index_select(0, idx), offset.index_select(0, idx))
    return r - blotch_planes(s, p)


def data_term(g: torch.Tensor, h: torch.Tensor, s: torch.Tensor, p: Problem) -> torch.Tensor:
    """Σ_t mean_x O_t ρ_δ(r_t): temporal consistency along motion."""
    r = residual(g, h, s, p)
    return (p.valid * huber(r, p.weights.delta)).mean(dim=(1, 2, 3)).sum()


def sparsity_term(s: torch.Tensor, p: Problem) -> torch.Tensor:
    """λ_S Σ_t mean_x |S_t|: blotches are sparse."""
    h, w = p.size
    return p.weights.lambda_s * s.abs().sum() / (h * w)


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
