"""Graph preparation keeps the float semantics: ONNX Runtime gives the same outputs for the
original and the prepared real models."""
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import CACHE, quantkit

FEEDS = {
    "ppocr_cls.onnx": lambda r: {"x": r.standard_normal((2, 3, 48, 192)).astype(np.float32)},
    "ppocrv4_rec.onnx": lambda r: {"x": r.standard_normal((2, 3, 48, 320)).astype(np.float32)},
    "ppocrv4_det.onnx": lambda r: {"x": r.standard_normal((1, 3, 128, 160)).astype(np.float32)},
    "efficientnet_lite0.onnx": lambda r: {"input": r.standard_normal((2, 3, 224, 224)).astype(np.float32)},
    "minilm_l3.onnx": lambda r: {"input_ids": r.integers(100, 2000, (2, 12)).astype(np.int64), "attention_mask": np.ones((2, 12), np.int64)},
}


@pytest.mark.parametrize("name", sorted(FEEDS))
def test_prepared_model_computes_the_same(tmp_path, name):
    src = os.path.join(CACHE, "models", name)
    out = str(tmp_path / name)
    r = quantkit("convert", src, out, "--prepare")
    assert "prepared:" in r.stdout
    if name == "efficientnet_lite0.onnx":
        # TF-style "same" padding: 17 Pad nodes become the Convs' own pads.
        assert "17 Pads folded" in r.stdout, r.stdout
        assert not [n for n in onnx.load(out).graph.node if n.op_type == "Pad"]
    feeds = FEEDS[name](np.random.default_rng(0))
    a = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)
    b = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, feeds)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4)
        else:
            np.testing.assert_array_equal(x, y)


def test_zero_pads_fold_into_the_conv_and_others_stay(tmp_path):
    """Pad (zeros on H and W only, value 0) before a Conv with pads of its own becomes the Conv's
    summed pads; a Pad with value 1 and a Pad on the channel axis stay. Same outputs."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    inits = [w, numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 3, 0], np.int64), "p_hw"),
             numpy_helper.from_array(np.array([0, 1, 0, 0, 0, 1, 0, 0], np.int64), "p_c"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(rng.standard_normal((4, 5, 3, 3)).astype(np.float32), "w5")]
    nodes = [helper.make_node("Pad", ["x", "p_hw"], ["a"], name="pad_zero"),
             helper.make_node("Conv", ["a", "w"], ["y1"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Pad", ["x", "p_hw", "one"], ["b"], name="pad_one"),
             helper.make_node("Conv", ["b", "w"], ["y2"], name="conv_b"),
             helper.make_node("Pad", ["x", "p_c"], ["c"], name="pad_channels"),
             helper.make_node("Conv", ["c", "w5"], ["y3"], name="conv_c")]
    g = helper.make_graph(nodes, "pads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 8])],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y1", "y2", "y3")], inits)
    src, out = str(tmp_path / "pads.onnx"), str(tmp_path / "pads.prepared.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), src)
    r = quantkit("convert", src, out, "--prepare")
    assert "1 Pads folded" in r.stdout, r.stdout
    m = onnx.load(out)
    assert sorted(n.name for n in m.graph.node if n.op_type == "Pad") == ["pad_channels", "pad_one"]
    conv_a = next(n for n in m.graph.node if n.name == "conv_a")
    assert conv_a.input[0] == "x" and list(next(a for a in conv_a.attribute if a.name == "pads").ints) == [2, 3, 4, 1]
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    a = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    b = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5)
