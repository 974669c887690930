"""FISTA on the objective of :mod:`dfdb.objective`, unrolled, with per-iteration parameters.

E = f(g, h, S) + λ_S‖S‖₁ with f smooth and convex: each iteration takes a gradient step on f
(autograd gives the adjoints of the grid interpolation and of the blotch layer's warp; at
the full-resolution points they are the stored transposes of :mod:`dfdb.linear`), then the proximal step
of the L1 term (soft-thresholding of S), then projects S so that 0 ≤ X̂ ≤ 1, with Nesterov
momentum. Steps are preconditioned: each coordinate is scaled by the Jacobi diagonal of ∇²f
(:func:`preconditioner`) and the step is 1/L with L the largest eigenvalue of the
preconditioned Hessian (:func:`lipschitz`, power iteration), so the iteration is scale-free.

Unrolled form (LFISTA): iteration i uses step η_i/L and threshold τ_i·λ_S·η_i/L. FISTA theory
gives η = τ = 1; the shipped default η (``DEFAULT_STEP``) was tuned offline on the synthetic
clips of ``dfdb.bench.synth`` (lowest E after 8–16 iterations), and ``autotune`` tunes η_i, τ_i on the clip being restored by
minimising E after K iterations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .model import restore
from .objective import Problem, energy, field_table, smooth_part

#: η for every iteration when not autotuned: how far beyond the safe 1/L bound to step.
DEFAULT_STEP = 1.5
#: L of the Jacobi-preconditioned problem. It is a property of the model's structure more than
#: of the footage: :func:`lipschitz` measured 0.6–4.3 (with its 25 % margin) over synthetic and
#: real clips, grids 1×1…8×8 and both passes. A constant keeps every frame's result independent
#: of which frames were solved before it (render order, scrubbing).
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
class Variables:
    """The unknowns: g, h (T, F, Gy, Gx) on the control grid and s (n,) on S's support."""

    g: torch.Tensor
    h: torch.Tensor
    s: torch.Tensor

    @classmethod
    def identity(cls, p: Problem) -> "Variables":
        g = torch.ones(p.frames, p.fields, *p.grid, dtype=p.lattice.coef.dtype, device=p.lattice.coef.device)
        return cls(g, torch.zeros_like(g), g.new_zeros(p.s_index.numel()))


def preconditioner(p: Problem) -> Variables:
    """Diagonal of ∇²f (Jacobi), per unknown: the scale each coordinate is stepped in.

    Control point j of the frame in slot s of a residual enters it with coefficient φ_j·c_s
    (:func:`~dfdb.objective.coefficients`: Y − μ for the gain of the frame itself, w_k·(Y − μ)
    for a neighbour's, 1 and w_k for the offsets): the diagonal is Σ q·φ_j·c_s² over every
    residual and slot that reads it (the long-range lattice λ_L times), summed over the planes a
    shared correction serves, plus the regularisers' diagonals. A blotch pixel's is (1 + Σ w²)/N.
    """
    t, k = p.frames, p.planes
    gy, gx = p.grid
    nodes = gy * gx
    pix = p.pixels
    parts = [(p.lattice, 1.0), (pix, 1.0)] + ([(p.far, p.weights.lambda_l)] if p.far is not None and p.weights.lambda_l > 0 else [])
    diag = torch.zeros(t, nodes, 2, k, dtype=pix.coef.dtype, device=pix.coef.device)
    for points, weight in parts:
        squares = points.q[..., None, None, None] * points.coef.pow(2)  # (..., S, 2, K)
        diag.add_(points.spread(squares.flatten(-2)).view(t, nodes, 2, k), alpha=weight)
    edges = (gy - 1) * gx + gy * (gx - 1)
    reg = (4.0 * p.weights.lambda_r / edges if edges else 0.0) + 2.0 * (p.weights.lambda_p + p.weights.lambda_0) / nodes
    f = p.fields
    shape = lambda d: (d.reshape(t, nodes, f, -1).sum(-1) / k + reg).clamp(min=1e-6).transpose(1, 2).reshape(t, f, gy, gx)  # noqa: E731
    ds = torch.full((p.s_index.numel(),), 1.0 / (p.size[0] * p.size[1]), dtype=diag.dtype, device=diag.device)
    if p.s_point.numel():
        ds = ds * pix.coef[p.s_point, :, 1, 0].pow(2).sum(1)  # the offsets' coefficients: 1 + Σ w²
    return Variables(shape(diag[:, :, 0]), shape(diag[:, :, 1]), ds)


def _gradient(v: Variables, p: Problem) -> Variables:
    """∇f at v, by autograd (the adjoints of warps and upsampling come for free)."""
    g, h, s = (x.detach().requires_grad_(True) for x in (v.g, v.h, v.s))
    with torch.enable_grad():
        dg, dh, ds = torch.autograd.grad(smooth_part(g, h, s, p), (g, h, s), allow_unused=True)
    return Variables(dg, dh, torch.zeros_like(s) if ds is None else ds)


def lipschitz(p: Problem, d: Variables, at: Variables, iterations: int = 8) -> float:
    """λ_max of D^{-1/2} ∇²f D^{-1/2} by power iteration, ∇²f·v from differences of gradients.

    f is quadratic but for the Huber corners, so the difference of gradients at ``at`` and
    ``at + εv`` is the Hessian-vector product. A 25 % margin covers the power iteration's
    underestimate.
    """
    gen = torch.Generator(device="cpu").manual_seed(0)
    rnd = lambda x: torch.randn(x.shape, generator=gen).to(x)  # noqa: E731
    v = Variables(rnd(at.g), rnd(at.h), rnd(at.s))
    base = _gradient(at, p)
    lam = 1.0
    for _ in range(iterations):
        norm = math.sqrt(sum(float((x * x).sum()) for x in (v.g, v.h, v.s))) or 1.0
        v = Variables(v.g / norm, v.h / norm, v.s / norm)
        eps = 1e-3
        probe = Variables(at.g + eps * v.g / d.g.sqrt(), at.h + eps * v.h / d.h.sqrt(), at.s + eps * v.s / d.s.sqrt())
        grad = _gradient(probe, p)
        v = Variables((grad.g - base.g) / eps / d.g.sqrt(), (grad.h - base.h) / eps / d.h.sqrt(), (grad.s - base.s) / eps / d.s.sqrt())
        lam = math.sqrt(sum(float((x * x).sum()) for x in (v.g, v.h, v.s)))
    return 1.25 * lam


def soft_threshold(x: torch.Tensor, theta: torch.Tensor | float) -> torch.Tensor:
    """prox of θ‖·‖₁: shrink towards 0 by θ (the blotch layer's sparsity step)."""
    return torch.sign(x) * torch.clamp(x.abs() - theta, min=0.0)


def project_box(v: Variables, p: Problem) -> torch.Tensor:
    """s clipped so that X̂ = gY + h − S stays in [0, 1] at its support (luma, mean over K)."""
    if v.s.numel() == 0:
        return v.s
    pix = p.pixels
    fields = pix.at_blotches(field_table(v.g, v.h)).view(-1, 2, p.fields)
    at = restore(pix.y[p.s_point], fields[:, 0], fields[:, 1]).mean(1)
    return torch.minimum(torch.maximum(v.s, at - 1.0), at)


def fista(p: Problem, schedule: Schedule, start: Variables | None = None, create_graph: bool = False,
          lip: float = PRECONDITIONED_L) -> Variables:
    """K = len(schedule.step) unrolled FISTA iterations from ``start`` (identity by default).

    ``lip`` is L of the preconditioned problem. With ``create_graph`` the result stays
    differentiable in the schedule (for autotuning).
    """
    x = start or Variables.identity(p)
    d = preconditioner(p)
    lam_s = p.blotch_lambda() / (p.size[0] * p.size[1])
    z, momentum = x, 1.0
    for eta, tau in zip(schedule.step, schedule.thresh):
        zg = z.g if create_graph else z.g.detach().requires_grad_(True)
        zh = z.h if create_graph else z.h.detach().requires_grad_(True)
        zs = z.s if create_graph else z.s.detach().requires_grad_(True)
        with torch.enable_grad():
            if create_graph:
                zg, zh, zs = (t if t.requires_grad else t.requires_grad_(True) for t in (zg, zh, zs))
            f = smooth_part(zg, zh, zs, p)
            dg, dh, ds = torch.autograd.grad(f, (zg, zh, zs), create_graph=create_graph, allow_unused=True)
        ds = torch.zeros_like(zs) if ds is None else ds
        g_new = zg - eta / (lip * d.g) * dg
        h_new = zh - eta / (lip * d.h) * dh
        alpha_s = eta / (lip * d.s)
        s_new = soft_threshold(zs - alpha_s * ds, tau * alpha_s * lam_s)
        new = Variables(g_new, h_new, s_new)
        new.s = project_box(new, p)
        if not create_graph:
            new = Variables(new.g.detach(), new.h.detach(), new.s.detach())
        nxt = (1.0 + math.sqrt(1.0 + 4.0 * momentum * momentum)) / 2.0
        beta = (momentum - 1.0) / nxt
        z = Variables(new.g + beta * (new.g - x.g), new.h + beta * (new.h - x.h), new.s + beta * (new.s - x.s))
        x, momentum = new, nxt
    return x


def autotune(p: Problem, iterations: int, steps: int = 15, lr: float = 0.15) -> Schedule:
    """Tune η_i, τ_i on this problem by minimising E after ``iterations`` unrolled steps.

    Starts from the shipped defaults and keeps them if tuning does not lower E.
    """
    base = Schedule.default(iterations).to(p.lattice.q.device)
    log_eta = torch.zeros(iterations, device=p.lattice.q.device, requires_grad=True)
    log_tau = torch.zeros(iterations, device=p.lattice.q.device, requires_grad=True)
    opt = torch.optim.Adam([log_eta, log_tau], lr=lr)

    def objective_after(schedule: Schedule, create_graph: bool) -> torch.Tensor:
        v = fista(p, schedule, create_graph=create_graph)
        return energy(v.g, v.h, v.s, p)

    with torch.no_grad():
        best_e = float(objective_after(base, False))
    best = base
    for _ in range(steps):
        trial = Schedule(base.step * log_eta.exp(), base.thresh * log_tau.exp())
        with torch.enable_grad():
            e = objective_after(trial, True)
            opt.zero_grad()
            e.backward()
        value = float(e.detach())
        if value < best_e and math.isfinite(value):
            best_e, best = value, Schedule(trial.step.detach().clone(), trial.thresh.detach().clone())
        opt.step()
    return best
