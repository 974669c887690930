"""The benchmark's footage: clean scenes, real clips and the degradation model with its truth."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dfdb.bench import synth
from dfdb.errors import ParamError


@pytest.mark.parametrize("kind", synth.SCENES)
def test_scene_shape_range_and_seed(kind: str) -> None:
    clip = synth.make_scene(kind, frames=8, height=48, width=64, seed=3)
    assert clip.shape == (8, 48, 64, 3) and clip.dtype == np.float32
    assert clip.min() >= 0.0 and clip.max() <= 1.0
    # Mostly inside [0.05, 0.95] so that flicker gain does not clip heavily.
    assert np.mean((clip < 0.05) | (clip > 0.95)) < 0.02
    np.testing.assert_array_equal(clip, synth.make_scene(kind, frames=8, height=48, width=64, seed=3))
    assert not np.array_equal(clip, synth.make_scene(kind, frames=8, height=48, width=64, seed=4))
    # Textured: a flat image would make every metric trivial.
    assert clip[0].std() > 0.05


def test_scene_motion_cut_and_fade() -> None:
    static = synth.make_scene("static", frames=4, height=48, width=64)
    assert np.array_equal(static[0], static[3])
    pan = synth.make_scene("pan", frames=4, height=48, width=64)
    assert np.abs(pan[1] - pan[0]).mean() > 0.01
    cut = synth.make_scene("cut", frames=10, height=48, width=64)
    steps = np.abs(np.diff(cut, axis=0)).mean(axis=(1, 2, 3))
    assert int(np.argmax(steps)) == 4  # between frames 4 and 5 = frames // 2
    assert steps[4] > 3 * np.delete(steps, 4).max()
    fade = synth.make_scene("fade", frames=11, height=48, width=64)
    means = fade.mean(axis=(1, 2, 3))
    assert means[-1] / means[0] == pytest.approx(0.3, abs=0.05)
    # Linear ramp: second differences of the mean brightness are tiny.
    assert np.abs(np.diff(means, 2)).max() < 0.01 * means[0]


def test_scene_bad_input() -> None:
    with pytest.raises(ParamError, match="unknown scene"):
        synth.make_scene("swirl")
    with pytest.raises(ParamError, match="at least"):
        synth.make_scene("pan", frames=0)


@pytest.mark.parametrize("profile", list(synth.PROFILES))
def test_degrade_range_and_reproducible(profile: str) -> None:
    clean = synth.make_scene("objects", frames=6, height=48, width=64)
    a = synth.degrade(clean, profile, seed=5)
    b = synth.degrade(clean, profile, seed=5)
    assert a.frames.shape == clean.shape and a.frames.dtype == np.float32
    assert a.blotch_mask.shape == clean.shape[:3] and a.blotch_mask.dtype == bool
    assert a.gain.shape == a.offset.shape == clean.shape[:3]
    assert a.frames.min() >= 0.0 and a.frames.max() <= 1.0
    assert a.profile == profile
    for field in ("frames", "blotch_mask", "gain", "offset", "gamma"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = synth.degrade(clean, profile, seed=6)
    assert not np.array_equal(a.frames, c.frames)


def test_profiles_order_and_flicker_only_has_no_blotches() -> None:
    clean = synth.make_scene("static", frames=12, height=96, width=128)
    fractions = {p: synth.degrade(clean, p, seed=1).blotch_mask.mean() for p in synth.PROFILES}
    assert fractions["flicker_only"] == 0.0
    assert 0 < fractions["light"] < fractions["old_film"] < fractions["severe"]
    # Flicker is high-frequency in time: the per-frame mean gain varies by about the profile's σ.
    d = synth.degrade(clean, "old_film", seed=1)
    assert 0.03 < d.gain.mean(axis=(1, 2)).std() < 0.2


def test_blotches_are_single_frame_and_irregular() -> None:
    clean = synth.make_scene("static", frames=10, height=96, width=128)
    d = synth.degrade(clean, "severe", seed=2)
    m = d.blotch_mask
    assert m.any(axis=(1, 2)).all()  # severe: blotches in every frame
    # On a still scene a blotch of frame t is not at the same place in t + 1 (only chance overlaps).
    overlap = (m[1:] & m[:-1]).sum() / m[:-1].sum()
    assert overlap < 0.15
    # Dark and bright blotches both occur.
    inside = d.frames[m].mean(axis=-1)
    assert (inside < 0.2).any() and (inside > 0.8).any()


def test_mask_marks_exactly_where_blotches_change_the_frame() -> None:
    clean = synth.make_scene("pan", frames=6, height=64, width=80)
    no_grain = dataclasses.replace(synth.PROFILES["old_film"], grain=0.0)
    d = synth.degrade(clean, no_grain, seed=9)
    model = np.clip(d.gain[..., None] * clean ** d.gamma[:, None, None, None] + d.offset[..., None], 0, 1)
    differs = np.abs(d.frames - model).max(axis=-1) > 1e-5
    # Outside the mask the frame is exactly the flicker model; nothing changes unannounced.
    assert not (differs & ~d.blotch_mask).any()
    # Inside the mask (soft rim included) almost every pixel was changed.
    assert differs[d.blotch_mask].mean() > 0.9


def test_flicker_fields_are_smooth() -> None:
    clean = synth.make_scene("static", frames=4, height=60, width=80)
    d = synth.degrade(clean, "severe", seed=0)
    # Low-order modes: neighbouring pixels differ by a tiny fraction of the field's range.
    assert np.abs(np.diff(d.gain, axis=2)).max() < 0.02
    assert np.abs(np.diff(d.offset, axis=1)).max() < 0.02
    assert (d.gain.max(axis=(1, 2)) - d.gain.min(axis=(1, 2))).max() > 0.05


def test_degrade_bad_input() -> None:
    with pytest.raises(ParamError, match="unknown degradation profile"):
        synth.degrade(np.zeros((2, 8, 8, 3), np.float32), "mouldy")
    with pytest.raises(ParamError, match=r"\(T, H, W, 3\)"):
        synth.degrade(np.zeros((8, 8, 3), np.float32))


def test_real_clips() -> None:
    bikes = synth.real_clip("bikes", 3)
    assert bikes.shape == (3, 272, 640, 3) and bikes.dtype == np.float32
    assert 0.0 <= bikes.min() and bikes.max() <= 1.0 and bikes.std() > 0.05
    # Real motion: consecutive frames differ.
    assert np.abs(bikes[1] - bikes[0]).mean() > 0.002
    small = synth.real_clip("bigbuckbunny", 2, max_width=320)
    assert small.shape == (2, 180, 320, 3)
    assert synth.real_clip("carphone", 2).shape == (2, 144, 176, 3)
    with pytest.raises(ParamError, match="unknown real clip"):
        synth.real_clip("nosferatu", 2)
