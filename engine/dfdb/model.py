"""The degradation model and its inverse (DESIGN.md §3–4).

Observation:   Y_t = A_t ⊙ X_t + B_t + S_t + N_t
Restoration:   X̂_t = g_t ⊙ (Y_t − μ) + μ + h_t − S_t      (μ = 0.5, see PIVOT)

The correction fields g_t, h_t are spatially smooth: they live on a coarse grid of Gy×Gx
control points and are upsampled bilinearly (control points on the frame's corners and evenly
in between; 1×1 is a global correction). Everything here is linear in (g, h, S), which keeps
the objective convex.

Shapes: fields on the grid are (T, F, Gy, Gx) with F = 1 (a correction shared by the colour
channels) or F = C (per-channel correction); planes are (T, C, H, W), the fields broadcast over
them. Intensities in [0, 1].

The scan clips: where A_t X_t + B_t left [0, 1], Y_t holds 1 (or 0), and only says that the
scene was at least that bright (dark): its correction is a bound on X̂, not an estimate
(:func:`clipped`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample(field: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Grid field (T, K, Gy, Gx) → dense field (T, K, H, W) by bilinear interpolation."""
    if field.shape[-2:] == (1, 1):
        return field.expand(*field.shape[:2], *size)
    return F.interpolate(field, size=size, mode="bilinear", align_corners=True)


#: Observed values within this of 0 or 1 are taken as clipped by the scan (half an 8-bit level).
CLIP_MARGIN = 0.5 / 255.0


def clipped(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Observed values (any shape, in [0, 1]) clipped at white and at black: two bool tensors."""
    return values >= 1.0 - CLIP_MARGIN, values <= CLIP_MARGIN


#: Intensity the gain pivots around: X̂ = g ⊙ (Y − μ) + μ + h. Centring the gain on mid-grey
#: makes g and h nearly orthogonal (a gain change no longer shifts the mean), which the
#: first-order solver needs; it is the same family of corrections as g ⊙ Y + h′ with
#: h′ = h + μ(1 − g).
PIVOT = 0.5


def restore(y: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """X̂ = g ⊙ (Y − μ) + μ + h, dense fields broadcast over the channels of ``y`` (blotches aside)."""
    return gain * (y - PIVOT) + (offset + PIVOT)


def grid_edges(grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (i, j) of horizontally and vertically adjacent control points (flat indices)."""
    gy, gx = grid
    idx = torch.arange(gy * gx).view(gy, gx)
    a = torch.cat([idx[:, :-1].reshape(-1), idx[:-1, :].reshape(-1)])
    b = torch.cat([idx[:, 1:].reshape(-1), idx[1:, :].reshape(-1)])
    return a, b
