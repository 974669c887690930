"""Fuzzing the engine's decoder and request validation: whatever arrives, the sender gets an
``error`` reply (or a clean disconnect) and the engine keeps serving."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfdb.server import Config, EngineThread
from dfdb_bridge import parse_address, wire
from dfdb_bridge.errors import ConnectionClosed

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
OPS = ["hello", "ping", "process", "close_clip", "job.submit", "", "PROCESS", "shutdown!"]
REPLIES = {"error", "hello", "pong", "result", "need", "closed"}


@pytest.fixture(scope="module")
def engine():
    d = tempfile.mkdtemp(prefix="dfdb-f", dir="/tmp")
    os.chmod(d, 0o700)
    with EngineThread(Config(parse_address(f"unix://{d}/engine.sock"), cache_bytes=32 << 20)) as eng:
        yield eng
    shutil.rmtree(d, ignore_errors=True)


def connect(engine) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(engine.address.path)
    wire.send(s, {"op": "hello", "id": 0, "protocol": 1, "client": "fuzz"})
    assert wire.recv(s)[0]["op"] == "hello"
    return s


def exchange(engine, payload: bytes) -> dict | None:
    """Send raw bytes on a fresh connection; the first reply, or None on a clean disconnect.
    Afterwards the engine must still answer a new client."""
    s = connect(engine)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        try:
            reply = wire.recv(s)[0]
        except ConnectionClosed:
            reply = None
    finally:
        s.close()
    assert reply is None or reply.get("code") != "internal", reply
    check = connect(engine)
    wire.send(check, {"op": "ping", "id": 1})
    assert wire.recv(check)[0]["op"] == "pong"
    check.close()
    return reply


def framed(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


scalars = st.none() | st.booleans() | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1) \
    | st.floats(allow_nan=True) | st.text(max_size=20) | st.binary(max_size=64)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=5), max_leaves=20)


@SETTINGS
@given(st.binary(min_size=1, max_size=300))
def test_random_bodies_get_an_error(engine, body):
    reply = exchange(engine, framed(body))
    assert reply is not None and reply["op"] in REPLIES
    if reply["op"] != "error":  # only a body that happens to be a valid request gets more
        assert isinstance(msgpack.unpackb(body, strict_map_key=False), dict)


@SETTINGS
@given(st.binary(max_size=40))
def test_truncated_and_garbage_streams_end_cleanly(engine, stream):
    reply = exchange(engine, stream)
    assert reply is None or reply["op"] in REPLIES


@SETTINGS
@given(st.sampled_from(OPS), st.dictionaries(st.text(max_size=10), values, max_size=6), st.integers(0, 1 << 20))
def test_random_requests_get_a_reply(engine, op, fields, rid):
    reply = exchange(engine, framed(msgpack.packb({**fields, "op": op, "id": rid}, use_bin_type=True)))
    assert reply is not None and reply["op"] in REPLIES and reply["id"] == rid


dims = st.integers(-2, 20) | st.sampled_from([0, 1 << 14, (1 << 14) + 1, 1 << 31, (1 << 64) - 1])
frame_descs = st.fixed_dictionaries(
    {"width": dims, "height": dims, "channels": st.integers(-1, 5), "dtype": st.sampled_from(["u8", "u16", "f32", "f64", ""]),
     "stride": st.integers(-300, 300) | st.sampled_from([0, 1 << 40, -(1 << 62)])},
    optional={"data": st.binary(max_size=2000), "shm": st.sampled_from(["/dfdb-nope", "/", "../x", "/dev/shm"]),
              "offset": st.integers(-5, 1 << 40), "size": st.integers(-5, 1 << 40)})
entries = st.fixed_dictionaries({"time": st.integers(-3, 3)}, optional={"frame": frame_descs})


@SETTINGS
@given(st.lists(entries, max_size=10), st.integers(-3, 3), values)
def test_malformed_frames_are_refused(engine, frames, target, params):
    message = {"op": "process", "id": 9, "clip": "fuzz", "target": target, "frames": frames,
               "params": params if isinstance(params, dict) else {"preset": "fast"}}
    reply = exchange(engine, framed(msgpack.packb(message, use_bin_type=True)))
    assert reply is not None and reply["op"] in {"error", "need", "result"} and reply["id"] == 9
