"""Does the analysis report point at the layers that matter? For each model: quantize with
QuantKit (analysis on), then re-quantize keeping the K layers the report ranks worst by
themselves (layerwise SNR) float, and as a control the K layers it ranks best; measure the
quantized model's outputs against the float model's in ONNX Runtime. Also reports the gap
between QuantKit's executor and ONNX Runtime on the same QDQ model (cosine of outputs).

    OPENBLAS_CORETYPE=SkylakeX .venv/bin/python Benchmarks/analysis_keep_float.py [--k 3 5]

EfficientNet-Lite0: the 20 ImageNet photos of .cache/data/foolbox, TF_LITE preset, as in
scripts/demo.sh. PP-OCRv4 rec: 32 text lines rendered with DejaVu Sans into [3,48,320],
normalized (x/255 − 0.5)/0.5 as PaddleOCR does; metric: agreement of the per-step argmax.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Q = os.path.join(ROOT, ".build", "release", "quantkit")
MODELS = os.path.join(ROOT, ".cache", "models")


def qk(*args):
    r = subprocess.run([Q, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"quantkit {' '.join(args)} failed: {r.stderr}")
    return r.stdout


def ort_run(path, x):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def compare(f, q):
    f64, q64 = f.astype(np.float64).ravel(), q.astype(np.float64).ravel()
    e = q64 - f64
    return {"snr": float((e @ e) / (f64 @ f64)), "cosine": float(f64 @ q64 / np.linalg.norm(f64) / np.linalg.norm(q64)),
            "top1": float((f.argmax(-1) == q.argmax(-1)).mean())}


def render_text_lines(n, path):
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 30)
    rng = np.random.default_rng(0)
    words = ["quantization", "ONNX Runtime", "QuantKit 2026", "hello world", "Zürich 8001", "layer by layer", "calibration",
             "int8 & uint8", "EfficientNet", "text line 42", "PaddleOCR v4", "signal/noise"]
    xs = []
    for i in range(n):
        img = Image.new("RGB", (320, 48), tuple(int(v) for v in rng.integers(200, 256, 3)))
        ImageDraw.Draw(img).text((int(rng.integers(2, 20)), 6), words[i % len(words)] + ("" if i < len(words) else f" {i}"),
                                 fill=tuple(int(v) for v in rng.integers(0, 60, 3)), font=font)
        a = np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0
        xs.append((a - 0.5) / 0.5)
    np.save(path, np.stack(xs).astype(np.float32))


def prepare(name, work):
    src = os.path.join(work, name + ".onnx")
    os.symlink(os.path.join(MODELS, name + ".onnx"), src)
    if name == "efficientnet_lite0":
        lst = os.path.join(work, "cal.txt")
        open(lst, "w").write("\n".join(sorted(glob.glob(os.path.join(ROOT, ".cache/data/foolbox/imagenet_*.jpg")))) + "\n")
        data = ["--input", f"input={lst}", "--preset", "TF_LITE", "--batch", "4"]
        qk("data-preview", src, *data[:-2], "--batch", "100", "--out", os.path.join(work, "eval"))
        x = np.load(os.path.join(work, "eval", "batch_00000", "input.npy"))
    else:
        npy = os.path.join(work, "rec.npy")
        render_text_lines(32, npy)
        data = ["--input", f"x={npy}", "--batch", "4"]
        x = np.load(npy)
    return src, data, x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, nargs="+", default=[3, 5])
    ap.add_argument("--models", nargs="+", default=["efficientnet_lite0", "ppocrv4_rec"])
    args = ap.parse_args()
    rows = []
    for name in args.models:
        work = tempfile.mkdtemp(prefix=f"qk-keepfloat-{name}-")
        src, data, x = prepare(name, work)
        stats = os.path.join(work, "stats.json")
        qpath = os.path.join(work, name + ".q.onnx")
        t0 = time.time()
        qk("quantize", src, *data, "--stats-out", stats, "--analysis-samples", "32", "--quiet")
        t_quant = time.time() - t0
        rep = json.load(open(os.path.join(work, name + ".report.json")))
        f = ort_run(src, x)
        base = compare(f, ort_run(qpath, x))
        # QuantKit's simulation (as the analysis runs it: integer Conv groups) vs ONNX Runtime on
        # the same QDQ model.
        np.save(os.path.join(work, "x.npy"), x)
        qk("run", qpath, "--input", f"{'input' if name.startswith('eff') else 'x'}={os.path.join(work, 'x.npy')}", "--output-dir", os.path.join(work, "sim"),
           "--integer-conv")
        sim = np.load(glob.glob(os.path.join(work, "sim", "*.npy"))[0])
        gap = compare(ort_run(qpath, x), sim)["cosine"]
        sim_vs_float = rep["outputs"][0]["metrics"]
        rows.append((name, "all quantized", "-", base, gap, t_quant, sim_vs_float))
        ranked = sorted((l for l in rep["layers"] if l.get("layerwise")), key=lambda l: l["layerwise"]["snr"], reverse=True)
        for k in args.k:
            for label, chosen in (("worst", ranked[:k]), ("best (control)", ranked[-k:])):
                out = os.path.join(work, f"{name}.{label.split()[0]}{k}.onnx")
                excl = [a for l in chosen for a in ("--exclude-node", l["node"])]
                qk("quantize", src, "--stats", stats, "-o", out, "--no-analysis", "--quiet", *excl)
                rows.append((name, f"keep {k} {label} float", ", ".join(l["node"] for l in chosen), compare(f, ort_run(out, x)), None, None, None))
                # The report's other advice: 16-bit activations for the op's own region.
                regions = [a for l in chosen if l["inputs"] for a in ("--subgraph", f"{','.join(l['inputs'])}:{l['tensor']}:bits=16")]
                out16 = os.path.join(work, f"{name}.{label.split()[0]}{k}.a16.onnx")
                qk("quantize", src, "--stats", stats, "-o", out16, "--no-analysis", "--quiet", *regions)
                rows.append((name, f"{k} {label} with 16-bit activations", ", ".join(l["node"] for l in chosen), compare(f, ort_run(out16, x)),
                             None, None, None))
    print("| model | variant | output SNR vs float | cosine | top-1 agreement | QuantKit vs ORT cosine |")
    print("|---|---|---|---|---|---|")
    for name, variant, nodes, m, gap, _, _ in rows:
        print(f"| {name} | {variant} | {m['snr']:.5f} | {m['cosine']:.5f} | {m['top1']:.4f} | {'' if gap is None else f'{gap:.6f}'} |")
    print()
    for name, variant, nodes, *_ in rows:
        if nodes != "-":
            print(f"- {name} {variant}: {nodes}")
    for name, variant, _, _, _, t, sim in rows:
        if t is not None:
            print(f"- {name}: quantize + analysis {t:.1f} s; analysis (QuantKit executor) output SNR {sim['snr']:.5f}, cosine {sim['cosine']:.5f}")


if __name__ == "__main__":
    main()
