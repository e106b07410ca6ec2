"""PP-OCRv4 rec exact match with each weight-rounding option, on the benchmark's 300 rendered
lines and on 1,200 more (rendered the same way, seed 3): enough lines to tell a real change
from noise (the last column counts lines only one of the two models reads right).

    OPENBLAS_CORETYPE=SkylakeX .venv/bin/python Benchmarks/ppocr_weight_rounding.py

Each variant: `quantkit quantize` on the benchmark calibration set (64 lines), uint8/int8
defaults, plus the variant's options; ONNX Runtime runs the models, greedy CTC decoding.
Besides exact match (the issue's metric) it prints how faithful each model is to the float one
on the 1,200 lines: the share of lines decoded to the same text as float, and the output SNR
(noise/signal of the character probabilities).

    ... ppocr_weight_rounding.py --unpadded

calibrates on the same 64 lines cropped to their text (the model takes any width; batch 1):
without the constant right padding that takes ~27% of each padded 320-column line, which
otherwise dominates the per-channel means of bias correction and GPTQ's Hessians. The
evaluation lines stay padded, as in deployment.

    ... ppocr_weight_rounding.py --cross

separates the two things calibration data feeds: activation ranges (`quantkit calibrate`, then
`quantize --stats`) and GPTQ's layer inputs (`quantize --input` beside `--stats`), each from the
padded or the unpadded lines, for the default method and for minmax.
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data as bd  # noqa: E402

Q = os.path.join(bd.ROOT, ".build", "release", "quantkit")
FLOAT = os.path.join(bd.MODELS, "ppocrv4_rec.onnx")
VARIANTS = [("nearest, no bias correction", ["--bias-correction", "off"]),
            ("nearest + depthwise bias correction (default)", []),
            ("bias correction of every Conv/Gemm", ["--bias-correction", "all"]),
            ("gptq", ["--weight-rounding", "gptq", "--bias-correction", "off"]),
            ("gptq + bias correction", ["--weight-rounding", "gptq", "--bias-correction", "all"])]


def decode(path, x, chars):
    """(decoded lines, output probabilities) of the model at `path` in ONNX Runtime."""
    s = bd.ort_session(path)
    probs = np.concatenate([s.run(None, {"x": x[i:i + 32]})[0] for i in range(0, len(x), 32)])
    return bd.ctc_decode(probs, chars), probs


def exact(path, x, labels, chars):
    return np.array([p == l for p, l in zip(decode(path, x, chars)[0], labels)])


def unpadded_calibration(work):
    """The calibration lines cropped after their last non-padding column (padding is 0)."""
    folder = os.path.join(work, "calib-unpadded")
    os.makedirs(folder)
    for f in sorted(glob.glob(os.path.join(bd.BENCH, "ppocrv4_rec", "calib", "*.npy"))):
        a = np.load(f)
        used = np.nonzero(np.abs(a[0]).sum(axis=(0, 1)) > 1e-6)[0]
        width = max(16, int(used.max()) + 1 if len(used) else a.shape[-1])
        np.save(os.path.join(folder, os.path.basename(f)), np.ascontiguousarray(a[..., :width]))
    return folder


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unpadded", action="store_true", help="calibrate on the lines cropped to their text")
    ap.add_argument("--cross", action="store_true", help="ranges and GPTQ inputs from padded or unpadded lines, crossed")
    args = ap.parse_args()
    chars = bd.ocr_characters(FLOAT)
    small = bd.ppocr_rec()
    big = os.path.join(bd.BENCH, "ppocrv4_rec", "more_lines.npz")
    if not os.path.exists(big):
        xs, labels = bd._ocr_samples(1200, seed=3)
        np.savez(big + ".tmp.npz", x=np.concatenate(xs), labels=np.array(labels))
        os.replace(big + ".tmp.npz", big)
    more = dict(np.load(big))
    sets = {"300": (small["x"], small["labels"]), "1200": (more["x"], more["labels"])}
    ref = {k: exact(FLOAT, x, l, chars) for k, (x, l) in sets.items()}
    float_text, float_probs = decode(FLOAT, sets["1200"][0], chars)
    work = tempfile.mkdtemp(prefix="qk-ocr-rounding-")
    if args.cross:
        cross(work, sets, ref, chars)
        return
    calib = unpadded_calibration(work) if args.unpadded else os.path.join(bd.BENCH, "ppocrv4_rec", "calib")
    batch = "1" if args.unpadded else "8"  # cropped lines differ in width
    print(f"float: exact match {ref['300'].mean():.3f} (300 lines), {ref['1200'].mean():.4f} (1,200 lines)\n")
    print("| variant | exact match, 300 lines | exact match, 1,200 lines | 1,200 lines: only this / only the first row right "
          "| 1,200 lines: same text as float | output SNR (1,200 lines) |")
    print("|---|---|---|---|---|---|")
    base = None
    for label, extra in VARIANTS:
        out = os.path.join(work, f"variant{len(extra)}_{label.split()[0]}.onnx")
        subprocess.run([Q, "quantize", FLOAT, "--input", f"x={calib}", "--batch", batch,
                        "-o", out, "--no-analysis", "--quiet", *extra], check=True, capture_output=True)
        r = {k: exact(out, x, l, chars) for k, (x, l) in sets.items()}
        if base is None:
            base = r["1200"]
        diff = f"{int((r['1200'] & ~base).sum())} / {int((~r['1200'] & base).sum())}"
        text, probs = decode(out, sets["1200"][0], chars)
        same = np.mean([a == b for a, b in zip(text, float_text)])
        snr = float(np.sum((probs - float_probs) ** 2) / np.sum(float_probs ** 2))
        print(f"| {label} | {r['300'].mean():.3f} | {r['1200'].mean():.4f} | {diff} | {same:.4f} | {snr:.4f} |", flush=True)


def cross(work, sets, ref, chars):
    data = {"padded": (os.path.join(bd.BENCH, "ppocrv4_rec", "calib"), "8"), "unpadded": (unpadded_calibration(work), "1")}
    x, labels = sets["1200"]
    print(f"float: exact match {ref['1200'].mean():.4f} (1,200 lines)\n")
    print("| method | ranges from | weight rounding | GPTQ inputs from | exact match, 1,200 lines |")
    print("|---|---|---|---|---|")
    for method in ("default", "minmax"):
        for ranges in ("padded", "unpadded"):
            stats = os.path.join(work, f"{method}_{ranges}.json")
            folder, batch = data[ranges]
            subprocess.run([Q, "calibrate", FLOAT, "--input", f"x={folder}", "--batch", batch, "--method", method,
                            "--stats-out", stats, "--quiet"], check=True, capture_output=True)
            for rounding, source in (("nearest", None), ("gptq", "padded"), ("gptq", "unpadded")):
                out = os.path.join(work, "m.onnx")
                extra = ["--input", f"x={data[source][0]}", "--batch", data[source][1]] if source else []
                subprocess.run([Q, "quantize", FLOAT, "--stats", stats, "--method", method, "--weight-rounding", rounding, "--bias-correction", "off", *extra,
                                "-o", out, "--no-analysis", "--quiet"], check=True, capture_output=True)
                r = exact(out, x, labels, chars)
                print(f"| {method} | {ranges} | {rounding} | {source or ''} | {r.mean():.4f} |", flush=True)


if __name__ == "__main__":
    main()
