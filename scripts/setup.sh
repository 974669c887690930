#!/usr/bin/env bash
# Sets up everything dfdb needs on a Debian machine: system packages (ffmpeg for the benchmark's
# peers, cmake/g++/msgpack-c for the OpenFX plug-in), a virtual environment in .venv with the
# CPU build of PyTorch, and dfdb itself (editable) with its test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in ffmpeg cmake g++ libmsgpack-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# The CPU build: an unpinned torch would pull several GB of CUDA packages. On a GPU machine,
# install your CUDA build of torch first; the package itself only asks for torch>=2.1.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
