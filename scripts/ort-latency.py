#!/usr/bin/env python3
"""Times a model in ONNX Runtime (CPU provider) and prints its median latency in milliseconds
as the last line: `quantkit quantize ... --latency-command '.venv/bin/python scripts/ort-latency.py {model}'`.

Inputs are random, of each input's declared type and shape (symbolic dimensions 1, or --dim N).
Usage: ort-latency.py MODEL [--runs 20] [--threads 2] [--dim 1]
"""
import argparse
import time

import numpy as np
import onnxruntime as ort

TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64, "tensor(int64)": np.int64,
         "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dim", type=int, default=1, help="value of symbolic dimensions")
    a = p.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {}
    for i in s.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else a.dim for d in i.shape]
        t = TYPES.get(i.type)
        if t is None:
            raise SystemExit(f"input '{i.name}' has type {i.type}, which this script does not fill")
        feed[i.name] = (rng.random(shape) * 2 - 1).astype(t) if np.issubdtype(t, np.floating) else np.zeros(shape, t)
    for _ in range(3):
        s.run(None, feed)
    times = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        s.run(None, feed)
        times.append((time.perf_counter() - t0) * 1000)
    print(f"median of {a.runs} runs ({a.threads} threads)")
    print(f"{float(np.median(times)):.3f}")


if __name__ == "__main__":
    main()
