#!/usr/bin/env bash
# Builds the Python package's wheel (bundling the release binary and the Swift runtime it links)
# into .build/wheel and installs it into the test venv (.venv). Run after `swift build -c release`;
# scripts/test.sh does. Usage: scripts/build-wheel.sh [PYTHON_TO_INSTALL_INTO]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
python=${1:-$here/.venv/bin/python}
wheel=$(python3 "$here/python/build_wheel.py" --binary "$here/.build/release/quantkit" --out "$here/.build/wheel")
"$python" -m pip install -q --disable-pip-version-check --no-deps --no-index --force-reinstall "$wheel"
echo "wheel: $wheel (installed into $("$python" -c 'import sys; print(sys.prefix)'))"
