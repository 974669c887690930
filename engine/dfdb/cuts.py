"""Shot-cut detection that flicker does not fool.

Two consecutive frames belong to the same shot when their flicker-invariant features (local
contrast-normalised luma, see :func:`dfdb.flow.flicker_invariant`) still correlate after
motion compensation. Gain and offset flicker leave those features unchanged, a pan is undone
by the flow, and a cut leaves two unrelated pictures whose correlation stays low.
"""
from __future__ import annotations

import cv2
import numpy as np

from .flow import sample

#: Below this motion-compensated correlation, two frames are in different shots.
CUT_THRESHOLD = 0.35
_WIDTH = 96


def thumbnail(feature: np.ndarray) -> np.ndarray:
    """A small float32 copy of a uint8 feature image, about 96 px wide, lightly blurred."""
    h, w = feature.shape
    size = (min(w, _WIDTH), max(8, round(h * min(w, _WIDTH) / w)))
    small = cv2.resize(feature, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    return cv2.GaussianBlur(small, (0, 0), 1.0)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of thumbnail ``a`` with thumbnail ``b`` aligned onto it."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(a.astype(np.uint8), b.astype(np.uint8), None)
    aligned = sample(b, flow)
    m = 4  # ignore the border, where the warp replicates pixels
    a, aligned = a[m:-m, m:-m], aligned[m:-m, m:-m]
    a = a - a.mean()
    aligned = aligned - aligned.mean()
    denom = float(np.sqrt((a * a).sum() * (aligned * aligned).sum()))
    return float((a * aligned).sum() / denom) if denom > 0 else 1.0


def is_cut(previous: np.ndarray, current: np.ndarray) -> bool:
    """True when thumbnails ``previous`` and ``current`` belong to different shots."""
    return similarity(current, previous) < CUT_THRESHOLD
