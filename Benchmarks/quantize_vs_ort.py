"""Accuracy, time and peak memory of QuantKit's quantizer against ONNX Runtime's quantize_static.

Run from the repository root after `swift build -c release`, scripts/fetch-models.sh and
scripts/export-efficientnet.sh:

    .venv/bin/python Benchmarks/quantize_vs_ort.py [--models fashion_cnn efficientnet_lite0
        ppocrv4_rec ppocrv4_det minilm_l3] [--ort-methods MinMax Entropy Percentile] [--markdown]

For every model both tools get the same calibration items (.npy files made by bench_data.py):
  QuantKit   `quantkit quantize MODEL --input NAME=DIR --batch 8 -o OUT` with default settings
             (uint8 activations, int8 per-channel weights, method `default`, analysis off)
  ORT        onnxruntime.quantization.quantize_static(QDQ, per_channel=True, QUInt8 activations,
             QInt8 weights) once per calibration method; the best method's accuracy is the one
             compared ("its best method"), all are printed.
Each quantizer runs in its own process under /usr/bin/time -v (wall time, peak RSS). Accuracy is
measured by ONNX Runtime running the float and both quantized models on the evaluation set;
latency is ONNX Runtime's batch-1 mean over 50 runs (after 5 warm-up runs) with 2 threads for
the float and the quantized models. PP-OCRv4 det is scored by RapidOCR's DB post-processing
(bench_data.db_boxes): "box hmean" against the pages' drawn lines, "boxes as float" the hmean of
the quantized model's boxes against the float model's (IoU >= 0.5). The fusion column is the share of Conv/MatMul/Gemm nodes that ONNX Runtime's
optimized graph turned into integer kernels (QLinearConv, QLinearMatMul, QGemm,
MatMulIntegerToFloat, ConvInteger/MatMulInteger).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data as bd  # noqa: E402

ROOT = bd.ROOT
BINARY = os.path.join(ROOT, ".build", "release", "quantkit")
OUT = os.path.join(ROOT, "out", "bench")
INTEGER_OPS = {"QLinearConv", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat", "ConvInteger", "MatMulInteger",
               "DynamicQuantizeMatMul"}
FLOAT_OPS = {"Conv", "MatMul", "Gemm", "FusedConv", "FusedMatMul", "FusedGemm"}


def session(path, threads=2):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def batched(s, feeds, batch=32, output=None):
    n = len(next(iter(feeds.values())))
    outs = []
    for i in range(0, n, batch):
        outs.append(s.run([output] if output else None, {k: v[i:i + batch] for k, v in feeds.items()})[0])
    return np.concatenate(outs)


# Per-model: model path, input names, evaluation (path -> dict of metrics), main metric -----------

def eval_fashion(path):
    d = bd.fashion()
    logits = batched(session(path), {"image": d["image"]}, 500)
    return {"top1": float(np.mean(logits.argmax(1) == d["labels"])), "_pred": logits.argmax(1)}


def eval_efficientnet(path):
    d = bd.efficientnet()
    s = session(path)
    lab = batched(s, {"input": d["imagenet"]}, 10)
    photos = batched(s, {"input": d["photos"]}, 16)
    objects = batched(s, {"input": d["objects"]}, 16)
    return {"top1_20": int(np.sum(lab.argmax(1) == d["labels"])), "_pred": photos.argmax(1), "_objects": objects.argmax(1)}


def eval_ocr(path):
    d = bd.ppocr_rec()
    chars = bd.ocr_characters(os.path.join(bd.MODELS, "ppocrv4_rec.onnx"))
    probs = batched(session(path), {"x": d["x"]}, 16)
    preds = bd.ctc_decode(probs, chars)
    return {"exact": float(np.mean([p == l for p, l in zip(preds, d["labels"])])), "_pred": np.array(preds)}


def eval_det(path):
    d = bd.ppocr_det()
    probs = batched(session(path), {"x": d["x"]}, 8)
    found = [bd.db_boxes(p[0]) for p in probs]
    truth = [[list(map(float, b)) for b in page if b[0] >= 0] for page in d["boxes"]]
    hits = sum(bd.match_boxes(f, t) for f, t in zip(found, truth))
    n_found, n_truth = sum(map(len, found)), sum(map(len, truth))
    return {"hmean": 2 * hits / (n_found + n_truth), "_boxes": found, "_probs": probs}


def eval_minilm(path):
    d = bd.minilm()
    s = session(path)
    # Output '461' is the model's mean-pooled sentence embedding [N, 384].
    return {"_emb": batched(s, {"input_ids": d["input_ids"], "attention_mask": d["attention_mask"]}, 16, output="461")}


MODELS = {
    "fashion_cnn": (os.path.join(ROOT, "Tests", "fixtures", "fashion_cnn.onnx"), ["image"], bd.fashion, eval_fashion),
    "efficientnet_lite0": (os.path.join(bd.MODELS, "efficientnet_lite0.onnx"), ["input"], bd.efficientnet, eval_efficientnet),
    "ppocrv4_rec": (os.path.join(bd.MODELS, "ppocrv4_rec.onnx"), ["x"], bd.ppocr_rec, eval_ocr),
    "ppocrv4_det": (os.path.join(bd.MODELS, "ppocrv4_det.onnx"), ["x"], bd.ppocr_det, eval_det),
    "minilm_l3": (os.path.join(bd.MODELS, "minilm_l3.onnx"), ["input_ids", "attention_mask"], bd.minilm, eval_minilm),
}


def compare(name, f, q):
    """Metrics of a quantized model's evaluation `q` against the float one `f`."""
    if name == "fashion_cnn":
        return {"metric": q["top1"], "agree": float(np.mean(q["_pred"] == f["_pred"])), "text": f"top-1 {q['top1']:.4f}"}
    if name == "efficientnet_lite0":
        agree = float(np.mean(q["_pred"] == f["_pred"]))
        objects = float(np.mean(q["_objects"] == f["_objects"]))
        return {"metric": objects, "agree": agree,
                "text": f"top-1 {q['top1_20']}/20, agreement {objects:.4f} on {len(f['_objects'])} object photos, "
                        f"{agree:.4f} on {len(f['_pred'])} opencv/skimage pictures"}
    if name == "ppocrv4_rec":
        return {"metric": q["exact"], "agree": float(np.mean(q["_pred"] == f["_pred"])), "text": f"exact match {q['exact']:.3f}"}
    if name == "ppocrv4_det":
        hits = sum(bd.match_boxes(qb, fb) for qb, fb in zip(q["_boxes"], f["_boxes"]))
        agree = 2 * hits / (sum(map(len, q["_boxes"])) + sum(map(len, f["_boxes"])))
        err = f["_probs"] - q["_probs"]
        snr = float(np.sum(err * err) / np.sum(f["_probs"] * f["_probs"]))
        return {"metric": q["hmean"], "agree": agree,
                "text": f"box hmean {q['hmean']:.4f}, boxes as float {agree:.4f}, output SNR {snr:.4f}"}
    a, b = f["_emb"], q["_emb"]
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"metric": float(cos.mean()), "agree": float(cos.min()),
            "text": f"cosine mean {cos.mean():.4f}, min {cos.min():.4f}"}


def float_text(name, f):
    if name == "fashion_cnn":
        return f"top-1 {f['top1']:.4f}"
    if name == "efficientnet_lite0":
        return f"top-1 {f['top1_20']}/20"
    if name == "ppocrv4_rec":
        return f"exact match {f['exact']:.3f}"
    if name == "ppocrv4_det":
        return f"box hmean {f['hmean']:.4f}"
    return "reference"


# Running the quantizers -------------------------------------------------------------------------

def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time -v; returns (seconds, peak RSS MiB, stdout, stderr)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-v", "-o", tf.name, *cmd], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", tf.read())
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}... exited {r.returncode}: {r.stderr[-2000:]}")
    return wall, (int(rss.group(1)) / 1024 if rss else float("nan")), r.stdout, r.stderr


ORT_CHILD = r"""
import glob, os, sys
import numpy as np
from onnxruntime.quantization import quantize_static, CalibrationDataReader, QuantFormat, QuantType, CalibrationMethod
sys.path.insert(0, sys.argv[4])
import bench_data as bd
model, out, method, name, inputs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5], sys.argv[6].split(",")
class Reader(CalibrationDataReader):
    def __init__(self):
        self.items = iter(bd.calib_items(name, inputs))
    def get_next(self):
        return next(self.items, None)
quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, method))
"""


def fusion(path):
    """(integer-kernel nodes, float Conv/MatMul/Gemm nodes) in ONNX Runtime's optimized graph."""
    ops = bd.optimized_ops(path)
    return sum(o in INTEGER_OPS for o in ops), sum(o in FLOAT_OPS for o in ops)


def latency(path, feeds, runs=50):
    s = session(path)
    for _ in range(5):   # warm-up: the first runs allocate and page in
        s.run(None, feeds)
    t0 = time.perf_counter()
    for _ in range(runs):
        s.run(None, feeds)
    return (time.perf_counter() - t0) / runs * 1e3


def bench(name, methods, qk_methods, env):
    path, inputs, make, evaluate = MODELS[name]
    make()
    os.makedirs(OUT, exist_ok=True)
    f = evaluate(path)
    rows = []
    # QuantKit, default settings as a user runs them (calibration included in the time; it then
    # observes only the tensors it quantizes), then the other methods on one complete statistics
    # file from `quantkit calibrate` (untimed; the method rows time quantization only: the
    # evidence for the `default` rule).
    qk = os.path.join(OUT, f"{name}.qk.onnx")
    stats = os.path.join(OUT, f"{name}.stats.json")
    extra = ["--no-analysis"] if "--no-analysis" in subprocess.run([BINARY, "quantize", "--help"], capture_output=True,
                                                                    text=True).stdout else []
    cmd = [BINARY, "quantize", path, *bd.calib_args(name, inputs), "--batch", "8", "-o", qk, "--quiet"]
    wall, rss, _, _ = timed(cmd + extra, env)
    rows.append(("QuantKit (default)", qk, wall, rss))
    if qk_methods:
        subprocess.run([BINARY, "calibrate", path, *bd.calib_args(name, inputs), "--batch", "8", "--stats-out", stats],
                       check=True, capture_output=True, env=env)
    for m in qk_methods:
        o = os.path.join(OUT, f"{name}.qk_{m}.onnx")
        wall, rss, _, _ = timed([BINARY, "quantize", path, "--stats", stats, "--method", m, "-o", o, "--quiet", *extra], env)
        rows.append((f"QuantKit --method {m} (from stats)", o, wall, rss))
    for m in methods:
        o = os.path.join(OUT, f"{name}.ort_{m.lower()}.onnx")
        try:
            wall, rss, _, _ = timed([sys.executable, "-c", ORT_CHILD, path, o, m, os.path.dirname(os.path.abspath(__file__)),
                                     name, ",".join(inputs)], env)
            rows.append((f"ORT quantize_static {m}", o, wall, rss))
        except RuntimeError as e:
            rows.append((f"ORT quantize_static {m}", None, float("nan"), float("nan")))
            print(f"  {name}: ORT {m} failed: {str(e).splitlines()[-1]}", file=sys.stderr)
    d = np.load(os.path.join(bd.BENCH, name, "eval.npz"))
    one = {k: d[k][:1] for k in inputs} if name != "efficientnet_lite0" else {"input": d["imagenet"][:1]}
    lat_f = latency(path, one)
    results = []
    for label, p, wall, rss in rows:
        if p is None:
            results.append({"tool": label, "error": "failed"})
            continue
        q = evaluate(p)
        c = compare(name, f, q)
        ints, floats = fusion(p)
        results.append({"tool": label, **c, "time_s": wall, "peak_mb": rss, "fused": ints, "unfused": floats,
                        "latency_ms": latency(p, one), "float_latency_ms": lat_f})
    return float_text(name, f), results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--ort-methods", nargs="*", default=["MinMax", "Entropy", "Percentile"])
    ap.add_argument("--qk-methods", nargs="*", default=[], help="QuantKit methods to compare with default (e.g. minmax kl mse percentile)")
    ap.add_argument("--json", help="also write all results here")
    args = ap.parse_args()
    env = dict(os.environ)
    env.setdefault("OPENBLAS_CORETYPE", subprocess.run(["bash", os.path.join(ROOT, "scripts", "openblas-coretype.sh")],
                                                       capture_output=True, text=True).stdout.strip())
    everything = {}
    print("| model | float | tool | quantized accuracy | agreement / min | quantize time s | peak MB | "
          "fused Conv/MatMul/Gemm | ORT latency ms (float → quantized) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        ftext, results = bench(name, args.ort_methods, args.qk_methods, env)
        everything[name] = {"float": ftext, "results": results}
        ort_rows = [r for r in results if r["tool"].startswith("ORT") and "metric" in r]
        best = max(ort_rows, key=lambda r: r["metric"])["tool"] if ort_rows else None
        for r in results:
            if "error" in r:
                print(f"| {name} | {ftext} | {r['tool']} | failed | | | | | |")
                continue
            tag = " (ORT best)" if r["tool"] == best else ""
            print(f"| {name} | {ftext} | {r['tool']}{tag} | {r['text']} | {r['agree']:.4f} | {r['time_s']:.1f} | "
                  f"{r['peak_mb']:.0f} | {r['fused']}/{r['fused'] + r['unfused']} | "
                  f"{r['float_latency_ms']:.2f} → {r['latency_ms']:.2f} |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(everything, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
