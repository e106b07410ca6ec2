"""On every model of the zoo (Benchmarks/zoo.py), the `integer` line of QuantKit's summary
equals what ONNX Runtime's optimized graph runs as integer kernels, and the quantized model runs
in ONNX Runtime with the float model's outputs (issue #20). Not part of scripts/test.sh: the zoo
is ~230 MB of wheels. Run it with

    bash scripts/fetch-zoo.sh && .venv/bin/python -m pytest -q Tests/zoo

(after scripts/test.sh or `swift build -c release` and scripts/fetch-models.sh).
"""
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "Benchmarks"))
import bench_data as bd  # noqa: E402
import zoo  # noqa: E402

BINARY = os.path.join(ROOT, ".build", "release", "quantkit")
INTEGER_OPS = {"QLinearConv", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat", "ConvInteger", "MatMulInteger"}


def present():
    missing = [m.name for m in zoo.ZOO if not os.path.exists(m.path)]
    assert not missing, f"zoo models missing: {missing}; run scripts/fetch-models.sh, scripts/export-efficientnet.sh and scripts/fetch-zoo.sh"
    return zoo.ZOO


@pytest.mark.parametrize("m", present(), ids=lambda m: m.name)
def test_integer_count_is_onnx_runtimes(m, tmp_path):
    folder = zoo.prepare(m)
    out = str(tmp_path / f"{m.name}.q.onnx")
    args = [BINARY, "quantize", m.path, "-o", out, "--no-analysis"]
    for name in m.inputs:
        args += ["--input", f"{name}={os.path.join(folder, 'calib', name)}"]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if l.startswith("integer"))
    k = int(line.split()[1])
    ops = bd.optimized_ops(out)
    fused = sum(o in INTEGER_OPS for o in ops)
    assert k == fused, f"{m.name}: the summary says {line!r}; ONNX Runtime runs {fused} integer kernels"
    # A calibration item is a feed of the model's own inputs (silero's evaluation items are whole
    # clips for its streaming runner).
    items = zoo.load_items(os.path.join(folder, "calib"))[:1]
    f = ort.InferenceSession(m.path, providers=["CPUExecutionProvider"]).run(None, items[0])
    q = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, items[0])
    assert [a.shape for a in f] == [b.shape for b in q] and all(np.isfinite(b).all() for b in q if b.dtype.kind == "f")
