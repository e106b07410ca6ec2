"""Number formats side by side with QuantKit's int8 default and ONNX Runtime, in one run:
4-bit weights per channel and per group of 32 (--group-size 32), with and without GPTQ,
asymmetric packed uint4 groups (--weight-mode asym_u --pack-weights), non-uniform weights
(--weight-levels 32 and 16), 7-bit value ranges (--value-range 7;7), 16-bit accumulators
(--accumulator-bits 16), power-of-two and 8-bit fixed-point scales (--scale-format), and the
shipped hardware profiles (examples/profiles/icraft.json, knight.json). Run from the repository
root after `swift build -c release`, scripts/fetch-models.sh and scripts/export-efficientnet.sh:

    .venv/bin/python Benchmarks/number_formats.py [--models efficientnet_lite0 fashion_cnn ...]
                                                  [--zoo-models silero_vad ddddocr_ocr ...]
                                                  [--variants NAME ...] [--quantkit PATH] [--json FILE]

It is recovery.py with this file's variants: the same calibration data, evaluation sets (disjoint
from calibration), metric column (quantize_vs_ort.compare: EfficientNet-Lite0 top-1 agreement
with float on 600 object photos, Fashion CNN accuracy against the labels and agreement with
float) and ONNX Runtime child (quantize_static, QDQ, QUInt8 activations, MinMax; its 4-bit
rows use weight_type QInt4, which it writes at opset 21). Every QuantKit row is `quantkit
quantize MODEL --input ... --batch 8 -o OUT --no-analysis` plus the variant's flags; activations
stay uint8 throughout.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data as bd  # noqa: E402
import recovery  # noqa: E402

recovery.OUT = os.path.join(bd.ROOT, "out", "number_formats")
recovery.VARIANTS = {
    "int8 (default)": ([], None),
    "W4 per-channel": (["--weight-bits", "4"], None),
    "W4 per-channel + gptq": (["--weight-bits", "4", "--weight-rounding", "gptq"], None),
    "W4 group 32": (["--weight-bits", "4", "--group-size", "32"], None),
    "W4 group 32 + gptq": (["--weight-bits", "4", "--group-size", "32", "--weight-rounding", "gptq"], None),
    "W4 group 32 uint4 packed": (["--weight-bits", "4", "--group-size", "32", "--weight-mode", "asym_u", "--pack-weights"], None),
    "NUQ 32 levels": (["--weight-levels", "32"], None),
    "NUQ 16 levels": (["--weight-levels", "16"], None),
    "7-bit ranges (7;7)": (["--value-range", "7;7"], None),
    "16-bit accumulators": (["--accumulator-bits", "16"], None),
    "7-bit ranges + 16-bit accumulators": (["--value-range", "7;7", "--accumulator-bits", "16"], None),
    "pow2 scales": (["--scale-format", "pow2"], None),
    "fixed:8 scales": (["--scale-format", "fixed:8"], None),
    "Icraft profile": (["--hardware-profile", "examples/profiles/icraft.json"], None),
    "Knight profile": (["--hardware-profile", "examples/profiles/knight.json"], None),
    "fp16 model": (["--precision", "fp16"], None),
    "bf16 model": (["--precision", "bf16"], None),
    "LSTM kept float (before issue 23)": (["--exclude-op-type", "LSTM"], None),
    "ORT MinMax int8 per-channel": (None, {"per_channel": True}),
    "ORT MinMax int4 per-channel": (None, {"per_channel": True, "weight_type": "QInt4"}),
}
recovery.PER_MODEL = {m: [v for v in recovery.VARIANTS if not v.startswith("LSTM")] for m in ["fashion_cnn", "efficientnet_lite0"]}
# --zoo-models silero_vad ddddocr_ocr: the recurrent models, LSTM weights quantized (the default
# since issue 23) against kept float, on the zoo's data and metric.
recovery.ZOO_VARIANTS = ["int8 (default)", "LSTM kept float (before issue 23)", "NUQ 16 levels", "pow2 scales"]
recovery.ZOO_PER_MODEL = {}

if __name__ == "__main__":
    recovery.main()
