"""Graph preparation keeps the float semantics: ONNX Runtime gives the same outputs for the
original and the prepared real models."""
import os

import numpy as np
import onnxruntime as ort
import pytest

from conftest import CACHE, quantkit

FEEDS = {
    "ppocr_cls.onnx": lambda r: {"x": r.standard_normal((2, 3, 48, 192)).astype(np.float32)},
    "ppocrv4_rec.onnx": lambda r: {"x": r.standard_normal((2, 3, 48, 320)).astype(np.float32)},
    "ppocrv4_det.onnx": lambda r: {"x": r.standard_normal((1, 3, 128, 160)).astype(np.float32)},
    "minilm_l3.onnx": lambda r: {"input_ids": r.integers(100, 2000, (2, 12)).astype(np.int64), "attention_mask": np.ones((2, 12), np.int64)},
}


@pytest.mark.parametrize("name", sorted(FEEDS))
def test_prepared_model_computes_the_same(tmp_path, name):
    src = os.path.join(CACHE, "models", name)
    out = str(tmp_path / name)
    r = quantkit("convert", src, out, "--prepare")
    assert "prepared:" in r.stdout
    feeds = FEEDS[name](np.random.default_rng(0))
    a = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)
    b = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, feeds)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4)
        else:
            np.testing.assert_array_equal(x, y)
