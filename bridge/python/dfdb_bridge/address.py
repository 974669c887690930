"""Engine addresses and the per-user places the engine and its clients agree on.

``unix:///abs/path.sock`` or ``tcp://127.0.0.1:PORT`` (loopback only); the default comes from
``DFDB_ENGINE_ADDRESS``, then ``$XDG_RUNTIME_DIR/dfdb/engine.sock``, then
``/tmp/dfdb-<uid>/engine.sock`` (PROTOCOL.md §1.1).
"""
from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from .errors import BridgeError

#: Default TCP port where Unix domain sockets do not exist.
DEFAULT_TCP_PORT = 47150
HAS_UNIX_SOCKETS = hasattr(socket, "AF_UNIX")


@dataclass(frozen=True)
class Address:
    """A parsed engine address: ``path`` for Unix sockets, ``host``/``port`` for TCP."""

    scheme: str  # "unix" or "tcp"
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    @property
    def is_tcp(self) -> bool:
        return self.scheme == "tcp"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_address(text: str) -> Address:
    """Parse ``unix:///path`` or ``tcp://HOST:PORT``; a non-loopback TCP host is refused."""
    def bad(why: str) -> BridgeError:
        return BridgeError("bad_address", f"bad engine address {text!r}: {why}")

    if text.startswith("unix://"):
        path = text[len("unix://"):]
        if not path.startswith("/"):
            raise bad("a unix address needs an absolute path, as in unix:///run/user/1000/dfdb/engine.sock")
        return Address("unix", path=path)
    if text.startswith("tcp://"):
        rest = text[len("tcp://"):]
        if rest.startswith("["):
            host, sep, port_text = rest[1:].partition("]:")
        else:
            host, sep, port_text = rest.rpartition(":")
        if not sep or not host:
            raise bad("expected tcp://127.0.0.1:PORT")
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise bad("the port must be a number in 0..65535")
        if not is_loopback(host):
            raise bad("only loopback hosts (127.0.0.1, ::1, localhost) are allowed")
        return Address("tcp", host=host, port=int(port_text))
    raise bad("it must start with unix:// or tcp://")


def default_socket_dir() -> Path:
    """The private per-user directory of the default socket (0700, owned by the user)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/"):
        return Path(runtime) / "dfdb"
    return Path("/tmp") / f"dfdb-{os.getuid()}"


def default_address() -> Address:
    """The address used when none is given (PROTOCOL.md §1.1)."""
    env = os.environ.get("DFDB_ENGINE_ADDRESS", "")
    if env:
        return parse_address(env)
    if not HAS_UNIX_SOCKETS:
        return Address("tcp", host="127.0.0.1", port=DEFAULT_TCP_PORT)
    return Address("unix", path=str(default_socket_dir() / "engine.sock"))


def resolve(address: str | Address | None) -> Address:
    """An Address from a string, an Address, or None (the default)."""
    if address is None:
        return default_address()
    if isinstance(address, Address):
        return address
    return parse_address(address)


def token_path() -> Path:
    """Per-user file holding the TCP token (``$XDG_CONFIG_HOME/dfdb/token``)."""
    config = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(config) if config.startswith("/") else Path.home() / ".config"
    return base / "dfdb" / "token"


def read_token() -> str | None:
    """The TCP token, or None when the file does not exist yet."""
    try:
        return token_path().read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
