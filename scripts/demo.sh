#!/usr/bin/env bash
# The README's main command: set up, build, and run QuantKit on the bundled default model.
# (Quantization lands with the Quantize issue; until then this inspects and verifies the model.)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
bash scripts/fetch-models.sh >/dev/null
swift build -c release 2>&1 | tail -n 1
model=${1:-.cache/models/ppocrv4_rec.onnx}
.build/release/quantkit inspect "$model" --verify
