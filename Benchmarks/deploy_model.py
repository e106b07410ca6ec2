"""The deploy model (`quantize --format qoperator`, NAME.qop.onnx: ONNX Runtime's integer
operators written directly) against its QDQ twin, on every benchmark model, in one run:

    .venv/bin/python Benchmarks/deploy_model.py [--models fashion_cnn efficientnet_lite0 ...]
                                                [--items 32] [--runs 30] [--quantkit PATH]

Per model: `quantkit quantize MODEL --input/--list CALIB --format qoperator --no-analysis` (the
calibration data of quantize_vs_ort.py, bench_data.py writes it); then on the first --items
calibration items both models run in ONNX Runtime 1.23 (CPU, 2 threads): the QDQ model with its
default graph optimizations (the QDQ fusion), the deploy model with optimizations off (ORT_DISABLE_ALL:
what it runs is what is written) and on. Columns: converted ops of the deploy model; the cosine of
every output with the QDQ model's (min over items and outputs); the largest |difference| in units
of the output's DequantizeLinear scale where the output has one (else of the QDQ output's std);
the task metric of both (quantize_vs_ort.compare against float on the evaluation set, disjoint
from calibration); latency at batch 1 on the first item: mean of --runs runs after 5 warm-ups,
the three sessions interleaved, best of three rounds.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data as bd  # noqa: E402
import quantize_vs_ort as qv  # noqa: E402

OUT = os.path.join(bd.ROOT, "out", "deploy")


def session(path, optimize):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def output_steps(path):
    """Per graph output: the scale of the DequantizeLinear producing it, when one does."""
    m = onnx.load(path)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    prod = {o: n for n in m.graph.node for o in n.output}
    steps = {}
    for o in m.graph.output:
        n = prod.get(o.name)
        if n is not None and n.op_type == "DequantizeLinear" and n.input[1] in inits and inits[n.input[1]].size == 1:
            steps[o.name] = float(inits[n.input[1]])
    return steps


def latency(sessions, feed, runs):
    best = [float("inf")] * len(sessions)
    for s in sessions:
        for _ in range(5):
            s.run(None, feed)
    for _ in range(3):
        for k, s in enumerate(sessions):
            t = time.perf_counter()
            for _ in range(runs):
                s.run(None, feed)
            best[k] = min(best[k], (time.perf_counter() - t) / runs * 1000)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(qv.MODELS), choices=list(qv.MODELS))
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--quantkit", default=qv.BINARY)
    args = ap.parse_args()
    binary = "/tmp/quantkit-deploy"
    shutil.copy(args.quantkit, binary)
    env = dict(os.environ)
    env.setdefault("OPENBLAS_CORETYPE", subprocess.run(["bash", os.path.join(bd.ROOT, "scripts", "openblas-coretype.sh")],
                                                       capture_output=True, text=True).stdout.strip())
    os.makedirs(OUT, exist_ok=True)
    print("| model | converted | cosine vs QDQ (min) | max diff (steps) | metric QDQ | metric deploy | QDQ ms | deploy ms (opt off) | deploy ms (opt on) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        path, inputs, make, evaluate = qv.MODELS[name]
        try:
            make()
            out = os.path.join(OUT, f"{name}.onnx")
            r = subprocess.run([binary, "quantize", path, *bd.calib_args(name, inputs), "-o", out, "--quiet", "--no-analysis", "--format", "qoperator"],
                               capture_output=True, text=True, env=env)
            if r.returncode != 0:
                raise RuntimeError(r.stderr.strip().splitlines()[-1])
            qop = out[:-len(".onnx")] + ".qop.onnx"
            ops = {}
            for n in onnx.load(qop).graph.node:
                if n.op_type.startswith("Q") and n.op_type not in ("QuantizeLinear",) or n.op_type == "MatMulIntegerToFloat":
                    ops[n.op_type] = ops.get(n.op_type, 0) + 1
            a, b, c = session(out, True), session(qop, False), session(qop, True)
            names = [o.name for o in a.get_outputs()]
            steps = output_steps(out)
            feeds = bd.calib_items(name, inputs)[: args.items]
            cos, diff = 1.0, 0.0
            for feed in feeds:
                ya, yb = a.run(None, feed), b.run(None, feed)
                for o, u, v in zip(names, ya, yb):
                    u, v = np.asarray(u, np.float64).ravel(), np.asarray(v, np.float64).ravel()
                    if np.linalg.norm(u) > 0 and np.linalg.norm(v) > 0:
                        cos = min(cos, float(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))
                    unit = steps.get(o) or (float(u.std()) or 1.0)
                    diff = max(diff, float(np.abs(u - v).max()) / unit)
            f = evaluate(path)
            mq, md = qv.compare(name, f, evaluate(out)), qv.compare(name, f, evaluate(qop))
            ta, tb, tc = latency([a, b, c], feeds[0], args.runs)
            conv = ", ".join(f"{k} {v}" for k, v in sorted(ops.items()))
            print(f"| {name} | {conv} | {cos:.6f} | {diff:.2f} | {mq['text']} | {md['text']} | {ta:.3f} | {tb:.3f} | {tc:.3f} |", flush=True)
        except Exception as e:  # noqa: BLE001 - the other models go on
            msg = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
            print(f"| {name} | failed: {msg} | | | | | | | |", flush=True)


if __name__ == "__main__":
    main()
