"""Accuracy-recovery algorithms side by side with QuantKit's default and ONNX Runtime, in one run:
cross-layer equalization (--equalize) with per-tensor and per-channel weights, SmoothQuant
(--smoothquant ALPHA|auto) on transformers, AdaRound (--weight-rounding adaround) at 4-bit
weights. Run from the repository root after `swift build -c release`, scripts/fetch-models.sh,
scripts/export-efficientnet.sh (and scripts/fetch-zoo.sh for the PP-OCR classifier):

    .venv/bin/python Benchmarks/recovery.py [--models efficientnet_lite0 ppocr_cls minilm_l3 ...]
                                            [--variants NAME ...] [--quantkit PATH] [--json FILE]

Every QuantKit variant is `quantkit quantize MODEL --input ... --batch 8 -o OUT --no-analysis`
plus the variant's flags (the calibration data and evaluation sets are quantize_vs_ort.py's:
bench_data.py writes them; evaluation items are disjoint from calibration items). ONNX Runtime
rows run quantize_static (QDQ, QUInt8 activations, QInt8 weights, MinMax) with the same
per-channel setting as the row says, and with `extra_options={"SmoothQuant": True}` where noted
(it needs neural-compressor; a row says so when that is missing). The metric column is
quantize_vs_ort.compare's: EfficientNet-Lite0 top-1 agreement with float on 600 object photos,
PP-OCR cls agreement with float, MiniLM-L3 embedding cosine (mean, min), PP-OCRv4 rec exact match.
The QuantKit binary is copied to /tmp so a rebuild during the run does not change it.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data as bd  # noqa: E402
import quantize_vs_ort as qv  # noqa: E402

OUT = os.path.join(bd.ROOT, "out", "recovery")

# name -> (quantkit flags, ORT quantize_static options or None)
VARIANTS = {
    "default": (["--bias-correction", "off"], None),
    "per-tensor": (["--no-per-channel-weights", "--bias-correction", "off"], None),
    "per-tensor + equalize": (["--no-per-channel-weights", "--equalize", "--bias-correction", "off"], None),
    "per-channel + equalize": (["--equalize", "--bias-correction", "off"], None),
    "default (bias correction)": ([], None),
    "per-tensor + equalize + bias correction": (["--no-per-channel-weights", "--equalize", "--bias-correction", "all"], None),
    "smoothquant 0.5": (["--smoothquant", "0.5"], None),
    "smoothquant auto": (["--smoothquant", "auto"], None),
    "per-tensor + smoothquant auto": (["--no-per-channel-weights", "--smoothquant", "auto"], None),
    "W4A8": (["--weight-bits", "4"], None),
    "W4A8 + gptq": (["--weight-bits", "4", "--weight-rounding", "gptq"], None),
    "W4A8 + adaround": (["--weight-bits", "4", "--weight-rounding", "adaround"], None),
    "per-tensor + adaround": (["--no-per-channel-weights", "--weight-rounding", "adaround"], None),
    "per-tensor + equalize + adaround": (["--no-per-channel-weights", "--equalize", "--weight-rounding", "adaround"], None),
    "ORT MinMax per-channel": (None, {"per_channel": True}),
    "ORT MinMax per-tensor": (None, {"per_channel": False}),
    "ORT MinMax SmoothQuant": (None, {"per_channel": True, "extra_options": {"SmoothQuant": True}}),
}

PER_MODEL = {
    "efficientnet_lite0": ["default", "default (bias correction)", "per-tensor", "per-tensor + equalize", "per-channel + equalize",
                           "per-tensor + equalize + bias correction", "per-tensor + adaround", "per-tensor + equalize + adaround",
                           "W4A8", "W4A8 + gptq", "W4A8 + adaround", "ORT MinMax per-channel", "ORT MinMax per-tensor"],
    "fashion_cnn": ["default", "per-tensor", "per-tensor + equalize", "W4A8", "W4A8 + gptq", "W4A8 + adaround"],
    "minilm_l3": ["default", "per-tensor", "smoothquant 0.5", "smoothquant auto", "per-tensor + smoothquant auto",
                  "ORT MinMax per-channel", "ORT MinMax SmoothQuant"],
    "ppocrv4_rec": ["default", "per-tensor", "per-tensor + equalize", "per-channel + equalize", "smoothquant auto"],
}

ORT_CHILD = r"""
import json, sys
from onnxruntime.quantization import quantize_static, CalibrationDataReader, QuantFormat, QuantType, CalibrationMethod
sys.path.insert(0, sys.argv[3])
import bench_data as bd
model, out, name, inputs, opts = sys.argv[1], sys.argv[2], sys.argv[4], sys.argv[5].split(","), json.loads(sys.argv[6])
class Reader(CalibrationDataReader):
    def __init__(self):
        self.items = iter(bd.calib_items(name, inputs))
    def get_next(self):
        return next(self.items, None)
quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax, **opts)
"""


def run_variant(binary, name, variant, env):
    path, inputs, _, _ = qv.MODELS[name]
    flags, ort = VARIANTS[variant]
    out = os.path.join(OUT, f"{name}.{variant.replace(' ', '_').replace('+', 'and').replace('(', '').replace(')', '')}.onnx")
    if flags is not None:
        cmd = [binary, "quantize", path, *bd.calib_args(name, inputs), "--batch", "8", "-o", out, "--quiet", "--no-analysis", *flags]
    else:
        cmd = [sys.executable, "-c", ORT_CHILD, path, out, os.path.dirname(os.path.abspath(__file__)), name, ",".join(inputs), json.dumps(ort)]
    wall, rss, _, _ = qv.timed(cmd, env)
    return out, wall, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(PER_MODEL), choices=list(qv.MODELS))
    ap.add_argument("--variants", nargs="*", help="only these variants (default: each model's list)")
    ap.add_argument("--quantkit", default=qv.BINARY)
    ap.add_argument("--json")
    args = ap.parse_args()
    binary = "/tmp/quantkit-recovery"
    shutil.copy(args.quantkit, binary)
    env = dict(os.environ)
    env.setdefault("OPENBLAS_CORETYPE", subprocess.run(["bash", os.path.join(bd.ROOT, "scripts", "openblas-coretype.sh")],
                                                       capture_output=True, text=True).stdout.strip())
    os.makedirs(OUT, exist_ok=True)
    results = {}
    print("| model | float | variant | metric | agreement / min | quantize s | peak MB |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        _, _, make, evaluate = qv.MODELS[name]
        make()
        f = evaluate(qv.MODELS[name][0])
        ftext = qv.float_text(name, f)
        for variant in args.variants or PER_MODEL.get(name, ["default"]):
            try:
                out, wall, rss = run_variant(binary, name, variant, env)
                c = qv.compare(name, f, evaluate(out))
                results.setdefault(name, {})[variant] = {**c, "time_s": wall, "peak_mb": rss}
                print(f"| {name} | {ftext} | {variant} | {c['text']} | {c['agree']:.4f} | {wall:.1f} | {rss:.0f} |", flush=True)
            except Exception as e:  # noqa: BLE001 - one failing variant must not stop the table
                msg = str(e).strip().splitlines()[-1][:160] if str(e).strip() else type(e).__name__
                results.setdefault(name, {})[variant] = {"error": msg}
                print(f"| {name} | {ftext} | {variant} | failed: {msg} | | | |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
