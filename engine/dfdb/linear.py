"""Sparse linear maps with their adjoints, differentiable, for the solver's inner loop.

The data term at full-resolution points is an affine function of the unknowns (g, h, S): each
point reads four control points of its own frame and four of each neighbour frame, and a few
blotch pixels through the warp. Written as sparse matrices, one gradient evaluation is two
sparse products (A x forward, Aᵀ y backward) instead of gathers, broadcasts and scatter-adds
of (n, J, 4, K) intermediates; autograd is told that the adjoint of A is Aᵀ, which is stored
too (CSR products with a transposed matrix are slow), so the maps stay differentiable (also
twice, for the unrolled schedule's tuning).
"""
from __future__ import annotations

import warnings

import torch


def csr(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """CSR matrix of ``shape`` from triplets (duplicates are summed by the products).

    32-bit indices: the CPU kernels convert 64-bit ones on every product otherwise.
    """
    if rows.numel() > 1 and not bool((rows[1:] >= rows[:-1]).all()):
        rows, order = torch.sort(rows.to(torch.int32), stable=True)
        cols, vals = cols[order], vals[order]
    crow = torch.zeros(shape[0] + 1, dtype=torch.int32, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=shape[0]).cumsum(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, cols.to(torch.int32), vals, shape)


class _Apply(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, matrix: torch.Tensor, adjoint: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.matrices = (matrix, adjoint)
        return matrix @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        matrix, adjoint = ctx.matrices
        return _Apply.apply(grad, adjoint, matrix), None, None


class LinearMap:
    """x (m, K) or (m,) ↦ A x for a sparse A (n, m) given by triplets; differentiable in x."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, shape: tuple[int, int]) -> None:
        keep = vals != 0
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        self.matrix = csr(rows, cols, vals, shape)
        self.adjoint = csr(cols, rows, vals, (shape[1], shape[0]))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = x.dim() == 1
        out = _Apply.apply(x.unsqueeze(1) if squeeze else x, self.matrix, self.adjoint)
        return out.squeeze(1) if squeeze else out
