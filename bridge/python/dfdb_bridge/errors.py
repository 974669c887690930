"""Errors of the bridge, each carrying the wire's error code (see bridge/PROTOCOL.md §3.7)."""
from __future__ import annotations


class BridgeError(Exception):
    """A failure on the wire; ``code`` is the protocol's error code, ``str(err)`` one line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        return f"{self.args[0]} [{self.code}]"

    @property
    def message(self) -> str:
        return str(self.args[0])


class ServerError(BridgeError):
    """The engine answered a request with an ``error`` reply."""


class EngineUnavailable(BridgeError):
    """No engine answers at the address (not running, wrong address, refused)."""

    def __init__(self, message: str) -> None:
        super().__init__("unavailable", message)


class ConnectionClosed(BridgeError):
    """The peer closed the connection, possibly in the middle of a message."""

    def __init__(self, message: str = "connection closed by the peer") -> None:
        super().__init__("closed", message)
