"""If bodies are quantized like the main graph: calibration observes the values inside them, the
branch calibration took gets Q/DQ (weights from the body's own constants), the branch it never took
stays float with a warning, ONNX Runtime fuses the body's Convs, and the analysis measures and
advises on body layers (its --subgraph advice works there)."""
import json
import os
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import BINARY, CACHE, ROOT, npy_folder, quantkit

RNG = np.random.default_rng(7)
SILERO_16K = "If_0_then_branch__Inline_0__"  # node-name prefix of silero VAD's 16 kHz branch


def branch(tag):
    """x[N,4,12,12] ─ Conv(8, Constant weight) ─ Relu ─ Conv(4, weight from the main graph) ─ out."""
    w1 = (RNG.standard_normal((8, 4, 3, 3)) * 0.3).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], [f"{tag}_w1"], name=f"{tag}_const", value=numpy_helper.from_array(w1)),
        helper.make_node("Conv", ["x", f"{tag}_w1", f"{tag}_b1"], [f"{tag}_c1"], name=f"{tag}_conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", [f"{tag}_c1"], [f"{tag}_r1"], name=f"{tag}_relu"),
        helper.make_node("Conv", [f"{tag}_r1", "W2"], [f"{tag}_out"], name=f"{tag}_conv2", pads=[1, 1, 1, 1]),
    ]
    b1 = numpy_helper.from_array((RNG.standard_normal(8) * 0.1).astype(np.float32), f"{tag}_b1")
    return helper.make_graph(nodes, f"{tag}_branch", [], [helper.make_tensor_value_info(f"{tag}_out", TensorProto.FLOAT, ["N", 4, 12, 12])], [b1])


def if_model():
    """y = If(flag > 0, then: CNN A, else: CNN B); flag is an int64 model input."""
    w2 = numpy_helper.from_array((RNG.standard_normal((4, 8, 3, 3)) * 0.3).astype(np.float32), "W2")
    zero = numpy_helper.from_array(np.array(0, np.int64), "zero")
    nodes = [
        helper.make_node("Greater", ["flag", "zero"], ["cond"], name="greater"),
        helper.make_node("If", ["cond"], ["y"], name="if", then_branch=branch("a"), else_branch=branch("b")),
    ]
    g = helper.make_graph(nodes, "if_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 12, 12]),
                                            helper.make_tensor_value_info("flag", TensorProto.INT64, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 12, 12])], [w2, zero])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def body(model, name):
    node = next(n for n in model.graph.node if n.op_type == "If")
    return next(a.g for a in node.attribute if a.name == name)


def write_data(folder, items, flag):
    os.makedirs(folder, exist_ok=True)
    lines = []
    for i, x in enumerate(items):
        np.save(os.path.join(folder, f"{i}_x.npy"), x)
        np.save(os.path.join(folder, f"{i}_flag.npy"), np.array(flag, np.int64))
        lines.append(f"{folder}/{i}_x.npy;{folder}/{i}_flag.npy")
    path = os.path.join(folder, "list.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def cosine(a, b):
    a, b = a.ravel(), b.ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def run(path, x, flag, optimized=True):
    so = ort.SessionOptions()
    if not optimized:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(None, {"x": x, "flag": np.array(flag, np.int64)})[0]


def ops(graph):
    return [n.op_type for n in graph.node]


def test_the_branch_calibration_took_is_quantized_and_fused_the_other_stays_float(tmp_path):
    model = if_model()
    src = str(tmp_path / "if.onnx")
    onnx.save(model, src)
    items = [RNG.standard_normal((1, 4, 12, 12)).astype(np.float32) for _ in range(12)]
    lst = write_data(str(tmp_path / "data"), items, 1)
    out = str(tmp_path / "if.q.onnx")
    r = quantkit("quantize", src, "--list", lst, "-o", out, "--quiet")
    assert "never ran during calibration" in r.stderr + r.stdout

    q = onnx.load(out)
    onnx.checker.check_model(q, full_check=True)
    then_ops, else_ops = ops(body(q, "then_branch")), ops(body(q, "else_branch"))
    assert then_ops.count("QuantizeLinear") >= 2 and then_ops.count("DequantizeLinear") >= 4
    assert "QuantizeLinear" not in else_ops and "DequantizeLinear" not in else_ops
    then_inits = {i.name: i for i in body(q, "then_branch").initializer}
    assert any(i.data_type == TensorProto.INT8 for i in then_inits.values()), "the Constant weight became an int8 body initializer"
    params = json.load(open(out[:-len(".q.onnx")] + ".qparams.json"))["tensors"]
    assert "a_r1" in params and params["a_r1"]["dtype"] == "uint8"

    x = RNG.standard_normal((3, 4, 12, 12)).astype(np.float32)
    assert cosine(run(src, x, 1), run(out, x, 1)) > 0.995
    # The untaken branch is the float model's exactly.
    np.testing.assert_array_equal(run(src, x, 0, optimized=False), run(out, x, 0, optimized=False))

    # ONNX Runtime fuses inside the body: both Convs of the then branch become QLinearConv.
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(out, so, providers=["CPUExecutionProvider"])
    assert ops(body(onnx.load(str(tmp_path / "opt.onnx")), "then_branch")).count("QLinearConv") == 2


def test_analysis_measures_body_layers_and_its_subgraph_advice_applies_in_the_body(tmp_path):
    src = str(tmp_path / "if.onnx")
    onnx.save(if_model(), src)
    items = [RNG.standard_normal((1, 4, 12, 12)).astype(np.float32) for _ in range(8)]
    lst = write_data(str(tmp_path / "data"), items, 1)
    out = str(tmp_path / "if.q.onnx")
    quantkit("quantize", src, "--list", lst, "-o", out, "--quiet")
    report = json.load(open(str(tmp_path / "if.report.json")))
    layers = {l["node"]: l for l in report["layers"]}
    assert {"a_conv1", "a_conv2"} <= set(layers), sorted(layers)
    assert all(layers[n]["graphwise"]["snr"] > 0 for n in ("a_conv1", "a_conv2"))

    # A custom_setting naming body tensors: 16-bit activations for the first Conv's region.
    out16 = str(tmp_path / "if16.q.onnx")
    quantkit("quantize", src, "--list", lst, "-o", out16, "--quiet", "--no-analysis", "--subgraph", "x:a_r1:bits=16")
    params = json.load(open(out16[:-len(".q.onnx")] + ".qparams.json"))["tensors"]
    assert params["a_r1"]["dtype"] == "uint16"
    x = RNG.standard_normal((2, 4, 12, 12)).astype(np.float32)
    assert cosine(run(src, x, 1), run(out16, x, 1)) > 0.995


def test_silero_vad_convs_inside_its_if_are_quantized_and_fused(tmp_path):
    if not os.path.exists(os.path.join(CACHE, "models", "silero_vad.onnx")):
        pytest.skip("model not fetched")
    out = str(tmp_path / "vad.q.onnx")
    r = subprocess.run([BINARY, "quantize", "-c", "examples/silero_vad.json", "-o", out, "--quiet", "--no-analysis"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    q = onnx.load(out)
    onnx.checker.check_model(q)
    params = json.load(open(out[:-len(".q.onnx")] + ".qparams.json"))["tensors"]
    weights = [t for t, p in params.items() if p["dtype"] == "int8"]
    assert len(weights) == 6, weights  # the 16 kHz branch: STFT, 4 encoder Convs, the decoder's Conv
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    s = ort.InferenceSession(out, so, providers=["CPUExecutionProvider"])
    counts = {}

    def walk(g):
        for n in g.node:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
    walk(onnx.load(str(tmp_path / "opt.onnx")).graph)
    assert counts.get("QLinearConv", 0) >= 5, counts
    x = np.load(os.path.join(ROOT, "examples", "data", "silero", "input_0.npy"))
    state = np.load(os.path.join(ROOT, "examples", "data", "silero", "state_0.npy"))
    p, _ = s.run(None, {"input": x, "state": state, "sr": np.array(16000, np.int64)})
    assert p.shape == (1, 1) and 0 <= float(p[0, 0]) <= 1


def test_auto_keep_float_requantizes_without_the_worst_ops_by_themselves(tmp_path):
    """On the example's 16 chunks of streamed speech the first encoder Conv and the STFT Conv
    have the largest layerwise SNRs of the Convs (~2e-3 and ~1.3e-3; the next ~4e-4): with
    --auto-keep-float 2 exactly those two stay float (the Slice after the STFT is not a compute
    op), the model is quantized again with the same statistics, and the final report says so.
    Without the analysis the option is refused."""
    if not os.path.exists(os.path.join(CACHE, "models", "silero_vad.onnx")):
        pytest.skip("model not fetched")
    out = str(tmp_path / "vad.q.onnx")
    r = subprocess.run([BINARY, "quantize", "-c", "examples/silero_vad.json", "-o", out, "--quiet", "--auto-keep-float", "2"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    stft, enc0 = f"{SILERO_16K}/stft/Conv", f"{SILERO_16K}/encoder/0/reparam_conv/Conv"
    assert f"auto-keep-float: keeping '{enc0}', '{stft}' float" in r.stdout, r.stdout
    params = json.load(open(str(tmp_path / "vad.qparams.json")))["tensors"]
    weights = sorted(t for t, p in params.items() if p["dtype"] == "int8")
    assert len(weights) == 4 and not any("stft" in w or "encoder.0." in w for w in weights), weights
    report = json.load(open(str(tmp_path / "vad.report.json")))
    assert any("--auto-keep-float 2" in n and stft in n and enc0 in n for n in report["notes"]), report["notes"]
    assert stft not in [l["node"] for l in report["layers"]]
    r = subprocess.run([BINARY, "quantize", "-c", "examples/silero_vad.json", "-o", str(tmp_path / "n.onnx"), "--quiet",
                        "--auto-keep-float", "2", "--no-analysis"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "QK7004" in r.stderr and "--auto-keep-float" in r.stderr, r.stderr


def loop_model():
    """y = Loop 3 times: h = Relu(Conv(h, W)) + x, starting from h = x (W from the main graph)."""
    w = numpy_helper.from_array((RNG.standard_normal((4, 4, 3, 3)) * 0.2).astype(np.float32), "W")
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
         helper.make_node("Conv", ["h", "W"], ["c"], name="loop_conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"], name="loop_relu"),
         helper.make_node("Add", ["r", "x"], ["h_next"], name="loop_add")],
        "loop_body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("h_next", TensorProto.FLOAT, ["N", 4, 8, 8])])
    trips = numpy_helper.from_array(np.array(3, np.int64), "trips")
    g = helper.make_graph([helper.make_node("Loop", ["trips", "", "x"], ["y"], name="loop", body=body)], "loop_cnn",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], [w, trips])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_loop_body_is_quantized_and_runs_in_onnx_runtime(tmp_path):
    src = str(tmp_path / "loop.onnx")
    onnx.save(loop_model(), src)
    calib = npy_folder(tmp_path / "calib", [RNG.standard_normal((1, 4, 8, 8)).astype(np.float32) for _ in range(8)])
    out = str(tmp_path / "loop.q.onnx")
    quantkit("quantize", src, "--input", f"x={calib}", "-o", out, "--quiet")
    q = onnx.load(out)
    onnx.checker.check_model(q, full_check=True)
    body_ops = ops(next(a.g for a in q.graph.node[0].attribute if a.name == "body"))
    assert "QuantizeLinear" in body_ops and "DequantizeLinear" in body_ops, body_ops
    assert not any(i.name == "W" for i in q.graph.initializer), "the main graph's float weight moved into the body, quantized"
    x = RNG.standard_normal((2, 4, 8, 8)).astype(np.float32)
    f = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    y = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert cosine(f, y) > 0.995
    # The analysis pairs each iteration with the float model's same iteration: the body Conv's
    # error is small (against the float model's last iteration it would read SNR ~0.2).
    report = json.load(open(str(tmp_path / "loop.report.json")))
    conv = next(l for l in report["layers"] if l["node"] == "loop_conv")
    assert conv["graphwise"]["snr"] < 0.01 and conv["layerwise"]["snr"] < 0.01, conv


@pytest.mark.parametrize("keep", [["--exclude-node", "if"], ["--exclude-op-type", "If"], ["--truncate", "cond"]], ids=lambda k: k[0])
def test_bodies_of_a_node_kept_float_stay_float(tmp_path, keep):
    src = str(tmp_path / "if.onnx")
    onnx.save(if_model(), src)
    lst = write_data(str(tmp_path / "data"), [RNG.standard_normal((1, 4, 12, 12)).astype(np.float32) for _ in range(4)], 1)
    out = str(tmp_path / "if.q.onnx")
    quantkit("quantize", src, "--list", lst, "-o", out, "--quiet", "--no-analysis", *keep)
    q = onnx.load(out)
    for name in ("then_branch", "else_branch"):
        assert not {"QuantizeLinear", "DequantizeLinear"} & set(ops(body(q, name))), (keep, name)
    x = RNG.standard_normal((2, 4, 12, 12)).astype(np.float32)
    np.testing.assert_array_equal(run(src, x, 1, optimized=False), run(out, x, 1, optimized=False))
