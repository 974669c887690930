"""Where the engine listens and who may talk to it (PROTOCOL.md §1.2, §1.3).

The default socket lives in a per-user directory that must be private (0700, owned by us, not
a symlink); an existing socket there is either a live engine (refuse to start) or a stale file
left by a crash (removed). TCP is loopback-only and needs the per-user token.
"""
from __future__ import annotations

import errno
import os
import secrets
import socket
import stat
from pathlib import Path

from dfdb_bridge.address import Address, default_socket_dir, token_path

from ..errors import DfdbError


class ListenError(DfdbError):
    """The engine cannot listen where it was asked to."""

    exit_code = 1
    code = "cannot_listen"


def prepare_socket_dir(path: Path) -> None:
    """Create the socket's directory 0700 if missing; the default directories must be private."""
    strict = path.parent in (default_socket_dir(), Path("/tmp") / f"dfdb-{os.getuid()}")
    try:
        path.parent.mkdir(mode=0o700, parents=not strict, exist_ok=True)
    except OSError as err:
        raise ListenError(f"cannot create the socket directory {path.parent}: {err.strerror}") from None
    if not strict:
        return
    st = os.lstat(path.parent)
    if not stat.S_ISDIR(st.st_mode):
        raise ListenError(f"{path.parent} is not a directory (a symlink?); refusing to put the socket there")
    if st.st_uid != os.getuid():
        raise ListenError(f"{path.parent} belongs to uid {st.st_uid}, not to us; refusing to put the socket there")
    if st.st_mode & 0o077:
        os.chmod(path.parent, 0o700)


def clear_stale_socket(path: Path) -> None:
    """Remove a socket file nobody listens on; refuse a live one or a non-socket file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(f"{path} exists and is not a socket; remove it or choose another --listen")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)
        return
    except OSError as err:
        if err.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ListenError(f"cannot check the existing socket {path}: {err.strerror}") from None
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise ListenError(f"an engine is already listening on unix://{path}")


def ensure_token() -> str:
    """The per-user TCP token, created (0600, written then renamed) if missing."""
    path = token_path()
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".token.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_hex(32) + "\n")
    try:
        os.link(tmp, path)  # never overwrite a token another engine has just written
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text(encoding="ascii").strip()


def pid_path(address: Address) -> Path:
    """Where the pid file of an engine at ``address`` goes."""
    if address.is_tcp:
        return default_socket_dir() / f"engine-tcp-{address.port}.pid"
    return Path(address.path + ".pid")
