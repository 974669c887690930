"""The engine server: daemon life cycle, permissions, hostile and broken clients, shared memory,
concurrency, cancellation and leaks. Real processes, real sockets, real shared memory."""
from __future__ import annotations

import glob
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dfdb.bench.synth import degrade, make_scene
from dfdb.params import Params
from dfdb.restorer import Restorer
from dfdb.server import Config, EngineThread
from dfdb.server.listen import ListenError, prepare_socket_dir
from dfdb_bridge import Client, default_address, wire
from dfdb_bridge.frames import inline
from dfdb_bridge.shm import Segment

ROOT = Path(__file__).resolve().parents[1]
FAST = {"preset": "fast"}


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return degrade(make_scene("objects", frames=8, height=24, width=32, seed=5), "old_film", seed=5).frames


class Raw:
    """A hand-driven connection, to send what a well-behaved client never would."""

    def __init__(self, address, hello: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(address.path)
        self.ids = iter(range(1, 1 << 30))
        if hello:
            assert self.call({"op": "hello", "protocol": 1, "client": "test"})["op"] == "hello"

    def send(self, message: dict) -> int:
        message = dict(message, id=message.get("id", next(self.ids)))
        wire.send(self.sock, message)
        return message["id"]

    def recv(self) -> dict:
        return wire.recv(self.sock)[0]

    def call(self, message: dict) -> dict:
        rid = self.send(message)
        reply = self.recv()
        assert reply["id"] == rid
        return reply

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def serve(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "engine"), str(ROOT / "bridge" / "python")]))
    return subprocess.run([sys.executable, "-m", "dfdb.cli", "serve", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def wait_gone(pid: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


# -- the daemon ------------------------------------------------------------------------------
def test_daemon_listens_privately_refuses_a_second_engine_and_shuts_down(runtime):
    first = serve()
    assert first.returncode == 0, first.stderr
    sock = runtime / "dfdb" / "engine.sock"
    assert f"unix://{sock}" in first.stdout
    assert os.stat(runtime / "dfdb").st_mode & 0o777 == 0o700
    assert os.stat(sock).st_mode & 0o777 == 0o600
    pid = int((runtime / "dfdb" / "engine.sock.pid").read_text())
    second = serve()
    assert second.returncode == 1 and "already listening" in second.stderr
    with Client() as c:
        assert c.ping()["op"] == "pong"
        c.shutdown()
    assert wait_gone(pid)
    assert not sock.exists() and not (runtime / "dfdb" / "engine.sock.pid").exists()
    assert "listening on" in (runtime / "state" / "dfdb" / "engine.log").read_text()


def test_stale_socket_is_replaced_and_sigterm_stops_the_engine(runtime, clip):
    path = runtime / "dfdb" / "engine.sock"
    path.parent.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a crashed engine leaves its socket file behind
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "engine"), str(ROOT / "bridge" / "python")]))
    proc = subprocess.Popen([sys.executable, "-m", "dfdb.cli", "serve", "--foreground", "-v"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in proc.stdout.readline()
        with Client() as c:
            assert c.process(clip[:3], 1, FAST).shape == (24, 32, 3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "shutting down" in proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert not path.exists()


def test_only_loopback_tcp_and_sane_options_are_accepted(runtime):
    bad = serve("--listen", "tcp://0.0.0.0:4711", "--foreground")
    assert bad.returncode == 2 and "loopback" in bad.stderr
    bad = serve("--cache-mb", "1", "--foreground")
    assert bad.returncode == 2 and "cache-mb" in bad.stderr


def test_a_foreign_or_symlinked_socket_directory_is_refused(runtime):
    target = runtime / "elsewhere"
    target.mkdir()
    (runtime / "dfdb").symlink_to(target)
    with pytest.raises(ListenError, match="symlink"):
        prepare_socket_dir(runtime / "dfdb" / "engine.sock")
    (runtime / "dfdb").unlink()
    (runtime / "dfdb").mkdir(mode=0o755)
    prepare_socket_dir(runtime / "dfdb" / "engine.sock")  # ours: tightened to 0700
    assert os.stat(runtime / "dfdb").st_mode & 0o777 == 0o700
    os.chown(runtime / "dfdb", 65534, 65534)
    with pytest.raises(ListenError, match="belongs to uid 65534"):
        prepare_socket_dir(runtime / "dfdb" / "engine.sock")


# -- hostile and broken clients --------------------------------------------------------------
def test_handshake_rules(engine):
    raw = Raw(engine.address, hello=False)
    reply = raw.call({"op": "hello", "protocol": 2, "client": "future"})
    assert reply["code"] == "protocol_version"
    reply = raw.call({"op": "ping"})
    assert reply["code"] == "unauthorized" and raw.closed()
    raw.close()


def test_framing_errors(engine):
    raw = Raw(engine.address)
    raw.sock.sendall(b"\x00\x00\x00\x03\xc1\xc1\xc1")  # a body that is not msgpack
    reply = raw.recv()
    assert (reply["op"], reply["id"], reply["code"]) == ("error", None, "bad_message")
    reply = raw.call({"op": 5})
    assert reply["code"] == "bad_message"
    wire.send(raw.sock, {"op": "ping", "id": -1})
    assert raw.recv() == {"op": "error", "id": None, "code": "bad_message",
                          "message": "a request needs op (string) and id (unsigned integer)"}
    assert raw.call({"op": "job.list"})["code"] == "unknown_op"
    assert raw.call({"op": "ping"})["op"] == "pong"
    other = Raw(engine.address)
    raw.sock.sendall(b"\xff\xff\xff\xff")  # 4 GiB announced: refused before reading
    assert raw.recv()["code"] == "too_large" and raw.closed()
    assert other.call({"op": "ping"})["op"] == "pong"
    raw.close()
    other.close()


def test_a_client_killed_mid_message_harms_no_one(engine):
    script = (
        "import socket, sys, time\n"
        "sys.path[:0] = sys.argv[2:]\n"
        "from dfdb_bridge import wire\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "wire.send(s, {'op': 'hello', 'id': 1, 'protocol': 1, 'client': 'doomed'}); wire.recv(s)\n"
        "s.sendall((1 << 20).to_bytes(4, 'big') + b'\\x85' + b'x' * 1000)\n"
        "print('sent', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, engine.address.path, *sys.path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "sent"
    proc.kill()
    proc.wait()
    proc.stdout.close()
    with Client(engine.address) as c:
        assert c.ping()["op"] == "pong"
    deadline = time.monotonic() + 30
    while engine.engine._connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not engine.engine._connections


def frame_msg(clip, target, frames, **extra):
    return {"op": "process", "clip": clip, "target": target, "frames": frames, "params": FAST, **extra}


def test_bad_shared_memory_gets_shm_unavailable_and_the_connection_stays(engine, clip):
    raw = Raw(engine.address)
    img = clip[0]
    desc = {"width": 32, "height": 24, "channels": 3, "dtype": "f32", "stride": 32 * 3 * 4, "offset": 0, "size": img.nbytes}
    for name in ("/dfdb-does-not-exist", "/../../etc/passwd", "no-slash", "/" + "x" * 300):
        reply = raw.call(frame_msg("c", 0, [{"time": 0, "frame": dict(desc, shm=name)}]))
        assert reply["code"] == "shm_unavailable", name
    seg = Segment(img.nbytes)
    try:
        os.chown(f"/dev/shm{seg.name}", 65534, 65534)  # someone else's segment
        reply = raw.call(frame_msg("c", 0, [{"time": 0, "frame": dict(desc, shm=seg.name)}]))
        assert reply["code"] == "shm_unavailable" and "another user" in reply["message"]
        os.chown(f"/dev/shm{seg.name}", os.getuid(), os.getgid())
        reply = raw.call(frame_msg("c", 0, [{"time": 0, "frame": dict(desc, shm=seg.name, offset=64)}]))
        assert reply["code"] == "bad_frame"  # the segment is smaller than offset + size
        reply = raw.call(frame_msg("c", 0, [{"time": 0, "frame": inline(img)}],
                                   out={"shm": seg.name, "offset": 0, "size": img.nbytes - 4}))
        assert reply["code"] == "bad_frame"  # out region too small, refused before solving
        assert raw.call({"op": "ping"})["op"] == "pong"
    finally:
        seg.destroy()
        raw.close()


def test_bottom_up_shared_memory_in_and_out(engine, clip):
    """Frames given bottom-up (OpenFX order, negative stride, padded rows) come back bottom-up."""
    pad = 64
    row = 32 * 4 * 4 + pad
    rgba = np.concatenate([clip[:3], np.full((3, 24, 32, 1), 0.25, np.float32)], axis=-1)
    seg_in, seg_out = Segment(3 * row * 24), Segment(row * 24)
    raw = Raw(engine.address)
    try:
        frames = []
        for t in range(3):
            rows = np.ndarray((24, row // 4), np.float32, buffer=seg_in.buf, offset=t * row * 24)
            rows[:, : 32 * 4] = rgba[t][::-1].reshape(24, -1)  # bottom row first in memory
            del rows
            frames.append({"time": t, "frame": {"width": 32, "height": 24, "channels": 4, "dtype": "f32",
                                                "stride": -row, "shm": seg_in.name, "offset": t * row * 24,
                                                "size": row * 24}})
        reply = raw.call(frame_msg("bu", 1, frames, out={"shm": seg_out.name, "offset": 0, "size": row * 24, "stride": -row}))
        assert reply["op"] == "result" and reply["image"]["stride"] == -row and "data" not in reply["image"]
        got = np.ndarray((24, row // 4), np.float32, buffer=seg_out.buf)[:, : 32 * 4].reshape(24, 32, 4)[::-1].copy()
        want = Restorer(Params.from_preset("fast")).restore_window(rgba, 1).image
        assert np.array_equal(got, want)
    finally:
        raw.close()
        seg_in.destroy()
        seg_out.destroy()


# -- concurrency, cancellation, leaks --------------------------------------------------------
def test_eight_concurrent_clients_get_their_own_results(engine, clip):
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with Client(engine.address, transport="shm" if i % 2 else "inline") as c:
                t = 1 + i % 6
                results[i] = c.process(clip[t - 1:t + 2], 1, FAST, clip=f"client-{i}", times=range(t - 1, t + 2))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    assert not errors
    for i in range(8):
        t = 1 + i % 6
        assert np.array_equal(results[i], Restorer(Params.from_preset("fast")).restore_window(clip[t - 1:t + 2], 1).image)


def block_the_solver(engine) -> threading.Event:
    """Occupy the single solver thread until the returned event is set."""
    gate = threading.Event()
    engine.engine.pool.submit("test", lambda: gate.wait(120))
    while engine.engine.pool.running == 0:
        time.sleep(0.01)
    return gate


def test_a_disconnect_drops_the_clients_queued_work(engine, clip):
    gate = block_the_solver(engine)
    try:
        leaver, watcher = Raw(engine.address), Raw(engine.address)
        for i in range(3):
            leaver.send(frame_msg(f"leave-{i}", 1, [{"time": t, "frame": inline(clip[t])} for t in range(3)]))
        while watcher.call({"op": "ping"})["queued"] < 3:
            time.sleep(0.01)
        leaver.close()
        deadline = time.monotonic() + 30
        while watcher.call({"op": "ping"})["queued"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watcher.call({"op": "ping"}) | {"id": 0} == {"op": "pong", "id": 0, "queued": 0, "running": 1, "clips": 3}
        watcher.close()
    finally:
        gate.set()


def test_a_queued_request_takes_a_frame_solved_ahead_meanwhile(engine, clip):
    """Renders on several host threads: t + 1, queued while t's solve (ahead 2) waits, is
    answered with t's span when its turn comes, not solved again."""
    gate = block_the_solver(engine)
    try:
        raw = Raw(engine.address)
        frames = [{"time": t, "frame": inline(clip[t])} for t in range(8)]
        first = raw.send(frame_msg("ahead", 2, frames, ahead=2))
        second = raw.send(frame_msg("ahead", 3, [{"time": t} for t in range(8)], ahead=2))
        while raw.call({"op": "ping"})["queued"] < 2:
            time.sleep(0.01)
    finally:
        gate.set()
    replies = {r["id"]: r for r in (raw.recv(), raw.recv())}
    assert replies[first]["stats"]["cached"] is False and replies[second]["stats"]["cached"] is True
    span = Restorer(Params.from_preset("fast")).restore_span(clip, 2, 3)
    got = np.frombuffer(replies[second]["image"]["data"], np.float32).reshape(clip[3].shape)
    assert np.array_equal(got, span[1].image)
    raw.close()


def test_shutdown_cancels_queued_work_and_finishes(runtime, clip):
    eng = EngineThread(Config(default_address()))
    gate = block_the_solver(eng)
    try:
        waiting, boss = Raw(eng.address), Raw(eng.address)
        rid = waiting.send(frame_msg("q", 1, [{"time": t, "frame": inline(clip[t])} for t in range(3)]))
        while boss.call({"op": "ping"})["queued"] < 1:
            time.sleep(0.01)
        assert boss.call({"op": "shutdown"})["op"] == "bye"
        reply = waiting.recv()
        assert (reply["id"], reply["code"]) == (rid, "cancelled")
        gate.set()
        eng.stop()  # waits for the engine to finish shutting down
        assert waiting.closed() and boss.closed()
        waiting.close()
        boss.close()
    finally:
        gate.set()
        eng.stop()
    assert not Path(eng.address.path).exists()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_thousand_requests_leak_no_shared_memory_or_descriptors(engine, clip):
    seg_in, seg_out = Segment(3 * clip[0].nbytes), Segment(clip[0].nbytes)
    frames = []
    for t in range(3):
        np.ndarray(clip[t].shape, np.float32, buffer=seg_in.buf, offset=t * clip[0].nbytes)[...] = clip[t]
        frames.append({"time": t, "frame": {"width": 32, "height": 24, "channels": 3, "dtype": "f32", "stride": 32 * 12,
                                            "shm": seg_in.name, "offset": t * clip[0].nbytes, "size": clip[0].nbytes}})
    message = frame_msg("leak", 1, frames, out={"shm": seg_out.name, "offset": 0, "size": clip[0].nbytes})
    mine = f"/dev/shm/dfdb-{os.getpid()}-*"  # the engine creates no segment; this test made two
    shm_before = sorted(glob.glob(mine))
    raw = Raw(engine.address)
    try:
        assert raw.call(message)["stats"]["cached"] is False  # warm up: solved once
        fds = open_fds()
        for i in range(1000):
            if i % 100 == 0:  # connections come and go too
                Raw(engine.address).close()
            reply = raw.call(message if i % 3 else {"op": "process", "clip": "leak", "target": 1, "params": FAST,
                                                      "frames": [{"time": 5}]})
            assert reply["op"] == ("result" if i % 3 else "error"), reply
        raw.call({"op": "ping"})
        time.sleep(0.2)  # let the engine finish closing the short-lived connections
        assert open_fds() == fds
        assert sorted(glob.glob(mine)) == shm_before
    finally:
        raw.close()
        seg_in.destroy()
        seg_out.destroy()
    assert not glob.glob(f"/dev/shm/dfdb-{os.getpid()}-*")


def test_a_refused_request_leaves_nothing_behind(engine, clip):
    raw = Raw(engine.address)
    try:
        assert raw.call(frame_msg("keep", 1, [{"time": t, "frame": inline(clip[t])} for t in range(3)]))["op"] == "result"
        small = inline(clip[3][:16, :16])
        reply = raw.call(frame_msg("keep", 3, [{"time": 2}, {"time": 3, "frame": small}]))
        assert reply["code"] == "bad_frame" and "differ in size" in reply["message"]
        reply = raw.call(frame_msg("keep", 3, [{"time": 2}, {"time": 3}]))
        assert (reply["op"], reply["times"]) == ("need", [3])
    finally:
        raw.close()


def test_too_many_connections_get_busy(runtime):
    with EngineThread(Config(default_address(), max_connections=2)) as eng:
        first, second = Raw(eng.address), Raw(eng.address)
        third = Raw(eng.address, hello=False)
        reply = third.recv()
        assert (reply["id"], reply["code"]) == (None, "busy") and third.closed()
        for raw in (first, second, third):
            raw.close()
    with pytest.raises(ListenError, match="already listening"), EngineThread(Config(default_address())):
        with EngineThread(Config(default_address())):
            pass
