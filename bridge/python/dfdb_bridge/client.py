"""The Python client of the dfdb engine (PROTOCOL.md): one blocking connection per Client.

``Client().process(frames, target_index)`` restores one frame of a window; with a ``clip`` id and
``times`` the client remembers which frames the engine already holds and sends only new ones.
"""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from . import wire
from .address import Address, read_token, resolve
from .errors import BridgeError, ConnectionClosed, EngineUnavailable, ServerError

__all__ = ["Client", "Result"]

CLIENT_NAME = "dfdb_bridge/1"
#: Frames at least this large go through shared memory when transport="auto".
SHM_THRESHOLD = 64 * 1024
_ALIGN = 64


def _numpy():
    try:
        import numpy
    except ImportError:  # numpy is optional for the protocol layer only
        raise BridgeError("no_numpy", "Client.process needs numpy: pip install numpy") from None
    return numpy


@dataclass
class Result:
    """What ``process`` returned: images (H, W, C) in the target frame's dtype, and stats."""

    image: Any = None
    mask: Any = None
    flicker: Any = None
    stats: dict[str, Any] = field(default_factory=dict)


class Client:
    """A connection to the engine. ``address``: ``unix:///path``, ``tcp://127.0.0.1:PORT`` or
    None (the per-user default). ``transport``: "auto" (shared memory for large frames when the
    engine offers it), "shm" or "inline". ``timeout`` in seconds applies to every socket
    operation (None: wait as long as the solver needs)."""

    def __init__(self, address: str | Address | None = None, *, timeout: float | None = None,
                 transport: str = "auto", client_name: str = CLIENT_NAME) -> None:
        if transport not in ("auto", "shm", "inline"):
            raise ValueError(f"transport must be auto, shm or inline, got {transport!r}")
        self.address = resolve(address)
        self.transport = transport
        self.client_name = client_name
        self.bytes_sent = 0  # on the socket, headers included
        self.bytes_received = 0
        self.frames_sent = 0  # frames attached to process requests, inline or in shared memory
        self.server_info: dict[str, Any] = {}
        self._ids = iter(range(1, 1 << 63))
        self._held: dict[str, set[int]] = {}
        self._segments = None
        self._sock = self._connect(timeout)
        try:
            self.hello()
        except BaseException:
            self._sock.close()
            raise

    # -- connection -----------------------------------------------------------------------
    def _connect(self, timeout: float | None) -> socket.socket:
        addr = self.address
        try:
            if addr.is_tcp:
                sock = socket.create_connection((addr.host, addr.port), timeout=10)
            else:
                st = os.stat(addr.path)
                if st.st_uid != os.getuid():
                    raise BridgeError("unsafe_socket", f"{addr.path} belongs to another user")
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(10)
                try:
                    sock.connect(addr.path)
                except BaseException:
                    sock.close()
                    raise
        except (FileNotFoundError, ConnectionRefusedError, socket.timeout) as err:
            raise EngineUnavailable(f"no engine at {addr}: {err.strerror or err}") from None
        sock.settimeout(timeout)
        return sock

    def close(self) -> None:
        """Close the connection and unlink this client's shared memory."""
        if self._segments is not None:
            self._segments.destroy()
            self._segments = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------------
    def call(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send one request (``id`` is filled in) and return its reply; an ``error`` reply
        raises ServerError with the engine's code."""
        if self._sock is None:
            raise ConnectionClosed("the client is closed")
        request = dict(message, id=next(self._ids))
        try:
            self.bytes_sent += wire.send(self._sock, request)
            reply, n = wire.recv(self._sock)
        except (OSError, ConnectionClosed) as err:
            self.close()
            if isinstance(err, socket.timeout):
                raise BridgeError("timeout", f"no reply from the engine at {self.address} in time") from None
            raise ConnectionClosed(f"connection to the engine lost: {err}") from None
        self.bytes_received += n
        if reply.get("op") == "error":
            raise ServerError(str(reply.get("code", "internal")), str(reply.get("message", "")))
        if reply.get("id") != request["id"]:
            self.close()
            raise BridgeError("bad_message", f"reply id {reply.get('id')!r} does not match request {request['id']}")
        return reply

    def hello(self) -> dict[str, Any]:
        """Handshake; returns the engine's description (version, capabilities, devices, limits)."""
        msg: dict[str, Any] = {"op": "hello", "protocol": wire.PROTOCOL_VERSION, "client": self.client_name}
        if self.address.is_tcp:
            token = read_token()
            if token is None:
                raise BridgeError("unauthorized", "no TCP token: the engine creates ~/.config/dfdb/token when it starts")
            msg["token"] = token
        self.server_info = self.call(msg)
        return self.server_info

    def ping(self) -> dict[str, Any]:
        """The engine's load: queued and running jobs, clip sessions held."""
        return self.call({"op": "ping"})

    def close_clip(self, clip: str) -> None:
        """Let the engine drop a clip session's frames and results."""
        self._held.pop(clip, None)
        self.call({"op": "close_clip", "clip": clip})

    def shutdown(self) -> None:
        """Ask the engine to finish running work and exit."""
        self.call({"op": "shutdown"})
        self.close()

    def process(self, frames: Any, target_index: int, params: Mapping[str, Any] | None = None,
                clip: str | None = None, *, times: Sequence[int] | None = None) -> Any:
        """The restored frame ``target_index`` of ``frames`` ((T, H, W, C) float32 in [0, 1];
        uint8/uint16 accepted), as an (H, W, C) array of the input's dtype."""
        return self.request(frames, target_index, params, clip, times=times).image

    def request(self, frames: Any, target_index: int, params: Mapping[str, Any] | None = None,
                clip: str | None = None, *, times: Sequence[int] | None = None,
                outputs: Iterable[str] = ("image",), ahead: int = 0) -> Result:
        """Like :meth:`process`, returning mask/flicker/stats too.

        With ``clip`` (a session id unique to this caller) and ``times`` (the frame numbers of
        ``frames``), frames already sent under the same clip and time are not sent again: the
        caller promises that a (clip, time) pair always means the same pixels. Without ``clip``
        a one-off session is used and closed afterwards. ``ahead``: the engine also restores
        the next ``ahead`` frames of the window and keeps them for the requests to come
        (PROTOCOL.md 3.3.5; the window should reach c frames past the last of them).
        """
        np = _numpy()
        arrays = [np.asarray(f) for f in frames]
        if not arrays or any(a.ndim != 3 or a.shape != arrays[0].shape for a in arrays):
            raise BridgeError("bad_frame", "frames must be a non-empty (T, H, W, C) stack of equal (H, W, C) images")
        times = list(range(len(arrays))) if times is None else [int(t) for t in times]
        if len(times) != len(arrays):
            raise BridgeError("bad_message", f"{len(times)} times for {len(arrays)} frames")
        if not -len(arrays) <= target_index < len(arrays):
            raise BridgeError("bad_message", f"target_index {target_index} outside the {len(arrays)} frames")
        one_off = clip is None
        clip = clip or f"py-{os.getpid()}-{uuid.uuid4().hex}"
        held = self._held.setdefault(clip, set())
        attach = {t for t in times if t not in held}
        try:
            for round_ in range(6):
                if round_ >= 3:
                    attach = set(times)
                reply = self._process_once(clip, times[target_index], times, arrays, attach,
                                           dict(params or {}), list(outputs), ahead)
                if reply["op"] == "need":  # the frames attached this round were stored
                    missing = {int(t) for t in reply.get("times", [])}
                    held.update(attach - missing)
                    held.difference_update(missing)
                    attach = missing
                    continue
                held.update(times)
                return self._result(reply)
            raise BridgeError("need_loop", f"the engine kept asking for frames of clip {clip!r}")
        finally:
            if one_off and self._sock is not None:
                try:
                    self.close_clip(clip)
                except BridgeError:
                    pass  # the request's own outcome (or error) is what the caller needs to see

    # -- frames -----------------------------------------------------------------------------
    def _use_shm(self, nbytes: int) -> bool:
        offered = "shm" in self.server_info.get("capabilities", ())
        if self.transport == "shm" and not offered:
            raise BridgeError("shm_unavailable", "the engine does not offer shared memory")
        return offered and (self.transport == "shm" or (self.transport == "auto" and nbytes >= SHM_THRESHOLD))

    def _process_once(self, clip: str, target: int, times: list[int], arrays: list[Any],
                      attach: set[int], params: dict[str, Any], outputs: list[str], ahead: int) -> dict[str, Any]:
        from .frames import dtype_name, inline, packed, write

        use_shm = self._use_shm(arrays[0].nbytes)
        frames: list[dict[str, Any]] = []
        sent = [(t, a) for t, a in zip(times, arrays) if t in attach]
        self.frames_sent += len(sent)
        slots = [-(-a.nbytes // _ALIGN) * _ALIGN for _, a in sent]
        if use_shm and sent:
            seg = self._segs().get("in", sum(slots))
            offset = 0
            for (t, a), slot in zip(sent, slots):
                layout = packed(a.shape[1], a.shape[0], a.shape[2], dtype_name(a))
                write(seg.buf, offset, layout, a)
                frames.append({"time": t, "frame": {"width": layout.width, "height": layout.height,
                                                    "channels": layout.channels, "dtype": layout.dtype,
                                                    "stride": layout.stride, "shm": seg.name,
                                                    "offset": offset, "size": layout.span}})
                offset += slot
        else:
            frames.extend({"time": t, "frame": inline(a)} for t, a in sent)
        frames.extend({"time": t} for t in times if t not in attach)
        message: dict[str, Any] = {"op": "process", "clip": clip, "target": target, "frames": frames,
                                   "params": params, "outputs": outputs}
        if ahead:
            message["ahead"] = ahead
        target_array = arrays[times.index(target)]
        if use_shm and "image" in outputs:
            out = self._segs().get("out", target_array.nbytes)
            message["out"] = {"shm": out.name, "offset": 0, "size": target_array.nbytes}
        return self.call(message)

    def _segs(self):
        from .shm import Segments

        if self._segments is None:
            self._segments = Segments()
        return self._segments

    def _result(self, reply: dict[str, Any]) -> Result:
        from .frames import check_region, from_desc, parse_layout, view

        limits = self.server_info.get("limits", wire.LIMITS)
        result = Result(stats=dict(reply.get("stats") or {}))
        for key in ("image", "mask", "flicker"):
            desc = reply.get(key)
            if desc is None:
                continue
            if "data" in desc:
                setattr(result, key, from_desc(desc, limits))
                continue
            seg = self._segments.find(desc.get("shm")) if self._segments else None
            if seg is None:
                raise BridgeError("bad_message", f"reply {key} names an unknown segment {desc.get('shm')!r}")
            layout = parse_layout(desc, limits, (1, 3, 4))
            check_region(layout, int(desc["offset"]), min(int(desc["size"]), seg.size - int(desc["offset"])))
            pixels = view(seg.buf, int(desc["offset"]), layout)
            setattr(result, key, pixels.copy())
            del pixels
        return result
