"""Framing of the wire: a 4-byte big-endian length, then one msgpack map with ``str`` keys.

Both the client and the engine use these functions, so the two sides cannot disagree on the
framing. The length is checked against ``MAX_MESSAGE`` before the body is read, so a hostile
length never causes a large allocation.
"""
from __future__ import annotations

import socket
import struct
from typing import Any, Mapping

import msgpack

from .errors import BridgeError, ConnectionClosed

PROTOCOL_VERSION = 1
#: Largest message body, in bytes, in both directions.
MAX_MESSAGE = 256 * 1024 * 1024
HEADER = struct.Struct(">I")

#: The engine's limits as announced in ``hello`` (PROTOCOL.md §3.1).
LIMITS: dict[str, int] = {
    "max_message": MAX_MESSAGE,
    "max_width": 16384,
    "max_height": 16384,
    "max_pixels": 1 << 26,
    "max_window": 116,
    "max_channels": 4,
}


def encode(message: Mapping[str, Any], max_message: int = MAX_MESSAGE) -> tuple[bytes, bytes]:
    """(header, body) of one message; raises ``too_large`` rather than emit an unreadable one."""
    body = msgpack.packb(message, use_bin_type=True)
    if len(body) > max_message:
        raise BridgeError("too_large", f"message of {len(body)} bytes exceeds the limit of {max_message}")
    return HEADER.pack(len(body)), body


def body_length(header: bytes, max_message: int = MAX_MESSAGE) -> int:
    """The body length announced by a 4-byte header, validated against ``max_message``."""
    (length,) = HEADER.unpack(header)
    if length == 0:
        raise BridgeError("bad_message", "empty message body")
    if length > max_message:
        raise BridgeError("too_large", f"message of {length} bytes exceeds the limit of {max_message}")
    return length


def decode(body: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The msgpack map in ``body``; anything else (bad msgpack, trailing bytes, non-map,
    non-``str`` keys, nesting too deep) raises ``bad_message``."""
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True)
    except Exception as err:  # msgpack raises many unrelated types on garbage
        raise BridgeError("bad_message", f"body is not valid msgpack: {type(err).__name__}") from None
    if not isinstance(message, dict):
        raise BridgeError("bad_message", f"body is a msgpack {type(message).__name__}, not a map")
    if not all(isinstance(k, str) for k in message):
        raise BridgeError("bad_message", "map keys must be strings")
    return message


def send(sock: socket.socket, message: Mapping[str, Any], max_message: int = MAX_MESSAGE) -> int:
    """Send one message on a blocking socket; returns the bytes written (header included)."""
    header, body = encode(message, max_message)
    sock.sendall(header)
    sock.sendall(body)
    return len(header) + len(body)


def recv_exact(sock: socket.socket, n: int) -> bytearray:
    """Exactly ``n`` bytes from a blocking socket, or ConnectionClosed if it ends first."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionClosed(f"connection closed after {got} of {n} bytes")
        got += k
    return buf


def recv(sock: socket.socket, max_message: int = MAX_MESSAGE) -> tuple[dict[str, Any], int]:
    """(message, bytes read) of the next message on a blocking socket."""
    header = recv_exact(sock, HEADER.size)
    length = body_length(bytes(header), max_message)
    body = recv_exact(sock, length)
    return decode(body), HEADER.size + length
