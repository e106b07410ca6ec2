"""Models saved by ONNX Runtime's optimizers and float16 converter, quantized by QuantKit beside
their originals.

    OPENBLAS_CORETYPE=SkylakeX .venv/bin/python Benchmarks/ort_optimized_models.py

- MiniLM-L3 through `onnxruntime.transformers.optimizer` (model_type bert, opt_level 0):
  EmbedLayerNormalization, Attention, SkipLayerNormalization and BiasGelu (com.microsoft).
- EfficientNet-Lite0 saved by an ONNX Runtime session at ORT_ENABLE_EXTENDED
  (`optimized_model_filepath`): 33 FusedConv (Conv + Clip).
- Both converted to float16 by `onnxruntime.transformers.float16.convert_float_to_float16`
  (inputs and outputs float16 too).

Each is quantized with QuantKit's defaults on the benchmark calibration sets (bench_data.py) and
measured in ONNX Runtime against its own float model: MiniLM embedding cosine on the 159
evaluation sentences, EfficientNet-Lite0 top-1 agreement on the object photos and pictures.
"""
import collections
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data as bd  # noqa: E402

Q = os.path.join(bd.ROOT, ".build", "release", "quantkit")


def quantize(src, out, data_args):
    t0 = time.perf_counter()
    subprocess.run([Q, "quantize", src, *data_args, "--batch", "8", "-o", out, "--no-analysis", "--quiet"], check=True, capture_output=True)
    return time.perf_counter() - t0


def integer_share(path):
    ops = collections.Counter(bd.optimized_ops(path))
    ints = ops["QLinearConv"] + ops["QGemm"] + ops["QLinearMatMul"] + ops["MatMulIntegerToFloat"]
    floats = ops["Conv"] + ops["FusedConv"] + ops["Gemm"] + ops["FusedGemm"] + ops["MatMul"] + ops["FusedMatMul"]
    return f"{ints}/{ints + floats}" + (f" (+{ops['Attention']} float Attention)" if ops["Attention"] else "")


def contrib_ops(path):
    ops = collections.Counter(n.op_type for n in onnx.load(path).graph.node if n.domain == "com.microsoft")
    return ", ".join(f"{n} {op}" for op, n in sorted(ops.items())) or "none"


def half(src, work):
    """`src` converted to float16 (inputs and outputs included) by ONNX Runtime's converter."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    out = os.path.join(work, os.path.basename(src).replace(".onnx", "_fp16.onnx"))
    onnx.save(convert_float_to_float16(onnx.load(src), keep_io_types=False), out)
    return out


def minilm_rows(work):
    from onnxruntime.transformers import optimizer
    src = os.path.join(bd.MODELS, "minilm_l3.onnx")
    opt = os.path.join(work, "minilm_ort.onnx")
    optimizer.optimize_model(src, model_type="bert", num_heads=12, hidden_size=384, opt_level=0).save_model_to_file(opt)
    ev = bd.minilm()
    args = bd.calib_args("minilm_l3", ["input_ids", "attention_mask"])

    def embed(path):
        s = bd.ort_session(path)
        out = s.get_outputs()[-1].name
        return np.concatenate([s.run([out], {k: ev[k][i:i + 32] for k in ("input_ids", "attention_mask")})[0]
                               for i in range(0, len(ev["input_ids"]), 32)]).astype(np.float32)
    for label, path in (("original", src), ("ONNX Runtime transformer optimizer", opt), ("float16 converter", half(src, work))):
        qpath = os.path.join(work, os.path.basename(path).replace(".onnx", ".q.onnx"))
        seconds = quantize(path, qpath, args)
        f, q = embed(path), embed(qpath)
        cos = (f * q).sum(1) / np.linalg.norm(f, axis=1) / np.linalg.norm(q, axis=1)
        yield ("minilm_l3", label, contrib_ops(path), f"cosine mean {cos.mean():.4f}, min {cos.min():.4f}", integer_share(qpath), seconds)


def efficientnet_rows(work):
    src = os.path.join(bd.MODELS, "efficientnet_lite0.onnx")
    opt = os.path.join(work, "efficientnet_ort.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = opt
    ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    ev = bd.efficientnet()
    args = bd.calib_args("efficientnet_lite0", ["input"])

    def top1(path, x):
        s = bd.ort_session(path)
        x = x.astype(np.float16) if s.get_inputs()[0].type == "tensor(float16)" else x
        return np.concatenate([s.run(None, {"input": x[i:i + 32]})[0] for i in range(0, len(x), 32)]).argmax(1)
    for label, path in (("original", src), ("ONNX Runtime ORT_ENABLE_EXTENDED", opt), ("float16 converter", half(src, work))):
        qpath = os.path.join(work, os.path.basename(path).replace(".onnx", ".q.onnx"))
        seconds = quantize(path, qpath, args)
        agree = {k: float((top1(path, ev[k]) == top1(qpath, ev[k])).mean()) for k in ("objects", "photos")}
        yield ("efficientnet_lite0", label, contrib_ops(path), f"agreement {agree['objects']:.4f} objects, {agree['photos']:.4f} pictures",
               integer_share(qpath), seconds)


def main():
    work = tempfile.mkdtemp(prefix="qk-ort-optimized-")
    print("| model | saved by | contrib ops in it | quantized vs its float model | integer Conv/Gemm/MatMul in ORT | quantize s |")
    print("|---|---|---|---|---|---|")
    for rows in (minilm_rows(work), efficientnet_rows(work)):
        for model, label, ops, metric, share, seconds in rows:
            print(f"| {model} | {label} | {ops} | {metric} | {share} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
