"""The OpenFX plug-in, driven by the test host under tests/ofxhost the way an editor drives it:
load → describe → describeInContext(filter) → createInstance → clip preferences → frames needed →
render → destroyInstance → unload. Real bundle (built with CMake here), real engine processes
started by the plug-in itself, real sockets; a fake engine only where the engine must misbehave.
"""
from __future__ import annotations

import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import msgpack
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "ofxhost"))
from ofxdriver import Build, EngineEnv, Host, build  # noqa: E402

from dfdb.bench.synth import degrade, make_scene  # noqa: E402
from dfdb.params import Params  # noqa: E402
from dfdb.restorer import Restorer  # noqa: E402
from dfdb_bridge import Client  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("c++") is None,
                                reason="needs cmake and a C++ compiler")

FRAMES, HEIGHT, WIDTH = 5, 48, 64
DTYPES = {"u8": np.uint8, "u16": np.uint16, "f32": np.float32}
# What the plug-in sends with quality "Fast" and the other parameters at their defaults.
PLUGIN_PARAMS = dict(window=5, grid=(6, 6), strength=1.0, sensitivity=1.0, motion=True)


# ---------------------------------------------------------------------------- helpers

def to_depth(image: np.ndarray, dtype: str) -> np.ndarray:
    """Float [0, 1] → the depth, rounded as the engine converts its replies."""
    if dtype == "f32":
        return image.astype(np.float32)
    top = 255 if dtype == "u8" else 65535
    return np.round(np.clip(image, 0.0, 1.0) * top).astype(DTYPES[dtype])


def levels8(a: np.ndarray, b: np.ndarray, dtype: str) -> np.ndarray:
    """|a − b| expressed in 8-bit levels, whatever the depth."""
    scale = {"u8": 1.0, "u16": 255.0 / 65535.0, "f32": 255.0}[dtype]
    return np.abs(a.astype(np.float64) - b.astype(np.float64)) * scale


#: Frames after t that a render of t has the engine restore with it (plugin.cpp's kAhead).
AHEAD = 7


def reference_window(clip: np.ndarray, t: int, dtype: str, first: int | None = None, **overrides) -> np.ndarray:
    """What the engine computes for frame t in the render of frame ``first`` (default t; a
    frame first < t ≤ first + 7 is solved ahead there): from the frames first − c … first + 7
    + c the plug-in fetches (c = 12r + 2, clipped to the clip), a fresh Restorer per window,
    as the server does."""
    first = t if first is None else first
    params = Params.from_preset("fast", **{**PLUGIN_PARAMS, **overrides})
    lo, hi = max(0, first - params.context), min(len(clip) - 1, first + AHEAD + params.context)
    span = Restorer(params).restore_span(clip[lo:hi + 1], first - lo, AHEAD + 1)
    return to_depth(span[t - first].image, dtype)


@pytest.fixture(scope="module")
def built() -> Build:
    return build()


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """A small degraded clip (flicker and blotches), float32 (T, H, W, 3) in [0, 1]."""
    clean = make_scene("pan", frames=FRAMES, height=HEIGHT, width=WIDTH, seed=3)
    return degrade(clean, "old_film", seed=5).frames


def clip_file(directory: Path, scene: np.ndarray, dtype: str, alpha: bool = False) -> tuple[Path, np.ndarray]:
    frames = to_depth(scene, dtype)
    if alpha:
        rng = np.random.default_rng(9)
        a = to_depth(rng.random(scene.shape[:3] + (1,), dtype=np.float32), dtype)
        frames = np.concatenate([frames, a], axis=-1)
    path = directory / f"clip_{dtype}{'_rgba' if alpha else ''}.npy"
    np.save(path, frames)
    return path, frames


@pytest.fixture()
def engine_env(tmp_path) -> EngineEnv:
    env = EngineEnv.create(tmp_path / "engine")
    yield env
    env.kill_engine(signal.SIGTERM)


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory) -> EngineEnv:
    """One engine for the tests that only compare pixels (started by the plug-in itself)."""
    env = EngineEnv.create(tmp_path_factory.mktemp("shared-engine"))
    yield env
    env.kill_engine(signal.SIGTERM)


def open_instance(built: Build, env: EngineEnv, clip: Path, *settings: str, extra_env: dict | None = None) -> Host:
    host = Host(built, {**env.env, **(extra_env or {})})
    for line in (f"load {built.binary}", f"clip {clip}", "create", "set quality Fast", *settings):
        reply = host.cmd(line)
        assert reply.ok, f"{line}: {reply.result}"
    return host


def render(host: Host, t: int, out: Path) -> np.ndarray:
    reply = host.cmd(f"render {t} {out}")
    assert reply.result.split()[0] in ("ok", "identity") and "leaked" not in reply.result, (reply.result, reply.messages)
    return np.load(out)


# ---------------------------------------------------------------------------- the bundle

def test_bundle_installs_and_exports_only_the_ofx_entry_points(built, tmp_path):
    subprocess.run(["cmake", "--install", str(built.root), "--prefix", str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    installed = tmp_path / "DeflickerDeblotch.ofx.bundle" / "Contents" / "Linux-x86-64" / "DeflickerDeblotch.ofx"
    assert installed.read_bytes() == built.binary.read_bytes()
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(installed)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert sorted(s for s in symbols if s.startswith("Ofx")) == ["OfxGetNumberOfPlugins", "OfxGetPlugin"]
    assert len(symbols) == 6  # address, type, name for each of the two
    needed = subprocess.run(["objdump", "-p", str(installed)], capture_output=True, text=True, check=True).stdout
    libraries = {ln.split()[1] for ln in needed.splitlines() if ln.strip().startswith("NEEDED")}
    assert not {lib for lib in libraries if "stdc++" in lib or "msgpack" in lib}, libraries


# ---------------------------------------------------------------------------- description

def test_describes_itself_as_an_editor_expects(built, engine_env):
    with Host(built, engine_env.env) as host:
        loaded = host.cmd(f"load {built.binary}")
        assert loaded.result.split()[:2] == ["ok", "org.dfdb.DeflickerDeblotch"]
        info = host.cmd("info")
        assert info.ok
        props = {ln.split(" ", 2)[1]: ln.split(" ", 2)[2] for ln in info.lines if ln.startswith("info ")}
        assert props["OfxPropLabel"] == "Deflicker/Deblotch"
        assert props["OfxImageEffectPluginPropGrouping"] == "Restoration"
        assert set(props["OfxImageEffectPropSupportedContexts"].split("|")) == {
            "OfxImageEffectContextFilter", "OfxImageEffectContextGeneral"}
        assert set(props["OfxImageEffectPropSupportedPixelDepths"].split("|")) == {
            "OfxBitDepthByte", "OfxBitDepthShort", "OfxBitDepthFloat"}
        assert props["OfxImageEffectPropTemporalClipAccess"] == "1"
        assert props["OfxImageEffectPluginRenderThreadSafety"] == "OfxImageEffectRenderFullySafe"
        params = {ln.split()[1]: ln for ln in info.lines if ln.startswith("param ")}
        assert set(params) == {"strength", "quality", "window", "flickerMode", "flickerGrid", "sensitivity",
                               "motion", "output", "engineAddress"}
        assert "OfxParamPropChoiceOption=3|5|7" in params["window"]
        assert "OfxParamPropChoiceOption=Restored|Blotch mask|Flicker map" in params["output"]
        clips = {ln.split()[1]: ln for ln in info.lines if ln.startswith("clip ")}
        assert "OfxImageEffectPropSupportedComponents=OfxImageComponentRGBA|OfxImageComponentRGB" in clips["Source"]
        assert "OfxImageEffectPropTemporalClipAccess=1" in clips["Source"]
        # Only the suites the host offers are fetched; nothing asked for was refused.
        assert not [ln for ln in loaded.lines + info.lines if ln.startswith("# refused")]


def test_frames_needed_region_and_identity(built, engine_env, tmp_path):
    # The context is t−c…t+7+c with c = 12r + 2 (26 for W = 5, 14 for W = 3), clipped to the
    # clip: t and the 7 frames solved ahead with it, each with its context.
    long_clip = np.repeat(make_scene("static", frames=1, height=HEIGHT, width=WIDTH, seed=1), 60, axis=0)
    path, frames = clip_file(tmp_path, long_clip, "u8")
    with open_instance(built, engine_env, path) as host:
        assert host.cmd("needed 20").result == "0 53"
        assert host.cmd("needed 30").result == "4 59"
        assert host.cmd("needed 0").result == "0 33"
        assert host.cmd("needed 59").result == "33 59"
        assert host.cmd("set window 3").ok
        assert host.cmd("needed 30").result == "16 51"
        assert host.cmd("rod 1").result == f"0 0 {WIDTH} {HEIGHT}"
        assert host.cmd("set strength 0").ok
        reply = host.cmd(f"render 1 {tmp_path / 'id.npy'}")
        assert reply.result == "identity"
        np.testing.assert_array_equal(np.load(tmp_path / "id.npy"), frames[1])
    # Identity needs no engine: none was started.
    assert engine_env.engine_pid() is None


# ---------------------------------------------------------------------------- pixels

@pytest.mark.parametrize("dtype", ["u8", "u16", "f32"])
def test_output_equals_the_engine_on_the_same_window(built, shared_env, scene, tmp_path, dtype):
    path, frames = clip_file(tmp_path, scene, dtype)
    times = range(FRAMES) if dtype == "u8" else (0, 2)
    with open_instance(built, shared_env, path) as host:
        for t in times:
            out = render(host, t, tmp_path / f"out{t}.npy")
            assert out.dtype == DTYPES[dtype] and out.shape == frames[t].shape
            # Frame 0's render solved the whole 5-frame clip; the later ones are its results.
            expected = reference_window(frames, t, dtype, first=0)
            diff = levels8(out, expected, dtype)
            assert diff.max() <= 1.0, f"frame {t}: max difference {diff.max():.3f} levels"
            assert np.sqrt(np.mean(diff ** 2)) < 0.05
            assert not np.array_equal(out, frames[t])  # it did restore something


def test_output_matches_whole_clip_restore(built, shared_env, tmp_path):
    """Against the in-memory pipeline on the whole clip, longer than the plug-in's
    context: within 0.5 levels RMS at 8 bits, at the ends and in the middle."""
    length = 36
    clean = make_scene("pan", frames=length, height=HEIGHT, width=WIDTH, seed=3)
    path, frames = clip_file(tmp_path, degrade(clean, "old_film", seed=5).frames, "u8")
    whole = list(Restorer(Params.from_preset("fast", **PLUGIN_PARAMS)).process(frames))
    with open_instance(built, shared_env, path) as host:
        for t in (0, 4, 8, length - 1):
            out = render(host, t, tmp_path / f"w{t}.npy")
            rms = float(np.sqrt(np.mean(levels8(out, to_depth(whole[t].image, "u8"), "u8") ** 2)))
            assert rms <= 0.5, f"frame {t}: {rms:.3f} levels RMS"


def test_rgba_alpha_untouched_and_debug_outputs(built, shared_env, scene, tmp_path):
    path, frames = clip_file(tmp_path, scene, "u16", alpha=True)
    with open_instance(built, shared_env, path, "set window 3") as host:
        out = render(host, 2, tmp_path / "rgba.npy")
        assert out.shape == (HEIGHT, WIDTH, 4)
        np.testing.assert_array_equal(out[..., 3], frames[2][..., 3])
        expected = reference_window(frames, 2, "u16", window=3)
        assert levels8(out[..., :3], expected[..., :3], "u16").max() <= 1.0

        assert host.cmd("set output 1").ok  # Blotch mask
        assert host.cmd("set window 5").ok
        params = Params.from_preset("fast", **PLUGIN_PARAMS)
        found = [Restorer(params).restore_span(frames, t, AHEAD + 1)[0].mask for t in range(FRAMES)]
        t = int(np.argmax([m.sum() for m in found]))
        assert found[t].max() > 0  # old_film: the engine repairs something in this clip
        mask = render(host, t, tmp_path / "mask.npy")
        np.testing.assert_array_equal(mask[..., 0], mask[..., 1])
        np.testing.assert_array_equal(mask[..., 0], mask[..., 2])
        np.testing.assert_array_equal(mask[..., 3], frames[t][..., 3])
        np.testing.assert_array_equal(mask[..., 0] > 32767, found[t] > 0.5)

        assert host.cmd("set output 2").ok
        flicker = render(host, 2, tmp_path / "flicker.npy")
        np.testing.assert_array_equal(flicker[..., 3], frames[2][..., 3])
        # Blue is the constant ½ of the flicker map.
        assert np.all(np.abs(flicker[..., 2].astype(np.int64) - 32768) <= 1)


@pytest.mark.parametrize("layout", ["down 0", "up 12", "down 20"])
def test_row_bytes_of_either_sign_and_padding(built, shared_env, scene, tmp_path, layout):
    path, frames = clip_file(tmp_path, scene, "f32")
    with open_instance(built, shared_env, path, "set window 3", f"layout {layout}") as host:
        out = render(host, 1, tmp_path / "l.npy")
    expected = reference_window(frames, 1, "f32", window=3)
    assert levels8(out, expected, "f32").max() <= 1.0


def test_render_scale(built, shared_env, scene, tmp_path):
    path, frames = clip_file(tmp_path, scene, "u8")
    with open_instance(built, shared_env, path, "set window 3", "scale 0.5") as host:
        out = render(host, 2, tmp_path / "half.npy")
    assert out.shape == (HEIGHT // 2, WIDTH // 2, 3)
    proxy = np.ascontiguousarray(frames[:, 1::2, 1::2])  # the host's nearest-pixel proxy images
    expected = reference_window(proxy, 2, "u8", window=3)
    assert levels8(out, expected, "u8").max() <= 1.0


def test_parallel_renders_on_several_threads(built, shared_env, scene, tmp_path):
    path, frames = clip_file(tmp_path, scene, "u8")
    with open_instance(built, shared_env, path, "set window 3") as host:
        reply = host.cmd(f"renderpar {tmp_path / 'par'} 0 1 2 3 4", timeout=240)
        assert reply.result == "done", reply.result
        results = dict(ln.split(" ", 2)[1:] for ln in reply.lines if ln.startswith("r "))
        assert all(r.startswith("ok") for r in results.values()), results
    for t in range(FRAMES):  # solved by its own render, or ahead by the render of an earlier frame
        out = np.load(tmp_path / f"par_{t}.npy")
        assert min(levels8(out, reference_window(frames, t, "u8", first, window=3), "u8").max()
                   for first in range(t + 1)) <= 1.0


# ---------------------------------------------------------------------------- engine life

def test_starts_the_engine_when_none_answers(built, engine_env, scene, tmp_path):
    path, _ = clip_file(tmp_path, scene, "u8")
    assert engine_env.engine_pid() is None
    with open_instance(built, engine_env, path, "set window 3") as host:
        reply = host.cmd(f"render 1 {tmp_path / 'a.npy'}", timeout=180)
        assert reply.ok, (reply.result, reply.messages)
        assert any("started the dfdb engine" in m for m in reply.messages if m.startswith("OfxMessageLog"))
        assert engine_env.engine_pid() is not None
        again = host.cmd(f"render 2 {tmp_path / 'b.npy'}")
        assert again.ok and not again.messages, (again.result, again.messages)  # reuses the running engine


def test_engine_killed_between_renders(built, engine_env, scene, tmp_path):
    path, _ = clip_file(tmp_path, scene, "u8")
    with open_instance(built, engine_env, path, "set window 3") as host:
        first = host.cmd(f"render 1 {tmp_path / 'a.npy'}", timeout=180)
        assert first.ok, (first.result, first.messages)
        # Killed, and no engine can be started: the render fails cleanly, with a message.
        engine_env.kill_engine()
        assert host.cmd(f"setenv DFDB_ENGINE {tmp_path / 'missing-dfdb'}").ok
        failed = host.cmd(f"render 2 {tmp_path / 'b.npy'}")
        assert failed.result.startswith("fail") and "leaked" not in failed.result
        assert failed.errors() and "missing-dfdb" in failed.errors()[0]
        # The engine can be started again: the next render recovers.
        assert host.cmd(f"setenv DFDB_ENGINE {engine_env.launcher}").ok
        again = host.cmd(f"render 2 {tmp_path / 'b.npy'}", timeout=180)
        assert again.ok, (again.result, again.messages)
        # Killed while an engine can be started: recovered within the same render.
        engine_env.kill_engine()
        recovered = host.cmd(f"render 3 {tmp_path / 'c.npy'}", timeout=180)
        assert recovered.ok, (recovered.result, recovered.messages)


def test_engine_dies_mid_render(built, engine_env, tmp_path):
    clean = make_scene("pan", frames=5, height=240, width=320, seed=4)
    path, _ = clip_file(tmp_path, degrade(clean, "old_film", seed=6).frames, "u8")
    engine_env.start_engine()
    with open_instance(built, engine_env, path, "set quality Balanced") as host, \
            Client(engine_env.address, timeout=10) as watcher:
        host.send(f"render 2 {tmp_path / 'a.npy'}")
        deadline = time.monotonic() + 120
        while watcher.ping()["running"] == 0:  # the solve has started
            assert time.monotonic() < deadline, "the render never reached the engine"
            time.sleep(0.01)
        engine_env.kill_engine()
        failed = host.wait("render 2", timeout=60)
        assert failed.result.startswith("fail") and "leaked" not in failed.result
        assert failed.errors()
        # The next render starts a new engine and succeeds.
        assert host.cmd(f"render 2 {tmp_path / 'a.npy'}", timeout=300).ok


def test_engine_that_cannot_start(built, engine_env, scene, tmp_path):
    broken = tmp_path / "broken-dfdb"
    broken.write_text("#!/bin/sh\necho 'dfdb: cannot listen: no space left' >&2\nexit 1\n")
    broken.chmod(0o755)
    path, _ = clip_file(tmp_path, scene, "u8")
    with open_instance(built, engine_env, path, extra_env={"DFDB_ENGINE": str(broken)}) as host:
        for t in (1, 2):  # every render fails the same clean way; the host lives on
            reply = host.cmd(f"render {t} {tmp_path / 'x.npy'}")
            assert reply.result.startswith("fail")
            assert "no space left" in reply.errors()[0]
        assert host.cmd("stats").result


# ---------------------------------------------------------------------------- a broken engine

def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _result_with(image: dict) -> Callable[[dict], bytes]:
    return lambda req: _frame(msgpack.packb({"op": "result", "id": req["id"], "clip": req["clip"],
                                             "target": req["target"], "image": image}))


MALFORMED: dict[str, Callable[[dict], bytes]] = {
    "huge length prefix": lambda req: b"\xff\xff\xff\xff" + b"x" * 64,
    "not msgpack": lambda req: _frame(b"\xc1\xc1\xc1 garbage"),
    "not a map": lambda req: _frame(msgpack.packb([1, 2, 3])),
    "wrong id": lambda req: _frame(msgpack.packb({"op": "result", "id": req["id"] + 7})),
    "unknown op": lambda req: _frame(msgpack.packb({"op": "surprise", "id": req["id"]})),
    "image too small": _result_with({"width": WIDTH, "height": HEIGHT, "channels": 3, "dtype": "u8",
                                     "stride": WIDTH * 3, "data": b"\0" * 100}),
    "image of another size": _result_with({"width": 8, "height": 8, "channels": 3, "dtype": "u8",
                                           "stride": 24, "data": b"\0" * 192}),
    "foreign shm": _result_with({"width": WIDTH, "height": HEIGHT, "channels": 3, "dtype": "u8",
                                 "stride": WIDTH * 3, "shm": "/etc-passwd", "offset": 0, "size": 9216}),
    "truncated": lambda req: struct.pack(">I", 1000) + b"\x80",
    "silence": lambda req: b"",
}


class FakeEngine:
    """A socket server that greets like an engine and then answers ``process`` with ``reply``."""

    def __init__(self, path: Path, reply: Callable[[dict], bytes]) -> None:
        self.reply = reply
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        try:
            while True:
                head = conn.recv(4, socket.MSG_WAITALL)
                if len(head) < 4:
                    return
                body = conn.recv(struct.unpack(">I", head)[0], socket.MSG_WAITALL)
                req = msgpack.unpackb(body)
                if req["op"] == "hello":
                    conn.sendall(_frame(msgpack.packb({
                        "op": "hello", "id": req["id"], "protocol": 1, "engine": "fake",
                        "capabilities": ["inline", "mask", "flicker"], "devices": ["cpu"],
                        "limits": {"max_message": 1 << 28, "max_window": 101}})))
                else:
                    conn.sendall(self.reply(req))
        except OSError:
            return

    def close(self) -> None:
        self.server.close()
        for c in self.connections:
            c.close()


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_engine_reply_fails_the_render_cleanly(built, engine_env, scene, tmp_path, kind):
    sock = Path(engine_env.env["XDG_RUNTIME_DIR"]) / "fake.sock"
    fake = FakeEngine(sock, MALFORMED[kind])
    path, _ = clip_file(tmp_path, scene, "u8")
    try:
        with open_instance(built, engine_env, path, "set window 3", f"set engineAddress unix://{sock}",
                           extra_env={"DFDB_PLUGIN_TIMEOUT": "3"}) as host:
            for t in (1, 2):
                reply = host.cmd(f"render {t} {tmp_path / 'x.npy'}", timeout=60)
                assert reply.result.startswith("fail") and "leaked" not in reply.result, reply.result
                assert reply.errors(), reply.messages
            assert host.cmd("stats").result  # alive and answering
            assert host.close() == 0
    finally:
        fake.close()
    assert engine_env.engine_pid() is None  # an explicit address is never auto-started over


# ---------------------------------------------------------------------------- unloading

def test_load_unload_fifty_times_without_growth(built, engine_env, scene, tmp_path):
    path, _ = clip_file(tmp_path, scene, "u16")  # u16 frames go through shared memory
    with Host(built, engine_env.env) as host:
        assert host.cmd(f"clip {path}").ok
        fds_before = int(host.cmd("stats").result.split()[1])
        for line in (f"load {built.binary}", "create", "set quality Fast", "set window 3"):
            assert host.cmd(line).ok, line
        assert host.cmd(f"render 1 {tmp_path / 'r.npy'}", timeout=180).ok
        assert host.cmd("destroy").ok
        assert host.cmd("unload").result == "ok unloaded"
        # The engine connection and its shared memory went with the bundle.
        assert int(host.cmd("stats").result.split()[1]) == fds_before
        assert host.cmd(f"cycle 50 {built.binary}").ok  # let the allocator and loader settle
        rss0, fds0 = map(int, host.cmd("stats").result.split())
        cycled = host.cmd(f"cycle 50 {built.binary}", timeout=120)
        assert cycled.result == "ok 0 resident"  # dlclose really unloaded the bundle each time
        rss1, fds1 = map(int, host.cmd("stats").result.split())
    print(f"RSS {rss0} → {rss1} kB, fds {fds0} → {fds1}")
    assert fds1 == fds0
    # A page per cycle (what a runtime pool left behind at each unload would cost) is 200 kB.
    assert rss1 - rss0 < 100, f"RSS grew by {rss1 - rss0} kB over 50 load/unload cycles"
    assert not list(Path("/dev/shm").glob(f"dfdb-{host.process.pid}-*"))
