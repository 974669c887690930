"""The C++ bridge client on its own, through its command-line tool dfdb-bridge-ping, against a
real engine process."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "ofxhost"))
from ofxdriver import Build, EngineEnv, build  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("c++") is None,
                                reason="needs cmake and a C++ compiler")


@pytest.fixture(scope="module")
def built() -> Build:
    return build()


@pytest.fixture()
def engine_env(tmp_path) -> EngineEnv:
    env = EngineEnv.create(tmp_path / "engine")
    yield env
    env.kill_engine(signal.SIGTERM)


def ping(built: Build, env: EngineEnv, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(built.ping), *args], env=env.env, capture_output=True, text=True, timeout=60)


def test_ping_a_running_engine_then_shut_it_down(built, engine_env):
    engine_env.start_engine()
    done = ping(built, engine_env, "--count", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("engine ") and f"at {engine_env.address} protocol 1" in lines[0]
    assert "capabilities inline,mask,flicker" in lines[0]
    assert [ln.split()[0] for ln in lines[1:]] == ["pong"] * 3
    assert "queued 0 running 0 clips 0" in lines[1]

    explicit = ping(built, engine_env, "--address", engine_env.address, "--shutdown")
    assert explicit.returncode == 0 and explicit.stdout.splitlines()[-1] == "bye"
    gone = ping(built, engine_env, "--timeout", "2")
    assert gone.returncode == 1
    assert gone.stderr.startswith("dfdb-bridge-ping: no engine at ")
    assert len(gone.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, status, text", [
    (["--address", "tcp://10.0.0.1:4000"], 1, "only loopback TCP is allowed"),
    (["--address", "unix://relative.sock"], 1, "must be absolute"),
    (["--address", "http://x"], 1, "expected unix:///path or tcp://127.0.0.1:PORT"),
    (["--count", "zero"], 2, "--count must be a positive integer"),
    (["--bogus"], 2, "unknown or incomplete argument '--bogus'"),
])
def test_bad_arguments_get_one_clear_line(built, engine_env, args, status, text):
    done = ping(built, engine_env, *args)
    assert done.returncode == status
    assert text in done.stderr.splitlines()[0]


def test_engine_address_from_the_environment(built, engine_env, tmp_path):
    other = tmp_path / "elsewhere" / "engine.sock"
    engine_env.env["DFDB_ENGINE_ADDRESS"] = f"unix://{other}"
    done = ping(built, engine_env, "--timeout", "2")
    assert done.returncode == 1 and str(other) in done.stderr
