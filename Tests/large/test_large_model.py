"""A model whose weights are over 2 GB (issue 24), end to end. Not in the default suite (it writes
2.3 GB and runs for about eight minutes, six of them GPTQ); its command, after `bash scripts/test.sh`:

    .venv/bin/python scripts/make-large-decoder.py .cache/large
    .venv/bin/python -m pytest -q Tests/large

Calibration, int8 QDQ and weight-only quantization and the analysis run on the mapped weights;
the quantized models load in ONNX Runtime; peaks stay within the issue's bounds."""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "Benchmarks"))
import large_model as lm  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if not os.path.exists(lm.LARGE):
        pytest.skip("run scripts/make-large-decoder.py .cache/large first")
    m = onnx.load(lm.LARGE, load_external_data=False)
    width = m.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    weights = os.path.getsize(lm.LARGE + ".data") / 2**20
    assert weights * 2**20 > 2**31, "the weights must be over 2 GiB"
    largest = max(int(np.prod(t.dims)) * 4 for t in m.graph.initializer) / 2**20
    d = tmp_path_factory.mktemp("large")
    data = d / "x"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        np.save(data / f"{i}.npy", rng.standard_normal((1, 16, width), dtype=np.float32))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    x = np.load(data / "0.npy")
    ref = ort.InferenceSession(lm.LARGE, so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return {"dir": d, "data": str(data), "weights": weights, "largest": largest, "x": x, "ref": ref, "so": so}


def ort_cosine(s, path):
    y = ort.InferenceSession(path, s["so"], providers=["CPUExecutionProvider"]).run(None, {"x": s["x"]})[0]
    return lm.cosine(s["ref"], y)


def test_int8_qdq_end_to_end(setup):
    s = setup
    stats, out = str(s["dir"] / "stats.json"), str(s["dir"] / "q8.onnx")
    r, _, peak = lm.timed(["calibrate", lm.LARGE, "--input", f"x={s['data']}", "--stats-out", stats, "--quiet"])
    assert r.returncode == 0, r.stderr[-2000:]
    r, _, peak = lm.timed(["quantize", lm.LARGE, "--stats", stats, "-o", out, "--quiet", "--no-analysis"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert peak < 1.5 * s["weights"], (peak, s["weights"])
    assert os.path.exists(out + ".data") or os.path.getsize(out) < 2**31
    assert ort_cosine(s, out) >= 0.99
    r, _, _ = lm.timed(["analyze", lm.LARGE, out, "--input", f"x={s['data']}", "--stats", stats, "--no-layerwise",
                        "--report", str(s["dir"] / "q8.report"), "--quiet"])
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("bits,cosine", [("int8", 0.99), ("int4", 0.97)])
def test_weight_only_streams(setup, bits, cosine):
    """Weight-only quantization reads one weight's mapped pages at a time: the peak stays under
    half the weights plus the largest tensor. (int4 RTN of these random Gaussian weights loses
    more than a trained model's: 0.984 over 17 layers, docs/BENCHMARKS.md.)"""
    s = setup
    out = str(s["dir"] / f"{bits}.onnx")
    r, _, peak = lm.timed(["quantize", lm.LARGE, "--weight-only", bits, "-o", out, "--quiet", "--no-analysis"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert peak < 0.5 * s["weights"] + s["largest"], (peak, s["weights"], s["largest"])
    assert ort_cosine(s, out) >= cosine


def test_weight_only_gptq_in_passes(setup):
    """GPTQ on a model whose Hessians do not fit one pass (17 × 512 MiB for K = 8192 against
    --hessian-memory's default 1 GiB): the data is read in 17 passes, each pass's layers rounded
    before the next collects, and each weight's mapped pages dropped once its node has run, so the
    peak stays under the weights' size. Measured on an item GPTQ has not seen (on its own 64
    calibration tokens it leaves almost no error)."""
    s = setup
    out = str(s["dir"] / "gptq.onnx")
    r, _, peak = lm.timed(["quantize", lm.LARGE, "--weight-only", "int4", "--method", "gptq", "--input", f"x={s['data']}", "-o", out,
                           "--no-analysis"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "pass 17 of 17" in r.stderr
    assert peak < s["weights"], (peak, s["weights"])
    x = np.random.default_rng(1).standard_normal(s["x"].shape, dtype=np.float32)
    ref = ort.InferenceSession(lm.LARGE, s["so"], providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    y = ort.InferenceSession(out, s["so"], providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert lm.cosine(ref, y) >= 0.97
