"""Accuracy-recovery algorithms side by side with QuantKit's default and ONNX Runtime, in one run:
cross-layer equalization (--equalize) with per-tensor and per-channel weights, SmoothQuant
(--smoothquant ALPHA|auto) on transformers, AdaRound (--weight-rounding adaround) at 4-bit
weights. Run from the repository root after `swift build -c release`, scripts/fetch-models.sh,
scripts/export-efficientnet.sh (and scripts/fetch-zoo.sh for the PP-OCR classifier and the zoo models):

    .venv/bin/python Benchmarks/recovery.py [--models efficientnet_lite0 ppocr_cls minilm_l3 ...]
                                            [--zoo-models vit_s_focus minilm_l3 ...]
                                            [--variants NAME ...] [--quantkit PATH] [--json FILE]

Every QuantKit variant is `quantkit quantize MODEL --input ... --batch 8 -o OUT --no-analysis`
plus the variant's flags (the calibration data and evaluation sets are quantize_vs_ort.py's:
bench_data.py writes them; evaluation items are disjoint from calibration items). ONNX Runtime
rows run quantize_static (QDQ, QUInt8 activations, QInt8 weights, MinMax) with the same
per-channel setting as the row says, and with `extra_options={"SmoothQuant": True}` where noted
(it needs neural-compressor; a row says so when that is missing). The metric column is
quantize_vs_ort.compare's: EfficientNet-Lite0 top-1 agreement with float on 600 object photos,
PP-OCR cls agreement with float, MiniLM-L3 embedding cosine (mean, min), PP-OCRv4 rec exact match.

--zoo-models NAME ... (default: none) runs QuantKit variants on models of zoo.py's ZOO (its
transformers vit_s_focus and minilm_l3 have ZOO_PER_MODEL's list: default, per-tensor,
smoothquant 0.5, smoothquant auto, per-tensor + smoothquant auto; any other zoo model the same
list) with the zoo's own data, calibration and metric, as zoo.py and zoo_tuning.py do:
zoo.prepare writes the model's calibration and evaluation splits into .cache/zoo/data/NAME, the
command is `quantkit quantize MODEL --input NAME=DIR ... -o OUT --no-analysis` plus the variant's
flags (no --batch, like zoo.py; its log beside OUT), and each quantized model is scored against
the float model by zoo.evaluate/zoo.compare on the held-out evaluation split. Such rows are named
zoo:NAME (minilm_l3 under --models is quantize_vs_ort.py's sentence embedding on its own data;
zoo:minilm_l3 is the zoo's, output 3). Their float column is the float model's score against the
data's labels where the zoo has one ("reference" otherwise); their metric column is the zoo
metric against float (zoo.py's docstring: mask = mean IoU of the thresholded saliency mask with
the float model's, cosine = mean embedding cosine, top-1 / text = share of items equal to the
float model's; min in brackets) and, for models whose metric is not already the cosine, the
output cosine: per evaluation item, the cosine of the raw output the metric reads (output
`Model.output`, before decoding) with the float model's, mean (min). The agreement column is the
zoo metric's value. ONNX Runtime rows are not run on zoo models (--variants naming one skips it).
A model whose data preparation or float evaluation fails is one 'failed' row; the others go on.
The QuantKit binary is copied to /tmp so a rebuild during the run does not change it.
"""
import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data as bd  # noqa: E402
import quantize_vs_ort as qv  # noqa: E402
import zoo  # noqa: E402

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

# --zoo-models: variants per zoo.ZOO model (QuantKit only); a zoo model not named here gets ZOO_VARIANTS.
ZOO_VARIANTS = ["default", "per-tensor", "smoothquant 0.5", "smoothquant auto", "per-tensor + smoothquant auto"]
ZOO_PER_MODEL = {"vit_s_focus": ZOO_VARIANTS, "minilm_l3": ZOO_VARIANTS}

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
weight_type = QuantType[opts.pop("weight_type", "QInt8")]   # QInt4 / QUInt4 for 4-bit weights (number_formats.py)
quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=weight_type,
                calibrate_method=CalibrationMethod.MinMax, **opts)
"""


def stem(variant):
    return variant.replace(' ', '_').replace('+', 'and').replace('(', '').replace(')', '')


def run_variant(binary, name, variant, env):
    path, inputs, _, _ = qv.MODELS[name]
    flags, ort = VARIANTS[variant]
    out = os.path.join(OUT, f"{name}.{stem(variant)}.onnx")
    if flags is not None:
        cmd = [binary, "quantize", path, *bd.calib_args(name, inputs), "--batch", "8", "-o", out, "--quiet", "--no-analysis", *flags]
    else:
        cmd = [sys.executable, "-c", ORT_CHILD, path, out, os.path.dirname(os.path.abspath(__file__)), name, ",".join(inputs), json.dumps(ort)]
    wall, rss, _, _ = qv.timed(cmd, env)
    return out, wall, rss


# Zoo models (--zoo-models) -----------------------------------------------------------------------

def run_zoo_variant(binary, m, folder, variant, env):
    """`quantkit quantize` of zoo model m on its calibration split, as zoo.quantizers runs it, plus
    the variant's flags; (output path, wall s, peak MB)."""
    flags, _ = VARIANTS[variant]
    out = os.path.join(OUT, f"zoo.{m.name}.{stem(variant)}.onnx")
    calib = os.path.join(folder, "calib")
    cmd = [binary, "quantize", m.path, *[a for n in m.inputs for a in ("--input", f"{n}={os.path.join(calib, n)}")],
           "-o", out, "--no-analysis", *flags]
    wall, rss, err = zoo.timed(cmd, out[:-len(".onnx")] + ".log", env)
    if err is not None:
        raise RuntimeError(err)
    return out, wall, rss


def zoo_evaluate(m, path, items):
    """(zoo.evaluate's per-item values, per-item raw output m.output as float64 or None): one ONNX
    Runtime pass, m's decoder wrapped to keep the output it reads."""
    if m.run:   # a streaming model (silero_vad): no single output per item
        return zoo.evaluate(m, path, items), None
    raw = []

    def decode(o):
        raw.append(np.asarray(o[m.output], np.float64).ravel())
        return m.decode(o) if m.decode else raw[-1]
    return zoo.evaluate(dataclasses.replace(m, decode=decode), path, items), raw


def zoo_compare(m, f, q):
    """zoo.compare's metric of q against float f, plus the raw output cosine when the metric is not it."""
    v, text = zoo.compare(m, f[0], q[0])
    c = {"metric": v, "agree": v, "text": f"{m.metric} {text}"}
    if m.metric != "cosine" and f[1] is not None:
        c["output_cosine"], ctext = zoo.compare(dataclasses.replace(m, metric="cosine"), f[1], q[1])
        c["text"] += f", output cosine {ctext}"
    return c


def bench_zoo(binary, m, variants, env, results):
    label = f"zoo:{m.name}"
    try:
        folder = zoo.prepare(m)
        ev = zoo.load_items(os.path.join(folder, "eval"))
        truth = json.load(open(os.path.join(folder, "truth.json")))
        f = zoo_evaluate(m, m.path, ev)
    except Exception as e:  # noqa: BLE001 - the other models go on
        msg = f"data or float evaluation: {type(e).__name__}: {str(e).strip().splitlines()[-1][:160] if str(e).strip() else ''}"
        results[label] = {"error": msg}
        print(f"| {label} | | | failed: {msg} | | | |", flush=True)
        return
    ftext = f"vs truth: {m.truth_score(f[0], truth)[1]}" if m.truth_score and truth else "reference"
    for variant in variants:
        if VARIANTS[variant][0] is None:
            print(f"  {label}: {variant} skipped (ORT rows are not run on zoo models)", file=sys.stderr, flush=True)
            continue
        try:
            out, wall, rss = run_zoo_variant(binary, m, folder, variant, env)
            c = zoo_compare(m, f, zoo_evaluate(m, out, ev))
            results.setdefault(label, {})[variant] = {**c, "n_eval": len(ev), "time_s": wall, "peak_mb": rss}
            print(f"| {label} | {ftext} | {variant} | {c['text']} | {c['agree']:.4f} | {wall:.1f} | {rss:.0f} |", flush=True)
        except Exception as e:  # noqa: BLE001 - one failing variant must not stop the table
            msg = str(e).strip().splitlines()[-1][:160] if str(e).strip() else type(e).__name__
            results.setdefault(label, {})[variant] = {"error": msg}
            print(f"| {label} | {ftext} | {variant} | failed: {msg} | | | |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(PER_MODEL), choices=list(qv.MODELS))
    ap.add_argument("--zoo-models", nargs="*", default=[], choices=[m.name for m in zoo.ZOO],
                    help="also these zoo.py models, on the zoo's data and metric (default: none)")
    ap.add_argument("--variants", nargs="*", choices=list(VARIANTS), help="only these variants (default: each model's list)")
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
        try:
            make()
            f = evaluate(qv.MODELS[name][0])
        except Exception as e:  # noqa: BLE001 - the other models go on
            msg = f"data or float evaluation: {type(e).__name__}: {str(e).strip().splitlines()[-1][:160] if str(e).strip() else ''}"
            results[name] = {"error": msg}
            print(f"| {name} | | | failed: {msg} | | | |", flush=True)
            continue
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
    if args.zoo_models:
        zoo.load_vocabularies()
    for m in [m for m in zoo.ZOO if m.name in args.zoo_models]:
        bench_zoo(binary, m, args.variants or ZOO_PER_MODEL.get(m.name, ZOO_VARIANTS), env, results)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
