"""The unit that flows out of the engine: one restored frame and what the solver learned of it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RestoredFrame:
    """One output frame of :class:`dfdb.Restorer`.

    - ``index``: position of the frame in the input stream (0-based).
    - ``image``: (H, W, C) float32 in [0, 1], same C as the input (alpha, if any, untouched).
    - ``mask``: (H, W) float32 in [0, 1], 1 where the pixel was repaired as a blotch.
    - ``gain``/``offset``: (H, W) float32 correction fields g_t, h_t (luma; mean over
      channels when fitted per channel), so that restored = gain·input + offset − blotches.
    - ``stats``: per-frame summary (plain Python types): gain_mean, offset_mean,
      blotch_pixels, blotch_fraction, blotch_count, shot (index of the shot), cut (True on the
      first frame of a shot after a detected cut).
    """

    index: int
    image: np.ndarray
    mask: np.ndarray
    gain: np.ndarray
    offset: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)

    def flicker_map(self) -> np.ndarray:
        """(H, W, 3) float32 debug view of the correction: R = gain/2, G = offset + 0.5, B = 0.5.

        A frame that needed no correction is the flat colour (0.5, 0.5, 0.5).
        """
        return np.stack(
            [np.clip(self.gain * 0.5, 0, 1), np.clip(self.offset + 0.5, 0, 1), np.full_like(self.gain, 0.5)],
            axis=-1,
        ).astype(np.float32)
