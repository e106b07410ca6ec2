"""Where EfficientNet-Lite0's quantization error comes from: weights, activations, or both.

    OPENBLAS_CORETYPE=SkylakeX .venv/bin/python Benchmarks/efficientnet_error_budget.py

Quantizes with weight rounding `nearest` and no bias correction, with the defaults (`nearest`,
bias correction of the depthwise Convs), with `--bias-correction all`, with
`--weight-rounding gptq` and with GPTQ and `--bias-correction all`, on the benchmark calibration set (bench_data.py: 116 photos), then measures in ONNX Runtime,
against the float model, three variants of each QDQ model:
  full              the model as written;
  weights only      every activation QuantizeLinear → DequantizeLinear pair replaced by a Clip to
                    the pair's representable range (no rounding, same saturation, so absorbed
                    Relu6 still clip);
  activations only  every weight DequantizeLinear replaced by the float model's weight.
Metrics: top-1 agreement with float on the 268 object photos and the 307 opencv/skimage
pictures, top-1 on foolbox's 20 labelled photos, output SNR (noise/signal) on the objects.
The modified models run with ORT_DISABLE_ALL (ONNX Runtime's QDQ fusions assume the standard
layout).

With --methods M1 M2 ... it prints instead one row per activation range method (`--method M`,
round-to-nearest weights): activations only, and the full model.

With --keep-float it prints instead rows for Convs kept float (they run float in ONNX Runtime
since QuantKit's per-axis input DequantizeLinear, session 7): the stem Conv and block 0's
depthwise Conv (whose float output is then not quantized), with the defaults and with GPTQ +
bias correction, and GPTQ + bias correction with `--auto-keep-float 2` (the analysis's choice).

With --margins it prints instead, for the defaults, GPTQ + bias correction, and GPTQ + bias
correction with the stem region on 16-bit activations (2 of 50 Convs then run float in ONNX
Runtime), the agreement split by the float model's top-1 minus top-2 probability.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data as bd  # noqa: E402

Q = os.path.join(bd.ROOT, ".build", "release", "quantkit")
FLOAT = os.path.join(bd.MODELS, "efficientnet_lite0.onnx")


def run(path, x, optimized=True):
    s = bd.ort_session(path, optimized)
    return np.concatenate([s.run(None, {"input": x[i:i + 32]})[0] for i in range(0, len(x), 32)])


def weights_only(path, out):
    m = onnx.load(path)
    g = m.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    clipped = set()
    for n in g.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits:
            scale, zp = float(inits[n.input[1]]), inits[n.input[2]]
            lo, hi = (0, 255) if zp.dtype == np.uint8 else (-128, 127)
            names = (n.output[0] + "_lo", n.output[0] + "_hi")
            for name, v in zip(names, ((lo - int(zp)) * scale, (hi - int(zp)) * scale)):
                g.initializer.append(numpy_helper.from_array(np.array(v, np.float32), name))
            n.op_type = "Clip"
            n.input[:] = [n.input[0], *names]
            clipped.add(n.output[0])
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in clipped:
            n.op_type = "Identity"
            del n.input[1:]
    onnx.save(m, out)


def activations_only(path, out):
    m = onnx.load(path)
    floats = {i.name: i for i in onnx.load(FLOAT).graph.initializer}
    for n in m.graph.node:
        base = n.input[0][:-len("_quantized")] if n.op_type == "DequantizeLinear" and n.input[0].endswith("_quantized") else None
        if base in floats:
            m.graph.initializer.append(floats[base])
            n.op_type = "Identity"
            n.input[:] = [base]
            del n.attribute[:]
    onnx.save(m, out)


def quantize(path, *extra, analysis=False):
    subprocess.run([Q, "quantize", FLOAT, "--input", f"input={os.path.join(bd.BENCH, 'efficientnet_lite0', 'calib')}",
                    "--batch", "8", "-o", path, *([] if analysis else ["--no-analysis"]), "--quiet", *extra],
                   check=True, capture_output=True)


def measure(path, optimized, sets, ref, labels):
    """Agreement on objects and pictures, top-1 of the 20 labelled photos, output SNR (objects)."""
    r = {k: run(path, x, optimized) for k, x in sets.items()}
    e = (r["objects"] - ref["objects"]).ravel()
    snr = float(e @ e / (ref["objects"].ravel() @ ref["objects"].ravel()))
    agree = {k: float((r[k].argmax(1) == ref[k].argmax(1)).mean()) for k in ("objects", "photos")}
    return agree["objects"], agree["photos"], int((r["imagenet"].argmax(1) == labels).sum()), snr


def methods_table(methods, sets, ref, labels, work):
    print("| `--method` | activations only: objects | pictures | output SNR | full model: objects | pictures | output SNR |")
    print("|---|---|---|---|---|---|---|")
    for m in methods:
        qpath = os.path.join(work, f"method_{m}.onnx")
        quantize(qpath, "--method", m, "--bias-correction", "off")
        activations_only(qpath, qpath + ".a.onnx")
        ao, ap, _, asnr = measure(qpath + ".a.onnx", False, sets, ref, labels)
        fo, fp, _, fsnr = measure(qpath, True, sets, ref, labels)
        print(f"| {m} | {ao:.4f} | {ap:.4f} | {asnr:.5f} | {fo:.4f} | {fp:.4f} | {fsnr:.5f} |")


def margins_table(sets, ref, labels, work):
    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    top2 = {k: np.sort(softmax(ref[k]), 1)[:, -2:] for k in ("objects", "photos")}
    margin = {k: t[:, 1] - t[:, 0] for k, t in top2.items()}
    cuts = (0.05, 0.10, 0.20)
    head = " | ".join(f"{k} margin > {c:.2f}" for k in ("objects", "pictures") for c in cuts)
    print(f"| settings | objects: all | pictures: all | {head} | top-1 of 20 | fused Conv/Gemm |")
    print("|---|---|---|" + "---|" * (2 * len(cuts)) + "---|---|")
    stem = "/_swish/Clip_output_0"
    for label, extra in (("defaults", []), ("gptq + bias correction", ["--weight-rounding", "gptq", "--bias-correction", "all"]),
                         ("gptq + bias correction + 16-bit stem region", ["--weight-rounding", "gptq", "--bias-correction", "all",
                                                                          "--subgraph", f"input:{stem}:bits=16"])):
        qpath = os.path.join(work, f"margins_{len(extra)}.onnx")
        quantize(qpath, *extra)
        r = {k: run(qpath, x) for k, x in sets.items()}
        agree = {k: r[k].argmax(1) == ref[k].argmax(1) for k in ("objects", "photos")}
        cells = [f"{agree[k][margin[k] > c].mean():.4f} ({int((margin[k] > c).sum())})" for k in ("objects", "photos") for c in cuts]
        top1 = int((r["imagenet"].argmax(1) == labels).sum())
        print(f"| {label} | {agree['objects'].mean():.4f} | {agree['photos'].mean():.4f} | {' | '.join(cells)} | {top1}/20 | {fused(qpath)} |",
              flush=True)


def keep_float_table(sets, ref, labels, work):
    print("| settings | agreement, 268 objects | 307 pictures | top-1 of 20 | output SNR (objects) | fused Conv/Gemm |")
    print("|---|---|---|---|---|---|")
    stem = ["--exclude-node", "/_conv_stem/Conv", "--exclude-node", "/_blocks.0/_depthwise_conv/Conv"]
    rounding = ["--weight-rounding", "gptq", "--bias-correction", "all"]
    for k, (label, extra) in enumerate((("defaults", []), ("defaults, stem + block 0 depthwise Conv float", stem),
                                        ("gptq + bias correction", rounding),
                                        ("gptq + bias correction, stem + block 0 depthwise Conv float", rounding + stem),
                                        ("gptq + bias correction, `--auto-keep-float 2`", rounding + ["--auto-keep-float", "2"]))):
        qpath = os.path.join(work, f"keep_{k}.onnx")
        quantize(qpath, *extra, analysis="--auto-keep-float" in extra)
        objects, photos, top1, snr = measure(qpath, True, sets, ref, labels)
        print(f"| {label} | {objects:.4f} | {photos:.4f} | {top1}/20 | {snr:.5f} | {fused(qpath)} |", flush=True)


def fused(path):
    """'integer / all' Conv and Gemm nodes in ONNX Runtime's optimized graph."""
    ops = bd.optimized_ops(path)
    ints = sum(o in ("QLinearConv", "QGemm") for o in ops)
    return f"{ints}/{ints + sum(o in ('Conv', 'FusedConv', 'Gemm', 'FusedGemm') for o in ops)}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", nargs="*", help="range methods to compare instead (e.g. default mse percentile minmax kl kl_v2 kld)")
    ap.add_argument("--margins", action="store_true", help="agreement by the float model's top-1/top-2 margin instead")
    ap.add_argument("--keep-float", action="store_true", help="Convs kept float (stem, --auto-keep-float) instead")
    args = ap.parse_args()
    ev = bd.efficientnet()
    sets = {"objects": ev["objects"], "photos": ev["photos"], "imagenet": ev["imagenet"]}
    ref = {k: run(FLOAT, x) for k, x in sets.items()}
    work = tempfile.mkdtemp(prefix="qk-budget-")
    if args.methods:
        methods_table(args.methods, sets, ref, ev["labels"], work)
        return
    if args.margins:
        margins_table(sets, ref, ev["labels"], work)
        return
    if args.keep_float:
        keep_float_table(sets, ref, ev["labels"], work)
        return
    print("| weight rounding | variant | agreement, 268 objects | agreement, 307 pictures | top-1 of 20 | output SNR (objects) |")
    print("|---|---|---|---|---|---|")
    for label_, rounding, extra in (("nearest", "nearest", ["--bias-correction", "off"]),
                                    ("nearest + depthwise bias correction (default)", "nearest", []),
                                    ("nearest + bias correction", "nearest", ["--bias-correction", "all"]),
                                    ("gptq", "gptq", ["--bias-correction", "off"]), ("gptq + bias correction", "gptq", ["--bias-correction", "all"])):
        qpath = os.path.join(work, f"{label_.replace(' ', '_')}.onnx")
        quantize(qpath, "--weight-rounding", rounding, *extra)
        variants = [("full", qpath, True)]
        weights_only(qpath, qpath + ".w.onnx")
        variants.append(("weights only", qpath + ".w.onnx", False))
        if label_ == "nearest":
            activations_only(qpath, os.path.join(work, "a.onnx"))
            variants.append(("activations only", os.path.join(work, "a.onnx"), False))
        for label, path, optimized in variants:
            objects, photos, top1, snr = measure(path, optimized, sets, ref, ev["labels"])
            print(f"| {label_ if label != 'activations only' else '(float weights)'} | {label} | {objects:.4f} | "
                  f"{photos:.4f} | {top1}/20 | {snr:.5f} |")


if __name__ == "__main__":
    main()
