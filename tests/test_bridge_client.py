"""The Python client (dfdb_bridge.Client) against a real engine on a real socket."""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from dfdb.bench.synth import degrade, make_scene
from dfdb.params import Params
from dfdb.restorer import Restorer
from dfdb.server import Config, EngineThread
from dfdb.server.codec import from_float
from dfdb_bridge import Client, EngineUnavailable, ServerError, default_address, parse_address
from dfdb_bridge.errors import BridgeError
from dfdb_bridge.wire import LIMITS

FAST = {"preset": "fast"}


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """(10, 32, 40, 3) float32 panning scene with flicker and blotches."""
    return degrade(make_scene("pan", frames=10, height=32, width=40, seed=3), "old_film", seed=3).frames


def my_segments() -> list[str]:
    return glob.glob(f"/dev/shm/dfdb-{os.getpid()}-*")


def test_hello_describes_the_engine(engine):
    with Client() as c:  # the per-user default address
        info = c.server_info
        assert info["protocol"] == 1 and info["limits"] == LIMITS and "cpu" in info["devices"]
        assert {"inline", "shm", "mask", "flicker"} <= set(info["capabilities"])
        assert c.hello()["engine"] == info["engine"]
        pong = c.ping()
        assert pong["op"] == "pong" and (pong["queued"], pong["running"], pong["clips"]) == (0, 0, 0)


@pytest.mark.parametrize("transport", ["inline", "shm"])
def test_result_equals_the_restorer(engine, clip, transport):
    window = clip[2:5]
    with Client(engine.address, transport=transport) as c:
        got = c.process(window, 1, FAST)
    want = Restorer(Params.from_preset("fast")).restore_window(window, 1)
    assert got.dtype == np.float32 and np.array_equal(got, want.image)
    assert my_segments() == []


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 65535)])
def test_integer_rgba_keeps_its_dtype_and_alpha(engine, clip, dtype, top):
    alpha = np.linspace(0, 1, 40, dtype=np.float32)[None, None, :, None].repeat(32, 1)
    rgba = np.concatenate([clip[:3], np.repeat(alpha[None], 3, 0)[0:3].reshape(3, 32, 40, 1)], axis=-1)
    ints = np.rint(rgba * top).astype(dtype)
    with Client(engine.address, transport="shm") as c:
        got = c.request(ints, 1, FAST, outputs=("image", "mask", "flicker"))
    want = Restorer(Params.from_preset("fast")).restore_window(ints, 1)
    assert got.image.dtype == dtype and got.image.shape == (32, 40, 4)
    np.testing.assert_array_equal(got.image, from_float(want.image, "u8" if dtype == np.uint8 else "u16"))
    np.testing.assert_array_equal(got.image[..., 3], ints[1, ..., 3])
    assert got.mask.shape == (32, 40, 1) and got.mask.dtype == dtype
    assert got.flicker.shape == (32, 40, 3) and got.flicker.dtype == dtype
    assert got.stats["cached"] is False and got.stats["solve_ms"] > 0


def test_sequential_render_sends_one_frame_per_request_and_scrubbing_hits_the_cache(engine, clip):
    r, p = 1, Params.from_preset("fast")
    frame_bytes = clip[0].nbytes
    sent, results = [], {}
    with Client(engine.address, transport="inline") as c:
        for t in range(r, len(clip) - r):
            before = c.bytes_sent
            got = c.request(clip[t - r:t + r + 1], r, FAST, clip="seq", times=range(t - r, t + r + 1))
            sent.append(c.bytes_sent - before)
            results[t] = got.image
            want = Restorer(p).restore_window(clip[t - r:t + r + 1], r)
            assert np.array_equal(got.image, want.image), f"frame {t}"
        assert sent[0] > 3 * frame_bytes and c.frames_sent == 3 + len(sent) - 1
        assert all(frame_bytes < s < 2 * frame_bytes for s in sent[1:]), sent
        before = c.bytes_sent
        for t in reversed(range(r, len(clip) - r)):
            got = c.request(clip[t - r:t + r + 1], r, FAST, clip="seq", times=range(t - r, t + r + 1))
            assert got.stats["cached"] is True and np.array_equal(got.image, results[t])
        assert c.bytes_sent - before < frame_bytes
        for t in reversed(range(r, len(clip) - r)):  # a host may ask in any order: same frames
            got = c.request(clip[t - r:t + r + 1], r, FAST, clip="backwards", times=range(t - r, t + r + 1))
            assert got.stats["cached"] is False and np.array_equal(got.image, results[t])
        c.close_clip("seq")
        c.close_clip("backwards")
        assert c.ping()["clips"] == 0


def test_frames_solved_ahead_are_served_from_the_cache(engine):
    """A sequential render that sends t − c … t + n + c with ahead n gets t + 1 … t + n from
    the cache, equal to the span's solve, although its own window reaches one frame further."""
    p, n = Params.from_preset("fast"), 3
    c = p.context
    long_clip = degrade(make_scene("pan", frames=2 * c + 12, height=32, width=40, seed=3), "old_film", seed=3).frames
    t0 = c
    span = Restorer(p).restore_span(long_clip[:t0 + n + c + 1], t0, n + 1)
    with Client(engine.address, transport="inline") as cl:
        for t in range(t0, t0 + n + 2):
            lo, hi = t - c, min(len(long_clip), t + n + c + 1)
            got = cl.request(long_clip[lo:hi], t - lo, FAST, clip="ahead", times=range(lo, hi), ahead=n)
            if t <= t0 + n:
                assert got.stats["cached"] is (t > t0), f"frame {t}"
                assert np.array_equal(got.image, span[t - t0].image), f"frame {t}"
            else:  # past the span: solved anew
                assert got.stats["cached"] is False
        # Scrubbing back with the plain window t − c … t + c: the same frames within c, a hit.
        got = cl.request(long_clip[t0 + 1 - c:t0 + 2 + c], c, FAST, clip="ahead", times=range(t0 + 1 - c, t0 + 2 + c))
        assert got.stats["cached"] is True and np.array_equal(got.image, span[1].image)
        cl.close_clip("ahead")
    whole = list(Restorer(p).process(long_clip))
    for k, rf in enumerate(span):  # a frame solved ahead agrees with the whole-clip restore
        assert float(np.sqrt(np.mean((rf.image - whole[t0 + k].image) ** 2)) * 255) < 0.5


def test_need_is_answered_when_the_engine_evicted_frames(runtime, clip):
    frame_bytes = clip[0].nbytes
    with EngineThread(Config(default_address(), cache_bytes=2 * frame_bytes + 100)) as eng, Client(eng.address) as c:
        raw = c.call({"op": "process", "clip": "tiny", "target": 1, "frames": [{"time": 0}, {"time": 1}, {"time": 2}]})
        assert raw["op"] == "need" and raw["times"] == [0, 1, 2]
        for t in (1, 2, 3):  # only two frames fit, so every window needs re-sending
            got = c.request(clip[t - 1:t + 2], 1, FAST, clip="tiny", times=range(t - 1, t + 2))
            assert np.array_equal(got.image, Restorer(Params.from_preset("fast")).restore_window(clip[t - 1:t + 2], 1).image)


def test_server_errors_carry_their_code_and_the_connection_survives(engine, clip):
    with Client(engine.address) as c:
        with pytest.raises(ServerError) as info:
            c.process(clip[:3], 1, {"window": 4})
        assert info.value.code == "bad_param" and "window" in str(info.value)
        with pytest.raises(ServerError) as info:
            c.call({"op": "job.submit"})
        assert info.value.code == "unknown_op"
        with pytest.raises(ServerError) as info:
            c.process(np.zeros((3, 8, 8, 2), np.float32), 1)
        assert info.value.code == "bad_frame"
        assert c.ping()["op"] == "pong"


def test_client_side_checks(engine, clip):
    with Client(engine.address) as c:
        with pytest.raises(BridgeError):
            c.process(clip[:3], 5)
        with pytest.raises(BridgeError):
            c.process(clip[:3].astype(np.float64), 1)
    with pytest.raises(ValueError):
        Client(engine.address, transport="carrier pigeon")


def test_no_engine_is_a_clear_error(runtime):
    with pytest.raises(EngineUnavailable) as info:
        Client()
    assert info.value.code == "unavailable" and "no engine" in str(info.value)


def test_tcp_needs_the_token(runtime, clip):
    from dfdb.server.listen import ensure_token

    config = Config(parse_address("tcp://127.0.0.1:0"), token=ensure_token())
    with EngineThread(config) as eng:
        assert eng.address.port > 0
        with Client(str(eng.address)) as c:
            assert np.array_equal(c.process(clip[:3], 1, FAST),
                                  Restorer(Params.from_preset("fast")).restore_window(clip[:3], 1).image)
        with open(os.path.join(runtime, "config", "dfdb", "token"), "w") as f:
            f.write("0" * 64)
        with pytest.raises(ServerError) as info:
            Client(str(eng.address))
        assert info.value.code == "unauthorized"
    assert oct(os.stat(os.path.join(runtime, "config", "dfdb", "token")).st_mode & 0o777) == "0o600"
