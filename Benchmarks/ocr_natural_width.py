"""PP-OCRv4 rec calibrated and evaluated on text lines at their natural widths (issue #20).

Users store recognition crops as they come: height 48 after resizing, widths from ~100 to ~650
pixels, no padding to 320 columns (our older benchmark's data). This script renders 32
calibration lines and 100 held-out lines (other seeds, other texts) with DejaVu fonts, keeps
each at its own width, and prints exact match (greedy CTC) for the float model, QuantKit with
each range method, and ONNX Runtime's quantize_static (MinMax, Percentile), all run in ONNX
Runtime. Run from the repository root after `swift build -c release` and
scripts/fetch-models.sh:

    .venv/bin/python Benchmarks/ocr_natural_width.py [--methods default minmax ...] [--markdown]
"""
import argparse
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data as bd  # noqa: E402

ROOT = bd.ROOT
MODEL = os.path.join(bd.MODELS, "ppocrv4_rec.onnx")
BINARY = os.path.join(ROOT, ".build", "release", "quantkit")


def natural_lines(count, seed):
    """`count` rendered lines, each preprocessed at its own width (height 48, [-1, 1])."""
    rng = random.Random(seed)
    words = bd._words()
    xs, labels = [], []
    while len(xs) < count:
        text, img = bd.random_line(rng, words)
        w, h = img.size
        width = int(np.ceil(48 * w / h))
        xs.append(bd.ocr_preprocess(img, width=width))
        labels.append(text)
    return xs, labels


def exact_match(path, xs, labels, chars):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    hits = 0
    for x, t in zip(xs, labels):
        got = bd.ctc_decode(s.run(None, {"x": x})[0], chars)[0]
        hits += got == t
    return hits / len(xs)


class Reader:
    """onnxruntime.quantization CalibrationDataReader over the calibration lines."""

    def __init__(self, xs):
        self.it = iter([{"x": x} for x in xs])

    def get_next(self):
        return next(self.it, None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", nargs="*", default=["default", "minmax", "percentile", "mse", "kl"])
    ap.add_argument("--ort-methods", nargs="*", default=["MinMax", "Percentile"])
    ap.add_argument("--calibration", type=int, default=32)
    ap.add_argument("--evaluation", type=int, default=100)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--extra", default="", help="extra quantkit options for every method, one string")
    a = ap.parse_args()
    chars = bd.ocr_characters(MODEL)
    calib, _ = natural_lines(a.calibration, seed=11)
    xs, labels = natural_lines(a.evaluation, seed=12)
    widths = [x.shape[3] for x in calib + xs]
    rows = [("float", exact_match(MODEL, xs, labels, chars), "")]
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "calib")
        os.makedirs(d)
        for i, x in enumerate(calib):
            np.save(os.path.join(d, f"{i:03d}.npy"), x)
        for m in a.methods:
            out = os.path.join(tmp, f"qk_{m}.onnx")
            t = time.time()
            r = subprocess.run([BINARY, "quantize", MODEL, "--input", f"x={d}", "--method", m, "--no-analysis", "-o", out] + shlex.split(a.extra),
                               capture_output=True, text=True)
            if r.returncode != 0:
                rows.append((f"QuantKit {m}", float("nan"), r.stderr.strip().splitlines()[-1]))
                continue
            rows.append((f"QuantKit {m}", exact_match(out, xs, labels, chars), f"{time.time() - t:.1f} s"))
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        for m in a.ort_methods:
            out = os.path.join(tmp, f"ort_{m}.onnx")
            t = time.time()
            try:
                quantize_static(MODEL, out, Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=getattr(CalibrationMethod, m))
                rows.append((f"ORT quantize_static {m}", exact_match(out, xs, labels, chars), f"{time.time() - t:.1f} s"))
            except Exception as e:  # noqa: BLE001 - a failing peer is a row, not a crash
                rows.append((f"ORT quantize_static {m}", float("nan"), str(e).splitlines()[0][:80]))
    print(f"PP-OCRv4 rec, natural widths {min(widths)}-{max(widths)} px: {a.calibration} calibration lines, {a.evaluation} held-out lines")
    if a.markdown:
        print("| model | exact match | quantize time |\n|---|---|---|")
        for name, v, note in rows:
            print(f"| {name} | {v:.2f} | {note} |")
    else:
        for name, v, note in rows:
            print(f"{name:28s} {v:.2f}  {note}")


if __name__ == "__main__":
    main()
