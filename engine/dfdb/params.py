"""Restoration parameters, their presets and their validation.

One frozen dataclass travels everywhere (CLI, Python API, the wire, the plugin), so a value is
checked once, here, with a message that names the parameter and the accepted range.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ParamError

PRESETS: dict[str, dict[str, Any]] = {
    # W = 3, few iterations, coarse flow, the fit at half resolution: for previews and long
    # timelapses.
    "fast": dict(window=3, iterations=6, flow_preset="ultrafast", flow_scale=0.5, second_pass=False, work_scale=0.5),
    # The default: W = 5, the paper's window.
    "balanced": dict(window=5, iterations=12, flow_preset="fast", flow_scale=0.5, second_pass=False),
    # W = 5 with full-resolution flow recomputed on the first restored pass.
    "best": dict(window=5, iterations=24, flow_preset="medium", flow_scale=1.0, second_pass=True),
}

DEVICES = ("auto", "cpu", "cuda", "mps")
FLOW_PRESETS = ("ultrafast", "fast", "medium")


@dataclass(frozen=True)
class Params:
    """Everything that changes the result; defaults are the ``balanced`` preset.

    Units: intensities are in [0, 1]; ``window`` counts frames (W = 2r + 1); ``grid`` is the
    number of control points (rows, cols) of the smooth gain/offset fields (1×1 = global).
    """

    preset: str = "balanced"
    window: int = 5
    grid: tuple[int, int] = (6, 6)
    per_channel: bool = False
    strength: float = 1.0
    flicker: bool = True
    blotches: bool = True
    sensitivity: float = 1.0
    motion: bool = True
    iterations: int = 12
    flow_preset: str = "fast"
    flow_scale: float = 0.5
    second_pass: bool = False
    work_scale: float = 1.0  # resolution of the fit (corrections, blotch layer) relative to the frame's
    chunk: int | None = None  # frames solved together; None: from the frame size (restorer.chunk_frames)
    autotune: bool = False
    device: str = "auto"
    # Weights of the objective (DESIGN.md §4), per pixel and resolution independent. λ_R is
    # light: spatially varying flicker changes every frame, and a stiffer grid flattens the
    # correction of each (0.05 → 0.01: +0.1…+0.3 dB on six of the benchmark's seven cases).
    lambda_r: float = 0.01
    lambda_p: float = 0.1
    lambda_l: float = 1.0
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", tuple(int(v) for v in self.grid))
        _validate(self)

    @property
    def radius(self) -> int:
        """r in W = 2r + 1: how many neighbours on each side a frame is compared with."""
        return self.window // 2

    @property
    def context(self) -> int:
        """c = 12r + 2: the frames on each side of a frame that its result depends on (the
        restorer solves a chunk with this margin; the plug-in fetches as many around the frames
        a render restores). Why so many: :attr:`dfdb.restorer.Restorer.margin`."""
        return 12 * self.radius + 2

    @classmethod
    def from_preset(cls, preset: str = "balanced", **overrides: Any) -> "Params":
        """The named preset with ``overrides`` applied (None values are ignored)."""
        if preset not in PRESETS:
            raise ParamError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
        values = dict(PRESETS[preset], preset=preset)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ParamError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    def replace(self, **changes: Any) -> "Params":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, not tuples), for JSON and msgpack."""
        d = dataclasses.asdict(self)
        d.pop("extra")
        d["grid"] = list(self.grid)
        return d


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ParamError(message)


#: Fields that take a real number (a bool is not one, though Python compares it as 0 or 1).
_REAL_FIELDS = ("strength", "sensitivity", "flow_scale", "work_scale", "lambda_r", "lambda_p", "lambda_l")


def _validate(p: Params) -> None:
    for name in _REAL_FIELDS:
        value = getattr(p, name)
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), f"{name} must be a number, got {value!r}")
    _check(isinstance(p.window, int) and p.window in (3, 5, 7, 9), f"window must be 3, 5, 7 or 9 frames, got {p.window!r}")
    _check(len(p.grid) == 2 and all(1 <= g <= 32 for g in p.grid), f"grid must be two integers in 1..32, got {p.grid!r}")
    _check(0.0 <= p.strength <= 1.0, f"strength must be in [0, 1], got {p.strength!r}")
    _check(0.05 <= p.sensitivity <= 10.0, f"sensitivity must be in [0.05, 10], got {p.sensitivity!r}")
    _check(isinstance(p.iterations, int) and 1 <= p.iterations <= 500, f"iterations must be in 1..500, got {p.iterations!r}")
    _check(p.flow_preset in FLOW_PRESETS, f"flow_preset must be one of {', '.join(FLOW_PRESETS)}, got {p.flow_preset!r}")
    _check(0.1 <= p.flow_scale <= 1.0, f"flow_scale must be in [0.1, 1], got {p.flow_scale!r}")
    _check(0.25 <= p.work_scale <= 1.0, f"work_scale must be in [0.25, 1], got {p.work_scale!r}")
    _check(p.chunk is None or (isinstance(p.chunk, int) and 4 <= p.chunk <= 4096),
           f"chunk must be in 4..4096 frames, got {p.chunk!r}")
    _check(p.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, got {p.device!r}")
    _check(p.lambda_r >= 0 and p.lambda_p > 0, "lambda_r must be >= 0 and lambda_p > 0")
    _check(p.lambda_l >= 0, f"lambda_l must be >= 0, got {p.lambda_l!r}")
