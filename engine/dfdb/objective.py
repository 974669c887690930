"""The restoration objective of DESIGN.md §4, in one place.

For a chunk of T frames of one shot, with unknowns g, h (T, F, Gy, Gx) on the control grid and
the blotch layer S (values s on its allowed support, see :mod:`dfdb.blotch`), fitted on K planes
(the colour channels, or the one channel of a grey clip): F = 1, one correction shared by the
channels, or F = K, one per channel (colour flicker):

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

Where the scan clipped a sample (at white or black), X̂ there is a bound on the scene, not a
value, and so is the residual: ρ_δ is then taken of its part on the side that contradicts
the bound only, ρ_δ(max(r, 0)) or ρ_δ(min(r, 0)) (:func:`sides`, :meth:`Points.weights`;
still convex). On bigbuckbunny, whose sky clips in 16 of 40 frames, +0.21 dB; carphone +0.28.

The long-range term is the same consistency with frames further away, m = ±2r, ±4r, ±6r
(L = 6r), along tracks 𝒯 that chain the flows between consecutive frames, evaluated on the
lattice only (see below) and without S. The short window alone leaves the slow part of the
flicker in place: its residual grows as ω⁴ at temporal frequency ω, so a fluctuation over
more than about 2W frames costs almost nothing and is indistinguishable from a scene change.
With i.i.d. flicker the part left is roughly its average over the window, 1/√W of it; the
wide window sees it.

The gauge acts on B g, a temporal Gaussian average of the correction (several frames wide,
wider than the flicker it must leave alone): it pins the slow part of the correction to identity (this excludes the trivial g = 0 and leaves slow, real brightness
changes alone) without pulling the per-frame flicker correction towards 1. The exact
correction of a gain fluctuating about 1 has a mean above 1 (E[1/A] > 1), so the pinned
solution is scaled back up after the solve (:func:`unbiased`).

The long-range term reads each frame's fields where the track takes the point in that frame,
t + m at 𝒯_{t,m}(x), not at x: its points travel tens of pixels, and spatially varying flicker
changes across the frame (a gain mode of σ 0.1 across 320 px moves by 0.001 per px), so a
neighbour's correction read at x was off by as much as the flicker on a pan (bikes: +0.5 dB,
residual flicker 0.29 → 0.26 of the input's). The short window's neighbours are a few pixels
away: there the fields are read at x, which measured the same to 0.005 dB with a basis of a
fifth of the entries. The neighbour planes 𝒲_{t,k}(Y_{t+k}) are sampled once per chunk at the
points, and only the sparse blotch layer is warped inside the iterations.

The data terms are means over the K planes too. A correction shared by the channels is fitted
on all of them rather than on the luma alone: a gain scales the colour differences between
channels and an offset does not, so the chroma tells the two apart where the luma's range
within a cell of the grid is too narrow to.

All terms are means over pixels and grid nodes, so the λ's do not depend on the resolution or
the grid size; λ_S is directly the residual (in intensity units) above which a pixel of the
allowed support is declared a blotch.

E is minimised by blocks, each by FISTA (:mod:`dfdb.solver`): the fields first, then S with
the fields fixed. S is free on its support, so it takes up the residuals it enters there (its
own pixels', and the neighbours' whose warps read it, its footprints): as a function of the
fields alone, min_S E leaves those pixels' data terms out, and the fields are fitted on the
other pixels (:class:`Problem`). S then minimises E with the fields fixed
(:class:`Blotches`), where only its pixels' data terms, the sparsity term and the box vary.
On the benchmark this matches the joint solve of both (mean gain +0.01 dB, every case
within ±0.06 dB) at a fifth of its cost per iteration: the fields' block reads the lattice
only, and S's the fixed part of each residual.

The mean over x of the data term is evaluated as a quadrature: on a regular lattice for the
fields, each lattice point standing for the pixels around it (weights ``q``), and at full
resolution on every pixel the blotch layer enters for S. Away from blotches the residual
depends on the unknowns only through the smooth fields, so the lattice loses nothing that
matters and the cost of an iteration falls with the lattice spacing squared.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .linear import LinearMap
from .model import PIVOT, clipped, grid_edges


@dataclass(frozen=True)
class Weights:
    """The λ's of the fields' part of E and the Huber threshold δ (intensity units).

    ``delta`` is one value or one per frame, (T,): the second pass's follows each frame's own
    noise level. λ_S and S's δ are :class:`Blotches`'.
    """

    lambda_r: float
    lambda_p: float
    lambda_0: float
    delta: float | torch.Tensor
    lambda_l: float = 0.0


@dataclass(kw_only=True)
class Quadrature:
    """Weights of a data term's points: ``q`` (...) the quadrature weight of each point and
    ``sides`` (..., 2, K) 0 or 1, whether a positive and a negative residual are penalised
    (:func:`sides`, where samples are clipped), or None: both everywhere."""

    q: torch.Tensor
    sides: torch.Tensor | None = None

    def __post_init__(self) -> None:
        # The quadrature weight of each side of the residual, (..., 2, K): ρ of the residual
        # censored to one side is ρ(r) times that side's 0 or 1, so the weight takes it.
        self.sided_q = None if self.sides is None else self.q[..., None, None] * self.sides

    def weights(self, r: torch.Tensor) -> torch.Tensor:
        """The quadrature weight of ρ(r) at each point and plane, (..., K) or (..., 1): q, and
        0 on the side of r that a clipped sample leaves free (:func:`sides`)."""
        if self.sided_q is None:
            return self.q.unsqueeze(-1)
        return torch.where(r > 0, self.sided_q[..., 0, :], self.sided_q[..., 1, :])


@dataclass(kw_only=True)
class Points(Quadrature):
    """Points where the data term is evaluated, and its residual there as an affine function
    of the fields.

    Every term of r_t(x) = X̂_t − Σ_k w_{t,k} 𝒲_{t,k}(X̂_{t+k}) reads the fields g, h of one
    of S frames, its *slots*: the frame t itself, then each neighbour t + k (the frame itself
    where t + k is outside the chunk; its weight is 0 there). With X̂ = g (Y − μ) + μ + h, r is
    Σ_s ⟨c_s, (g, h)_s⟩ + c₀ (see :func:`coefficients`).

    The point shape (...) is (T, P) for a lattice (the same P pixels in every frame) or (n,)
    for scattered pixels, sorted by frame. ``coef``: (..., S, 2, K) the coefficients of g and h
    in each slot, per plane; ``constant``: (..., K);
    ``frame``: (T, 1) or (n,), the frame of each point, broadcastable to the point shape;
    ``basis``: Φ, the bilinear basis of the control points (:func:`dfdb.problem.point_basis`,
    four non-zeros per row), in one of two layouts:

    - with ``slots`` (T, S) long, the frame each slot of a frame's points reads: a map from a
      field per frame (T·N, C) to its values at the points, (#points, C); every slot reads
      its frame's fields at the point itself (the frames gathered by :func:`slot_table`);
    - without: a map (T·N, C) → (#points·S, C), row (i, s) reading the frame of slot s where
      it sees point i (the long-range term's tracks).

    ``q`` and ``sides``: :class:`Quadrature`.
    """

    coef: torch.Tensor
    constant: torch.Tensor
    frame: torch.Tensor
    basis: LinearMap
    slots: torch.Tensor | None = None

    def fields_at(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The fields g, h (T, F, Gy, Gx) in every slot of every point, (..., S, 2·F), laid
        out as :attr:`coef` (slot, then g/h, then channel)."""
        slots, c = self.coef.shape[-3], 2 * g.shape[1]
        table = field_table(g, h) if self.slots is None else slot_table(g, h, self.slots).view(-1, slots * c)
        return self.basis(table).view(*self.q.shape, slots, c)

    def spread(self, values: torch.Tensor) -> torch.Tensor:
        """The adjoint of :meth:`fields_at` (not differentiable): values (..., S, C) in the
        slots → (T·N, C) on the grid, each weighted by the basis functions there."""
        slots, c = values.shape[-2:]
        if self.slots is None:
            return self.basis.transpose(values.reshape(-1, c))
        t = self.slots.shape[0]
        at = self.basis.transpose(values.reshape(-1, slots * c)).view(t, -1, slots, c).transpose(1, 2)
        out = at.new_zeros(t, at.shape[2], c).index_add_(0, self.slots.reshape(-1), at.reshape(t * slots, -1, c))
        return out.view(-1, c)


@dataclass(kw_only=True)
class Blotches(Quadrature):
    """E as a function of the blotch layer alone, the fields fixed (its second block):

        E_S(s) = (1/K) Σ_i q_i ρ_δ(a_i − (B s)_i) + Σ_j λ_j |s_j|,   X̂ − 1 ≤ s ≤ X̂ on the support

    up to a constant, at the points i where S enters the data term: its support and the
    footprints of its warp on the neighbours (:func:`dfdb.blotch.footprints`), one per pixel.

    ``affine``: (n, K) a, the residual r_t = X̂_t − Σ_k w_{t,k} 𝒲_{t,k}(X̂_{t+k}) there without
    S, at the fixed fields; ``blotch_map`` B maps s (n_s,) to S_t − Σ_k w_{t,k} 𝒲_{t,k}(S_{t+k})
    at the points (n,); ``delta`` (n, 1) the Huber threshold of each point's frame, or one
    value; ``lam`` (n_s,) the weight of |s| in E, λ_S / (H·W) at each pixel of the support, or
    one value; ``s_index`` (n_s,) the support's flat indices into (T, H, W); ``low``, ``high`` (n_s,) the box, from the
    corrected luma X̂ there; ``scale`` (n_s,) the Jacobi diagonal of ∇²E_S, (1 + Σ_k w_k²) / (H·W)
    (the solver's preconditioner). ``q`` and ``sides``: :class:`Quadrature`.
    """

    affine: torch.Tensor
    blotch_map: LinearMap
    delta: float | torch.Tensor
    lam: float | torch.Tensor
    s_index: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    scale: torch.Tensor


def slot_table(g: torch.Tensor, h: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """The fields g, h (T, F, Gy, Gx) of the frame in each slot (T, S): (T, N, S·2·F), laid
    out as :attr:`Points.coef` (slot, then g/h, then channel). A gather of a small table."""
    (t, s), nodes = slots.shape, g.shape[2] * g.shape[3]
    table = field_table(g, h).view(g.shape[0], nodes, -1)  # (T, N, 2F)
    return table.index_select(0, slots.reshape(-1)).view(t, s, nodes, -1).transpose(1, 2).reshape(t, nodes, -1)


def field_table(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The fields g, h (T, F, Gy, Gx) as one table (T·N, 2·F) for the bases: per control point
    of each frame, the F gains then the F offsets."""
    return torch.cat([g.flatten(2), h.flatten(2)], 1).transpose(1, 2).reshape(-1, 2 * g.shape[1])


def pair_weights(valid: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The temporal weights w_{t,k} (..., J, ...) from the validity (..., J, ...) bool of each
    neighbour (J on axis 1), ``beta`` (J,) the weight of each offset.

    Symmetric pairs (−k, +k) that are both valid share the weight of distance |k|; the weights
    are renormalised over the valid pairs, so Σ_k w = 1 and Σ_k w·k = 0: a linear ramp in time
    has zero residual. Where no pair is valid (a shot's first and last frames, one-sided
    occlusion) the residual is left out (all w are 0): any one-sided prediction either
    penalises a fade or extrapolates with negative weights. Those frames are still corrected,
    as the neighbours in their neighbours' residuals.
    """
    wp = paired(valid).float().mul_(beta.view(1, -1, *[1] * (valid.dim() - 2)))
    return wp.div_(wp.sum(1, keepdim=True).clamp_(min=1e-12))


def paired(valid: torch.Tensor) -> torch.Tensor:
    """(..., J, ...) bool (J on axis 1): neighbour k and its mirror −k are both valid (offsets
    ordered −r…−1, 1…r, so the mirror of index j is J−1−j)."""
    return valid & valid.flip(1)


def any_paired(valid: torch.Tensor) -> torch.Tensor:
    """(T, J, ...) bool → (T, ...): some neighbour and its mirror are both valid, the pixels
    with a residual of their own. ``paired(valid).any(1)`` without the (T, J, ...) mask: a pair
    is its own mirror, so the first J / 2 offsets cover them all."""
    j = valid.shape[1]
    out = valid[:, 0] & valid[:, j - 1]
    for i in range(1, j // 2):
        out |= valid[:, i] & valid[:, j - 1 - i]
    return out


def coefficients(y: torch.Tensor, y_nb: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual X̂_t − Σ_k w_k X̂_{t+k} written out in the fields, X̂ = g (Y − μ) + μ + h.

    y (..., K) observed; y_nb (..., J, K) the neighbours' values there (warped or tracked);
    w (..., J) their weights. The coefficient of g_t is Y_t − μ and of h_t 1; of g_{t+k}
    −w_k (Y_{t+k} − μ) and of h_{t+k} −w_k; the constant is μ (1 − Σ_k w_k). Returns coef
    (..., 1 + J, 2, K) for the slots (t, then t + k) and (g, h), and the constant (..., K).
    """
    gain = torch.cat([y.unsqueeze(-2), y_nb], -2) - PIVOT
    weight = torch.cat([torch.ones_like(w[..., :1]), w.neg()], -1).unsqueeze(-1)  # (..., 1 + J, 1)
    coef = torch.stack([gain * weight, weight.expand_as(gain)], -2)
    constant = (PIVOT * (1.0 - w.sum(-1, keepdim=True))).expand_as(y)
    return coef, constant


def sides(y: torch.Tensor, y_nb: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Which signs of the residual r = X̂_t − Σ_k w_k X̂_{t+k} say something, (..., 2, K):
    1 where a positive (first) and a negative (second) r is penalised, per plane.

    y (..., K) observed, y_nb (..., J, K) the neighbours' values, w (..., J) their weights, as
    in :func:`coefficients`. A sample the scan clipped (:func:`model.clipped`) bounds the
    scene's value instead of measuring it: clipped at white, the scene was at least as
    bright. Where frame t's own sample, or a neighbour's at black, is clipped, the residual
    of the scene is at least r: only r > 0 is evidence against the fields, ρ(max(r, 0))
    (censored); the other way round, only r < 0; both ways, neither. Dropping such residuals
    instead lost 0.12 dB on bigbuckbunny, whose sky clips in 16 of 40 frames.
    """
    high, low = clipped(y)
    nb_high, nb_low = clipped(y_nb)
    weighted = (w > 0).unsqueeze(-1)
    low_bound = high | (nb_low & weighted).any(-2)  # the scene's residual is at least r
    high_bound = low | (nb_high & weighted).any(-2)  # ... at most r
    return torch.stack([~high_bound, ~low_bound], -2).to(y.dtype)


@dataclass
class Problem:
    """The fields' part of E with everything that stays fixed while the solver runs (one chunk).

    The data term is a quadrature over the ``lattice``, whose points on the blotch layer's
    pixels weigh nothing (S takes up their residuals); the long-range term's lattice is
    ``far`` (None without it). ``smoother``: (T, T) the gauge's temporal average B (rows sum
    to 1). ``shared``: one correction for all K planes (F = 1) rather than one per plane.
    """

    frames: int
    size: tuple[int, int]
    grid: tuple[int, int]
    lattice: Points
    far: Points | None
    smoother: torch.Tensor
    weights: Weights
    shared: bool = False

    @property
    def planes(self) -> int:
        """K: the planes the data term reads (the colour channels, or one)."""
        return self.lattice.coef.shape[-1]

    @property
    def fields(self) -> int:
        """F: 1 for a correction shared by the planes, K for one per plane."""
        return 1 if self.shared else self.planes


def per_frame(value: float | torch.Tensor, frames: torch.Tensor) -> float | torch.Tensor:
    """A scalar, or a per-frame (T,) value looked up at ``frames`` (any shape)."""
    return value[frames] if isinstance(value, torch.Tensor) else value


def affine_residual(g: torch.Tensor, h: torch.Tensor, points: Points) -> torch.Tensor:
    """X̂_t − Σ_k w_{t,k} X̂_{t+k} at the points, (..., K), blotches aside: the fields in every
    slot, interpolated in one product, times their coefficients. A field shared by the K planes
    (F = 1) meets their coefficients in one batched product, (1, S·2) @ (S·2, K): as fast to
    differentiate as one plane, where a broadcast product is not."""
    table = points.fields_at(g, h)
    *lead, slots, two, k = points.coef.shape
    if g.shape[1] == 1:
        return (table.view(*lead, 1, slots * two) @ points.coef.view(*lead, slots * two, k)).squeeze(-2) + points.constant
    return (table.view(points.coef.shape) * points.coef).sum((-3, -2)) + points.constant


def residual(g: torch.Tensor, h: torch.Tensor, p: Problem) -> torch.Tensor:
    """r_t = X̂_t − Σ_k w_{t,k} 𝒲_{t,k}(X̂_{t+k}) on the lattice, (T, P, K)."""
    return affine_residual(g, h, p.lattice)


def huber(r: torch.Tensor, delta: float | torch.Tensor) -> torch.Tensor:
    """ρ_δ(r): r²/2 for |r| ≤ δ, δ(|r| − δ/2) beyond; convex, smooth, ρ'' ≤ 1. With
    c = min(|r|, δ) both read c (|r| − c/2)."""
    a = r.abs()
    c = torch.minimum(a, torch.as_tensor(delta, dtype=r.dtype, device=r.device))
    return c * (a - 0.5 * c)


def huber_slope(r: torch.Tensor, delta: float | torch.Tensor) -> torch.Tensor:
    """ψ_δ(r) = ρ_δ'(r): r clipped to [−δ, δ]."""
    bound = torch.as_tensor(delta, dtype=r.dtype, device=r.device)
    return torch.maximum(torch.minimum(r, bound), -bound)


class _RobustSum(torch.autograd.Function):
    """Σ q ρ_δ(r) with the gradient q ψ_δ(r) written out: autograd would take it through
    every step of ρ (a pass over the residuals each, on both ways); this is one pass. The
    backward is made of differentiable operations, so the sum can be differentiated twice
    (the unrolled schedule's tuning)."""

    @staticmethod
    def forward(ctx, r: torch.Tensor, q: torch.Tensor, delta: float | torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(r, q)
        ctx.delta = delta
        return (q * huber(r, delta)).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        r, q = ctx.saved_tensors
        return grad * q * huber_slope(r, ctx.delta), None, None


def robust_sum(r: torch.Tensor, q: torch.Tensor, delta: float | torch.Tensor) -> torch.Tensor:
    """Σ q ρ_δ(r) over residuals r with weights q (broadcastable to r), differentiable in r
    only: the weights are constant or, for censored residuals (:meth:`Points.weights`), constant
    on each side of 0."""
    return _RobustSum.apply(r, q, delta)


def data_term(g: torch.Tensor, h: torch.Tensor, p: Problem) -> torch.Tensor:
    """Σ_t mean_x O_t ρ_δ(r_t): temporal consistency along motion (mean over K too), plus
    the long-range term on its lattice, λ_L Σ_t mean_x ρ_δ(r^L_t)."""
    parts = [(p.lattice, residual(g, h, p), 1.0)]
    if p.far is not None and p.weights.lambda_l > 0:
        parts.append((p.far, affine_residual(g, h, p.far), p.weights.lambda_l))
    total = g.new_zeros(())
    for points, r, weight in parts:
        delta = per_frame(p.weights.delta, points.frame.unsqueeze(-1))
        total = total + weight * robust_sum(r, points.weights(r), delta)
    return total / p.planes


def smoothness_term(g: torch.Tensor, h: torch.Tensor, p: Problem) -> torch.Tensor:
    """λ_R Σ_t mean over adjacent control points of the squared differences of g and h."""
    if p.grid == (1, 1) or p.weights.lambda_r == 0:
        return g.new_zeros(())
    a, b = grid_edges(p.grid)
    gf, hf = g.flatten(2), h.flatten(2)
    diff = (gf[..., a] - gf[..., b]).pow(2) + (hf[..., a] - hf[..., b]).pow(2)
    return p.weights.lambda_r * diff.mean(dim=(1, 2)).sum()


def slow_part(field: torch.Tensor, smoother: torch.Tensor) -> torch.Tensor:
    """B x: the temporal average (``smoother`` B, (T, T)) of a field (T, F, Gy, Gx) at every frame."""
    return torch.einsum("ts,skyx->tkyx", smoother, field)


def gauge_term(g: torch.Tensor, h: torch.Tensor, p: Problem) -> torch.Tensor:
    """λ_P on the slow part (B g, B h) plus a weak λ_0 on every frame's correction."""
    bg, bh = slow_part(g, p.smoother), slow_part(h, p.smoother)
    slow = ((bg - 1).pow(2) + bh.pow(2)).mean(dim=(1, 2, 3)).sum()
    each = ((g - 1).pow(2) + h.pow(2)).mean(dim=(1, 2, 3)).sum()
    return p.weights.lambda_p * slow + p.weights.lambda_0 * each


def unbiased(g: torch.Tensor, h: torch.Tensor, smoother: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The corrections g, h (T, F, Gy, Gx) with the gauge's bias taken out: X̂ ← (1 + v) X̂.

    The gauge pins the slow part of the correction to identity, B g = 1. But the exact
    correction of a gain that fluctuates about 1, A = 1 + a with a of mean 0, is g = 1/A, whose
    mean is E[1/A] ≈ 1 + var(a): pinned to 1, every frame comes out darker by that factor,
    X̂ ≈ (1 − var a) X (2 % for a flicker of σ = 0.14, 7 % for 0.26). v = B((g − B g)²) is
    that variance, measured on the fit at each control point and frame (slow, as B is: it
    brings no flicker back). In the pivot form, (1 + v) X̂ = g' (Y − μ) + μ + h' with
    g' = (1 + v) g and h' = (1 + v)(μ + h) − μ. ``smoother``: B, (T, T).
    """
    v = slow_part((g - slow_part(g, smoother)).pow(2), smoother)
    return g * (1 + v), (1 + v) * (PIVOT + h) - PIVOT


def energy(g: torch.Tensor, h: torch.Tensor, p: Problem) -> torch.Tensor:
    """E over the fields g, h (T, F, Gy, Gx), the blotch layer's pixels left out (its first
    block; smooth, so FISTA's step is a gradient step)."""
    return data_term(g, h, p) + smoothness_term(g, h, p) + gauge_term(g, h, p)


def blotch_data(s: torch.Tensor, b: Blotches) -> torch.Tensor:
    """The smooth part of E_S: (1/K) Σ_i q_i ρ_δ(a_i − (B s)_i) at S's points."""
    r = b.affine - b.blotch_map(s).unsqueeze(1)
    return robust_sum(r, b.weights(r), b.delta) / b.affine.shape[1]


def sparsity_term(s: torch.Tensor, b: Blotches) -> torch.Tensor:
    """λ_S Σ_t mean_x |S_t|: blotches are sparse."""
    return (b.lam * s.abs()).sum()


def blotch_energy(s: torch.Tensor, b: Blotches) -> torch.Tensor:
    """E_S(s), E with the fields fixed (its second block), up to a constant."""
    return blotch_data(s, b) + sparsity_term(s, b)
