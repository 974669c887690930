#!/usr/bin/env bash
# Sets up and runs the whole test suite: engine, I/O, CLI, benchmark regression, server and
# bridge, and the OpenFX plug-in built with CMake and driven by the test host in tests/ofxhost.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
