"""Validation of requests and construction of replies (PROTOCOL.md §3).

Every field of a request is checked here, before any pixel is read or any segment mapped, and
every failure becomes a :class:`BridgeError` whose code goes back to the client. Pixels are
converted to the solver's float32 [0, 1] on the way in and back to the target's dtype on the
way out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from dfdb_bridge.errors import BridgeError
from dfdb_bridge.frames import DTYPES, Layout, check_region, field, packed, parse_layout, view
from dfdb_bridge.wire import LIMITS

from ..errors import ParamError
from ..params import Params
from . import shm

OUTPUTS = ("image", "mask", "flicker")
INT64 = (-(1 << 63), (1 << 63) - 1)
MAX_CLIP_ID = 256
MAX_CLIENT_NAME = 256
#: Most frames a ``process`` request may ask to be solved after its target (PROTOCOL.md 3.3.5).
MAX_AHEAD = 15


def bad(message: str) -> BridgeError:
    return BridgeError("bad_message", message)


@dataclass(frozen=True)
class Pixels:
    """Where an attached frame's pixels are: inline ``data`` or a shared-memory region."""

    layout: Layout
    data: bytes | None = None
    shm: str = ""
    offset: int = 0
    size: int = 0


@dataclass(frozen=True)
class FrameRef:
    """One entry of ``frames``: a time, with pixels or (None) a reference to held ones."""

    time: int
    pixels: Pixels | None


@dataclass(frozen=True)
class OutRegion:
    shm: str
    offset: int
    size: int
    stride: int | None


@dataclass(frozen=True)
class ProcessRequest:
    clip: str
    target: int
    frames: tuple[FrameRef, ...]  # ascending time
    params: Params
    outputs: tuple[str, ...]
    out: OutRegion | None
    ahead: int = 0  # frames of the window after the target solved with it and kept

    @property
    def times(self) -> list[int]:
        return [f.time for f in self.frames]


def request_id(message: Mapping[str, Any]) -> int | None:
    """The request's id, or None when it is missing or not a uint64."""
    rid = message.get("id")
    if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid < 1 << 64:
        return rid
    return None


def _uint(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad(f"{what} must be a non-negative integer")
    return value


def _time(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not INT64[0] <= value <= INT64[1]:
        raise bad(f"{what} must be a 64-bit integer")
    return value


def _clip(message: Mapping[str, Any]) -> str:
    clip = field(message, "clip", str, "request")
    if not 1 <= len(clip) <= MAX_CLIP_ID:
        raise bad(f"clip must be 1 to {MAX_CLIP_ID} characters")
    return clip


def parse_hello(message: Mapping[str, Any]) -> tuple[int, str, str | None]:
    """(protocol, client name, token or None) of a ``hello``."""
    protocol = _uint(field(message, "protocol", int, "hello"), "hello.protocol")
    client = field(message, "client", str, "hello")
    if len(client) > MAX_CLIENT_NAME:
        raise bad(f"hello.client is longer than {MAX_CLIENT_NAME} characters")
    token = message.get("token")
    if token is not None and not isinstance(token, str):
        raise bad("hello.token must be a string")
    return protocol, client, token


def parse_close(message: Mapping[str, Any]) -> str:
    return _clip(message)


def parse_params(raw: Any) -> Params:
    """Params from the wire map: ``preset`` picks the base, other keys override it."""
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
        raise BridgeError("bad_param", "params must be a map with string keys")
    values = dict(raw)
    preset = values.pop("preset", "balanced")
    if "extra" in values:
        raise BridgeError("bad_param", "unknown parameter(s): extra")
    if isinstance(values.get("grid"), list):
        values["grid"] = tuple(values["grid"])
    try:
        return Params.from_preset(preset, **values)
    except ParamError as err:
        raise BridgeError("bad_param", str(err)) from None
    except (TypeError, ValueError, OverflowError) as err:
        raise BridgeError("bad_param", f"a parameter has the wrong type: {err}") from None


def _pixels(desc: Any, limits: Mapping[str, int]) -> Pixels:
    layout = parse_layout(desc, limits, (3, 4))
    has_data, has_shm = "data" in desc, "shm" in desc
    if has_data == has_shm:
        raise bad("a frame needs either data or shm/offset/size, not both or neither")
    if has_data:
        data = field(desc, "data", bytes)
        check_region(layout, 0, len(data))
        return Pixels(layout, data=data)
    if not shm.AVAILABLE:
        raise BridgeError("shm_unavailable", "shared memory is not supported by this engine")
    name = field(desc, "shm", str)
    offset = _uint(field(desc, "offset", int), "frame.offset")
    size = _uint(field(desc, "size", int), "frame.size")
    check_region(layout, offset, size)
    return Pixels(layout, shm=name, offset=offset, size=size)


def _out(raw: Any) -> OutRegion:
    if not isinstance(raw, Mapping):
        raise bad("out must be a map")
    if not shm.AVAILABLE:
        raise BridgeError("shm_unavailable", "shared memory is not supported by this engine")
    stride = raw.get("stride")
    if stride is not None and (isinstance(stride, bool) or not isinstance(stride, int) or stride == 0):
        raise bad("out.stride must be a non-zero integer")
    return OutRegion(field(raw, "shm", str, "out"), _uint(field(raw, "offset", int, "out"), "out.offset"),
                     _uint(field(raw, "size", int, "out"), "out.size"), stride)


def parse_process(message: Mapping[str, Any], limits: Mapping[str, int] = LIMITS) -> ProcessRequest:
    """A validated ``process`` request (no pixel is read here)."""
    clip = _clip(message)
    target = _time(field(message, "target", int, "process"), "target")
    raw_frames = field(message, "frames", list, "process")
    if not raw_frames:
        raise bad("frames must not be empty")
    if len(raw_frames) > limits["max_window"]:
        raise BridgeError("too_large", f"{len(raw_frames)} frames exceed the window limit of {limits['max_window']}")
    refs = []
    for entry in raw_frames:
        if not isinstance(entry, Mapping):
            raise bad("each entry of frames must be a map")
        t = _time(field(entry, "time", int, "frames entry"), "frames[].time")
        refs.append(FrameRef(t, _pixels(entry["frame"], limits) if "frame" in entry else None))
    refs.sort(key=lambda f: f.time)
    times = [f.time for f in refs]
    if len(set(times)) != len(times):
        raise bad("frames lists a time twice")
    if target not in times:
        raise bad(f"target {target} is not one of the frames' times")
    shapes = {f.pixels.layout.shape for f in refs if f.pixels is not None}
    if len(shapes) > 1:
        raise BridgeError("bad_frame", f"frames of one request differ in size: {sorted(shapes)}")
    outputs = message.get("outputs", ["image"])
    if not isinstance(outputs, list) or not outputs or any(not isinstance(o, str) or o not in OUTPUTS for o in outputs):
        raise bad("outputs must be a non-empty list of image, mask, flicker")
    out = _out(message["out"]) if message.get("out") is not None else None
    ahead = message.get("ahead", 0)
    if not isinstance(ahead, int) or isinstance(ahead, bool) or not 0 <= ahead <= MAX_AHEAD:
        raise bad(f"ahead must be an int in 0..{MAX_AHEAD}")
    return ProcessRequest(clip, target, tuple(refs), parse_params(message.get("params", {})),
                          tuple(o for o in OUTPUTS if o in outputs), out, ahead)


def to_float(pixels: np.ndarray) -> np.ndarray:
    """A new (H, W, C) float32 array in [0, 1] (nominal) from u8/u16/f32 pixels."""
    if pixels.dtype == np.uint8:  # the same arithmetic as dfdb.restorer.as_float: identical floats
        return pixels.astype(np.float32) / np.float32(255)
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / np.float32(65535)
    return np.array(pixels, dtype=np.float32, copy=True)


def from_float(image: np.ndarray, dtype: str) -> np.ndarray:
    """(H, W, C) float32 → the wire dtype: u8/u16 rounded from [0, 1] clipped; f32 as is."""
    if dtype == "f32":
        return np.ascontiguousarray(image, dtype=np.float32)
    top = 255.0 if dtype == "u8" else 65535.0
    return np.rint(np.clip(image, 0.0, 1.0) * top).astype(DTYPES[dtype])


def load(pixels: Pixels) -> np.ndarray:
    """The float32 (H, W, C) image of attached pixels (a private copy)."""
    if pixels.data is not None:
        return to_float(view(pixels.data, 0, pixels.layout))
    return shm.read(pixels.shm, pixels.offset, pixels.size, pixels.layout, to_float)


def out_layout(out: OutRegion, shape: tuple[int, int, int], dtype: str) -> Layout:
    """The layout the reply image gets in ``out``, checked against the region's size."""
    h, w, c = shape
    layout = Layout(w, h, c, dtype, out.stride if out.stride is not None else packed(w, h, c, dtype).stride)
    if abs(layout.stride) < layout.row_bytes or abs(layout.stride) % layout.itemsize:
        raise BridgeError("bad_frame", f"out.stride {layout.stride} does not fit rows of {layout.row_bytes} bytes")
    check_region(layout, out.offset, out.size)
    return layout


def encode_image(image: np.ndarray, dtype: str, out: OutRegion | None = None) -> dict[str, Any]:
    """FrameDesc of an (H, W, C) float32 image in ``dtype``: inline, or written into ``out``."""
    h, w, c = image.shape
    pixels = from_float(image, dtype)
    if out is None:
        return {"width": w, "height": h, "channels": c, "dtype": dtype, "stride": packed(w, h, c, dtype).stride,
                "data": memoryview(np.ascontiguousarray(pixels)).cast("B")}
    layout = out_layout(out, (h, w, c), dtype)
    shm.store(out.shm, out.offset, out.size, layout, pixels)
    return {"width": w, "height": h, "channels": c, "dtype": dtype, "stride": layout.stride,
            "shm": out.shm, "offset": out.offset, "size": out.size}


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and tuples turned into msgpack-ready Python types."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    return str(value)


def error(rid: int | None, code: str, message: str) -> dict[str, Any]:
    return {"op": "error", "id": rid, "code": code, "message": message}
