"""Perplexity, size, speed and cost of quantizing the decoder fixture (issue 24), QuantKit beside
ONNX Runtime's MatMulNBitsQuantizer, in one run.

    .venv/bin/python Benchmarks/decoder_int4.py [--markdown]

The model is Tests/fixtures/gpt (a byte-level GPT, scripts/train-gpt-fixture.py); every method
quantizes both exports, gpt.onnx (no cache) and gpt_kv.onnx (past/present key-values).

- Perplexity: the no-cache model on the held-out text (non-overlapping 128-byte windows).
- Size: the no-cache model file.
- Latency, in ONNX Runtime at batch 1 with 2 threads, of the KV model:
  - prefill: 64 tokens in one run, ms per token;
  - decode: one token after a past of 64, ms per token.
  Each is the lowest of 5 medians of 100 runs, after 5 warm-up runs (the model is tiny: a run
  takes a tenth of a millisecond, and single medians varied by 1.8× between runs of this script).
- Quantize seconds and peak MiB: for QuantKit, `quantkit quantize` under /usr/bin/time; for
  ONNX Runtime, its quantizer in a child Python process, VmHWM at the end.

Calibration for QuantKit's GPTQ/AWQ and for int8: 32 windows of 128 bytes of the training text.
ONNX Runtime's algorithms are each tried; one that cannot run here (a missing package) is
reported with its error.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Benchmarks"))
import bench_data as bd  # noqa: E402
BINARY = os.path.join(ROOT, ".build", "release", "quantkit")
GPT = os.path.join(ROOT, "Tests", "fixtures", "gpt")
OUT = os.path.join(ROOT, "out", "bench", "decoder")
sys.path.insert(0, os.path.join(ROOT, "Tests", "interop"))

ORT_CHILD = r"""
import logging, sys, time
import onnx
from onnxruntime.quantization import matmul_nbits_quantizer as mnq
logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
import glob
import numpy as np
from onnxruntime.quantization import CalibrationDataReader
src, dst, algo, calib = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

class Reader(CalibrationDataReader):
    def __init__(self):
        m = onnx.load(src)
        past = [i.name for i in m.graph.input if i.name.startswith("past")]
        self.items = iter([{"input_ids": np.load(f), **{p: np.zeros((1, 4, 0, 24), np.float32) for p in past}}
                           for f in sorted(glob.glob(calib + "/*.npy"))])
    def get_next(self):
        return next(self.items, None)

t0 = time.perf_counter()
config = None
if algo == "HQQ":
    config = mnq.HQQWeightOnlyQuantConfig(block_size=32, bits=4)
elif algo == "GPTQ":
    config = mnq.GPTQWeightOnlyQuantConfig(calibration_data_reader=Reader(), block_size=32)
elif algo == "RTN":
    config = mnq.RTNWeightOnlyQuantConfig()
elif algo == "KQuant":
    config = mnq.KQuantWeightOnlyQuantConfig()
elif algo == "NVAWQ":
    config = mnq.NVAWQWeightOnlyQuantConfig(tokenizer_dir=None)
ops = ("MatMul", "Gather") if algo == "DEFAULT_GATHER" else None
q = mnq.MatMulNBitsQuantizer(onnx.load(src), block_size=32, is_symmetric=False, algo_config=config, op_types_to_quantize=ops)
q.process()
q.model.save_model_to_file(dst)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print("RESULT", time.perf_counter() - t0, hwm)
"""


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def latency(path):
    s = session(path)
    names = [i.name for i in s.get_inputs() if i.name != "input_ids"]
    ids = np.frombuffer(open(os.path.join(GPT, "heldout.txt"), "rb").read()[:65], np.uint8).astype(np.int64)[None]
    empty = {n: np.zeros((1, 4, 0, 24), np.float32) for n in names}
    outs = [o.name for o in s.get_outputs()]

    def timed(feed, rounds=5, runs=100):
        for _ in range(5):
            s.run(None, feed)
        best = float("inf")
        for _ in range(rounds):
            t = []
            for _ in range(runs):
                t0 = time.perf_counter()
                r = s.run(None, feed)
                t.append(time.perf_counter() - t0)
            best = min(best, float(np.median(t)))
        return best * 1e3, r
    prefill, r = timed({"input_ids": ids[:, :64], **empty})
    past = {n: v for n, v in zip(outs[1:], r[1:])}
    decode, _ = timed({"input_ids": ids[:, 64:65], **{n: past[n.replace("past", "present")] for n in names}})
    return prefill / 64, decode


def quantkit(src, dst, args):
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-v", "-o", tf.name, BINARY, "quantize", src, "-o", dst, "--quiet", "--no-analysis", *args],
                           capture_output=True, text=True)
        wall = time.perf_counter() - t0
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", tf.read())
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return wall, int(rss.group(1)) / 1024


# ONNX Runtime's HQQ, GPTQ and NVIDIA AWQ need torch: they run in the venv of
# scripts/requirements-ort-peers.txt when it exists (python3 -m venv .cache/ort-peers-venv, then
# pip install -r scripts/requirements-ort-peers.txt), else in this Python.
PEER_PYTHON = os.path.join(ROOT, ".cache", "ort-peers-venv", "bin", "python")


def ort_quantize(src, dst, algo, calib):
    python = PEER_PYTHON if os.access(PEER_PYTHON, os.X_OK) else sys.executable
    r = subprocess.run([python, "-c", ORT_CHILD, src, dst, algo, calib], capture_output=True, text=True)
    if r.returncode != 0:
        last = [l for l in r.stderr.strip().splitlines() if l.strip()][-1] if r.stderr.strip() else "failed"
        raise RuntimeError(last)
    secs, hwm = r.stdout.split("RESULT")[-1].split()
    return float(secs), int(hwm) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    import test_decoder as td
    calib = td.training_windows(tempfile.mkdtemp(prefix="gptcal-"))
    data = ["--input", f"input_ids={calib}"]
    rows = []
    variants = [("float", None, None),
                ("QuantKit int8 W8A8 QDQ", "qk", data),
                ("QuantKit int4 RTN", "qk", ["--weight-only", "int4", "--block-size", "32", "--method", "rtn"]),
                ("QuantKit int4 RTN, embeddings int4 too", "qk", ["--weight-only", "int4", "--block-size", "32", "--method", "rtn", "--quantize-embeddings"]),
                ("QuantKit int4 GPTQ", "qk", ["--weight-only", "int4", "--block-size", "32", "--method", "gptq", *data]),
                ("QuantKit int4 AWQ", "qk", ["--weight-only", "int4", "--block-size", "32", "--method", "awq", *data]),
                ("QuantKit int4 GPTQ, embeddings int4 too", "qk", ["--weight-only", "int4", "--block-size", "32", "--method", "gptq", "--quantize-embeddings", *data]),
                ("ONNX Runtime int4 default (RTN, MatMul only)", "ort", "DEFAULT"),
                ("ONNX Runtime int4 default, embeddings int4 too", "ort", "DEFAULT_GATHER"),
                ("ONNX Runtime int4 RTN", "ort", "RTN"),
                ("ONNX Runtime int4 HQQ", "ort", "HQQ"),
                ("ONNX Runtime int4 GPTQ", "ort", "GPTQ"),
                ("ONNX Runtime int4 k-quant", "ort", "KQuant"),
                ("ONNX Runtime int4 NVIDIA AWQ", "ort", "NVAWQ")]
    for label, tool, args in variants:
        paths, cost = {}, None
        try:
            for kind, src in [("nocache", td.NOCACHE), ("kv", td.KV)]:
                if tool is None:
                    paths[kind] = src
                    continue
                dst = os.path.join(OUT, f"{re.sub('[^a-z0-9]+', '_', label.lower())}.{kind}.onnx")
                c = quantkit(src, dst, args) if tool == "qk" else ort_quantize(src, dst, args, calib)
                if kind == "nocache":
                    cost = c
                paths[kind] = dst
        except RuntimeError as e:
            rows.append((label, f"could not run: {e}", "", "", "", "", ""))
            print(" | ".join(rows[-1]), flush=True)
            continue
        ppl = td.perplexity(paths["nocache"])
        pre, dec = latency(paths["kv"])
        size = os.path.getsize(paths["nocache"]) / 1024
        rows.append((label, f"{ppl:.4f}", f"{size:.0f} KiB", f"{pre:.3f}", f"{dec:.3f}",
                     f"{cost[0]:.2f}" if cost else "–", f"{cost[1]:.0f}" if cost else "–"))
        print(" | ".join(rows[-1]), flush=True)
    header = ("model", "held-out perplexity", "size", "prefill ms/token", "decode ms/token", "quantize s", "quantize peak MiB")
    if a.markdown:
        bd.markdown_table(header, rows)


if __name__ == "__main__":
    main()
