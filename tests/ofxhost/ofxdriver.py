"""Python side of the test OpenFX host: builds the plug-in and the host with CMake, runs the
host as a subprocess speaking its line protocol (see ofxhost.cpp), and gives each test a private
engine environment (its own XDG_RUNTIME_DIR, so its own engine socket, log and token).
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHONPATH = f"{REPO / 'engine'}{os.pathsep}{REPO / 'bridge' / 'python'}"


@dataclass(frozen=True)
class Build:
    """Paths of what CMake built."""

    root: Path

    @property
    def bundle(self) -> Path:
        return self.root / "DeflickerDeblotch.ofx.bundle"

    @property
    def binary(self) -> Path:
        return self.bundle / "Contents" / "Linux-x86-64" / "DeflickerDeblotch.ofx"

    @property
    def host(self) -> Path:
        return self.root / "ofxhost"

    @property
    def ping(self) -> Path:
        return self.root / "dfdb-bridge-ping"


def build(root: Path | None = None) -> Build:
    """Configures and builds the plug-in, the ping tool and the test host into ``root``
    (default: $DFDB_OFX_BUILD_DIR, else build/ofx-tests in the repository, kept between runs
    so that a rerun only rebuilds what changed)."""
    root = root or Path(os.environ.get("DFDB_OFX_BUILD_DIR") or REPO / "build" / "ofx-tests")
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cmake", "-S", str(REPO), "-B", str(root), "-DDFDB_BUILD_TESTS=ON",
                    "-DCMAKE_BUILD_TYPE=Release"], check=True, capture_output=True, timeout=300)
    done = subprocess.run(["cmake", "--build", str(root), "-j", "2"], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return Build(root)


@dataclass
class EngineEnv:
    """A private place for one engine: environment variables and the paths they imply."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path) -> "EngineEnv":
        runtime = root / "run"
        runtime.mkdir(mode=0o700, parents=True)
        launcher = root / "dfdb"
        # The engine command the plug-in starts: this interpreter running the source tree.
        launcher.write_text(f'#!/bin/sh\nPYTHONPATH="{PYTHONPATH}" exec "{sys.executable}" -m dfdb.cli "$@"\n')
        launcher.chmod(0o755)
        env = dict(os.environ)
        for key in ("DFDB_ENGINE_ADDRESS", "DFDB_PLUGIN_TIMEOUT", "DFDB_START_TIMEOUT"):
            env.pop(key, None)
        env.update(XDG_RUNTIME_DIR=str(runtime), XDG_STATE_HOME=str(root / "state"),
                   XDG_CONFIG_HOME=str(root / "config"), DFDB_ENGINE=str(launcher), PYTHONPATH=PYTHONPATH,
                   OMP_NUM_THREADS="1")
        return cls(root, env)

    @property
    def launcher(self) -> Path:
        return self.root / "dfdb"

    @property
    def socket(self) -> Path:
        return Path(self.env["XDG_RUNTIME_DIR"]) / "dfdb" / "engine.sock"

    @property
    def address(self) -> str:
        return f"unix://{self.socket}"

    def engine_pid(self) -> int | None:
        try:
            return int((self.socket.parent / "engine.sock.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def start_engine(self) -> None:
        subprocess.run([str(self.launcher), "serve"], env=self.env, check=True, timeout=120,
                       capture_output=True)

    def kill_engine(self, sig: int = signal.SIGKILL) -> None:
        """Stops the engine (SIGKILL: dies as a crash would) and waits until it is gone."""
        pid = self.engine_pid()
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


@dataclass
class Reply:
    """What one host command printed: its result line (without "= "), the plug-in's messages
    ("TYPE ID TEXT") and other lines."""

    result: str
    messages: list[str]
    lines: list[str]

    @property
    def ok(self) -> bool:
        return self.result.split()[0] in ("ok", "identity", "done")

    def errors(self) -> list[str]:
        return [m for m in self.messages if m.startswith("OfxMessageError")]


class Host:
    """The test host as a subprocess; every wait has a timeout, a hang fails the test."""

    def __init__(self, build_: Build, env: dict[str, str]) -> None:
        self.process = subprocess.Popen([str(build_.host)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def cmd(self, line: str, timeout: float = 120.0) -> Reply:
        self.send(line)
        return self.wait(line, timeout)

    def send(self, line: str) -> None:
        """Sends a command without waiting for its answer (see :meth:`wait`)."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait(self, line: str, timeout: float = 120.0) -> Reply:
        """The answer to the command ``line`` sent last."""
        messages: list[str] = []
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                got = self._lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                self.close()
                raise TimeoutError(f"host did not answer {line!r} within {timeout} s") from None
            if got is None:
                raise RuntimeError(f"host exited (status {self.process.wait()}) during {line!r}; saw {lines}")
            if got.startswith("= "):
                return Reply(got[2:], messages, lines)
            if got.startswith("! "):
                messages.append(got[2:])
            else:
                lines.append(got)

    def close(self) -> int:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                return self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
        return self.process.wait()

    def __enter__(self) -> "Host":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
