"""Float16 and double models quantize: preparation computes them in float32 inside (Q/DQ below
opset 19 take float32 only, and never double), their inputs and outputs keep their type, and ONNX
Runtime runs the result with integer kernels. Before, the output failed onnx.checker
(QuantizeLinear on float16 at opset 13, on double at any opset)."""
import collections
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.transformers.float16 import convert_float_to_float16

from conftest import CACHE, npy_folder, optimized_ops, quantkit

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "fashion_cnn.onnx")
MINILM = os.path.join(CACHE, "models", "minilm_l3.onnx")


def test_float16_cnn_quantizes_and_keeps_float16_inputs_and_outputs(tmp_path):
    src = tmp_path / "fashion16.onnx"
    onnx.save(convert_float_to_float16(onnx.load(FIXTURE), keep_io_types=False), src)
    x = np.random.default_rng(4).random((40, 1, 28, 28)).astype(np.float16)
    calib = npy_folder(tmp_path / "calib", [x[i:i + 1] for i in range(24)])
    out = tmp_path / "q.onnx"
    r = quantkit("quantize", str(src), "--input", f"image={calib}", "-o", str(out), "--no-analysis")
    assert "float16 computed as float32 inside" in r.stdout and "3 BatchNorms folded" in r.stdout
    m = onnx.load(out)
    onnx.checker.check_model(m, full_check=True)
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    ops = collections.Counter(optimized_ops(out))
    assert ops["QLinearConv"] == 3 and ops["QGemm"] == 1 and ops["Conv"] == 0, ops
    f = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"image": x[24:]})[0].astype(np.float32)
    q = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x[24:]})[0]
    assert q.dtype == np.float16
    q = q.astype(np.float32)
    rel = float(np.sqrt(np.mean((f - q) ** 2) / np.mean(f ** 2)))
    assert rel < 0.05, rel


@pytest.mark.skipif(not os.path.exists(MINILM), reason="minilm_l3.onnx is not in .cache/models")
def test_float16_transformer_quantizes(tmp_path):
    src = tmp_path / "minilm16.onnx"
    onnx.save(convert_float_to_float16(onnx.load(MINILM), keep_io_types=False), src)
    rng = np.random.default_rng(8)
    lines = []
    for i in range(8):
        ids = rng.integers(1000, 30000, (1, 32)).astype(np.int64)
        ids[0, 0], ids[0, 24], ids[0, 25:] = 101, 102, 0
        np.save(tmp_path / f"{i}_ids.npy", ids)
        np.save(tmp_path / f"{i}_mask.npy", (ids != 0).astype(np.int64))
        lines.append(f"{tmp_path / f'{i}_ids.npy'};{tmp_path / f'{i}_mask.npy'}")
    (tmp_path / "calib.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "q.onnx"
    quantkit("quantize", str(src), "--list", str(tmp_path / "calib.txt"), "-o", str(out), "--no-analysis")
    onnx.checker.check_model(onnx.load(out), full_check=True)
    ops = collections.Counter(optimized_ops(out))
    assert ops["QLinearMatMul"] + ops["MatMulIntegerToFloat"] == 24 and ops["MatMul"] == 0, ops
    ids = rng.integers(1000, 30000, (4, 32)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[2, 20:] = 0
    ids[mask == 0] = 0
    feeds = {"input_ids": ids, "attention_mask": mask}
    f = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, feeds)[-1].astype(np.float32)
    q = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, feeds)[-1].astype(np.float32)
    cos = (f * q).sum(1) / np.linalg.norm(f, axis=1) / np.linalg.norm(q, axis=1)
    assert cos.min() > 0.99, cos


def test_double_mlp_quantizes_and_keeps_double_inputs_and_outputs(tmp_path):
    g = np.random.default_rng(12)
    d = TensorProto.DOUBLE
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]), helper.make_node("MatMul", ["h2", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", d, ["N", 8])], [helper.make_tensor_value_info("y", d, ["N", 4])],
                              [numpy_helper.from_array(g.standard_normal((8, 16)), "w1"), numpy_helper.from_array(g.standard_normal(16), "b1"),
                               numpy_helper.from_array(g.standard_normal((16, 4)), "w2")])
    src = tmp_path / "mlp64.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), src)
    calib = npy_folder(tmp_path / "calib", [g.standard_normal((1, 8)) for _ in range(32)])
    out = tmp_path / "q.onnx"
    r = quantkit("quantize", str(src), "--input", f"x={calib}", "-o", str(out), "--no-analysis")
    assert "double computed as float32 inside" in r.stdout
    m = onnx.load(out)
    onnx.checker.check_model(m, full_check=True)
    assert m.graph.input[0].type.tensor_type.elem_type == d and m.graph.output[0].type.tensor_type.elem_type == d
    ops = collections.Counter(optimized_ops(out))
    assert ops["QLinearMatMul"] + ops["MatMulIntegerToFloat"] == 2 and ops["MatMul"] == 0, ops
    x = g.standard_normal((64, 8))
    f = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    q = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert q.dtype == np.float64
    rel = float(np.sqrt(np.mean((f - q) ** 2) / np.mean(f ** 2)))
    print(f"relative RMS error {rel:.4f}")
    assert rel < 0.08, rel
