"""The dfdb engine server (``dfdb serve``): the wire of bridge/PROTOCOL.md on a local socket,
per-clip session caches, and a bounded solver pool."""
from .server import Config, Engine, EngineThread

__all__ = ["Config", "Engine", "EngineThread"]
