"""The blotch layer's image operations and the flow helpers the candidate test relies on."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dfdb import blotch
from dfdb.flow import fill, impulses, interpolate_invalid


@pytest.mark.parametrize("shape", [(3, 1, 17, 23), (1, 1, 2, 5), (2, 4, 1, 1)])
@pytest.mark.parametrize("radius", [1, 3])
def test_window_max_and_min_match_a_full_window_pool(shape: tuple[int, ...], radius: int) -> None:
    x = torch.rand(*shape)
    flat = x.reshape(-1, 1, *shape[-2:])
    pool = lambda v: F.max_pool2d(v, 2 * radius + 1, stride=1, padding=radius).view(shape)  # noqa: E731
    assert torch.equal(blotch.window_max(x, radius), pool(flat))
    assert torch.equal(blotch.window_min(x, radius), -pool(-flat))


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
