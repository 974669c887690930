"""Behaviour of the in-memory engine on synthetic clips with known flicker and blotches.

Margins are wide enough for noise, tight enough that a broken model fails: each test states
what the restorer must do to a clip whose truth is known.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dfdb import Params, Restorer
from dfdb.bench.synth import degrade, make_scene
from dfdb.errors import InputError
from dfdb.cuts import is_cut, thumbnail
from dfdb.flow import luma
from dfdb.flow import Motion
from dfdb.restorer import chunk_frames

H, W = 72, 96


def run(frames: np.ndarray, **overrides) -> list:
    return list(Restorer(Params(**overrides)).process(frames))


def images(outs) -> np.ndarray:
    return np.stack([o.image for o in outs])


def masks(outs) -> np.ndarray:
    return np.stack([o.mask for o in outs]) > 0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def flicker_index(x: np.ndarray, clean: np.ndarray) -> float:
    """Temporal std of the mean luma error over a 4×4 grid of regions, averaged."""
    err = x.mean(-1) - clean.mean(-1)
    t, h, w = err.shape
    cells = [err[:, i * h // 4:(i + 1) * h // 4, j * w // 4:(j + 1) * w // 4].mean((1, 2)).std()
             for i in range(4) for j in range(4)]
    return float(np.mean(cells))


@pytest.fixture(scope="module")
def pan_old_film():
    clean = make_scene("pan", 20, H, W, seed=11)
    return clean, degrade(clean, "old_film", seed=12)


@pytest.fixture(scope="module")
def pan_old_film_restored(pan_old_film):
    return run(pan_old_film[1].frames)


def test_flicker_is_removed(pan_old_film, pan_old_film_restored):
    clean, d = pan_old_film
    out = images(pan_old_film_restored)
    assert flicker_index(out, clean) < 0.5 * flicker_index(d.frames, clean)
    assert psnr(out, clean) > psnr(d.frames, clean) + 4.0


def test_blotches_are_repaired(pan_old_film, pan_old_film_restored):
    clean, d = pan_old_film
    out, found = images(pan_old_film_restored), masks(pan_old_film_restored)
    inside = d.blotch_mask
    # 72×96 frames: at benchmark sizes the error left inside blotches is about half of this.
    assert np.abs(out - clean)[inside].mean() < 0.5 * np.abs(d.frames - clean)[inside].mean()
    precision = (found & inside).sum() / max(1, found.sum())
    recall = (found & inside).sum() / inside.sum()
    assert precision > 0.6 and recall > 0.6, (precision, recall)


def test_a_fit_at_half_resolution_repairs_at_full_resolution(pan_old_film, pan_old_film_restored):
    clean, d = pan_old_film
    outs = run(d.frames, work_scale=0.5)
    out, found = images(outs), masks(outs)
    assert found.shape == d.blotch_mask.shape
    assert psnr(out, clean) > psnr(images(pan_old_film_restored), clean) - 1.0
    inside = d.blotch_mask
    assert np.abs(out - clean)[inside].mean() < 0.5 * np.abs(d.frames - clean)[inside].mean()
    assert (found & inside).sum() / inside.sum() > 0.6
    # Colour planes (per channel) are scaled for the fit as the lumas are.
    colour = images(run(d.frames[:12], work_scale=0.5, per_channel=True))
    assert psnr(colour, clean[:12]) > psnr(d.frames[:12], clean[:12]) + 3.0


def spotted_pan(seed: int, spots: dict[int, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 12-frame flickering pan with a dark 12×13 px spot at each frame's (row, column) of
    ``spots``: (clean, frames, inside) with the spots' mask inside (T, H, W)."""
    clean = make_scene("pan", 12, H, W, seed=seed)
    frames = degrade(clean, "flicker_only", seed=seed + 1).frames.copy()
    inside = np.zeros(frames.shape[:3], bool)
    for t, (y, x) in spots.items():
        inside[t, y:y + 12, x:x + 13] = True
    frames[inside] = 0.04
    return clean, frames, inside


def assert_spots_repaired(out: np.ndarray, clean: np.ndarray, frames: np.ndarray, inside: np.ndarray) -> None:
    """At most a quarter of each spotted frame's error inside its spot is left."""
    for t in np.flatnonzero(inside.any((1, 2))):
        left = np.abs(out[t] - clean[t])[inside[t]].mean() / np.abs(frames[t] - clean[t])[inside[t]].mean()
        assert left < 0.25, f"frame {t}: {left:.0%} of the blotch's error is left"


def test_blotches_at_the_ends_of_a_shot_are_repaired():
    """A shot's first and last frames have neighbours on one side only, and a blotch breaks
    the flow around itself: they must still be found, with the neighbours the shot has."""
    clean, frames, inside = spotted_pan(3, {0: (18, 32), 1: (36, 64), 10: (24, 72), 11: (36, 19)})
    assert_spots_repaired(images(run(frames)), clean, frames, inside)


def test_blotches_that_overlap_in_consecutive_frames_are_repaired():
    """Where dirt is dense, a blotch of frame t+1 can cover the place of one of frame t: each
    would explain the other as a neighbour's content. Both must be found and repaired."""
    clean, frames, inside = spotted_pan(5, {4: (20, 30), 5: (23, 34), 8: (40, 60), 9: (43, 56)})
    outs = run(frames)
    assert_spots_repaired(images(outs), clean, frames, inside)
    assert (masks(outs) & ~inside).sum() < 0.5 * inside.sum()


def test_the_repair_grows_over_a_blotch_rim_and_nowhere_else():
    """Dirt fades out at its edge; where texture is dense the rim's pixels pass for scene
    content and are not detected. The repair grows from a detected blotch, a pixel at a time,
    into neighbouring pixels far from what the frames around show (hysteresis), and stops
    where they agree; a deviation that touches no blotch is left alone."""
    t, h, w = 5, 32, 40
    scene = torch.full((t, 3, h, w), 0.5)
    colour = scene.clone()
    detected = torch.zeros(t, 1, h, w, dtype=torch.bool)
    detected[2, 0, 10:16, 10:16] = True
    colour[2, :, 10:16, 10:16] = 0.05  # the body, detected
    colour[2, :, 9:17, 9:17][..., [0, -1], :] = 0.3  # its rim: rows, then columns, 0.2 off
    colour[2, :, 9:17, 9:17][..., :, [0, -1]] = 0.3
    colour[2, :, 8:18, 8:18][..., [0, -1], :] = 0.46  # beyond: 0.04 off, the scene's own
    colour[2, :, 8:18, 8:18][..., :, [0, -1]] = 0.46
    colour[2, :, 25:28, 30:33] = 0.3  # 0.2 off, but touching no blotch
    r = Restorer(Params())
    nb = torch.tensor([[i + k if 0 <= i + k < t else i for k in (-2, -1, 1, 2)] for i in range(t)])
    motion = Motion(torch.zeros(t, 4, 2, 1, 1), (h, w))
    valid = torch.ones(t, 4, 1, h, w, dtype=torch.bool)
    ones, zeros = torch.ones(t, 1, 1, 1), torch.zeros(t, 1, 1, 1)
    grown = r._grow(colour.clone(), colour, ones, zeros, detected, motion, valid, nb, torch.arange(t))
    rim = torch.zeros_like(detected)
    rim[2, 0, 9:17, 9:17] = True
    assert bool(grown[rim].all()), "the rim is not covered"
    assert int(grown.sum()) == int(rim.sum()), "the repair grew beyond the rim"


def test_global_flicker_on_a_still_scene():
    clean = np.repeat(make_scene("static", 1, H, W, seed=3), 16, axis=0)
    gains = np.array([1.0, 0.85, 1.12, 0.9, 1.08, 0.95, 1.15, 0.88] * 2, np.float32)
    flickering = np.clip(clean * gains[:, None, None, None], 0, 1)
    out = images(run(flickering, grid=(1, 1), blotches=False))
    means = out.mean((1, 2, 3))
    assert means.std() < 0.25 * flickering.mean((1, 2, 3)).std()


def test_strong_flicker_leaves_the_mean_brightness_alone():
    """A gain that fluctuates about 1 (here by 20 %, averaging exactly 1) has a correction 1/A
    whose mean is above 1 by the gain's variance: a gauge that pinned the correction's mean to
    1 would leave the clip darker by that (2 to 4 % here). The output keeps the clean mean."""
    clean = make_scene("pan", 32, H, W, seed=2)
    gains = 1 + np.random.default_rng(2).normal(0, 0.2, 32).astype(np.float32)
    gains /= gains.mean()
    flickering = np.clip(clean * gains[:, None, None, None], 0, 1)
    out = images(run(flickering, grid=(1, 1), blotches=False))
    assert abs(out.mean() / clean.mean() - 1) < 0.01
    assert flicker_index(out, clean) < 0.25 * flicker_index(flickering, clean)


def test_highlights_clipped_by_the_flicker_are_restored_from_the_frames_around():
    """Where a bright frame pushed a highlight into clipping, the scan holds 1.0 and its
    correction is only a lower bound on the scene (here 0.04 too dark on average): the frames
    around that saw it unclipped tell the value, and the highlight does not pump."""
    clean = (0.3 + 0.75 * make_scene("pan", 16, H, W, seed=8)).astype(np.float32)
    gains = np.array([1.0, 1.2, 0.92, 1.15, 0.95, 1.22, 0.9, 1.1] * 2, np.float32)
    gains /= gains.mean()
    flickering = np.clip(clean * gains[:, None, None, None], 0, 1)
    clipped = flickering >= 1.0
    assert clipped.mean() > 0.003
    out = images(run(flickering, blotches=False))
    bound = flickering / gains[:, None, None, None]  # the exact correction of the clipped values
    left = np.abs(out - clean)[clipped].mean() / np.abs(bound - clean)[clipped].mean()
    assert left < 0.4, f"{left:.0%} of the clipped highlights' error is left"


def test_the_colours_tell_a_gain_from_an_offset():
    """On a clip of one luma (mid-grey) and many colours, the luma cannot tell a flickering
    gain from an offset: only the colour differences, which the gain scales, can. The fit reads
    every channel, so the colours' flicker goes too."""
    scene = make_scene("pan", 24, H, W, seed=7)
    clean = np.clip(0.5 + 1.5 * (scene - scene.mean(-1, keepdims=True)), 0, 1).astype(np.float32)
    rng = np.random.default_rng(7)
    gain, offset = 1 + rng.normal(0, 0.2, 24), rng.normal(0, 0.03, 24)
    flickering = np.clip(clean * gain[:, None, None, None] + offset[:, None, None, None], 0, 1).astype(np.float32)
    out = images(run(flickering, blotches=False))

    def colour_error(x: np.ndarray) -> float:
        e = x - clean
        return float(np.sqrt(((e - e.mean(-1, keepdims=True)) ** 2).mean()))

    assert colour_error(out) < 0.75 * colour_error(flickering)


def test_a_static_shot_is_restored_without_motion_compensation():
    """``motion=False`` (every flow 0) on a tripod shot: flicker and blotches go all the same."""
    clean = np.repeat(make_scene("static", 1, H, W, seed=3), 20, axis=0)
    d = degrade(clean, "old_film", seed=9)
    outs = run(d.frames, motion=False)
    out, found, inside = images(outs), masks(outs), d.blotch_mask
    assert psnr(out, clean) > psnr(d.frames, clean) + 6.0
    assert flicker_index(out, clean) < 0.4 * flicker_index(d.frames, clean)
    assert np.abs(out - clean)[inside].mean() < 0.2 * np.abs(d.frames - clean)[inside].mean()
    assert (found & inside).sum() > 0.9 * inside.sum() and (found & inside).sum() > 0.7 * found.sum()
    # The long-range term needs no flow either: still frames are their own tracks, and the
    # slow part of the flicker goes as well as with motion compensation.
    tracked = images(run(d.frames))
    assert psnr(out, clean) > psnr(tracked, clean) - 0.5
    assert flicker_index(out, clean) < 1.1 * flicker_index(tracked, clean)


def test_a_fade_is_kept():
    """A linear fade is not flicker: brightness must follow it, not be flattened."""
    clean = make_scene("fade", 24, H, W, seed=4)
    out = images(run(clean))
    ramp_in, ramp_out = clean.mean((1, 2, 3)), out.mean((1, 2, 3))
    assert ramp_in[0] - ramp_in[-1] > 0.15  # the scene does fade
    assert np.abs(ramp_out - ramp_in).max() < 0.01


def test_clean_moving_objects_are_not_repaired():
    clean = make_scene("objects", 16, H, W, seed=5)
    d = degrade(clean, "flicker_only", seed=6)
    found = masks(run(d.frames))
    assert found.mean() < 0.003, f"{found.mean():.4%} of the pixels repaired on flicker-only footage"


def test_a_cut_is_detected_and_not_crossed():
    clip = make_scene("cut", 20, H, W, seed=7)
    d = degrade(clip, "old_film", seed=8).frames
    outs = run(d)
    assert [o.index for o in outs if o.stats["cut"]] == [10]
    assert [o.stats["shot"] for o in outs] == [0] * 10 + [1] * 10
    # The second shot restored on its own gives the same frames: nothing leaked across the cut.
    alone = images(run(d[10:]))
    np.testing.assert_allclose(images(outs)[10:], alone, atol=1e-6)


def test_cuts_are_found_between_any_two_shots_and_nowhere_else():
    # Two unrelated textures can look alike to a flow (smooth, partly consistent both ways):
    # every realisation must be told apart, and no frame pair of one shot split.
    def cuts_in(kind: str, seed: int, profile: str) -> list[int]:
        frames = degrade(make_scene(kind, 12, 120, 160, seed=seed), profile, seed=seed).frames
        thumbs = [thumbnail(luma(f)) for f in frames]
        return [i for i in range(1, len(thumbs)) if is_cut(thumbs[i - 1], thumbs[i])]

    for seed in range(4):
        for profile in ("old_film", "severe"):
            assert cuts_in("cut", seed, profile) == [6], (seed, profile)
            for kind in ("pan", "objects", "fade"):
                assert cuts_in(kind, seed, profile) == [], (kind, seed, profile)


def test_result_does_not_depend_on_the_chunk_size():
    clean = make_scene("objects", 40, H, W, seed=5)
    d = degrade(clean, "old_film", seed=6).frames
    a, b = images(run(d, chunk=8)), images(run(d, chunk=32))
    rms_levels = float(np.sqrt(np.mean((a - b) ** 2)) * 255)
    assert rms_levels < 0.5, f"chunk 8 vs 32 differ by {rms_levels:.3f} 8-bit levels RMS"


def test_default_chunk_follows_the_frame_size():
    """Small frames get longer chunks, within 32..128 frames; a chosen chunk is kept."""
    assert chunk_frames(None, (720, 1280)) == 32
    assert chunk_frames(None, (1080, 1920)) == 32
    assert chunk_frames(None, (360, 640)) == 128
    assert chunk_frames(None, (544, 960)) == 56
    assert chunk_frames(8, (360, 640)) == 8


def test_strength_zero_is_identity_and_alpha_passes(pan_old_film):
    frames = pan_old_film[1].frames[:8]
    alpha = np.linspace(0, 1, H * W, dtype=np.float32).reshape(1, H, W, 1).repeat(8, 0)
    rgba = np.concatenate([frames, alpha], -1)
    outs = run(rgba, strength=0.0)
    np.testing.assert_allclose(images(outs), rgba, atol=1e-6)
    outs = run(rgba)
    np.testing.assert_array_equal(images(outs)[..., 3:], alpha)


def test_integer_input_and_window_api(pan_old_film):
    frames = (pan_old_film[1].frames[:9] * 255).round().astype(np.uint8)
    r = Restorer(Params.from_preset("fast"))
    one = r.restore_window(frames, 4)
    assert one.index == 4 and one.image.dtype == np.float32 and one.image.shape == (H, W, 3)
    assert 0.0 <= one.image.min() and one.image.max() <= 1.0
    with pytest.raises(InputError, match="outside the window"):
        r.restore_window(frames, 9)


def test_frames_of_another_size_are_refused():
    a = np.zeros((H, W, 3), np.float32)
    b = np.zeros((H + 2, W, 3), np.float32)
    with pytest.raises(InputError, match="frame 1 has shape"):
        run([a, b])


@pytest.mark.parametrize("preset,gain_db", [("fast", 2.0), ("best", 3.0)])
def test_presets_restore(preset, gain_db, pan_old_film):
    clean, d = pan_old_film
    out = images(list(Restorer(Params.from_preset(preset)).process(d.frames)))
    assert psnr(out, clean) > psnr(d.frames, clean) + gain_db


def test_per_channel_and_autotune(pan_old_film):
    clean, d = pan_old_film
    frames = d.frames[:12]
    per_channel = images(run(frames, per_channel=True))
    tuned = images(run(frames, autotune=True, iterations=6))
    for out in (per_channel, tuned):
        assert psnr(out, clean[:12]) > psnr(frames, clean[:12]) + 3.0
