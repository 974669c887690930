"""The objective and its solver on small problems assembled from known planes."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dfdb.bench.synth import degrade, make_scene
from dfdb.linear import LinearMap
from dfdb import Params, Restorer, blotch, problem
from dfdb.objective import Points, Weights, any_paired, blotch_data, blotch_energy, energy, paired, residual, sides
from dfdb.problem import assemble, assemble_blotches
from dfdb.flow import Motion, lands_inside, sample_points, track, warp, warp_points
from dfdb.objective import affine_residual, robust_sum
from dfdb.restorer import gaussian_average, long_range, long_reach, neighbour_beta, offsets
from dfdb.solver import (PRECONDITIONED_L, Fields, Schedule, fit_blotches, fit_fields, lipschitz, preconditioner,
                         soft_threshold)

LAM = Weights(lambda_r=0.05, lambda_p=0.002, lambda_0=0.0001, delta=0.04)
LAMBDA_S = 0.05


def still_camera(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Motion]:
    """(valid, nb, motion) for planes y (T, 1, H, W) of a still camera: zero flow, every
    neighbour in the clip valid."""
    t, _, h, w = y.shape
    ks = offsets(2)
    nb = torch.tensor([[min(max(i + k, 0), t - 1) for k in ks] for i in range(t)])
    present = torch.tensor([[0 <= i + k < t for k in ks] for i in range(t)]).view(t, len(ks), 1, 1, 1)
    return present.expand(t, len(ks), 1, h, w), nb, Motion(torch.zeros(t, len(ks), 2, h, w), (h, w))


def still_problem(y: torch.Tensor, grid=(3, 3), support: torch.Tensor | None = None,
                  reach: tuple[int, int] | None = None):
    """The fields' problem for planes y (T, 1, H, W) of a still camera, the pixels a blotch
    layer on ``support`` touches left out; with the long-range term (λ_L = 1) when ``reach``
    gives its (L, step)."""
    valid, nb, motion = still_camera(y)
    far = long_range(y, motion, *reach).term(support) if reach else None
    lam = dataclasses.replace(LAM, lambda_l=1.0 if reach else 0.0)
    touched = None if support is None else blotch.touched(support, blotch.footprints(support, motion, paired(valid), nb))
    return assemble(y, valid, neighbour_beta(2, y.device), nb, motion, grid, lam, gaussian_average(y.shape[0], 6.0, y.device),
                    touched, far)


def still_blotches(y: torch.Tensor, support: torch.Tensor, fields: Fields):
    """The blotch layer's problem for planes y of a still camera, S on ``support``, the fields fixed."""
    valid, nb, motion = still_camera(y)
    feet = blotch.footprints(support, motion, paired(valid), nb)
    return assemble_blotches(y, valid, neighbour_beta(2, y.device), nb, motion, support, feet, fields.g, fields.h,
                             LAMBDA_S, LAM.delta)


def test_a_linear_fade_has_zero_residual():
    base = torch.rand(1, 1, 24, 32) * 0.5 + 0.25
    ramp = torch.linspace(1.0, 0.4, 10).view(10, 1, 1, 1)
    p = still_problem(base * ramp, reach=(4, 1))
    v = Fields.identity(p)
    on_lattice = residual(v.g, v.h, p)
    counted = p.lattice.q > 0  # frames with a symmetric pair of neighbours
    assert bool(counted.any()) and on_lattice[counted].abs().max() < 1e-5
    far = affine_residual(v.g, v.h, p.far)
    assert bool((p.far.q > 0).any()) and far[p.far.q > 0].abs().max() < 1e-5


def test_fista_lowers_the_energy_and_removes_global_flicker():
    base = torch.rand(1, 1, 24, 32) * 0.5 + 0.25
    gains = torch.tensor([1.0, 1.2, 0.85, 1.1, 0.9, 1.15, 0.95, 1.05, 0.9, 1.0]).view(10, 1, 1, 1)
    p = still_problem((base * gains).clamp(0, 1), grid=(1, 1))
    start = Fields.identity(p)
    e0 = float(energy(start.g, start.h, p))
    v = fit_fields(p, Schedule.default(30))
    assert float(energy(v.g, v.h, p)) < 0.2 * e0
    restored = (v.g.view(10, 1, 1, 1) * ((base * gains) - 0.5) + 0.5 + v.h.view(10, 1, 1, 1)).mean((1, 2, 3))
    assert restored.std() < 0.3 * (base * gains).mean((1, 2, 3)).std()


def test_the_long_range_term_removes_the_slow_flicker_the_window_leaves():
    # Independent gains per frame have a slow part too (their average over a few frames): the
    # W = 5 window cannot tell it from a scene change, the tracks to frames ±4, ±8, ±12 away can.
    base = torch.rand(1, 1, 24, 32) * 0.5 + 0.25
    gains = (1.0 + 0.1 * torch.randn(40, generator=torch.Generator().manual_seed(3))).view(40, 1, 1, 1)
    y = (base * gains).clamp(0, 1)
    spread = {}
    for reach in (None, long_reach(2)):
        p = still_problem(y, grid=(1, 1), reach=reach)
        v = fit_fields(p, Schedule.default(30))
        restored = (v.g.view(40, 1, 1, 1) * (y - 0.5) + 0.5 + v.h.view(40, 1, 1, 1)).mean((1, 2, 3))
        spread[reach] = float(restored[8:-8].std() / y.mean((1, 2, 3))[8:-8].std())
    assert spread[long_reach(2)] < 0.3 and spread[long_reach(2)] < 0.7 * spread[None], spread


def test_tracks_follow_chained_flows_and_die_where_they_leave_the_frame_or_the_clip():
    t, h, w = 6, 10, 12
    motion = Motion(torch.zeros(t, 2, 2, h, w), (h, w))  # neighbour 0: t − 1, neighbour 1: t + 1
    motion.field[:, 1, 0] = 1.0  # everything moves 1 px right per frame
    motion.field[:, 0, 0] = -1.0
    motion.field[3, 1, 0, :, 5:] = 3.0  # frame 3's flow to frame 4 is faster on its right half
    nb, pos, alive = track(motion, 1, 0, torch.tensor([4]), torch.tensor([2]), 2)
    assert nb.tolist()[2] == [0, 1, 3, 4]  # offsets −2, −1, +1, +2 of frame 2
    np.testing.assert_allclose(pos[2, :, 0].numpy(), [[0, 4], [1, 4], [3, 4], [4, 4]], atol=1e-6)
    assert alive[2, :, 0].tolist() == [True, True, True, True]
    # Reported every second frame: the same tracks at offsets −2 and +2 only.
    nb2, pos2, alive2 = track(motion, 1, 0, torch.tensor([4]), torch.tensor([2]), 2, every=2)
    assert nb2.tolist()[2] == [0, 4]
    np.testing.assert_allclose(pos2[2, :, 0].numpy(), [[0, 4], [4, 4]], atol=1e-6)
    assert torch.equal(alive2, alive[:, [0, 3]])
    # From frame 3 at x = 9 the fast flow takes the track to x = 12, past the frame's last
    # column (11): dead from there on. From frame 5 the frames after are past the clip's end.
    _, pos3, alive3 = track(motion, 1, 0, torch.tensor([4]), torch.tensor([9]), 2)
    assert alive3[3, :, 0].tolist() == [True, True, False, False]
    assert alive3[5, :, 0].tolist() == [True, True, False, False]
    # From frame 2 at x = 5 it takes the fast flow one frame later: x = 6, then 9 in frame 4.
    _, pos4, alive4 = track(motion, 1, 0, torch.tensor([4]), torch.tensor([5]), 2)
    np.testing.assert_allclose(pos4[2, 2:, 0].numpy(), [[6, 4], [9, 4]], atol=1e-6)
    assert alive4[2, :, 0].all()


def test_a_pair_tracked_onto_a_blotch_is_dropped_with_its_mirror():
    t, h, w = 10, 24, 32  # a still camera: every pixel is a lattice point (P = H·W)
    tracks = long_range(torch.rand(t, 1, h, w), Motion(torch.zeros(t, 4, 2, h, w), (h, w)), 4, 2)
    point = 10 * w + 12
    support = torch.zeros(t, 1, h, w, dtype=torch.bool)
    support[7, 0, 10, 12] = True  # frame 7 has a blotch where frame 5's point is tracked to
    *_, plain = tracks.term()
    *_, dropped = tracks.term(support)
    # Offsets −4, −2, +2, +4 weigh 1, 2, 2, 1; +2 lands on the blotch, so ±2 go.
    np.testing.assert_allclose(plain[5, point].numpy(), [1 / 6, 2 / 6, 2 / 6, 1 / 6], atol=1e-6)
    np.testing.assert_allclose(dropped[5, point].numpy(), [0.5, 0.0, 0.0, 0.5], atol=1e-6)
    assert torch.equal(dropped[4], plain[4]) and torch.equal(dropped[5, point + 1], plain[5, point + 1])


def test_the_long_range_term_reads_a_frames_correction_where_the_track_is():
    """A pan under a gain that ramps across the frame, differently in every frame: the exact
    correction (on the grid, a ramp is exact) leaves the long-range term no residual, since
    frame t + m's gain is read where the track has the point in that frame, 2 px per frame
    away, not where it is in frame t (that left residuals of the ramp's slope times the
    distance travelled)."""
    t, h, w, speed = 9, 24, 48, 2
    gen = torch.Generator().manual_seed(3)
    canvas = torch.rand(h, w + speed * t, generator=gen) * 0.5 + 0.25
    clean = torch.stack([canvas[:, speed * (t - i):speed * (t - i) + w] for i in range(t)]).unsqueeze(1)  # moves right
    slope = torch.rand(t, generator=gen) * 0.6 - 0.3
    ramp = lambda x: 1.0 + slope.view(-1, 1) * (x / (w - 1) * 2.0 - 1.0)  # noqa: E731  the correction g_t(x)
    y = (clean - 0.5) / ramp(torch.arange(w, dtype=torch.float32)).view(t, 1, 1, w) + 0.5
    ks = offsets(2)
    nb = torch.tensor([[min(max(i + k, 0), t - 1) for k in ks] for i in range(t)])
    valid = torch.tensor([[0 <= i + k < t for k in ks] for i in range(t)]).view(t, len(ks), 1, 1, 1).expand(t, len(ks), 1, h, w)
    field = torch.zeros(t, len(ks), 2, 3, 5)
    field[:, :, 0] = torch.tensor([speed * k for k in ks], dtype=torch.float32).view(1, -1, 1, 1)
    motion = Motion(field, (h, w))
    far = long_range(y, motion, 4, 2).term()
    p = assemble(y, valid, neighbour_beta(2, y.device), nb, motion, (3, 5), dataclasses.replace(LAM, lambda_l=1.0),
                 gaussian_average(t, 6.0, y.device), far=far)
    g = ramp(torch.linspace(0, w - 1, 5)).view(t, 1, 1, 5).expand(t, 1, 3, 5).contiguous()
    r = affine_residual(g, torch.zeros_like(g), p.far)  # every pixel is a lattice point here
    x = torch.arange(h * w) % w
    counted = (p.far.q > 0) & ((x >= 4 * speed) & (x < w - 4 * speed)).unsqueeze(0)
    assert bool(counted.any()) and r[counted].abs().max() < 1e-5


def test_point_samples_are_the_dense_warp_at_those_points():
    # The sparse warps (the data term's points, the repairs, the tracks) must see what the
    # dense warp (grid_sample) gives, also where the flow leaves the frame (border replicated).
    g = torch.Generator().manual_seed(0)
    t, c, h, w = 3, 3, 9, 13
    frames = torch.rand(t, c, h, w, generator=g)
    flow = (torch.rand(t, h, w, 2, generator=g) - 0.5) * 8.0
    dense = warp(frames, flow)  # frame i sampled along its own flow
    yi, xi = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for i in range(t):
        x, y = xi.reshape(-1) + flow[i, ..., 0].reshape(-1), yi.reshape(-1) + flow[i, ..., 1].reshape(-1)
        points = sample_points(frames, torch.full_like(xi.reshape(-1), i), x, y)
        torch.testing.assert_close(points, dense[i].reshape(c, -1).T, atol=1e-5, rtol=0)
    # warp_points: the neighbours' planes along flows held on a coarser grid, as Motion.dense gives them.
    motion = Motion(torch.randn(t, 2, 2, 5, 7, generator=g) * 3.0, (h, w))
    nb = torch.tensor([[0, 1], [0, 2], [1, 2]])
    ti, py, px = torch.tensor([0, 1, 2, 2]), torch.tensor([0, 4, 8, 3]), torch.tensor([12, 0, 5, 6])
    sparse = warp_points(frames, motion, nb, ti, py, px)
    for j in range(2):
        full = warp(frames.index_select(0, nb[:, j]), motion.dense(slice(None), j))
        torch.testing.assert_close(sparse[:, j], full[ti, :, py, px], atol=1e-5, rtol=0)
    # Motion.along, the tracks' batched form of Motion.at: rows of points, one frame per row.
    x, y = (torch.rand(3, 50, generator=g) * 1.4 - 0.2) * w, (torch.rand(3, 50, generator=g) * 1.4 - 0.2) * h
    rows = torch.tensor([2, 0, 1])
    at = motion.at(rows.repeat_interleave(50), 1, x.reshape(-1), y.reshape(-1)).view(3, 50, 2)
    torch.testing.assert_close(motion.along(rows, 1, x, y), at, atol=1e-5, rtol=0)


def test_where_flows_land_inside_the_frame_at_points_is_the_dense_flows_answer():
    g = torch.Generator().manual_seed(1)
    for amplitude, pan in ((0.0, 0.0), (2.5, 0.0), (40.0, 0.0), (1.0, -3.0)):
        field = (torch.rand(4, 2, 2, 6, 8, generator=g) - 0.5) * 2 * amplitude
        field[:, :, 0] += pan
        motion = Motion(field, (24, 32))
        t, y, x = torch.meshgrid(torch.arange(4), torch.arange(24), torch.arange(32), indexing="ij")
        for j in range(2):
            dense = lands_inside(motion.dense(slice(None), j))
            at = motion.lands_inside_at(t.reshape(-1), j, x.reshape(-1).float(), y.reshape(-1).float())
            assert torch.equal(at.view(4, 24, 32), dense)


def test_the_shipped_lipschitz_constants_bound_the_measured_ones():
    for seed, kind in enumerate(("pan", "static", "objects")):
        frames = degrade(make_scene(kind, 8, 48, 64, seed=seed), "old_film", seed=seed).frames
        y = torch.from_numpy(frames.mean(-1, keepdims=True)).permute(0, 3, 1, 2).contiguous()
        support = torch.zeros_like(y, dtype=torch.bool)
        support[:, :, 10:14, 20:26] = True
        support[2:5, :, 30:33, 40:50] = True
        for grid, reach in (((1, 1), None), ((4, 4), None), ((4, 4), (4, 1)), ((4, 4), long_reach(1))):
            p = still_problem(y, grid, support, reach)
            d, at = preconditioner(p), Fields.identity(p)
            assert lipschitz(lambda g, h: energy(g, h, p), (d.g, d.h), (at.g, at.h)) <= PRECONDITIONED_L
        b = still_blotches(y, support, fit_fields(p, Schedule.default(10)))
        assert lipschitz(lambda s: blotch_data(s, b), (b.scale,), (torch.zeros(b.s_index.numel()),)) <= PRECONDITIONED_L


def test_the_robust_sum_is_huber_and_twice_differentiable():
    g = torch.Generator().manual_seed(2)
    r = (torch.rand(6, 3, generator=g, dtype=torch.float64) - 0.5) * 0.4
    q = torch.rand(6, 1, generator=g, dtype=torch.float64)
    delta = torch.full((6, 1), 0.07, dtype=torch.float64)
    a = r.abs()
    expected = (q * torch.where(a <= 0.07, 0.5 * r * r, 0.07 * (a - 0.035))).sum()
    torch.testing.assert_close(robust_sum(r, q, delta), expected)
    r.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: robust_sum(x, q, delta), (r,))
    assert torch.autograd.gradgradcheck(lambda x: robust_sum(x, q, 0.07), (r,))


def test_soft_threshold_is_the_l1_prox():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5])
    np.testing.assert_allclose(soft_threshold(x, 0.5).numpy(), [-1.5, 0.0, 0.0, 0.0, 1.0])


def test_a_blotch_is_absorbed_by_s_only_on_its_support():
    base = torch.rand(1, 1, 24, 32) * 0.4 + 0.3
    y = base.repeat(9, 1, 1, 1)
    y[4, 0, 10:14, 10:14] = 0.02  # a dark blotch in the middle frame
    support = torch.zeros_like(y, dtype=torch.bool)
    support[4, 0, 8:16, 8:16] = True
    p = still_problem(y, (2, 2), support)
    fields = fit_fields(p, Schedule.default(40))
    b = still_blotches(y, support, fields)
    layer = fit_blotches(b, Schedule.default(40))
    # Absorbing it costs λ_S|s| instead of the Huber slopes of its own residual and its four
    # footprints': 2/3 of E_S at S = 0.
    assert float(blotch_energy(layer, b)) < 0.75 * float(blotch_energy(torch.zeros_like(layer), b))
    s = torch.zeros(9 * 24 * 32).index_put_((b.s_index,), layer).view(9, 1, 24, 32)
    inside = s[4, 0, 10:14, 10:14]
    assert (inside < -0.1).all()  # S explains the dark patch (X̂ = … − S, so S < 0)
    assert s[4, 0, 8:16, 8:16].abs().sum() - inside.abs().sum() < 0.05 * inside.abs().sum()
    # The box: X̂ = g Y + h − S stays in [0, 1].
    assert bool((layer >= b.low - 1e-6).all()) and bool((layer <= b.high + 1e-6).all())
    # With S's pixels left to S, the blotch does not darken the fields' fit of its frame.
    assert abs(float(fields.g[4].mean()) - 1.0) < 0.02 and abs(float(fields.h[4].mean())) < 0.01


def test_the_fields_lattice_leaves_the_pixels_s_touches_to_it():
    y = torch.rand(9, 1, 24, 32) * 0.4 + 0.3
    support = torch.zeros_like(y, dtype=torch.bool)
    support[4, 0, 8:16, 8:16] = True
    free, left = still_problem(y, (2, 2)), still_problem(y, (2, 2), support)
    valid, nb, motion = still_camera(y)
    touched = blotch.touched(support, blotch.footprints(support, motion, paired(valid), nb))
    # Zero flow: S's pixels in frame 4 and its footprints, the same pixels of frames 2, 3, 5 and 6.
    assert touched[2:7, 0, 8:16, 8:16].all() and not touched[[0, 1, 7, 8]].any()
    lat = left.lattice.q > 0
    yy, xx = problem.lattice_points((24, 32), y.device)
    on_touched = touched[:, 0, yy, xx]
    assert bool(on_touched.any()) and not lat[on_touched].any() and lat[~on_touched & (free.lattice.q > 0)].all()
    # Each frame's lattice still stands for all of its counted pixels but the touched ones.
    torch.testing.assert_close(left.lattice.q.sum(1), free.lattice.q.sum(1) - touched.view(9, -1).float().mean(1)
                               * (free.lattice.q.sum(1) > 0))


def test_a_linear_map_and_its_adjoint_are_the_matrix_and_its_transpose():
    gen = torch.Generator().manual_seed(0)
    # a few hundred columns (radix-sorted keys) and more than 16 bits of them (torch.sort)
    for shape in ((50, 300), (40, 70_000)):
        nnz = 600
        rows = torch.randint(0, shape[0], (nnz,), generator=gen)  # unsorted, with duplicates
        cols = torch.randint(0, shape[1], (nnz,), generator=gen)
        vals = torch.randn(nnz, generator=gen)
        vals[::7] = 0.0
        dense = torch.zeros(shape).index_put_((rows, cols), vals, accumulate=True)
        a = LinearMap(rows, cols, vals, shape)
        torch.testing.assert_close(a.matrix.to_dense(), dense)
        torch.testing.assert_close(a.adjoint.to_dense(), dense.T)
        x = torch.randn(shape[1], 2, generator=gen, requires_grad=True)
        (a(x) ** 2).sum().backward()
        torch.testing.assert_close(x.grad, 2 * dense.T @ (dense @ x.detach()))


def test_any_paired_is_paired_reduced_over_the_offsets():
    """The pixels with a residual of their own, without the (T, J, ...) mask of the pairs."""
    gen = torch.Generator().manual_seed(0)
    for j in (2, 4, 6, 8):
        valid = torch.rand(3, j, 1, 5, 7, generator=gen) > 0.4
        assert torch.equal(any_paired(valid), paired(valid).any(1))



def test_a_clipped_sample_bounds_its_residual_on_one_side():
    """At white, the scene was at least as bright as the scan says: where frame t's own sample
    is clipped (or a weighted neighbour's at black), only a positive residual contradicts the
    fields; the other way round only a negative one; clipped both ways, neither."""
    y = torch.tensor([[0.5], [1.0], [0.5], [0.5], [1.0], [0.0]])  # (n, K = 1)
    y_nb = torch.tensor([[[0.4], [0.6]], [[0.4], [0.6]], [[0.0], [0.6]], [[1.0], [0.6]], [[1.0], [0.6]], [[1.0], [0.6]]])
    w = torch.tensor([[0.5, 0.5]] * 5 + [[0.0, 1.0]])  # the last one's clipped neighbour has no weight
    s = sides(y, y_nb, w)[..., 0]
    assert s.tolist() == [[1, 1], [1, 0], [1, 0], [0, 1], [0, 0], [0, 1]]
    r = torch.tensor([[0.25], [-0.25]])
    q = torch.tensor([0.5, 0.5])
    points = lambda sides: Points(q=q, coef=torch.zeros(2, 1, 2, 1), constant=torch.zeros(2, 1),  # noqa: E731
                                  frame=torch.zeros(2, dtype=torch.long), basis=None, sides=sides)
    assert points(None).weights(r).tolist() == [[0.5], [0.5]]
    assert points(torch.tensor([[[1.0], [0.0]]] * 2)).weights(r).tolist() == [[0.5], [0.0]]
    assert points(torch.tensor([[[0.0], [1.0]]] * 2)).weights(r).tolist() == [[0.0], [0.5]]


def test_clipped_highlights_do_not_bias_the_fitted_gain(monkeypatch: pytest.MonkeyPatch):
    """A bright frame whose highlights clipped looks less bright than it was: fitted to the
    clipped values as if they were measured, its gain comes out too high (the highlights are
    pulled towards the neighbours'). Read as bounds, they leave the fit to the rest."""
    clean = np.repeat(0.35 + 0.7 * make_scene("static", 1, 48, 64, seed=5), 12, axis=0)
    gains = np.array([1.0, 1.25, 0.9, 1.1, 0.85, 1.3] * 2, np.float32)
    frames = np.clip(clean * gains[:, None, None, None], 0, 1).astype(np.float32)
    assert (frames >= 1).mean() > 0.02

    def gain_error() -> float:
        fitted = np.stack([o.gain.mean() for o in Restorer(Params(grid=(1, 1), blotches=False)).process(frames)])
        return float(np.abs(fitted * gains / (fitted * gains).mean() - 1).mean())

    censoring = gain_error()
    monkeypatch.setattr(problem, "sides", lambda y, y_nb, w: None)
    plain = gain_error()
    assert censoring < 0.6 * plain, f"gain error {censoring:.4f} read as bounds, {plain:.4f} as values"
