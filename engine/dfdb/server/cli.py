"""``dfdb serve``: run the engine server (PROTOCOL.md §1.4)."""
from __future__ import annotations

import argparse
import asyncio
import logging

from dfdb_bridge.address import default_address, resolve
from dfdb_bridge.errors import BridgeError

from ..errors import DfdbError, ParamError
from .daemon import daemonize, report, setup_logging, state_dir, write_pid
from .listen import ensure_token, pid_path, prepare_socket_dir
from .server import DEFAULT_CACHE_MB, Config, Engine

log = logging.getLogger("dfdb.server")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    p = subparsers.add_parser(
        "serve", help="run the engine server for the OFX plugin and other clients",
        description="Run the dfdb engine on a local socket. Without --foreground it detaches and "
                    "returns once it accepts connections. Logs go to $XDG_STATE_HOME/dfdb/engine.log.")
    p.add_argument("--listen", metavar="ADDRESS",
                   help="unix:///path/engine.sock or tcp://127.0.0.1:PORT (loopback only, token-protected); "
                        "default: $DFDB_ENGINE_ADDRESS or the per-user socket")
    p.add_argument("--foreground", action="store_true", help="stay attached instead of daemonising")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging (also to stderr with --foreground)")
    p.add_argument("--cache-mb", type=int, default=DEFAULT_CACHE_MB, metavar="MB",
                   help=f"memory cap of the per-clip frame/result cache (default {DEFAULT_CACHE_MB})")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="solver threads (default 1)")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    if args.cache_mb < 16:
        raise ParamError(f"--cache-mb must be at least 16, got {args.cache_mb}")
    if not 1 <= args.workers <= 64:
        raise ParamError(f"--workers must be in 1..64, got {args.workers}")
    try:
        address = resolve(args.listen) if args.listen else default_address()
    except BridgeError as err:
        raise ParamError(err.message) from None
    config = Config(address, cache_bytes=args.cache_mb << 20, workers=args.workers,
                    token=ensure_token() if address.is_tcp else None)
    log_path = state_dir() / "engine.log"
    ready_fd = None
    if not args.foreground:
        ready_fd = daemonize(log_path)
        if ready_fd is None:
            return 0
    setup_logging(log_path, args.verbose, args.foreground)
    pid_file = pid_path(address)
    wrote_pid = []

    def on_ready(actual) -> None:
        write_pid(pid_file)
        wrote_pid.append(True)
        if ready_fd is not None:
            report(ready_fd, f"ready {actual}")
        else:
            print(f"dfdb engine listening on {actual}", flush=True)

    try:
        if address.is_tcp:
            prepare_socket_dir(pid_file)
        asyncio.run(Engine(config).run(on_ready))
    except (DfdbError, BridgeError, OSError) as err:
        message = err.message if isinstance(err, BridgeError) else (str(err) if isinstance(err, DfdbError) else
                                                                       f"cannot listen on {address}: {err.strerror or err}")
        log.error("%s", message)
        if ready_fd is not None:
            report(ready_fd, f"error {message}")
            return 1
        raise DfdbError(message) from None
    finally:
        if wrote_pid:
            pid_file.unlink(missing_ok=True)
    return 0
