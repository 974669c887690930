"""Running the engine as a per-user daemon: double fork, log file, pid file, readiness pipe.

``dfdb serve`` (without ``--foreground``) returns only once the engine accepts connections, or
fails with the engine's own one-line reason, so a plugin that spawns it can simply wait for it.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import select
import sys
import time
from pathlib import Path

from ..errors import DfdbError

READY_TIMEOUT_S = 120.0


class StartError(DfdbError):
    """The engine could not be started."""

    code = "cannot_start"


def state_dir() -> Path:
    """``$XDG_STATE_HOME/dfdb`` (default ``~/.local/state/dfdb``), created 0700."""
    base = os.environ.get("XDG_STATE_HOME", "")
    root = Path(base) if base.startswith("/") else Path.home() / ".local" / "state"
    path = root / "dfdb"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def setup_logging(log_path: Path, verbose: bool, to_stderr: bool) -> None:
    """Log to ``log_path`` (rotated), and to stderr when debugging in the foreground."""
    logger = logging.getLogger("dfdb")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.handlers.RotatingFileHandler(log_path, maxBytes=5 << 20, backupCount=2)]
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(fmt)
    logger.handlers[:] = handlers


def write_pid(path: Path) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(f"{os.getpid()}\n", encoding="ascii")
    os.replace(tmp, path)


def daemonize(log_path: Path) -> int | None:
    """Detach from the terminal. Returns None in the original process once the daemon has
    reported (raising StartError if it failed), and the write end of the readiness pipe in
    the daemon, which must send ``ready <address>`` or ``error <message>`` on it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(w)
        os.waitpid(pid, 0)
        message = _read_report(r)
        os.close(r)
        if not message.startswith("ready "):
            raise StartError(message[len("error "):] if message.startswith("error ") else
                             f"the engine exited before it was ready; see {log_path}")
        print(f"dfdb engine listening on {message[len('ready '):]}")
        return None
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    os.umask(0o077)
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    # Descriptors inherited from whoever spawned us (an editor's files and sockets) stay theirs.
    top = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 4096
    os.closerange(3, w)
    os.closerange(w + 1, max(w + 1, min(top, 1 << 16)))
    return w


def _read_report(fd: int) -> str:
    """The daemon's one-line report, or '' if it closed the pipe or timed out."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace").strip()


def report(fd: int, line: str) -> None:
    """Send the readiness report to the waiting parent and close the pipe."""
    try:
        os.write(fd, (line.replace("\n", " ") + "\n").encode("utf-8"))
    except OSError:
        pass  # the parent gave up waiting
    finally:
        os.close(fd)
