"""How closely QuantKit's executor (the analysis's fake-quant simulation) reproduces ONNX Runtime
on the same QDQ model, and how closely ONNX Runtime reproduces itself.

    OPENBLAS_CORETYPE=SkylakeX .venv/bin/python Benchmarks/simulation_vs_ort.py [--items 32]

For each model: quantize with QuantKit's defaults on the benchmark calibration set (bench_data.py),
then run the QDQ model on the first --items evaluation items four ways: QuantKit's executor as the
analysis simulates it (`quantkit run --integer-conv`: DequantizeLinear → Conv → QuantizeLinear
groups as integer QLinearConv), QuantKit's executor node by node (`quantkit run`), ONNX Runtime
with its optimizations (QDQ groups fused into integer kernels) and ONNX Runtime with
ORT_DISABLE_ALL (every QuantizeLinear/DequantizeLinear run as written, the reference semantics).
Prints the cosine of the outputs for each pair. Then, on 4 items, it dumps
every tensor of the QDQ model from QuantKit and from unoptimized ONNX Runtime (export-all-outputs)
and finds the first QuantizeLinear whose integers differ: the share of differing elements, and
how many of them are rounding ties (x/scale within 1e-4 of k + 0.5 in both runs, where a one-ulp
difference in the float input decides the rounding direction).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data as bd  # noqa: E402

Q = os.path.join(bd.ROOT, ".build", "release", "quantkit")
MODELS = {"efficientnet_lite0": ("input",),
          "ppocrv4_rec": ("x",)}


def qk(*args):
    r = subprocess.run([Q, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"quantkit {' '.join(args)} failed: {r.stderr}")
    return r.stdout


def eval_items(name):
    d = np.load(os.path.join(bd.BENCH, name, "eval.npz"))
    return d["objects"] if name == "efficientnet_lite0" else d["x"]


def ort_run(path, feeds, optimized):
    s = bd.ort_session(path, optimized)
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, feeds)))


def qk_run(path, input_name, x, work, tag, integer_conv=False):
    np.save(os.path.join(work, f"{tag}.npy"), x)
    out = os.path.join(work, f"{tag}.out")
    shutil.rmtree(out, ignore_errors=True)
    qk("run", path, "--input", f"{input_name}={os.path.join(work, tag + '.npy')}", "--output-dir", out,
       *(["--integer-conv"] if integer_conv else []))
    return out


def cosine(a, b):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def first_integer_difference(qpath, input_name, x, work):
    everything = os.path.join(work, "all.onnx")
    qk("export-all-outputs", qpath, "-o", everything)
    theirs = ort_run(everything, {input_name: x}, optimized=False)
    out = qk_run(everything, input_name, x, work, "x4")
    m = onnx.load(everything)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    differing = 0
    first = None
    for n in m.graph.node:
        if n.op_type != "QuantizeLinear" or n.input[0] in inits:
            continue
        a = theirs[n.output[0]].astype(np.int64)
        b = np.load(os.path.join(out, n.output[0].replace("/", "_") + ".npy")).astype(np.int64)
        if np.array_equal(a, b):
            continue
        differing += 1
        if first is None:
            scale = inits[n.input[1]]
            xa = theirs[n.input[0]] / scale
            xb = np.load(os.path.join(out, n.input[0].replace("/", "_") + ".npy")) / scale
            diff = a != b
            ties = (np.abs(np.abs(xa - np.floor(xa)) - 0.5) < 1e-4) & (np.abs(np.abs(xb - np.floor(xb)) - 0.5) < 1e-4)
            first = (n.input[0], float(diff.mean()), int(np.abs(a - b).max()), int((diff & ties).sum()), int(diff.sum()),
                     float(np.abs(theirs[n.input[0]] - np.load(os.path.join(out, n.input[0].replace("/", "_") + ".npy"))).max()))
    quantizers = sum(1 for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits)
    return first, differing, quantizers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--items", type=int, default=32)
    args = ap.parse_args()
    rows, notes = [], []
    for name in args.models:
        input_name = MODELS[name][0]
        work = tempfile.mkdtemp(prefix=f"qk-simgap-{name}-")
        qpath = os.path.join(work, name + ".q.onnx")
        qk("quantize", os.path.join(bd.MODELS, name + ".onnx"), "--input", f"{input_name}={os.path.join(bd.BENCH, name, 'calib')}",
           "--batch", "8", "-o", qpath, "--no-analysis", "--quiet")
        x = eval_items(name)[:args.items]
        m = onnx.load(qpath)
        oname = m.graph.output[0].name
        sim = np.load(os.path.join(qk_run(qpath, input_name, x, work, "x", integer_conv=True), oname.replace("/", "_") + ".npy"))
        written = np.load(os.path.join(qk_run(qpath, input_name, x, work, "x"), oname.replace("/", "_") + ".npy"))
        fused = ort_run(qpath, {input_name: x}, optimized=True)[oname]
        reference = ort_run(qpath, {input_name: x}, optimized=False)[oname]
        rows.append((name, cosine(sim, fused), cosine(written, reference), cosine(written, fused), cosine(fused, reference)))
        first, differing, quantizers = first_integer_difference(qpath, input_name, x[:4], work)
        if first:
            t, share, maxd, ties, diffs, dx = first
            notes.append(f"- {name}: {differing} of {quantizers} activation QuantizeLinear outputs differ somewhere (4 items); "
                         f"the first is `{t}`: {share:.5f} of its elements, by at most {maxd}, {ties} of {diffs} differing elements "
                         f"are rounding ties, largest float difference of its input {dx:.2e}")
        else:
            notes.append(f"- {name}: all {quantizers} activation QuantizeLinear outputs are identical (4 items)")
    print("| model | QuantKit simulation (integer Conv) vs ORT (fused) | QuantKit as written vs ORT as written "
          "| QuantKit as written vs ORT (fused) | ORT fused vs ORT as written |")
    print("|---|---|---|---|---|")
    for name, a, b, c, d in rows:
        print(f"| {name} | {a:.6f} | {b:.6f} | {c:.6f} | {d:.6f} |")
    print()
    print("\n".join(notes))


if __name__ == "__main__":
    main()
