"""The same Python lines with ONNX Runtime's quantizer and with QuantKit's package (issue 25).

Run from the repository root after `bash scripts/test.sh` (or `swift build -c release`,
scripts/build-wheel.sh, scripts/fetch-models.sh and scripts/export-efficientnet.sh):

    .venv/bin/python Benchmarks/python_dropin.py [--models fashion_cnn efficientnet_lite0 minilm_l3] [--markdown]

Each model is quantized twice by this code, in a process of its own, with only the import line
changed (`from onnxruntime.quantization import ...` or `from quantkit import ...`):

    reader = Reader(items)                      # a CalibrationDataReader over the calibration items
    quantize_static(model, output, reader, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)

The items are the benchmark's calibration sets (bench_data.py), read from .npy by the reader as
it goes (all of them loaded first, as the benchmark's sets are small). Printed per model and quantizer: the task metric on held-out data (as
Benchmarks/quantize_vs_ort.py measures it), wall time of the quantize_static call, the peak resident memory of
the process tree (Python and, for QuantKit, the binary it runs; sampled every 10 ms), and the share of Conv/MatMul/Gemm ONNX Runtime runs
as integer kernels.
"""
import argparse
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data as bd  # noqa: E402
import quantize_vs_ort as qv  # noqa: E402

CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import bench_data as bd
{import_line}
model, output, name, inputs = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split(",")

class Reader(CalibrationDataReader):
    def __init__(self, items):
        self.items = iter(items)
    def get_next(self):
        return next(self.items, None)

items = bd.calib_items(name, inputs)
t0 = time.perf_counter()
reader = Reader(items)
quantize_static(model, output, reader, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
print("SECONDS", time.perf_counter() - t0)
"""

IMPORTS = {
    "onnxruntime": "from onnxruntime.quantization import quantize_static, CalibrationDataReader, QuantType",
    "quantkit": "from quantkit import quantize_static, CalibrationDataReader, QuantType",
}


def tree_rss(pid):
    """Resident MiB of `pid` and its descendants (from /proc), 0 when it is gone."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    stack += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
    return total / 1024


def run(tool, name, path, inputs, output):
    """Runs the lines with `tool`'s import in a fresh process; returns (seconds, peak MiB of the
    process tree, sampled every 10 ms: ru_maxrss would carry the parent's peak across exec)."""
    code = CHILD.replace("{import_line}", IMPORTS[tool])
    p = subprocess.Popen([sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__)), path, output, name, ",".join(inputs)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def sample():
        while p.poll() is None:
            peak[0] = max(peak[0], tree_rss(p.pid))
            time.sleep(0.01)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = p.communicate()
    t.join()
    if p.returncode != 0:
        raise RuntimeError(f"{tool} on {name} failed: {err[-2000:]}")
    return float(out.split("SECONDS")[-1].split()[0]), peak[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=["fashion_cnn", "efficientnet_lite0", "minilm_l3"])
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    rows = []
    out_dir = os.path.join(bd.ROOT, "out", "bench", "python_dropin")
    os.makedirs(out_dir, exist_ok=True)
    for name in a.models:
        path, inputs, make, evaluate = qv.MODELS[name]
        make()
        f = evaluate(path)
        for tool in ["onnxruntime", "quantkit"]:
            output = os.path.join(out_dir, f"{name}.{tool}.onnx")
            seconds, peak = run(tool, name, path, inputs, output)
            q = evaluate(output)
            c = qv.compare(name, f, q)
            k, n = qv.fusion(output)
            rows.append((name, tool, c["text"], f"{seconds:.1f}", f"{peak:.0f}", f"{k} of {k + n}"))
            print(" | ".join(rows[-1]), flush=True)
    header = ("model", "quantize_static from", "task metric (held-out data)", "seconds", "peak MiB (process tree)", "integer kernels")
    if a.markdown:
        bd.markdown_table(header, rows)


if __name__ == "__main__":
    main()
