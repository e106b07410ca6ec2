"""Catalogued errors that need a hand-made ONNX model to trigger (built here with `onnx`)."""
import onnx
from onnx import TensorProto, helper

from conftest import quantkit


def test_run_cannot_write_string_outputs_as_npy_qk7021(tmp_path):
    value = helper.make_tensor("v", TensorProto.STRING, [1], [b"text"])
    node = helper.make_node("Constant", [], ["y"], value=value)
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.STRING, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = str(tmp_path / "s.onnx")
    onnx.save(model, path)
    r = quantkit("run", path, "--output-dir", str(tmp_path / "out"), check=False)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: QK7021 output 'y' of type string cannot be written as .npy")
