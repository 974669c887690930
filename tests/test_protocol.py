"""The wire's building blocks: framing, addresses, FrameDesc geometry, request validation,
the session cache and the solver pool (bridge/PROTOCOL.md)."""
from __future__ import annotations

import threading

import msgpack
import numpy as np
import pytest

from dfdb.frames import RestoredFrame
from dfdb.server import codec
from dfdb.server.pool import SolverPool
from dfdb.server.sessions import ByteLRU, SessionStore
from dfdb_bridge import wire
from dfdb_bridge.address import default_address, parse_address, token_path
from dfdb_bridge.errors import BridgeError
from dfdb_bridge.frames import Layout, check_region, from_desc, inline, parse_layout, view


def code_of(fn, *args, **kwargs) -> str:
    with pytest.raises(BridgeError) as info:
        fn(*args, **kwargs)
    return info.value.code


# -- framing ---------------------------------------------------------------------------------
def test_frame_round_trip_and_header_is_big_endian_length():
    header, body = wire.encode({"op": "ping", "id": 7, "blob": b"\x00\x01"})
    assert header == len(body).to_bytes(4, "big")
    assert wire.decode(body) == {"op": "ping", "id": 7, "blob": b"\x00\x01"}


def test_length_is_checked_before_the_body():
    assert wire.body_length((wire.MAX_MESSAGE).to_bytes(4, "big")) == wire.MAX_MESSAGE
    assert code_of(wire.body_length, (wire.MAX_MESSAGE + 1).to_bytes(4, "big")) == "too_large"
    assert code_of(wire.body_length, b"\xff\xff\xff\xff") == "too_large"
    assert code_of(wire.body_length, b"\x00\x00\x00\x00") == "bad_message"


@pytest.mark.parametrize("body", [
    b"\xc1",                                   # never-used msgpack byte
    msgpack.packb([1, 2, 3]),                  # not a map
    msgpack.packb({1: "x"}),                   # non-string key
    msgpack.packb({"op": "ping"}) + b"\x00",   # trailing bytes
    msgpack.packb({"op": "ping"})[:-1],        # truncated
    b"\x91" * 100000,                          # nesting too deep
    b"\x81\xa2op\xa3\xff\xfe\xfd",             # invalid UTF-8 in a string
])
def test_garbage_bodies_are_bad_messages(body):
    assert code_of(wire.decode, body) == "bad_message"


def test_encode_refuses_oversized_messages():
    assert code_of(wire.encode, {"data": b"x" * 100}, max_message=50) == "too_large"


# -- addresses -------------------------------------------------------------------------------
def test_addresses_parse_and_only_loopback_tcp_is_allowed():
    assert parse_address("unix:///run/user/1/dfdb/engine.sock").path == "/run/user/1/dfdb/engine.sock"
    a = parse_address("tcp://127.0.0.1:4000")
    assert (a.host, a.port, str(a)) == ("127.0.0.1", 4000, "tcp://127.0.0.1:4000")
    assert str(parse_address("tcp://[::1]:5")) == "tcp://[::1]:5"
    assert parse_address("tcp://localhost:0").port == 0
    for bad in ("tcp://0.0.0.0:4000", "tcp://192.168.1.2:4000", "tcp://example.com:1", "unix://relative.sock",
                "http://127.0.0.1:1", "tcp://127.0.0.1:99999", "tcp://127.0.0.1"):
        assert code_of(parse_address, bad) == "bad_address"


def test_default_address_order(monkeypatch, tmp_path):
    monkeypatch.setenv("DFDB_ENGINE_ADDRESS", "tcp://127.0.0.1:1234")
    assert str(default_address()) == "tcp://127.0.0.1:1234"
    monkeypatch.delenv("DFDB_ENGINE_ADDRESS")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_address().path == str(tmp_path / "dfdb" / "engine.sock")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    import os
    assert default_address().path == f"/tmp/dfdb-{os.getuid()}/engine.sock"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert token_path() == tmp_path / "dfdb" / "token"


# -- FrameDesc geometry ----------------------------------------------------------------------
def desc(**kw):
    d = {"width": 4, "height": 3, "channels": 3, "dtype": "u8", "stride": 12}
    d.update(kw)
    return d


@pytest.mark.parametrize("kw, code", [
    (dict(width=0), "bad_frame"), (dict(height=-1), "bad_frame"), (dict(channels=2), "bad_frame"),
    (dict(dtype="f64"), "bad_frame"), (dict(stride=11), "bad_frame"), (dict(stride=-11), "bad_frame"),
    (dict(dtype="u16", stride=25), "bad_frame"), (dict(stride=0), "bad_frame"),
    (dict(width=16385), "too_large"), (dict(width=10000, height=10000, stride=30000), "too_large"),
    (dict(stride=1 << 62), "too_large"), (dict(width=4.0), "bad_message"), (dict(width=True), "bad_message"),
    (dict(dtype=None), "bad_message"),
])
def test_bad_layouts_are_refused(kw, code):
    assert code_of(parse_layout, desc(**kw)) == code


def test_region_must_cover_the_image_and_be_aligned():
    layout = parse_layout(desc(dtype="f32", stride=-64))
    assert layout.span == 64 * 2 + 48
    check_region(layout, 4, 176)
    assert code_of(check_region, layout, 0, 175) == "bad_frame"
    assert code_of(check_region, layout, 2, 176) == "bad_frame"


def test_negative_stride_means_the_region_starts_with_the_bottom_row():
    rows = np.arange(3 * 16, dtype=np.uint8).reshape(3, 16)  # 3 rows of 16 bytes, 12 used
    layout = Layout(4, 3, 3, "u8", -16)
    img = view(rows.tobytes(), 0, layout)
    assert img.shape == (3, 4, 3)
    np.testing.assert_array_equal(img[0].ravel(), rows[2, :12])  # top row = last in memory
    np.testing.assert_array_equal(img[2].ravel(), rows[0, :12])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_inline_round_trip(dtype):
    img = (np.random.default_rng(1).random((5, 7, 4)) * (1 if dtype == np.float32 else 255)).astype(dtype)
    d = wire.decode(wire.encode({"f": inline(img)})[1])["f"]
    out = from_desc(d)
    assert out.dtype == img.dtype
    np.testing.assert_array_equal(out, img)


# -- request validation ----------------------------------------------------------------------
def frame_entry(t, w=4, h=3, c=3):
    return {"time": t, "frame": inline(np.zeros((h, w, c), np.uint8))}


def process(**kw):
    m = {"op": "process", "id": 1, "clip": "c", "target": 1, "frames": [frame_entry(0), frame_entry(1), {"time": 2}]}
    m.update(kw)
    return wire.decode(wire.encode(m)[1])


def test_a_good_request_parses_sorted_by_time():
    req = codec.parse_process(process(frames=[{"time": 2}, frame_entry(1), frame_entry(0)]))
    assert req.times == [0, 1, 2] and req.target == 1 and req.outputs == ("image",)
    assert req.frames[2].pixels is None and req.frames[0].pixels.layout.shape == (3, 4, 3)
    assert req.params.preset == "balanced"


@pytest.mark.parametrize("kw, code", [
    (dict(clip=""), "bad_message"), (dict(clip=5), "bad_message"), (dict(target=9), "bad_message"),
    (dict(target="1"), "bad_message"), (dict(frames=[]), "bad_message"), (dict(frames="x"), "bad_message"),
    (dict(frames=[{"time": 1}, {"time": 1}]), "bad_message"), (dict(frames=[{"time": t} for t in range(wire.LIMITS["max_window"] + 1)]), "too_large"),
    (dict(frames=[frame_entry(0), frame_entry(1, w=5)]), "bad_frame"), (dict(frames=[{"frame": {}}]), "bad_message"),
    (dict(frames=[{"time": 1 << 63}]), "bad_message"), (dict(outputs=[]), "bad_message"),
    (dict(outputs=["image", "depth"]), "bad_message"), (dict(outputs=[1]), "bad_message"),
    (dict(ahead=-1), "bad_message"), (dict(ahead=16), "bad_message"), (dict(ahead=True), "bad_message"),
    (dict(params={"window": 4}), "bad_param"), (dict(params={"strength": "max"}), "bad_param"),
    (dict(params={"preset": "ultra"}), "bad_param"), (dict(params={"nonsense": 1}), "bad_param"),
    (dict(params={"grid": [1, "a"]}), "bad_param"), (dict(params={"grid": 3}), "bad_param"),
    (dict(params={"extra": {}}), "bad_param"), (dict(params=[1]), "bad_param"),
    (dict(params={"preset": [1]}), "bad_param"), (dict(params={"grid": [float("inf"), 1]}), "bad_param"),
    (dict(params={"work_scale": True}), "bad_param"), (dict(params={"work_scale": 0.1}), "bad_param"),
    (dict(out={"shm": "/x", "offset": -1, "size": 1}), "bad_message"), (dict(out={"shm": "/x", "offset": 0, "size": 1, "stride": 0}), "bad_message"),
])
def test_bad_requests_are_refused_with_their_code(kw, code):
    assert code_of(codec.parse_process, process(**kw)) == code


def test_frames_need_data_or_shm_but_not_both():
    entry = frame_entry(1)
    entry["frame"]["shm"] = "/x"
    assert code_of(codec.parse_process, process(frames=[entry])) == "bad_message"
    del entry["frame"]["data"]
    assert code_of(codec.parse_process, process(frames=[entry])) == "bad_message"  # no offset/size


def test_params_follow_the_preset_and_overrides():
    p = codec.parse_params({"preset": "fast", "strength": 0.5, "grid": [2, 3]})
    assert (p.preset, p.window, p.strength, p.grid) == ("fast", 3, 0.5, (2, 3))


def test_pixel_conversions():
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    np.testing.assert_array_equal(codec.from_float(codec.to_float(u8), "u8"), u8)
    u16 = np.array([0, 1, 32768, 65535], np.uint16).reshape(2, 2, 1)
    np.testing.assert_array_equal(codec.from_float(codec.to_float(u16), "u16"), u16)
    f = np.array([-0.5, 0.5, 2.0], np.float32).reshape(1, 3, 1)
    np.testing.assert_array_equal(codec.from_float(f, "u8").ravel(), [0, 128, 255])
    np.testing.assert_array_equal(codec.from_float(f, "f32"), f)
    assert codec.to_float(f) is not f


def test_plain_makes_stats_msgpack_ready():
    stats = codec.plain({"a": np.float32(1.5), "b": (np.int64(2), True), "c": None, "d": object()})
    assert msgpack.unpackb(msgpack.packb(stats)) == {"a": 1.5, "b": [2, True], "c": None, "d": stats["d"]}


# -- session cache ---------------------------------------------------------------------------
def test_byte_lru_evicts_least_recently_used_by_bytes():
    lru = ByteLRU(100)
    lru.put("a", 1, 40)
    lru.put("b", 2, 40)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3, 40)
    assert lru.get("b") is None and lru.get("a") == 1 and lru.get("c") == 3 and lru.nbytes == 80
    lru.put("huge", 4, 101)
    assert lru.get("huge") is None and lru.nbytes == 80


def rf(value: float) -> RestoredFrame:
    z = np.full((3, 4), value, np.float32)
    return RestoredFrame(0, np.full((3, 4, 3), value, np.float32), z, z, z, {})


def test_results_outlive_their_frames_and_versions_follow_the_pixels():
    frame = np.zeros((3, 4, 3), np.float32)
    store = SessionStore(cap_bytes=3 * frame.nbytes + 200)
    store.add_frames("c", [(t, frame + t, "f32") for t in range(3)])
    images, infos = store.frames("c", [0, 1, 2])
    assert all(i is not None for i in images)
    key = store.result_key("c", 1, "p", infos, [0, 1, 2])
    store.put_result(key, rf(0.5))  # evicts the oldest frame
    images, infos2 = store.frames("c", [0, 1, 2])
    assert images[0] is None and infos2 == infos
    assert store.get_result(store.result_key("c", 1, "p", infos2, [0, 1, 2])) is not None
    store.add_frames("c", [(2, frame + 2, "f32")])  # identical pixels: same version
    assert store.frames("c", [2])[1][0].version == infos[2].version
    store.add_frames("c", [(2, frame + 9, "f32")])  # new pixels: new version, result unreachable
    _, infos3 = store.frames("c", [0, 1, 2])
    assert infos3[2].version != infos[2].version
    assert store.get_result(store.result_key("c", 1, "p", infos3, [0, 1, 2])) is None
    store.close("c")
    assert len(store) == 0 and store.nbytes == 0


def test_sessions_are_capped_in_number():
    store = SessionStore(cap_bytes=1 << 20, max_sessions=2)
    for clip in "abc":
        store.add_frames(clip, [(0, np.zeros((2, 2, 3), np.float32), "u8")])
    assert len(store) == 2 and store.frames("a", [0])[0] == [None]


# -- solver pool -----------------------------------------------------------------------------
def test_pool_runs_jobs_cancels_an_owners_queue_and_reports_busy():
    gate = threading.Event()
    pool = SolverPool(workers=1, max_queue=2)
    try:
        first = pool.submit("a", gate.wait)
        while pool.running == 0:
            threading.Event().wait(0.01)
        queued_a = pool.submit("a", lambda: "a")
        queued_b = pool.submit("b", lambda: "b")
        assert code_of(pool.submit, "c", lambda: None) == "busy"
        assert pool.cancel_owner("a") == 1 and queued_a.cancelled()
        gate.set()
        assert first.result(10) is True and queued_b.result(10) == "b"
    finally:
        gate.set()
        pool.close(10)


def test_pool_close_fails_queued_jobs_with_cancelled():
    gate = threading.Event()
    pool = SolverPool(workers=1, max_queue=4)
    running = pool.submit("a", gate.wait)
    while pool.running == 0:
        threading.Event().wait(0.01)
    queued = pool.submit("a", lambda: 1)
    closer = threading.Thread(target=pool.close, args=(10,))
    closer.start()
    with pytest.raises(BridgeError) as info:
        queued.result(10)
    assert info.value.code == "cancelled"
    gate.set()
    closer.join(10)
    assert running.result(1) is True
    assert code_of(pool.submit, "a", lambda: 1) == "cancelled"
