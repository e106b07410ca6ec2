#!/usr/bin/env python3
"""Plan building and quantization on long graphs: a chain of N Relu nodes (t{i} -> t{i+1}) with
one [1,4] input, `quantkit run` and `quantkit quantize --input t0=random --no-analysis`, wall time
and peak resident memory (GNU time), for each N.

Usage: .venv/bin/python Benchmarks/long_chain.py [--nodes 1000 4000 20000]
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, ".build", "release", "quantkit")


def timed(args):
    r = subprocess.run(["/usr/bin/time", "-f", "%e %M", BINARY, *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1000:]
    seconds, kb = r.stderr.strip().split("\n")[-1].split()
    return float(seconds), int(kb) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, nargs="+", default=[1000, 4000, 20000])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        x = os.path.join(d, "x.npy")
        np.save(x, np.random.default_rng(0).standard_normal((1, 4)).astype(np.float32))
        print("| nodes | run | run peak | quantize | quantize peak |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for n in a.nodes:
            nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"r{i}") for i in range(n)]
            g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 4])],
                                  [helper.make_tensor_value_info(f"t{n}", TensorProto.FLOAT, [1, 4])])
            model = os.path.join(d, f"chain{n}.onnx")
            onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), model)
            rs, rm = timed(["run", model, "--input", f"t0={x}"])
            qs, qm = timed(["quantize", model, "--input", "t0=random", "--no-analysis", "-o", os.path.join(d, f"q{n}.onnx")])
            print(f"| {n:,} | {rs:.2f} s | {rm:.0f} MB | {qs:.2f} s | {qm:.0f} MB |", flush=True)


if __name__ == "__main__":
    main()
