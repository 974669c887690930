"""FrameDesc geometry (PROTOCOL.md §3.3.2): validation, numpy views and packing.

A FrameDesc describes interleaved pixels in a byte region with a signed row stride; a negative
stride means the region starts with the bottom row (OpenFX order). Everything here is checked
before a byte is read, so an absurd description costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .errors import BridgeError
from .wire import LIMITS

DTYPES: dict[str, np.dtype] = {"u8": np.dtype("<u1"), "u16": np.dtype("<u2"), "f32": np.dtype("<f4")}
NAMES: dict[np.dtype, str] = {v: k for k, v in DTYPES.items()}


def _bad(message: str) -> BridgeError:
    return BridgeError("bad_frame", message)


def field(desc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str = "frame") -> Any:
    """``desc[key]`` checked for presence and type (bool is not an int here)."""
    if key not in desc:
        raise BridgeError("bad_message", f"{what} lacks the field {key!r}")
    value = desc[key]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise BridgeError("bad_message", f"{what} field {key!r} must not be a boolean")
    if not isinstance(value, kind):
        raise BridgeError("bad_message", f"{what} field {key!r} has the wrong type {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Layout:
    """Validated geometry of one image in a byte region; ``stride`` is signed, in bytes."""

    width: int
    height: int
    channels: int
    dtype: str
    stride: int

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype].itemsize

    @property
    def row_bytes(self) -> int:
        return self.width * self.channels * self.itemsize

    @property
    def span(self) -> int:
        """Bytes the image occupies from its lowest-addressed row to the end of its last row."""
        return abs(self.stride) * (self.height - 1) + self.row_bytes

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


def packed(width: int, height: int, channels: int, dtype: str) -> Layout:
    """The tightly packed, top-down layout of an image."""
    return Layout(width, height, channels, dtype, width * channels * DTYPES[dtype].itemsize)


def parse_layout(desc: Mapping[str, Any], limits: Mapping[str, int] = LIMITS, channels: tuple[int, ...] = (3, 4)) -> Layout:
    """The Layout of a FrameDesc map, or ``bad_frame``/``too_large``/``bad_message``."""
    if not isinstance(desc, Mapping):
        raise BridgeError("bad_message", f"a frame description must be a map, got {type(desc).__name__}")
    width = field(desc, "width", int)
    height = field(desc, "height", int)
    nchan = field(desc, "channels", int)
    dtype = field(desc, "dtype", str)
    stride = field(desc, "stride", int)
    if width < 1 or height < 1:
        raise _bad(f"frame size {width}x{height} must be at least 1x1")
    if width > limits["max_width"] or height > limits["max_height"] or width * height > limits["max_pixels"]:
        raise BridgeError("too_large", f"frame size {width}x{height} exceeds the limits "
                          f"({limits['max_width']}x{limits['max_height']}, {limits['max_pixels']} pixels)")
    if nchan not in channels:
        raise _bad(f"channels must be one of {', '.join(map(str, channels))}, got {nchan}")
    if dtype not in DTYPES:
        raise _bad(f"dtype must be u8, u16 or f32, got {dtype!r}")
    layout = Layout(width, height, nchan, dtype, stride)
    if abs(stride) < layout.row_bytes:
        raise _bad(f"stride {stride} is shorter than a row of {layout.row_bytes} bytes")
    if abs(stride) % layout.itemsize:
        raise _bad(f"stride {stride} is not a multiple of the {dtype} sample size")
    if abs(stride) > 1 << 40:
        raise BridgeError("too_large", f"stride {stride} is absurd")
    return layout


def check_region(layout: Layout, offset: int, size: int) -> None:
    """The region [offset, offset + size) must hold the image and be aligned to its samples."""
    if offset < 0 or size < 0:
        raise _bad(f"offset {offset} and size {size} must not be negative")
    if offset % layout.itemsize:
        raise _bad(f"offset {offset} is not a multiple of the {layout.dtype} sample size")
    if size < layout.span:
        raise _bad(f"region of {size} bytes is smaller than the {layout.span} bytes the frame needs")


def view(buffer: Any, offset: int, layout: Layout) -> np.ndarray:
    """Zero-copy (H, W, C) view of the image at ``offset`` in ``buffer``, row 0 = top.

    The caller has checked the region with :func:`check_region`; numpy checks the bounds again.
    """
    step = abs(layout.stride)
    arr = np.ndarray(layout.shape, dtype=DTYPES[layout.dtype], buffer=buffer, offset=offset,
                     strides=(step, layout.channels * layout.itemsize, layout.itemsize))
    return arr[::-1] if layout.stride < 0 else arr


def dtype_name(arr: np.ndarray) -> str:
    """The wire name of an array's dtype (u8, u16, f32); other dtypes are refused."""
    name = NAMES.get(arr.dtype.newbyteorder("<"))
    if name is None:
        raise BridgeError("bad_frame", f"unsupported pixel dtype {arr.dtype}: use uint8, uint16 or float32")
    return name


def inline(image: np.ndarray) -> dict[str, Any]:
    """An inline FrameDesc of an (H, W, C) array: packed, top-down, little-endian."""
    if image.ndim != 3:
        raise BridgeError("bad_frame", f"an image must be (H, W, C), got shape {image.shape}")
    name = dtype_name(image)
    data = np.ascontiguousarray(image, dtype=DTYPES[name])
    layout = packed(image.shape[1], image.shape[0], image.shape[2], name)
    return {"width": layout.width, "height": layout.height, "channels": layout.channels,
            "dtype": name, "stride": layout.stride, "data": memoryview(data).cast("B")}


def from_desc(desc: Mapping[str, Any], limits: Mapping[str, int] = LIMITS, channels: tuple[int, ...] = (1, 3, 4)) -> np.ndarray:
    """A copy of the pixels of an inline FrameDesc, (H, W, C) in its own dtype."""
    layout = parse_layout(desc, limits, channels)
    data = field(desc, "data", (bytes, bytearray))
    check_region(layout, 0, len(data))
    return view(data, 0, layout).copy()


def write(buffer: Any, offset: int, layout: Layout, image: np.ndarray) -> None:
    """Copy an (H, W, C) image into the region at ``offset`` of a writable ``buffer``.

    No view outlives the call, so the buffer can be unmapped right after."""
    dst = view(buffer, offset, layout)
    dst[...] = image
    del dst
