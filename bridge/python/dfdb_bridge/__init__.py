"""Client side of the dfdb engine's wire protocol (bridge/PROTOCOL.md).

Needs only msgpack; numpy is needed for pixel data (``Client.process``).

    from dfdb_bridge import Client
    with Client() as engine:                 # the per-user engine socket
        restored = engine.process(frames, target_index=2, params={"preset": "fast"})
"""
from .address import Address, default_address, parse_address
from .client import Client, Result
from .errors import BridgeError, ConnectionClosed, EngineUnavailable, ServerError
from .wire import LIMITS, MAX_MESSAGE, PROTOCOL_VERSION

__all__ = [
    "Address", "BridgeError", "Client", "ConnectionClosed", "EngineUnavailable", "LIMITS",
    "MAX_MESSAGE", "PROTOCOL_VERSION", "Result", "ServerError", "default_address", "parse_address",
]
