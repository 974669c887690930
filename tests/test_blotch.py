"""The blotch layer's image operations and the flow helpers the candidate test relies on."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dfdb import blotch
from dfdb import flow
from dfdb.flow import FlowEstimator, Motion, fill, impulses, interpolate_invalid, warp


@pytest.mark.parametrize("radius", [1, 3])
def test_window_ranges_at_pixels_match_a_full_window_pool(radius: int) -> None:
    gen = torch.Generator().manual_seed(5)
    plane = torch.rand(3, 1, 17, 23, generator=gen)
    pool = F.max_pool2d(plane, 2 * radius + 1, stride=1, padding=radius)
    low = -F.max_pool2d(-plane, 2 * radius + 1, stride=1, padding=radius)
    t, y, x = torch.tensor([0, 2, 1, 2, 0]), torch.tensor([0, 16, 8, 1, 16]), torch.tensor([0, 22, 11, 21, 3])
    highest, lowest = blotch.window_range(plane, t, y, x, radius)
    assert torch.equal(highest, pool[t, 0, y, x]) and torch.equal(lowest, low[t, 0, y, x])


@pytest.mark.parametrize("shape", [(3, 1, 17, 23), (1, 1, 2, 5), (2, 4, 1, 1)])
@pytest.mark.parametrize("radius", [1, 3])
def test_dilation_by_opencv_and_by_running_maxima_match_a_full_window_pool(shape: tuple[int, ...], radius: int) -> None:
    mask = torch.rand(*shape) > 0.8
    flat = mask.reshape(-1, 1, *shape[-2:]).float()
    expected = F.max_pool2d(flat, 2 * radius + 1, stride=1, padding=radius).view(shape) > 0
    assert torch.equal(blotch.dilate(mask, radius), expected)  # the CPU's path
    rows = blotch._running_max(mask, radius, -1)  # the path of other devices
    assert torch.equal(blotch._running_max(rows, radius, -2), expected)


def test_solid_keeps_patches_and_drops_lines_and_specks() -> None:
    mask = torch.zeros(1, 1, 20, 20, dtype=torch.bool)
    mask[0, 0, 2:6, 2:5] = True  # a patch
    mask[0, 0, 10, 2:15] = True  # a one-pixel line
    mask[0, 0, 15, 15] = True  # a speck
    mask[0, 0, 6, 5] = True  # touches the patch diagonally: part of it
    out = blotch.solid(mask)
    assert out[0, 0, 2:6, 2:5].all() and out[0, 0, 6, 5]
    assert not out[0, 0, 10].any() and not out[0, 0, 15, 15]


def test_fill_continues_the_surroundings_into_a_hole() -> None:
    yy, xx = np.mgrid[0:40, 0:50].astype(np.float32)
    image = (0.2 + 0.01 * xx).astype(np.float32)  # a ramp
    hole = np.zeros_like(image, bool)
    hole[15:25, 20:30] = True
    damaged = np.where(hole, 1.0, image).astype(np.float32)
    out = fill(damaged, hole)
    assert np.abs(out[hole] - image[hole]).max() < 0.05
    assert np.array_equal(out[~hole], image[~hole])
    colour = fill(np.repeat(damaged[..., None], 3, axis=2), hole)
    assert np.allclose(colour[..., 1], out)


def test_interpolated_flow_keeps_the_valid_flow_and_bridges_the_invalid() -> None:
    flow = np.zeros((32, 32, 2), np.float32)
    flow[..., 0] = 2.0
    valid = np.ones((32, 32), bool)
    valid[10:20, 10:20] = False
    flow[~valid] = 40.0  # what a failed match leaves
    out = interpolate_invalid(flow, valid, 4)
    assert np.array_equal(out[valid], flow[valid])
    assert np.allclose(out[~valid], [2.0, 0.0], atol=1e-4)


def test_impulses_find_a_spot_but_not_a_moved_edge_or_a_brightness_change() -> None:
    rng = np.random.default_rng(0)
    ref = np.full((60, 80), 0.4, np.float32)
    ref[:, 40:] = 0.7  # an edge
    ref += rng.normal(0, 0.01, ref.shape).astype(np.float32)
    image = np.concatenate([ref[:, :1].repeat(3, 1), ref[:, :-3]], axis=1) * 1.15  # edge moved 3 px, frame 15 % brighter
    image[20:26, 10:16] = 0.05  # a dark spot
    found = impulses(image, ref, radius=8)
    assert found[22, 12]
    assert found.sum() < 0.05 * found.size  # the spot and its rim, nothing along the edge
    assert not found[:, 38:48].any()


def test_patches_find_a_bright_spot_on_contrasty_texture_but_not_the_texture_moved() -> None:
    """On dense, contrasty texture the brightest pixel within reach is as bright as a bright
    blotch, so the pixel test cannot see it; the blotch's flat patch matches no patch of the
    reference, while the texture moved by 3 px matches itself."""
    rng = np.random.default_rng(1)
    grass = cv2.GaussianBlur((rng.random((70, 90)) > 0.5).astype(np.float32), (0, 0), 0.8)
    ref = (0.15 + 0.75 * grass / grass.max()).astype(np.float32)
    image = np.roll(ref, (2, 3), axis=(0, 1)).copy()
    image[30:38, 40:48] = 0.82  # a bright spot, within the texture's range
    kept = np.zeros(image.shape, bool)
    kept[8:-8, 8:-8] = True  # away from the border the roll wrapped
    assert not impulses(image, ref, radius=4)[33, 43]
    found = impulses(image, ref, radius=4, patches=True)
    assert found[30:38, 40:48].all()
    spot = np.zeros(image.shape, bool)
    spot[26:42, 36:52] = True  # the spot, its patches' reach and its rim
    assert (found & kept & ~spot).sum() < 0.01 * (kept & ~spot).sum()


def test_any_of_and_dilate_match_torch_reductions() -> None:
    masks = torch.rand(3, 4, 1, 9, 11) > 0.7
    assert torch.equal(blotch.any_of(masks), masks.any(1))
    mask = masks[:, 0]
    for radius in (1, 2):
        pool = F.max_pool2d(mask.float(), 2 * radius + 1, stride=1, padding=radius) > 0.5
        assert torch.equal(blotch.dilate(mask, radius), pool)


def test_frame_blocks_do_not_change_warps(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(0)
    t, h, w = 5, 12, 16
    frames = torch.rand(t, 2, h, w, generator=gen)
    flows = torch.randn(t, h, w, 2, generator=gen) * 3
    whole = warp(frames, flows)
    monkeypatch.setattr(flow, "BLOCK_PIXELS", 2 * h * w)  # blocks of two frames, and a last one of one
    assert len(flow.frame_blocks(t, (h, w), frames.device)) == 3
    assert torch.equal(whole, warp(frames, flows))


def test_candidates_tested_within_a_mask_are_the_full_test_there() -> None:
    gen = torch.Generator().manual_seed(0)
    t, j, h, w = 5, 4, 12, 16
    x0 = torch.rand(t, 1, h, w, generator=gen)
    x0_nb = [torch.rand(t, 1, h, w, generator=gen) * 0.5 for _ in range(j)]
    valid = torch.rand(t, j, 1, h, w, generator=gen) > 0.3
    present = valid | (torch.rand(t, j, 1, h, w, generator=gen) > 0.5)
    spotted = [torch.rand(t, 1, h, w, generator=gen) > 0.8 for _ in range(j)]
    threshold = torch.full((t, 1, 1, 1), 0.1)
    exists = torch.ones(t, j, dtype=torch.bool)
    exists[0, :2] = False  # the shot's first frame
    within = torch.rand(t, 1, h, w, generator=gen) > 0.5
    present_at = lambda t, y, x: present[t, :, 0, y, x].T  # noqa: E731
    full = blotch.candidates(x0, x0_nb, valid, present_at, exists, threshold, spotted)
    assert full.any() and not full.all()
    assert torch.equal(blotch.candidates(x0, x0_nb, valid, present_at, exists, threshold, spotted, within), full & within)


def test_flow_is_matched_on_the_flow_grid_through_blotches() -> None:
    rng = np.random.default_rng(1)
    texture = cv2.GaussianBlur(rng.random((200, 420)).astype(np.float32), (0, 0), 3)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    a, b = texture[:180, 10:410], texture[:180, 6:406] * 1.2  # b: a moved 4 px right, brighter
    a = a.copy()
    a[60:75, 100:115] = 0.0  # a blotch
    estimator = FlowEstimator("fast", 0.5)
    assert estimator.size(a.shape) == (90, 200)
    forward, backward = estimator.match(a, b, 1)
    motion = Motion(torch.from_numpy(forward.field).permute(2, 0, 1)[None, None], (180, 400))
    field, valid = motion.dense(slice(None), 0)[0].numpy(), forward.validity((180, 400))
    inner = (slice(20, 160), slice(20, 380))
    assert valid[inner].mean() > 0.9
    assert np.abs(field[inner][valid[inner]] - [4.0, 0.0]).mean() < 0.5


def test_flows_on_their_grid_give_the_same_values_densely_and_at_points() -> None:
    gen = torch.Generator().manual_seed(3)
    motion = Motion(torch.randn(3, 2, 2, 9, 16, generator=gen), (18, 32))  # a half-resolution grid
    dense = motion.dense(slice(None), 1)  # (3, 18, 32, 2)
    # Pixel centres aligned, as cv2.resize upsamples.
    expected = cv2.resize(motion.field[2, 1].permute(1, 2, 0).numpy(), (32, 18), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(dense[2].numpy(), expected, atol=1e-5)
    t, y, x = torch.tensor([0, 2, 1, 2]), torch.tensor([0, 17, 5, 9]), torch.tensor([0, 31, 12, 20])
    at = motion.at(t, 1, x.float(), y.float())
    np.testing.assert_allclose(at.numpy(), dense[t, y, x].numpy(), atol=1e-5)
    assert torch.equal(motion.frames(1, 3).field, motion.field[1:3])



def test_a_spatial_fill_of_scattered_spots_in_boxes_of_their_own_is_the_whole_frames_fill() -> None:
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 200, 300, generator=gen)
    hole = torch.zeros(1, 1, 200, 300, dtype=torch.bool)
    for y, x in [(10, 10), (150, 250), (100, 20), (190, 290)]:  # corners and edges, far apart
        hole[0, 0, y:y + 6, x:x + 5] = True
    whole = fill(np.ascontiguousarray(image[0].permute(1, 2, 0).numpy()), hole[0, 0].numpy())
    out = blotch.spatial_fill(image, hole)
    assert torch.equal(out, torch.from_numpy(whole).permute(2, 0, 1)[None])
    assert torch.equal(out[~hole.expand_as(out)], image[~hole.expand_as(image)])
