"""Run one process and measure it: wall time and its own peak resident memory.

Linux keeps a process's peak-RSS mark across ``exec``, and a child forked from the benchmark
(which holds whole clips in memory) starts with the parent's pages mapped, so reaping the
measured program directly would report the benchmark's own size. Instead a tiny launcher
(``python -I -S``, a few MB) is started first; it spawns the measured program, reaps it with
``os.wait4`` — whose resource usage is that one child's — and writes the wall time and peak
memory to a report file. Each measured method thus gets a number of its own.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

# Runs in a bare interpreter: argv = [report path, program, args...]; stdio is inherited.
_LAUNCHER = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
kib = usage.ru_maxrss / 1024 if sys.platform == "darwin" else usage.ru_maxrss
with open(report, "w") as f:
    json.dump({"returncode": os.waitstatus_to_exitcode(status), "seconds": seconds, "peak_kib": kib}, f)
"""


@dataclass(frozen=True)
class Measured:
    """What one process did: exit code, seconds of wall time, peak RSS in MB, stdout, stderr."""

    returncode: int
    seconds: float
    peak_mb: float
    stdout: str
    stderr: str


def run_measured(cmd: Sequence[str], stdin: Path | None = None, stdout: Path | None = None, env: dict[str, str] | None = None) -> Measured:
    """Run ``cmd`` with stdin/stdout redirected from/to files (captured text when None).

    The wall time covers the whole measured process, its start-up included, and not the
    launcher's.
    """
    with tempfile.TemporaryDirectory(prefix="dfdb-measure-") as tmp:
        report = Path(tmp) / "report.json"
        out_path = stdout or Path(tmp) / "stdout"
        err_path = Path(tmp) / "stderr"
        with open(out_path, "wb") as fout, open(err_path, "wb") as ferr, \
                (open(stdin, "rb") if stdin else open("/dev/null", "rb")) as fin:
            launcher = subprocess.run([sys.executable, "-I", "-S", "-c", _LAUNCHER, str(report), *cmd],
                                      stdin=fin, stdout=fout, stderr=ferr, env=env)
        err_text = err_path.read_text("utf-8", "replace")
        if not report.exists():
            return Measured(launcher.returncode or 1, 0.0, 0.0, "", err_text)
        info = json.loads(report.read_text())
        return Measured(
            returncode=info["returncode"],
            seconds=info["seconds"],
            peak_mb=info["peak_kib"] / 1024.0,
            stdout="" if stdout else out_path.read_text("utf-8", "replace"),
            stderr=err_text,
        )
