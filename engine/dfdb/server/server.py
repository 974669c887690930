"""The engine's server loop: connections, the handshake, dispatch, and orderly shutdown.

asyncio serves every connection; pixel decoding and encoding run on a small I/O thread pool,
the solver on :class:`SolverPool`. Frames attached to one connection's requests are taken in
arrival order (each request is validated and ingested before the next is read), while solves
run in the background so a connection can keep talking. Any bad input becomes an ``error``
reply to its sender; nothing a client sends can stop the engine serving the others.
"""
from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import os
import signal
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dfdb_bridge import wire
from dfdb_bridge.address import Address
from dfdb_bridge.errors import BridgeError

from ..errors import DfdbError
from ..frames import RestoredFrame
from . import codec, shm
from .listen import clear_stale_socket, prepare_socket_dir
from .pool import SolverPool
from .sessions import FrameInfo, SessionStore

log = logging.getLogger("dfdb.server")

DEFAULT_CACHE_MB = 2048


#: Clip sessions whose Restorer (and its flows) the engine keeps.
RESTORERS = 8


@dataclass
class Config:
    """How an engine runs. ``token`` is required for TCP."""

    address: Address
    cache_bytes: int = DEFAULT_CACHE_MB << 20
    workers: int = 1
    max_queue: int = 32
    max_connections: int = 64
    token: str | None = None
    limits: dict[str, int] = field(default_factory=lambda: dict(wire.LIMITS))


@functools.cache
def devices() -> list[str]:
    """Compute devices the solver can use, e.g. ["cpu", "cuda:0"] (imports torch once)."""
    import torch

    found = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def engine_version() -> str:
    try:
        from importlib.metadata import version

        return version("dfdb")
    except Exception:  # not installed (running from the source tree)
        return "0.1.0+src"


def params_key(params: Any) -> str:
    return json.dumps(params.to_dict(), sort_keys=True)


def _failure(err: BaseException) -> tuple[str, str]:
    """(code, message) of an exception raised while serving a request."""
    if isinstance(err, BridgeError):
        return err.code, err.message
    if isinstance(err, DfdbError):
        return err.code, str(err)
    if isinstance(err, MemoryError) or "out of memory" in str(err).lower():
        return "out_of_memory", "the engine ran out of memory; try a smaller frame or window"
    log.error("internal error", exc_info=err)
    return "internal", f"internal error: {type(err).__name__}: {err}"


@dataclass
class Plan:
    """A validated request whose frames are all held, ready for the solver."""

    request: codec.ProcessRequest
    images: list[np.ndarray]
    infos: list[FrameInfo]
    key: tuple | None
    started: float


class Connection:
    """One client: its writer, handshake state and in-flight solve tasks."""

    def __init__(self, writer: asyncio.StreamWriter, tcp: bool) -> None:
        self.writer = writer
        self.tcp = tcp
        self.authed = False
        self.tasks: set[asyncio.Task] = set()
        self._lock = asyncio.Lock()

    async def send(self, frame: tuple[bytes, bytes]) -> None:
        async with self._lock:
            self.writer.write(frame[0])
            self.writer.write(frame[1])
            await self.writer.drain()

    async def reply(self, message: dict[str, Any]) -> None:
        await self.send(wire.encode(message))


class Engine:
    """The server. ``await run()`` serves until ``stop()``, a ``shutdown`` request or SIGTERM."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.address = config.address
        self.sessions = SessionStore(config.cache_bytes)
        self.pool = SolverPool(config.workers, config.max_queue)
        self._io = ThreadPoolExecutor(4, thread_name_prefix="dfdb-io")
        self._connections: set[Connection] = set()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._socket_ino: int | None = None
        # One Restorer per (clip, params): it keeps the flows between the clip's frames, keyed
        # by (time, version), so overlapping windows match each pair of frames once.
        self._restorers: OrderedDict[tuple, tuple[Any, threading.Lock]] = OrderedDict()
        self._restorers_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self, on_ready: Callable[[Address], None] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await self._listen()
        except BaseException:
            self.pool.close(0)
            self._io.shutdown(wait=False)
            raise
        log.info("listening on %s", self.address)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._stop.set)
        self._loop.run_in_executor(self._io, devices)  # import torch before the first client needs it
        if on_ready is not None:
            on_ready(self.address)
        try:
            await self._stop.wait()
        finally:
            await self._shutdown(server)

    def stop(self) -> None:
        """Ask a running engine to shut down (thread-safe)."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop closed in between: already stopped
                pass

    async def _listen(self) -> asyncio.AbstractServer:
        addr = self.address
        if addr.is_tcp:
            if self.config.token is None:
                raise DfdbError("a TCP engine needs a token")
            server = await asyncio.start_server(lambda r, w: self._serve(r, w, True), addr.host, addr.port)
            port = server.sockets[0].getsockname()[1]
            self.address = Address("tcp", host=addr.host, port=port)
            return server
        path = Path(addr.path)
        if len(os.fsencode(addr.path)) > 100:
            raise BridgeError("bad_address", f"socket path too long for a Unix socket: {addr.path}")
        prepare_socket_dir(path)
        clear_stale_socket(path)
        server = await asyncio.start_unix_server(lambda r, w: self._serve(r, w, False), path=addr.path)
        os.chmod(addr.path, 0o600)
        self._socket_ino = os.stat(addr.path).st_ino
        return server

    async def _shutdown(self, server: asyncio.AbstractServer) -> None:
        log.info("shutting down")
        server.close()
        await self._loop.run_in_executor(None, self.pool.close, 120.0)
        tasks = [t for c in self._connections for t in c.tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        for conn in list(self._connections):
            conn.writer.close()
        if not self.address.is_tcp:
            try:
                if os.stat(self.address.path).st_ino == self._socket_ino:
                    os.unlink(self.address.path)
            except FileNotFoundError:
                pass
        self._io.shutdown(wait=True)
        log.info("stopped")

    # -- one connection -------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tcp: bool) -> None:
        conn = Connection(writer, tcp)
        if len(self._connections) >= self.config.max_connections:
            await self._close_with(conn, codec.error(None, "busy", "too many connections; retry later"))
            return
        self._connections.add(conn)
        try:
            await self._read_loop(reader, conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away, possibly mid-message
        except Exception:
            log.exception("connection failed")
        finally:
            self._connections.discard(conn)
            dropped = self.pool.cancel_owner(conn)
            if dropped:
                log.info("client gone: %d queued job(s) dropped", dropped)
            writer.close()

    async def _close_with(self, conn: Connection, message: dict[str, Any]) -> None:
        try:
            await conn.reply(message)
        except ConnectionError:
            pass
        conn.writer.close()

    async def _read_loop(self, reader: asyncio.StreamReader, conn: Connection) -> None:
        limit = self.config.limits["max_message"]
        while not self._stop.is_set():
            try:
                header = await reader.readexactly(wire.HEADER.size)
            except asyncio.IncompleteReadError:
                return
            try:
                length = wire.body_length(header, limit)
            except BridgeError as err:
                await self._close_with(conn, codec.error(None, err.code, err.message))
                return
            body = await reader.readexactly(length)
            try:
                message = wire.decode(body)
            except BridgeError as err:
                await conn.reply(codec.error(None, err.code, err.message))
                continue
            del body
            if not await self._dispatch(conn, message):
                return

    async def _dispatch(self, conn: Connection, message: dict[str, Any]) -> bool:
        """Handle one request; False when the connection must be closed."""
        rid = codec.request_id(message)
        op = message.get("op")
        if rid is None or not isinstance(op, str):
            await conn.reply(codec.error(rid, "bad_message", "a request needs op (string) and id (unsigned integer)"))
            return True
        if op == "hello":
            return await self._hello(conn, rid, message)
        if not conn.authed:
            await self._close_with(conn, codec.error(rid, "unauthorized", "the first request must be a successful hello"))
            return False
        if op == "ping":
            await conn.reply({"op": "pong", "id": rid, "queued": self.pool.queued, "running": self.pool.running,
                              "clips": len(self.sessions)})
        elif op == "process":
            await self._process(conn, rid, message)
        elif op == "close_clip":
            try:
                clip = codec.parse_close(message)
            except BridgeError as err:
                await conn.reply(codec.error(rid, err.code, err.message))
                return True
            self.sessions.close(clip)
            with self._restorers_lock:
                for key in [k for k in self._restorers if k[0] == clip]:
                    del self._restorers[key]
            await conn.reply({"op": "closed", "id": rid, "clip": clip})
        elif op == "shutdown":
            await conn.reply({"op": "bye", "id": rid})
            self._stop.set()
        else:
            await conn.reply(codec.error(rid, "unknown_op", f"unknown op {op[:64]!r}"))
        return True

    async def _hello(self, conn: Connection, rid: int, message: dict[str, Any]) -> bool:
        try:
            protocol, client, token = codec.parse_hello(message)
        except BridgeError as err:
            await conn.reply(codec.error(rid, err.code, err.message))
            return True
        if conn.tcp and not (token and hmac.compare_digest(token.encode(), self.config.token.encode())):
            await self._close_with(conn, codec.error(rid, "unauthorized", "missing or wrong token"))
            return False
        if protocol != wire.PROTOCOL_VERSION:
            await conn.reply(codec.error(rid, "protocol_version",
                                         f"client speaks protocol {protocol}, this engine speaks {wire.PROTOCOL_VERSION}"))
            return True
        conn.authed = True
        log.debug("hello from %s", client)
        caps = ["inline", "mask", "flicker"] + (["shm"] if shm.AVAILABLE else [])
        found = await self._loop.run_in_executor(self._io, devices)
        await conn.reply({"op": "hello", "id": rid, "protocol": wire.PROTOCOL_VERSION, "engine": engine_version(),
                          "capabilities": caps, "devices": found, "limits": dict(self.config.limits)})
        return True

    # -- process --------------------------------------------------------------------------
    async def _process(self, conn: Connection, rid: int, message: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            plan = await self._loop.run_in_executor(self._io, self._prepare, rid, message, started)
        except Exception as err:
            await conn.reply(codec.error(rid, *_failure(err)))
            return
        if not isinstance(plan, Plan):
            await conn.send(plan)
            return
        try:
            future = self.pool.submit(conn, functools.partial(self._solve, plan))
        except BridgeError as err:
            await conn.reply(codec.error(rid, err.code, err.message))
            return
        task = asyncio.ensure_future(self._finish(conn, rid, plan, future))
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    async def _finish(self, conn: Connection, rid: int, plan: Plan, future) -> None:
        try:
            rf, solve_ms, cached = await asyncio.wrap_future(future)
            frame = await self._loop.run_in_executor(self._io, self._result, rid, plan.request, rf,
                                                     plan.infos, cached, solve_ms, plan.started)
        except asyncio.CancelledError:
            return  # the client left before the job started
        except Exception as err:
            frame = wire.encode(codec.error(rid, *_failure(err)))
        try:
            await conn.send(frame)
        except ConnectionError:
            pass

    def _prepare(self, rid: int, message: dict[str, Any], started: float) -> Plan | tuple[bytes, bytes]:
        """Validate and ingest a request (I/O thread): an encoded reply, or a Plan to solve.

        Everything that can fail is checked before the attached frames are stored."""
        req = codec.parse_process(message, self.config.limits)
        times = req.times
        attached = [(f.time, codec.load(f.pixels), f.pixels.layout.dtype) for f in req.frames if f.pixels]
        geometry = {t: (i.shape, i.dtype) for t, i in zip(times, self.sessions.infos(req.clip, times)) if i is not None}
        geometry.update({t: (image.shape, dtype) for t, image, dtype in attached})
        shapes = {shape for shape, _ in geometry.values()}
        if len(shapes) > 1:
            raise BridgeError("bad_frame", f"frames of clip {req.clip!r} differ in size: {sorted(shapes)}")
        if req.out is not None and "image" in req.outputs and req.target in geometry:
            codec.out_layout(req.out, *geometry[req.target])
            shm.probe(req.out.shm, req.out.offset, req.out.size)
        self.sessions.add_frames(req.clip, attached)
        images, infos = self.sessions.frames(req.clip, times)
        for t, image, _ in attached:  # usable now even if the cache could not keep them
            images[times.index(t)] = image
        del attached
        key = self._result_key(req, req.target, infos)
        cached = self.sessions.get_result(key)
        if cached is not None:
            return self._result(rid, req, cached, infos, True, 0.0, started)
        missing = [t for t, im in zip(times, images) if im is None]
        if missing:
            return wire.encode({"op": "need", "id": rid, "clip": req.clip, "times": missing})
        return Plan(req, images, infos, key, started)

    def _restorer(self, clip: str, params: Any) -> tuple[Any, threading.Lock]:
        """The clip's Restorer for these params (at most ``RESTORERS`` kept, least recent out).

        With autotune a Restorer keeps the schedule tuned on the first window it sees, which
        would make a frame's result depend on the order frames are asked for: a fresh one then.
        """
        from ..restorer import Restorer  # imports torch: only when the first frame is solved

        if params.autotune:
            return Restorer(params), threading.Lock()
        key = (clip, params)
        with self._restorers_lock:
            if key not in self._restorers:
                self._restorers[key] = (Restorer(params), threading.Lock())
                while len(self._restorers) > RESTORERS:
                    self._restorers.popitem(last=False)
            self._restorers.move_to_end(key)
            return self._restorers[key]

    def _result_key(self, req: codec.ProcessRequest, target: int, infos: list[FrameInfo | None]) -> tuple | None:
        """The result cache's key for frame ``target`` of the request's window: the clip, the
        params and the versions of the window's frames within the context c of the target,
        the only ones its result depends on. So a frame solved ahead of its turn is found by
        its own request, whose window differs beyond c."""
        near = [i for i, t in enumerate(req.times) if abs(t - target) <= req.params.context]
        return self.sessions.result_key(req.clip, target, params_key(req.params), [infos[i] for i in near],
                                        [req.times[i] for i in near])

    def _solve(self, plan: Plan) -> tuple[RestoredFrame, float, bool]:
        """Solver thread: restore the target, and the ``ahead`` frames after it in the same
        solve, from the held window (flows reused across windows); all are cached. A target
        solved ahead while this job waited in the queue (renders on several host threads) is
        taken from the cache. Returns the result, the solve time (ms) and whether it was cached."""
        req = plan.request
        cached = self.sessions.get_result(plan.key)
        if cached is not None:
            return cached, 0.0, True
        t0 = time.perf_counter()
        restorer, lock = self._restorer(req.clip, req.params)
        keys = [(t, info.version) for t, info in zip(req.times, plan.infos)]
        first = req.times.index(req.target)
        with lock:
            done = restorer.restore_span(plan.images, first, 1 + req.ahead, keys=keys)
        solve_ms = (time.perf_counter() - t0) * 1000.0
        self.sessions.put_result(plan.key, done[0])
        for t, rf in zip(req.times[first + 1:], done[1:]):
            self.sessions.put_result(self._result_key(req, t, plan.infos), rf, replace=False)
        return done[0], solve_ms, False

    def _result(self, rid: int, req: codec.ProcessRequest, rf: RestoredFrame, infos: list[FrameInfo],
                cached: bool, solve_ms: float, started: float) -> tuple[bytes, bytes]:
        """The encoded ``result`` reply (I/O thread); writes the image into ``out`` if given."""
        dtype = infos[req.times.index(req.target)].dtype
        reply: dict[str, Any] = {"op": "result", "id": rid, "clip": req.clip, "target": req.target}
        if "image" in req.outputs:
            reply["image"] = codec.encode_image(rf.image, dtype, req.out)
        if "mask" in req.outputs:
            reply["mask"] = codec.encode_image(rf.mask[..., None], dtype)
        if "flicker" in req.outputs:
            reply["flicker"] = codec.encode_image(rf.flicker_map(), dtype)
        stats = codec.plain(rf.stats)
        stats.update(cached=cached, solve_ms=solve_ms, engine_ms=(time.perf_counter() - started) * 1000.0)
        reply["stats"] = stats
        return wire.encode(reply, self.config.limits["max_message"])


class EngineThread:
    """An engine running in a background thread of this process (tests, benchmarks).

    ``with EngineThread(config) as engine: Client(engine.address)``; leaving the block shuts
    the engine down as a ``shutdown`` request would.
    """

    def __init__(self, config: Config, timeout: float = 60.0) -> None:
        self.engine = Engine(config)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="dfdb-engine", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the engine did not start in time")
        if self._error is not None:
            raise self._error

    @property
    def address(self) -> Address:
        return self.engine.address

    def _main(self) -> None:
        try:
            asyncio.run(self.engine.run(lambda _addr: self._ready.set()))
        except BaseException as err:  # reported to the starting thread
            self._error = err
            self._ready.set()

    def stop(self) -> None:
        self.engine.stop()
        self._thread.join(180)

    def __enter__(self) -> "EngineThread":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
