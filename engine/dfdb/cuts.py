"""Shot-cut detection that flicker does not fool.

Two consecutive frames belong to the same shot when the flow between their flicker-invariant
features (local contrast-normalised luma, see :func:`dfdb.flow.flicker_invariant`) is
consistent forwards and backwards and the aligned features correlate. Gain and offset flicker
leave those features unchanged and a pan is undone by the flow; across a cut the flow can
make two unrelated pictures look alike but cannot make itself consistent both ways.
"""
from __future__ import annotations

import cv2
import numpy as np

from .flow import consistent, sample

#: Below this fraction of forward–backward consistent flow...
CUT_CONSISTENCY = 0.3
#: ...and this motion-compensated correlation, two frames are in different shots.
CUT_CORRELATION = 0.6
_WIDTH = 96


def thumbnail(feature: np.ndarray) -> np.ndarray:
    """A small uint8 copy of a feature image, about 96 px wide, lightly blurred."""
    h, w = feature.shape
    size = (min(w, _WIDTH), max(8, round(h * min(w, _WIDTH) / w)))
    small = cv2.resize(feature, size, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small, (0, 0), 1.0)


def similarity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(fraction of consistent flow, correlation of ``a`` with ``b`` aligned onto it) for thumbnails."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    forward, backward = dis.calc(a, b, None), dis.calc(b, a, None)
    agree = float(consistent(forward, backward, tol=1.0).mean())
    m = 4  # ignore the border, where the warp replicates pixels
    x = a[m:-m, m:-m].astype(np.float32)
    y = sample(b.astype(np.float32), forward)[m:-m, m:-m]
    x, y = x - x.mean(), y - y.mean()
    denom = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return agree, float((x * y).sum() / denom) if denom > 0 else 1.0


def is_cut(previous: np.ndarray, current: np.ndarray) -> bool:
    """True when thumbnails ``previous`` and ``current`` belong to different shots."""
    agree, correlation = similarity(current, previous)
    return agree < CUT_CONSISTENCY and correlation < CUT_CORRELATION
