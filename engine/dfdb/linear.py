"""Sparse linear maps with their adjoints, differentiable, for the solver's inner loop.

The fields at the data term's points are a sparse product: each point reads four control
points of a frame (the bilinear basis Φ, :func:`dfdb.problem.point_basis`), and the blotch
layer enters through a few pixels of the warp. Written as sparse matrices, one gradient
evaluation is two sparse products (A x forward, Aᵀ y backward) instead of gathers,
broadcasts and scatter-adds; autograd is told that the adjoint of A is Aᵀ, which is stored
too (CSR products with a transposed matrix are slow), so the maps stay differentiable (also
twice, for the unrolled schedule's tuning).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch


def csr(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """CSR matrix of ``shape`` from triplets (nnz,) in any order (duplicates are summed by the products).

    32-bit indices: the CPU kernels convert 64-bit ones on every product otherwise. Triplets
    that come sorted by row (checked) are taken as they are.
    """
    rows, cols = rows.to(torch.int32), cols.to(torch.int32)
    crow = torch.zeros(shape[0] + 1, dtype=torch.int32, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=shape[0]).cumsum(0)
    if rows.numel() > 1 and not bool((rows[1:] >= rows[:-1]).all()):
        order = sort_order(rows, shape[0])
        cols, vals = cols.index_select(0, order), vals.index_select(0, order)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, cols, vals, shape)


def sort_order(keys: torch.Tensor, bound: int) -> torch.Tensor:
    """The stable permutation (nnz,) int64 that sorts ``keys`` (nnz,), integers in [0, bound).

    On the CPU, keys that fit 16 bits (the adjoint of a bilinear basis has a row per control
    point of the chunk, a few thousand) are sorted by NumPy, which radix-sorts them (a counting sort per byte, O(nnz)):
    about twice as fast as ``torch.sort``, which compares.
    """
    if keys.device.type == "cpu" and bound <= 1 << 16:
        return torch.from_numpy(np.argsort(keys.numpy().astype(np.uint16), kind="stable"))
    return torch.sort(keys, stable=True).indices


class _Apply(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, linear: "LinearMap", transposed: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.linear, ctx.transposed = linear, transposed
        return (linear.adjoint if transposed else linear.matrix) @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return _Apply.apply(grad, ctx.linear, not ctx.transposed), None, None


class LinearMap:
    """x (m, K) or (m,) ↦ A x for a sparse A (n, m) given by triplets; differentiable in x.
    Zero values are stored like any other. The adjoint is built when it is first needed: a
    map applied once, without a gradient, never pays for it."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, shape: tuple[int, int]) -> None:
        rows, cols = rows.to(torch.int32), cols.to(torch.int32)
        self.matrix = csr(rows, cols, vals, shape)
        self._triplets: tuple[torch.Tensor, ...] | None = (rows, cols, vals)
        self._adjoint: torch.Tensor | None = None

    @property
    def adjoint(self) -> torch.Tensor:
        """Aᵀ as a CSR matrix of its own (products with a transposed CSR matrix are slow)."""
        if self._adjoint is None:
            assert self._triplets is not None
            rows, cols, vals = self._triplets
            self._adjoint = csr(cols, rows, vals, (self.matrix.shape[1], self.matrix.shape[0]))
            self._triplets = None
        return self._adjoint

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = x.dim() == 1
        out = _Apply.apply(x.unsqueeze(1) if squeeze else x, self, False)
        return out.squeeze(1) if squeeze else out

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        """Aᵀ y for y (n, K), not differentiable: for sums over the points (preconditioners)."""
        return self.adjoint @ y
