"""External data and models over 2 GiB: QuantKit loads and saves them with identical tensors,
and onnx.checker accepts what it writes."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import quantkit, quantkit_json


def model_with(tensors):
    """x ─ Add(t0) ─ Add(t1) ─ ... ─ y, every ti of x's shape [n]."""
    n = tensors[0].size
    nodes, prev = [], "x"
    for i in range(len(tensors)):
        nodes.append(helper.make_node("Add", [prev, f"t{i}"], [f"y{i}"]))
        prev = f"y{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])],
        [numpy_helper.from_array(t, f"t{i}") for i, t in enumerate(tensors)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def tensors_of(path):
    m = onnx.load(path)
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


def test_external_data_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    ts = [rng.standard_normal(100_000).astype(np.float32) for _ in range(3)]
    src = tmp_path / "src" / "m.onnx"
    src.parent.mkdir()
    onnx.save(model_with(ts), str(src), save_as_external_data=True, location="weights.bin", size_threshold=0)
    s = quantkit_json("inspect", str(src), "--json")
    assert s["externalDataFiles"] == ["weights.bin"]
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    quantkit("convert", str(src), str(out))  # auto keeps external data
    assert os.path.exists(str(out) + ".data")
    onnx.checker.check_model(str(out))
    for k, v in tensors_of(str(out)).items():
        np.testing.assert_array_equal(v, ts[int(k[1:])])
    inline = tmp_path / "inline.onnx"
    quantkit("convert", str(src), str(inline), "--external-data", "never")
    assert not os.path.exists(str(inline) + ".data")
    onnx.checker.check_model(str(inline))
    for k, v in tensors_of(str(inline)).items():
        np.testing.assert_array_equal(v, ts[int(k[1:])])


def test_model_over_2gib_round_trips(tmp_path):
    # 2 x 1.1 GiB tensors: too large for one protobuf file.
    n = 295_000_000
    ts = [np.full(n, 1.5, dtype=np.float32), np.arange(n, dtype=np.float32)]
    ts[0][::997] = -3.25
    src = tmp_path / "big" / "big.onnx"
    src.parent.mkdir()
    onnx.save(model_with(ts), str(src), save_as_external_data=True, location="big.bin")
    del ts
    out = tmp_path / "out" / "big.onnx"
    out.parent.mkdir()
    r = quantkit("convert", str(src), str(out), "--external-data", "never", check=False)
    assert r.returncode == 2 and "QK1005" in r.stderr and not out.exists()
    quantkit("convert", str(src), str(out))
    assert os.path.getsize(str(out) + ".data") > 2**31
    onnx.checker.check_model(str(out))
    a, b = tensors_of(str(src)), tensors_of(str(out))
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
