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


def _save(tmp_path, name, nodes, inputs, outputs, opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    path = str(tmp_path / name)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


def _float(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_node_without_its_inputs_is_qk1207_not_a_crash(tmp_path):
    import numpy as np
    path = _save(tmp_path, "m.onnx", [helper.make_node("Relu", [], ["y"], name="bad")], [_float("x", [1, 4])], [_float("y", [1, 4])])
    np.save(tmp_path / "x.npy", np.ones((1, 4), np.float32))
    r = quantkit("run", path, "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", str(tmp_path / "out"), check=False)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: QK1207 node Relu 'bad' has 0 inputs; Relu-14 takes 1"), r.stderr
    r = quantkit("inspect", "--verify", path, check=False)
    assert r.returncode == 2 and "QK1207" in r.stdout + r.stderr


def test_opset_too_new_and_graph_without_outputs_are_refused(tmp_path):
    new = _save(tmp_path, "new.onnx", [helper.make_node("Relu", ["x"], ["y"])], [_float("x", [1, 4])], [_float("y", [1, 4])], opset=99)
    r = quantkit("quantize", new, "--input", "x=random", "-o", str(tmp_path / "q.onnx"), check=False)
    assert r.returncode == 2 and "QK1208" in r.stderr, r.stderr
    none = _save(tmp_path, "none.onnx", [helper.make_node("Relu", ["x"], ["y"])], [_float("x", [1, 4])], [])
    r = quantkit("quantize", none, "--input", "x=random", "-o", str(tmp_path / "q2.onnx"), check=False)
    assert r.returncode == 2 and "QK1209" in r.stderr, r.stderr
    assert not (tmp_path / "q.onnx").exists() and not (tmp_path / "q2.onnx").exists()


def test_analysis_thresholds_are_checked_before_any_output_qk7004(tmp_path):
    path = _save(tmp_path, "m.onnx", [helper.make_node("Relu", ["x"], ["y"])], [_float("x", [1, 4])], [_float("y", [1, 4])])
    for flag, value in [("--snr-warning", "nan"), ("--cosine-warning", "2"), ("--analysis-samples", "-1")]:
        out = tmp_path / f"q{flag}.onnx"
        r = quantkit("quantize", path, "--input", "x=random", "-o", str(out), f"{flag}={value}", check=False)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith(f"error: QK7004 {flag} is "), r.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
