"""FISTA on the two blocks of the objective of :mod:`dfdb.objective`, unrolled, with
per-iteration parameters.

E is minimised over the fields g, h (its smooth part, the blotch layer's pixels left out),
then over the blotch layer S with the fields fixed, E_S(s) = f(s) + Σ λ|s| with f smooth and
convex. Each iteration takes a gradient step on the smooth part (autograd gives the adjoints
of the grid interpolation and of the blotch layer's warp; at the full-resolution points they
are the stored transposes of :mod:`dfdb.linear`), then, for S, the proximal step of the L1
term (soft-thresholding) and the projection that keeps 0 ≤ X̂ ≤ 1, with Nesterov momentum.
Steps are preconditioned: each coordinate is scaled by the Jacobi diagonal of the Hessian
(:func:`preconditioner`, :attr:`~dfdb.objective.Blotches.scale`) and the step is 1/L with L
the largest eigenvalue of the preconditioned Hessian (:func:`lipschitz`, power iteration), so
the iteration is scale-free.

Unrolled form (LFISTA): iteration i uses step η_i/L and threshold τ_i·λ_S·η_i/L. FISTA theory
gives η = τ = 1; the shipped default η (``DEFAULT_STEP``) was tuned offline on the synthetic
clips of ``dfdb.bench.synth`` (lowest E after 8–16 iterations), and ``autotune`` tunes η_i, τ_i
on the clip being restored by minimising E after K iterations.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .objective import Blotches, Problem, blotch_data, energy

#: η for every iteration when not autotuned: how far beyond the safe 1/L bound to step.
DEFAULT_STEP = 1.5
#: L of either block's Jacobi-preconditioned problem. It is a property of the model's
#: structure more than of the footage: :func:`lipschitz` measured 0.6–4.3 (with its 25 %
#: margin) for the fields over synthetic and real clips, grids 1×1…8×8 and both passes, and
#: 1.0–1.6 for the blotch layer on the benchmark (a blotch on the same pixels of consecutive
#: frames of a still shot, which the candidate test does not let through, reaches 2.2; the
#: bound, (1 + Σ|w|)² / (1 + Σw²) with the margin, is under 4). A constant keeps every frame's
#: result independent of which frames were solved before it (render order, scrubbing).
PRECONDITIONED_L = 4.5


@dataclass
class Schedule:
    """Per-iteration step multipliers η_i and threshold multipliers τ_i, each (K,)."""

    step: torch.Tensor
    thresh: torch.Tensor

    @classmethod
    def default(cls, iterations: int) -> "Schedule":
        return cls(torch.full((iterations,), DEFAULT_STEP), torch.ones(iterations))

    def to(self, device: torch.device) -> "Schedule":
        return Schedule(self.step.to(device), self.thresh.to(device))


@dataclass
class Fields:
    """The fields' unknowns: g, h (T, F, Gy, Gx) on the control grid."""

    g: torch.Tensor
    h: torch.Tensor

    @classmethod
    def identity(cls, p: Problem) -> "Fields":
        g = torch.ones(p.frames, p.fields, *p.grid, dtype=p.lattice.coef.dtype, device=p.lattice.coef.device)
        return cls(g, torch.zeros_like(g))


def preconditioner(p: Problem) -> Fields:
    """Diagonal of ∇²E over the fields (Jacobi), per unknown: the scale each is stepped in.

    Control point j of the frame in slot s of a residual enters it with coefficient φ_j·c_s
    (:func:`~dfdb.objective.coefficients`: Y − μ for the gain of the frame itself, w_k·(Y − μ)
    for a neighbour's, 1 and w_k for the offsets): the diagonal is Σ q·φ_j·c_s² over every
    residual and slot that reads it (the long-range lattice λ_L times), summed over the planes a
    shared correction serves, plus the regularisers' diagonals.
    """
    t, k = p.frames, p.planes
    gy, gx = p.grid
    nodes = gy * gx
    parts = [(p.lattice, 1.0)] + ([(p.far, p.weights.lambda_l)] if p.far is not None and p.weights.lambda_l > 0 else [])
    diag = torch.zeros(t, nodes, 2, k, dtype=p.lattice.coef.dtype, device=p.lattice.coef.device)
    for points, weight in parts:
        squares = points.q[..., None, None, None] * points.coef.pow(2)  # (..., S, 2, K)
        diag.add_(points.spread(squares.flatten(-2)).view(t, nodes, 2, k), alpha=weight)
    edges = (gy - 1) * gx + gy * (gx - 1)
    reg = (4.0 * p.weights.lambda_r / edges if edges else 0.0) + 2.0 * (p.weights.lambda_p + p.weights.lambda_0) / nodes
    f = p.fields
    shape = lambda d: (d.reshape(t, nodes, f, -1).sum(-1) / k + reg).clamp(min=1e-6).transpose(1, 2).reshape(t, f, gy, gx)  # noqa: E731
    return Fields(shape(diag[:, :, 0]), shape(diag[:, :, 1]))


def gradient(f: Callable[..., torch.Tensor], at: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """∇f at ``at`` by autograd (the adjoints of warps and upsampling come for free)."""
    xs = [x.detach().requires_grad_(True) for x in at]
    with torch.enable_grad():
        grads = torch.autograd.grad(f(*xs), xs, allow_unused=True)
    return [torch.zeros_like(x) if d is None else d for x, d in zip(xs, grads)]


def lipschitz(f: Callable[..., torch.Tensor], scale: Sequence[torch.Tensor], at: Sequence[torch.Tensor],
              iterations: int = 8) -> float:
    """λ_max of D^{-1/2} ∇²f D^{-1/2} by power iteration, ∇²f·v from differences of gradients,
    for f of the variables ``at`` and D their Jacobi diagonals ``scale``.

    f is quadratic but for the Huber corners, so the difference of gradients at ``at`` and
    ``at + εv`` is the Hessian-vector product. A 25 % margin covers the power iteration's
    underestimate.
    """
    gen = torch.Generator(device="cpu").manual_seed(0)
    v = [torch.randn(x.shape, generator=gen).to(x) for x in at]
    base = gradient(f, at)
    roots = [d.sqrt() for d in scale]
    lam, eps = 1.0, 1e-3
    for _ in range(iterations):
        norm = math.sqrt(sum(float((x * x).sum()) for x in v)) or 1.0
        v = [x / norm for x in v]
        grad = gradient(f, [a + eps * x / r for a, x, r in zip(at, v, roots)])
        v = [(d - b) / eps / r for d, b, r in zip(grad, base, roots)]
        lam = math.sqrt(sum(float((x * x).sum()) for x in v))
    return 1.25 * lam


def soft_threshold(x: torch.Tensor, theta: torch.Tensor | float) -> torch.Tensor:
    """prox of θ‖·‖₁: shrink towards 0 by θ (the blotch layer's sparsity step)."""
    return torch.sign(x) * torch.clamp(x.abs() - theta, min=0.0)


Prox = Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], list[torch.Tensor]]


def fista(f: Callable[..., torch.Tensor], start: Sequence[torch.Tensor], scale: Sequence[torch.Tensor],
          schedule: Schedule, lip: float, prox: Prox | None = None, create_graph: bool = False) -> list[torch.Tensor]:
    """K = len(schedule.step) unrolled FISTA iterations on f(x) + r(x) from ``start``.

    f: the smooth part, of the variables; each variable is stepped by η_i / (L·d) with d its
    Jacobi diagonal (``scale``) and L = ``lip`` that of the preconditioned problem;
    ``prox(values, steps, τ_i)``: the proximal step of r at those steps, or None for r = 0.
    With ``create_graph`` the result stays differentiable in the schedule (for autotuning).
    """
    x, z, momentum = list(start), list(start), 1.0
    for eta, tau in zip(schedule.step, schedule.thresh):
        zs = [v if create_graph and v.requires_grad else v.detach().requires_grad_(True) for v in z]
        with torch.enable_grad():
            grads = torch.autograd.grad(f(*zs), zs, create_graph=create_graph, allow_unused=True)
        steps = [eta / (lip * d) for d in scale]
        new = [v if d is None else v - a * d for v, a, d in zip(zs, steps, grads)]
        if prox is not None:
            new = prox(new, steps, tau)
        if not create_graph:
            new = [v.detach() for v in new]
        nxt = (1.0 + math.sqrt(1.0 + 4.0 * momentum * momentum)) / 2.0
        beta = (momentum - 1.0) / nxt
        z = [v + beta * (v - old) for v, old in zip(new, x)]
        x, momentum = new, nxt
    return x


def fit_fields(p: Problem, schedule: Schedule, start: Fields | None = None, create_graph: bool = False,
               lip: float = PRECONDITIONED_L) -> Fields:
    """The fields' block: ``schedule`` FISTA iterations on E over g, h from ``start``
    (identity by default)."""
    x = start or Fields.identity(p)
    d = preconditioner(p)
    g, h = fista(lambda g, h: energy(g, h, p), (x.g, x.h), (d.g, d.h), schedule, lip, create_graph=create_graph)
    return Fields(g, h)


def fit_blotches(b: Blotches, schedule: Schedule, create_graph: bool = False,
                 lip: float = PRECONDITIONED_L) -> torch.Tensor:
    """The blotch layer's block: ``schedule`` FISTA iterations on E_S from S = 0, (n_s,).

    The proximal step soft-thresholds s (the L1 term) and clips it to the box X̂ − 1 ≤ s ≤ X̂,
    so that the restored X̂ − S stays in [0, 1]."""
    s = b.affine.new_zeros(b.s_index.numel())
    if s.numel() == 0:
        return s

    def prox(values: list[torch.Tensor], steps: list[torch.Tensor], tau: torch.Tensor) -> list[torch.Tensor]:
        return [torch.minimum(torch.maximum(soft_threshold(values[0], tau * steps[0] * b.lam), b.low), b.high)]

    return fista(lambda s: blotch_data(s, b), (s,), (b.scale,), schedule, lip, prox, create_graph)[0]


def autotune(energy_after: Callable[[Schedule, bool], torch.Tensor], iterations: int, device: torch.device,
             steps: int = 15, lr: float = 0.15) -> Schedule:
    """Tune η_i, τ_i by minimising ``energy_after(schedule, create_graph)``, the energy after
    ``iterations`` unrolled steps of a block's solve.

    Starts from the shipped defaults and keeps them if tuning does not lower E.
    """
    base = Schedule.default(iterations).to(device)
    log_eta = torch.zeros(iterations, device=device, requires_grad=True)
    log_tau = torch.zeros(iterations, device=device, requires_grad=True)
    opt = torch.optim.Adam([log_eta, log_tau], lr=lr)
    with torch.no_grad():
        best_e = float(energy_after(base, False))
    best = base
    for _ in range(steps):
        trial = Schedule(base.step * log_eta.exp(), base.thresh * log_tau.exp())
        with torch.enable_grad():
            e = energy_after(trial, True)
            opt.zero_grad()
            e.backward()
        value = float(e.detach())
        if value < best_e and math.isfinite(value):
            best_e, best = value, Schedule(trial.step.detach().clone(), trial.thresh.detach().clone())
        opt.step()
    return best
