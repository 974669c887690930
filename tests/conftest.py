"""Fixtures shared by the server and bridge tests: a private per-test runtime and an engine."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from dfdb.server.server import Config, EngineThread
from dfdb_bridge.address import default_address


@pytest.fixture()
def runtime(monkeypatch) -> Path:
    """A short private XDG_RUNTIME_DIR (Unix socket paths are limited to ~100 bytes), with the
    state and config dirs inside it, and no address override from the environment."""
    d = tempfile.mkdtemp(prefix="dfdb-t", dir="/tmp")
    monkeypatch.setenv("XDG_RUNTIME_DIR", d)
    monkeypatch.setenv("XDG_STATE_HOME", os.path.join(d, "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", os.path.join(d, "config"))
    monkeypatch.delenv("DFDB_ENGINE_ADDRESS", raising=False)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture()
def engine(runtime):
    """An in-process engine listening on the runtime's default socket, 64 MiB of cache."""
    with EngineThread(Config(default_address(), cache_bytes=64 << 20)) as eng:
        yield eng
