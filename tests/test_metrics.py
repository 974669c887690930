"""The benchmark's quality metrics, on clips whose right answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from dfdb.bench import metrics, synth


@pytest.fixture(scope="module")
def pan() -> np.ndarray:
    return synth.make_scene("pan", frames=8, height=64, width=80, seed=1)


def test_psnr_known_values(pan: np.ndarray) -> None:
    assert metrics.psnr(pan, pan) == pytest.approx(100.0)
    shifted = pan + 0.1  # MSE 0.01 → 20 dB exactly
    assert metrics.psnr(shifted, pan) == pytest.approx(20.0, abs=1e-3)


def test_ssim_orders_damage(pan: np.ndarray) -> None:
    assert metrics.ssim(pan, pan) == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(0)
    mild = np.clip(pan + rng.normal(0, 0.01, pan.shape), 0, 1).astype(np.float32)
    strong = np.clip(pan + rng.normal(0, 0.08, pan.shape), 0, 1).astype(np.float32)
    assert 1.0 > metrics.ssim(mild, pan) > metrics.ssim(strong, pan) > 0.0


def test_flicker_index_measures_temporal_brightness_error_only(pan: np.ndarray) -> None:
    gains = np.array([1.0, 1.1, 0.9, 1.05, 0.95, 1.1, 0.9, 1.0], np.float32)[:, None, None, None]
    flickering = pan * gains
    assert metrics.flicker_index(flickering, pan) > 0.02
    # A constant bias is not flicker.
    assert metrics.flicker_index(pan + 0.05, pan) == pytest.approx(0.0, abs=1e-6)
    # Flattening a real fade is: the error changes over time.
    fade = synth.make_scene("fade", frames=8, height=64, width=80)
    flattened = fade / np.linspace(1.0, 0.3, 8, dtype=np.float32)[:, None, None, None]
    assert metrics.flicker_index(fade, fade) == 0.0
    assert metrics.flicker_index(np.clip(flattened, 0, 1), fade) > 0.05
    # A blotch (a small part of a region) does not register as flicker.
    blotched = pan.copy()
    blotched[3, 5:12, 5:12] = 0.0
    assert metrics.flicker_index(blotched, pan) < 1e-6


def test_blotch_error_and_detection() -> None:
    clean = np.full((2, 10, 10, 3), 0.5, np.float32)
    truth = np.zeros((2, 10, 10), bool)
    truth[0, 2:4, 2:4] = True  # 4 pixels
    restored = clean.copy()
    restored[truth] = 0.7
    assert metrics.blotch_error(restored, clean, truth) == pytest.approx(0.2)
    assert metrics.blotch_error(restored, clean, np.zeros_like(truth)) is None
    detected = np.zeros((2, 10, 10), np.float32)
    detected[0, 2:4, 2] = 1.0  # 2 hits
    detected[1, 0, 0:2] = 0.9  # 2 false alarms
    detected[1, 5, 5] = 0.4  # below 0.5: not a detection
    precision, recall = metrics.detection(detected, truth)
    assert precision == pytest.approx(0.5) and recall == pytest.approx(0.5)
    assert metrics.detection(np.zeros_like(detected), truth) == (None, 0.0)
    assert metrics.false_repairs(detected) == pytest.approx(4 / 200)


def test_warping_error_follows_true_motion(pan: np.ndarray) -> None:
    motion = metrics.clean_motion(pan)
    assert len(motion) == len(pan) - 1
    assert all(valid.mean() > 0.5 for _, valid in motion)
    floor = metrics.warping_error(pan, motion)
    assert floor is not None and floor < 0.02
    gains = np.array([1.0, 1.15, 0.85, 1.1, 0.9, 1.15, 0.85, 1.0], np.float32)[:, None, None, None]
    assert metrics.warping_error(np.clip(pan * gains, 0, 1), motion) > 3 * floor


def test_cut_pairs_are_left_out() -> None:
    cut = synth.make_scene("cut", frames=6, height=64, width=80)
    motion = metrics.clean_motion(cut)
    valid_fraction = [valid.mean() for _, valid in motion]
    assert valid_fraction[2] == 0.0  # frames 2 → 3 cross the cut
    assert min(valid_fraction[:2] + valid_fraction[3:]) > 0.5


def test_brightness_curve(pan: np.ndarray) -> None:
    curve = metrics.brightness_curve(pan * 0.5)
    assert curve.shape == (len(pan),)
    np.testing.assert_allclose(curve, metrics.brightness_curve(pan) * 0.5, rtol=1e-5)
