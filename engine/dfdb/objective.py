"""The restoration objective of DESIGN.md §4, in one place.

For a chunk of T frames of one shot, with unknowns g, h (T, K, Gy, Gx) on the control grid and
the blotch layer S (values s on its allowed support, see :mod:`dfdb.blotch`):

    E(g, h, S) =   Σ_t mean_x  O_t ⊙ ρ_δ( X̂_t − Σ_k w_{t,k} 𝒲_{t,k}(X̂_{t+k}) )     data
                 + λ_L Σ_t mean_x  ρ_δ( X̂_t − Σ_m v_{t,m} 𝒯_{t,m}(X̂_{t+m}) )          long-range data
                 + λ_S Σ_t mean_x |S_t|                                             sparsity
                 + λ_R Σ_t mean_{(i,j) adjacent} (g_ti − g_tj)² + (h_ti − h_tj)²      smoothness
                 + λ_P Σ_t mean_j ((B g)_tj − 1)² + (B h)_tj²                          gauge
                 + λ_0 Σ_t mean_j (g_tj − 1)² + h_tj²                                  (strict convexity)

with X̂_t = g_t ⊙ (Y_t − μ) + μ + h_t − S_t (fields upsampled from the grid, μ = mid-grey), ρ_δ the Huber loss, and
w_{t,k} symmetric temporal weights renormalised over the valid (unoccluded) pairs of
neighbours, Σ_k w_{t,k} = 1. Symmetric weights make the residual of a linear ramp in time zero:
fades and real lighting changes cost nothing, only fluctuation does.

The long-range term is the same consistency over a wider window, |m| ≤ L (L > r), along
tracks 𝒯 that chain the flows between consecutive frames, evaluated on the lattice only (see
below) and without S. The short window alone leaves the slow part of the flicker in place: its
residual grows as ω⁴ at temporal frequency ω, so a fluctuation over more than about 2W frames
costs almost nothing and is indistinguishable from a scene change. With i.i.d. flicker the
part left is roughly its average over the window, 1/√W of it; the wide window sees it.

The gauge acts on B g, a temporal Gaussian average of the correction (several frames wide,
wider than the flicker it must leave alone): it pins the slow part of the correction to identity (this excludes the trivial g = 0 and leaves slow, real brightness
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

from .linear import LinearMap
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
    lambda_l: float = 0.0


@dataclass
class Lattice:
    """The smooth part of the data term: the same P lattice pixels in every frame, dense.

    Point axes are (T, P). ``q``: (T, P) quadrature weight (0 where the pixel has no residual
    of its own or is one of the exact points); ``y``: (T, P, K) observed values; ``y_nb``:
    (T, P, J, K) the warped neighbours 𝒲_{t,k}(Y_{t+k}) for the J = 2r offsets k = −r…−1, 1…r
    (or the tracked ones of the long-range term, J = 2L); ``w``: (T, P, J) the temporal
    weights; ``nb``: (T, J) long, the frame t + k of each neighbour (the frame itself where
    t + k is outside the chunk; its weight is 0 there); ``basis``: (P, N) the bilinear basis of
    the N = Gy·Gx control points at each lattice pixel. Because the pixels are the same in
    every frame, the fields there are one small matrix product per iteration, with no gathers.
    """

    q: torch.Tensor
    y: torch.Tensor
    y_nb: torch.Tensor
    w: torch.Tensor
    nb: torch.Tensor
    basis: torch.Tensor


@dataclass
class Pixels:
    """The data term at full resolution: every pixel where the blotch layer enters it.

    Point axis (n,). ``q``, ``y``, ``y_nb``, ``w`` as in :class:`Lattice`; ``frame``: (n,) the
    frame of each point; ``own``: (n, 4) long, indices into the flattened (T·N) control points
    of the four bilinear basis functions non-zero there in its own frame; ``nbr``: (n, J, 4) the
    same in frame t + k; ``phi``: (n, 4) the basis functions' values.

    At these points the residual is affine in the unknowns, r = G g + H h + c − B s, and is
    evaluated as such: ``gain_map`` G maps g as (T·N·K,) to (n·K,) (its coefficients carry
    Y − μ, so each channel has its own), ``offset_map`` H maps h as (T·N, K) to (n, K),
    ``blotch_map`` B maps s (n_s,) to S_t − Σ_k w_{t,k} 𝒲_{t,k}(S_{t+k}) (n,), and
    ``constant`` c = μ (1 − Σ_k w_{t,k}) is (n, 1).
    """

    q: torch.Tensor
    y: torch.Tensor
    y_nb: torch.Tensor
    w: torch.Tensor
    frame: torch.Tensor
    own: torch.Tensor
    nbr: torch.Tensor
    phi: torch.Tensor
    gain_map: LinearMap
    offset_map: LinearMap
    blotch_map: LinearMap
    constant: torch.Tensor


@dataclass
class Problem:
    """Everything the objective needs that stays fixed while the solver runs (one chunk).

    The data term is a quadrature over the ``lattice`` and the full-resolution ``pixels``;
    the long-range term's lattice is ``far`` (None without it).
    The blotch layer: ``s_index`` (n_s,) flat indices into (T, H, W) of the pixels where S may
    be non-zero and ``s_point`` (n_s,) the point of ``pixels`` each one is.
    ``smoother``: (T, T) the gauge's temporal average B (rows sum to 1).
    """

    frames: int
    size: tuple[int, int]
    grid: tuple[int, int]
    lattice: Lattice
    far: Lattice | None
    pixels: Pixels
    s_index: torch.Tensor
    s_point: torch.Tensor
    smoother: torch.Tensor
    weights: Weights

    @property
    def planes(self) -> int:
        """K: 1 for a luma correction, C for a per-channel one."""
        return self.lattice.y.shape[-1]

    def blotch_lambda(self) -> float | torch.Tensor:
        """λ_S at each blotch pixel of the support, (n_s,), or one value."""
        return per_frame(self.weights.lambda_s, self.pixels.frame[self.s_point])


def per_frame(value: float | torch.Tensor, frames: torch.Tensor) -> float | torch.Tensor:
    """A scalar, or a per-frame (T,) value looked up at ``frames`` (any shape)."""
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


def fields_on_lattice(g: torch.Tensor, h: torch.Tensor, basis: torch.Tensor, nb: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """g, h (T, K, Gy, Gx) on the lattice (T, P, K) and in each neighbour frame (T, P, J, K).

    Returns (gain, offset, gain_nb, offset_nb); ``basis`` (P, N), ``nb`` (T, J).
    """
    k = g.shape[1]
    both = torch.matmul(torch.cat([g, h], 1).flatten(2), basis.t()).transpose(1, 2)  # (T, P, 2K)
    both_nb = both.index_select(0, nb.reshape(-1)).view(*nb.shape, *both.shape[1:]).transpose(1, 2)
    return both[..., :k], both[..., k:], both_nb[..., :k], both_nb[..., k:]


def prediction_error(y: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor, y_nb: torch.Tensor,
                     gain_nb: torch.Tensor, offset_nb: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """X̂_t − Σ_k w_{t,k} 𝒲_{t,k}(X̂_{t+k}) without S: y, gain, offset (..., K); y_nb,
    gain_nb, offset_nb (..., J, K); w (..., J) → (..., K)."""
    return restore(y, gain, offset) - (w.unsqueeze(-1) * restore(y_nb, gain_nb, offset_nb)).sum(-2)


def huber(r: torch.Tensor, delta: float | torch.Tensor) -> torch.Tensor:
    """ρ_δ(r): r²/2 for |r| ≤ δ, δ(|r| − δ/2) beyond; convex, smooth, ρ'' ≤ 1."""
    a = r.abs()
    return torch.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def residual(g: torch.Tensor, h: torch.Tensor, s: torch.Tensor, p: Problem) -> tuple[torch.Tensor, torch.Tensor]:
    """r_t = X̂_t − Σ_k w_{t,k} 𝒲_{t,k}(X̂_{t+k}) on the lattice (T, P, K) and at the pixels (n, K)."""
    pix = p.pixels
    on_lattice = lattice_residual(g, h, p.lattice)
    k = g.shape[1]
    at_pixels = (pix.gain_map(g.flatten(2).transpose(1, 2).reshape(-1)).view(-1, k)
                 + pix.offset_map(h.flatten(2).transpose(1, 2).reshape(-1, k))
                 + pix.constant - pix.blotch_map(s).unsqueeze(1))
    return on_lattice, at_pixels


def lattice_residual(g: torch.Tensor, h: torch.Tensor, lat: Lattice) -> torch.Tensor:
    """X̂_t − Σ_k w_{t,k} X̂_{t+k} at the points of a lattice, (T, P, K), S aside."""
    gain, offset, gain_nb, offset_nb = fields_on_lattice(g, h, lat.basis, lat.nb)
    return prediction_error(lat.y, gain, offset, lat.y_nb, gain_nb, offset_nb, lat.w)


def data_term(g: torch.Tensor, h: torch.Tensor, s: torch.Tensor, p: Problem) -> torch.Tensor:
    """Σ_t mean_x O_t ρ_δ(r_t): temporal consistency along motion (mean over K too), plus
    the long-range term on its lattice, λ_L Σ_t mean_x ρ_δ(r^L_t)."""
    on_lattice, at_pixels = residual(g, h, s, p)
    frames = torch.arange(p.frames, device=on_lattice.device)
    delta_lattice = per_frame(p.weights.delta, frames.view(-1, 1, 1))
    delta_pixels = per_frame(p.weights.delta, p.pixels.frame.unsqueeze(1))
    total = (p.lattice.q.unsqueeze(-1) * huber(on_lattice, delta_lattice)).sum()
    total = total + (p.pixels.q.unsqueeze(1) * huber(at_pixels, delta_pixels)).sum()
    if p.far is not None and p.weights.lambda_l > 0:
        far = lattice_residual(g, h, p.far)
        total = total + p.weights.lambda_l * (p.far.q.unsqueeze(-1) * huber(far, delta_lattice)).sum()
    return total / p.planes


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
