#!/usr/bin/env bash
# The README's test command: installs what is missing, fetches the real models and writes the
# ONNX test suites into .cache, builds in release mode and runs every test suite, and a short
# seeded fuzz run of the readers of outside input (scripts/fuzz.sh --smoke).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
bash scripts/fetch-models.sh
bash scripts/export-efficientnet.sh
.venv/bin/python scripts/gen-onnx-tests.py .cache/onnx-tests
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$(bash scripts/openblas-coretype.sh)}
echo "== swift build -c release"
swift build -c release
echo "== the Python package's wheel (bundles the release binary), installed into .venv"
bash scripts/build-wheel.sh
echo "== swift test -c release"
# Per-test lines go; the closing "Test run with N tests ..." line stays.
swift test -c release 2>&1 | awk '/Test run with/ { print; next } !/^\[[0-9]+\/[0-9]+\]|^Test Suite|Executed 0 tests|^.* (started|passed after [0-9.]+ seconds)\.?$/'
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || { echo "swift test failed ($status)"; exit "$status"; }
echo "== fuzz smoke run (libFuzzer: every seed and regression, then 3,000 inputs per target)"
bash scripts/fuzz.sh --smoke
echo "== interop tests (onnx / onnxruntime as referees)"
.venv/bin/python -m pytest -q Tests/interop
